"""What the commands that read a cloud (``ingest``, ``snapshot``,
``cluster``) share: options that exist only once other options say so (the
chosen metrics source's, the auth plugin's), ``--source``, and their
one-line errors and warnings.

::

    p = sub.add_parser('ingest', ...)
    add_source_option(p)         # --source NAME, then NAME's own options
    ...
    with Outputs(args.out) as out:
        out.check(args.out, args.json)
        ...                      # read, write args.out
        out.write_json(args.json, summary)
    if out.failed:
        return 2
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable, Iterable, Sequence

from nova_rl_trainer.cli import output
from nova_rl_trainer.telemetry import placement
from nova_rl_trainer.telemetry import sources

#: ``add(parser, argv)``: adds the options ``argv`` selects; False when
#: ``argv`` does not say which yet. ValueError for a wrong selection.
AddOptions = Callable[[argparse.ArgumentParser, Sequence[str]], bool]


class _ArgvParser(argparse.ArgumentParser):
    """Adds the options that depend on other options before parsing
    (:func:`options_from_argv`), as in the ``openstack`` command line."""

    _add_options: AddOptions
    _options_added = False

    def parse_known_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        if not self._options_added:
            try:
                self._options_added = self._add_options(self, argv)
            except ValueError as e:
                self.error(str(e))
        return super().parse_known_args(argv, namespace)


def options_from_argv(parser: argparse.ArgumentParser,
                      add: AddOptions) -> None:
    """Make ``parser`` (a command's, from ``add_parser``) call
    ``add(parser, argv)`` before it parses, until ``add`` returns True; a
    ValueError from ``add`` is a usage error (exit status 2)."""
    parser.__class__ = _ArgvParser
    parser._add_options = add


def source_name(argv: Sequence[str]) -> str | None:
    """``--source NAME`` (or ``--source=NAME``) of ``argv``."""
    for i, a in enumerate(argv):
        if a == '--source' and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith('--source='):
            return a.split('=', 1)[1]
    return None


def _source_options(parser: argparse.ArgumentParser,
                    argv: Sequence[str]) -> bool:
    name = source_name(argv)
    if name is None:
        return False
    sources.source_class(name).add_arguments(parser, argv)
    return True


def _placement_options(parser: argparse.ArgumentParser,
                       argv: Sequence[str]) -> bool:
    placement.add_arguments(parser, argv)
    return True


def add_source_option(parser: argparse.ArgumentParser) -> None:
    """``--source NAME`` (a metrics source plugin) and, once it is given,
    that source's options and those of the auth plugin the user picked."""
    try:
        names = sources.available_sources()
    except Exception:  # noqa: BLE001 - only for the help text
        names = ['gnocchi', 'csv']
    parser.add_argument('--source', required=True, metavar='NAME',
                        help='metrics source: ' + (', '.join(names) or
                                                   'none installed'))
    options_from_argv(parser, _source_options)


def add_placement_options(parser: argparse.ArgumentParser) -> None:
    """Placement's auth, session and adapter options, for the auth plugin
    the user picked (which options exist depends on ``--os-auth-type``)."""
    options_from_argv(parser, _placement_options)


def error(message: Any) -> int:
    """``message`` as the one error line on stderr; exit status 2."""
    print(f'nova-rl-trainer: error: {message}', file=sys.stderr)
    return 2


def warn(warnings: Iterable[str]) -> None:
    for w in warnings:
        print(f'nova-rl-trainer: warning: {w}', file=sys.stderr)


class Outputs:
    """A command's reading and writing, as a ``with`` block: a
    SourceError (or one of ``errors``) becomes its one error line, an
    OSError ``cannot write`` the file being written; ``failed`` is then
    True (exit status 2) and the exception goes no further.

    keystoneauth1 logs only errors meanwhile: it logs every retry with the
    whole urllib3 error, and the one-line error at the end says what
    failed."""

    def __init__(self, path: str, *errors: type[Exception]) -> None:
        #: The file being written, for ``cannot write``.
        self.writing = path
        self.errors = (sources.SourceError, output.OutputError, *errors)
        self.failed = False

    def check(self, *paths: str | None) -> None:
        """Each output path (None: not asked for) can be written
        (:func:`output.check_writable`), before the source is read: a
        mistyped ``--json`` then costs no reading and leaves no ``--out``
        written without its summary."""
        for path in paths:
            output.check_writable(path)

    def write_json(self, path: str | None, doc: Any) -> None:
        """``doc`` to ``path`` (``--json``) when one is given."""
        if path:
            self.writing = path
            output.write_json(path, doc)

    def __enter__(self) -> 'Outputs':
        logging.getLogger('keystoneauth').setLevel(logging.ERROR)
        return self

    def __exit__(self, kind: Any, e: BaseException | None, tb: Any) -> bool:
        if isinstance(e, self.errors):
            error(e)
        elif isinstance(e, OSError):
            error(f'cannot write {self.writing}: {e.strerror or e}')
        else:
            return False
        self.failed = True
        return True
