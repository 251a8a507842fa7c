"""Gnocchi's API under the standard library's WSGI server.

Run with the telemetry virtualenv's python::

    .venv-telemetry/bin/python tests/telemetry/gnocchi_wsgiref.py PORT \\
        --config-file gnocchi.conf

uWSGI (what ``gnocchi-api`` runs, and the tests' main server) drops the
connection when the application raises; a WSGI server like this one (or
Apache's mod_wsgi) answers ``500`` instead. The tests use it for a Gnocchi
that fails with a real HTTP 500. ``gnocchi.cli.api.prepare_service()``
reads ``--config-file`` from ``sys.argv``; ``load_app`` gives the WSGI
application.
"""

import socketserver
import sys
from wsgiref import simple_server


class _Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True


class _Quiet(simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main(argv):
    port = int(argv[1])
    sys.argv = [argv[0], *argv[2:]]
    from gnocchi.cli import api
    from gnocchi.rest import app as app_mod
    application = app_mod.load_app(api.prepare_service())
    server = simple_server.make_server('127.0.0.1', port, application,
                                       server_class=_Server,
                                       handler_class=_Quiet)
    server.serve_forever()


if __name__ == '__main__':
    main(sys.argv)
