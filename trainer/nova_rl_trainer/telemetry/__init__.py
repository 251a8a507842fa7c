"""Telemetry: reading what a real cloud's instances were given and used.

:mod:`sources` defines the metrics-source interface and loads the plugins
(namespace ``nova_rl_trainer.metrics_sources``): :mod:`gnocchi_source`
(Ceilometer's data in Gnocchi, through gnocchiclient on a keystoneauth1
session; :mod:`gnocchi_api` the requests, :mod:`auth` the options),
:mod:`prometheus_source` (Ceilometer's Prometheus exporter, through
Prometheus's HTTP API: :mod:`prometheus_api`, :mod:`prometheus_promql`,
:mod:`prometheus_instances`, :mod:`prometheus_usage`) and :mod:`csv_source`
(the trainer's own trace). :mod:`ingest` turns a window of a source into the
trainer's CSV trace (``nova-rl-trainer ingest``); :mod:`snapshot` into the
weigher's usage snapshot (``nova-rl-trainer snapshot``); :mod:`placement`
(with :mod:`placement_client`) reads the cloud's hosts from Placement
(``nova-rl-trainer cluster --from-placement``).
"""
