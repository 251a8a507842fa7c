"""Publish samples into Gnocchi with Ceilometer's own Gnocchi publisher.

Run by the tests with the telemetry virtualenv's python (Ceilometer 27 does
not install beside nova 34)::

    .venv-telemetry/bin/python tests/telemetry/publish_samples.py JOB.json

``JOB.json``::

    {"endpoint": "http://127.0.0.1:PORT", "user": "admin",
     "samples": [{"name": "cpu", "type": "cumulative", "unit": "ns",
                  "volume": 1.5e12, "user_id": "...", "project_id": "...",
                  "resource_id": "<uuid>",
                  "timestamp": "2026-01-01T00:05:00+00:00",
                  "resource_metadata": {...}}, ...],
     "events": [{"event_type": "compute.instance.delete.start",
                 "traits": {"instance_id": "<uuid>", ...}}, ...],
     "chunk": 20000}

Samples are handed to ``GnocchiPublisher.publish_samples`` in chunks of
``chunk`` (never splitting one resource's samples, so each metric receives
its measures in time order), then events to ``publish_events``, exactly as
Ceilometer's notification agent does: the publisher creates the archive
policies and resources, posts the measures with Gnocchi's batch API and
updates the resources' attributes from the samples' metadata. The
publisher logs its failures instead of raising: any ERROR it logs makes
this script exit 1. Prints one JSON line of counts on success.
"""

import json
import logging
import os
import sys
import tempfile
from urllib import parse as urlparse
import uuid


class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage()[:500])


def _conf(endpoint, user):
    from ceilometer import service
    text = ('[DEFAULT]\n'
            'debug = false\n'
            '[service_credentials]\n'
            'auth_type = gnocchi-basic\n'
            f'user = {user}\n'
            f'endpoint = {endpoint}\n')
    fd, path = tempfile.mkstemp(suffix='.conf', prefix='ceilometer-')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        return service.prepare_service(argv=['publish_samples'],
                                       config_files=[path])
    finally:
        os.unlink(path)


def _chunks(samples, size):
    """Lists of about ``size`` samples, one resource never split."""
    by_resource = {}
    for s in samples:
        by_resource.setdefault(s.resource_id, []).append(s)
    chunk = []
    for group in by_resource.values():
        if chunk and len(chunk) + len(group) > size:
            yield chunk
            chunk = []
        chunk.extend(group)
    if chunk:
        yield chunk


def main(argv):
    with open(argv[1], encoding='utf-8') as f:
        job = json.load(f)
    conf = _conf(job['endpoint'], job.get('user', 'admin'))
    # After oslo.log's set-up, which replaces the root logger's handlers.
    errors = _Errors()
    errors.addFilter(logging.Filter('ceilometer'))
    logging.getLogger().addHandler(errors)

    from ceilometer.event import models
    from ceilometer.publisher import gnocchi
    from ceilometer import sample as sample_mod

    publisher = gnocchi.GnocchiPublisher(
        conf, urlparse.urlparse('gnocchi://?enable_filter_project=false'))
    samples = [sample_mod.Sample(
        name=s['name'], type=s['type'], unit=s['unit'], volume=s['volume'],
        user_id=s['user_id'], project_id=s['project_id'],
        resource_id=s['resource_id'], timestamp=s['timestamp'],
        resource_metadata=s.get('resource_metadata') or {})
        for s in job.get('samples', [])]
    chunks = 0
    for chunk in _chunks(samples, int(job.get('chunk', 20000))):
        publisher.publish_samples(chunk)
        chunks += 1
    events = [models.Event(
        message_id=str(uuid.uuid4()), event_type=e['event_type'],
        generated=e.get('generated'),
        traits=[models.Trait(k, models.Trait.TEXT_TYPE, v)
                for k, v in e['traits'].items()],
        raw={}) for e in job.get('events', [])]
    if events:
        publisher.publish_events(events)
    if errors.messages:
        print('publisher errors: ' + ' | '.join(errors.messages[:5]),
              file=sys.stderr)
        return 1
    print(json.dumps({'samples': len(samples), 'chunks': chunks,
                      'events': len(events)}))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
