"""Nova's own weighers as an oracle, run in a process of its own.

Reads a JSON document from stdin::

    {"cases": [{"multipliers": {"ram": 1.0, ...}, "all_weighers": false,
                "hosts": [{"free_ram_mb": ..., "vcpus_total": ...,
                           "cpu_allocation_ratio": ..., "vcpus_used": ...,
                           "free_disk_mb": ..., "num_io_ops": ...,
                           "num_instances": ...}, ...]}, ...]}

and writes ``{"results": [[weight per host, in input order], ...]}``: the
``weight`` of each host after ``HostWeightHandler.get_weighed_objects``
with either the five resource weighers or ``all_weighers()``. Nova needs
monkey patching before anything else imports it, so the trainer's tests
call this in a subprocess instead of importing nova themselves.
"""

import json
import sys


def main() -> None:
    from nova import monkey_patch
    monkey_patch.patch()
    import nova.conf
    from nova import objects
    from nova.scheduler import weights
    from nova.scheduler.weights import cpu
    from nova.scheduler.weights import disk
    from nova.scheduler.weights import io_ops
    from nova.scheduler.weights import num_instances
    from nova.scheduler.weights import ram
    from nova.tests.unit.scheduler import fakes

    objects.register_all()
    conf = nova.conf.CONF
    conf([], project='nova')
    doc = json.load(sys.stdin)
    handler = weights.HostWeightHandler()
    names = {'ram': 'ram_weight_multiplier', 'cpu': 'cpu_weight_multiplier',
             'disk': 'disk_weight_multiplier',
             'io_ops': 'io_ops_weight_multiplier',
             'num_instances': 'num_instances_weight_multiplier'}
    results = []
    for case in doc['cases']:
        for key, opt in names.items():
            conf.set_override(opt, case['multipliers'][key],
                              group='filter_scheduler')
        if case.get('all_weighers'):
            weighers = [cls() for cls in weights.all_weighers()]
        else:
            weighers = [ram.RAMWeigher(), cpu.CPUWeigher(),
                        disk.DiskWeigher(), io_ops.IoOpsWeigher(),
                        num_instances.NumInstancesWeigher()]
        hosts = []
        for i, h in enumerate(case['hosts']):
            attrs = dict(h)
            attrs.update({'total_usable_ram_mb': 262144,
                          'total_usable_disk_gb': 2048,
                          'ram_allocation_ratio': 1.0,
                          'disk_allocation_ratio': 1.0,
                          'failed_builds': 0, 'aggregates': [],
                          'metrics': None, 'hypervisor_version': 1,
                          'pci_stats': None, 'cell_uuid': 'cell1'})
            hosts.append(fakes.FakeHostState(f'host{i}', f'node{i}', attrs))
        spec = objects.RequestSpec(instance_group=None,
                                   requested_destination=None,
                                   image=objects.ImageMeta.from_dict({}))
        weighed = handler.get_weighed_objects(weighers, hosts, spec)
        by_host = {w.obj.host: w.weight for w in weighed}
        results.append({'weights': [by_host[f'host{i}']
                                    for i in range(len(hosts))],
                        'order': [int(w.obj.host[4:]) for w in weighed]})
    json.dump({'results': results}, sys.stdout)


if __name__ == '__main__':
    main()
