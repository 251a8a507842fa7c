"""Telemetry: reading what a real cloud's instances were given and used.

:mod:`sources` defines the metrics-source interface and loads the plugins
(namespace ``nova_rl_trainer.metrics_sources``): :mod:`gnocchi_source`
(Ceilometer's data in Gnocchi, through gnocchiclient on a keystoneauth1
session; :mod:`auth` has the options) and :mod:`csv_source` (the trainer's
own trace). :mod:`ingest` turns a window of a source into the trainer's CSV
trace (``nova-rl-trainer ingest``).
"""
