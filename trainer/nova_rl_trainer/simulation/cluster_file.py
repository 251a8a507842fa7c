"""The cluster file: a cluster's host groups as JSON.

:meth:`ClusterSpec.from_file
<nova_rl_trainer.simulation.cluster.ClusterSpec.from_file>` reads it (the
command line's ``--cluster FILE``), :meth:`ClusterSpec.from_dict
<nova_rl_trainer.simulation.cluster.ClusterSpec.from_dict>` takes its
content and :meth:`ClusterSpec.to_file
<nova_rl_trainer.simulation.cluster.ClusterSpec.to_file>` writes it::

    {"host_groups": [{"name": "gen9", "count": 40, "vcpus": 64,
      "ram_mb": 524288, "disk_gb": 4000, "cpu_allocation_ratio": 2.0,
      "ram_allocation_ratio": 1.0, "disk_allocation_ratio": 1.0,
      "idle_watts": 200, "peak_watts": 500}]}

``count``, ``vcpus`` and ``ram_mb`` are required; every other key is
optional with the defaults of a host group (``disk_gb`` 2048,
``empty_watts`` 0, ``name`` ``group<k>`` for the k-th group from 0).
Hosts are named ``<name>-<i>``, i from 0, in file order: the simulator's
host index runs through the groups in that order. The optional
``hosts``, a list of exactly ``count`` unique host names (the compute host
names Nova uses, as ``nova-rl-trainer cluster --from-placement`` writes
them), names the group's hosts instead. Anything malformed raises
:class:`ClusterFileError` naming the group and the key.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping

from nova_rl_weigher import fileio

#: The keys of a host group in a cluster file, in file order.
GROUP_KEYS: tuple[str, ...] = (
    'name', 'count', 'vcpus', 'ram_mb', 'disk_gb', 'cpu_allocation_ratio',
    'ram_allocation_ratio', 'disk_allocation_ratio', 'idle_watts',
    'peak_watts', 'empty_watts', 'hosts')
#: The keys a host group must have.
REQUIRED_KEYS: tuple[str, ...] = ('count', 'vcpus', 'ram_mb')
#: Hosts in one group at most (a simulator column per host).
MAX_GROUP_HOSTS = 100_000
#: Longest host name in ``hosts`` (a DNS name's limit).
MAX_HOST_NAME = 255


class ClusterFileError(ValueError):
    """A malformed cluster description; the message names the group and
    the key."""


def host_groups(obj: Any, make: Callable[..., Any]) -> list:
    """The host groups of a cluster file's content, each made by
    ``make(**fields)`` (a host group's constructor);
    :class:`ClusterFileError` naming the group and the key for anything
    malformed."""
    if not isinstance(obj, Mapping):
        raise ClusterFileError(
            'expected a JSON object {"host_groups": [...]}, got '
            + type(obj).__name__)
    extra = sorted(set(obj) - {'host_groups'})
    if extra:
        raise ClusterFileError(
            f'unknown key {extra[0]!r} at the top level; the only key '
            "is 'host_groups'")
    if 'host_groups' not in obj:
        raise ClusterFileError("missing required key 'host_groups'")
    groups = obj['host_groups']
    if not isinstance(groups, list):
        raise ClusterFileError("key 'host_groups' must be a list of "
                               'host groups, got '
                               + type(groups).__name__)
    if not groups:
        raise ClusterFileError("key 'host_groups' is empty: a cluster "
                               'needs at least one host')
    out = []
    for k, item in enumerate(groups):
        place = f'host_groups[{k}]'
        where = place
        if isinstance(item, Mapping) and isinstance(item.get('name'),
                                                    str):
            where = f'host group {item["name"]!r} ({place})'
        if not isinstance(item, Mapping):
            raise ClusterFileError(f'{where}: expected an object, got '
                                   + type(item).__name__)
        unknown = [key for key in item if key not in GROUP_KEYS]
        if unknown:
            raise ClusterFileError(
                f'{where}: unknown key {unknown[0]!r}; keys: '
                + ', '.join(GROUP_KEYS))
        for key in REQUIRED_KEYS:
            if key not in item:
                raise ClusterFileError(
                    f'{where}: missing required key {key!r}')
        fields = dict(item)
        fields.setdefault('name', f'group{k}')
        if 'hosts' in fields and fields['hosts'] is None:
            # Absent means <name>-<i>; null is not a list of names.
            raise ClusterFileError(
                f"{where}: key 'hosts' must be a list of host names, "
                'got null')
        try:
            out.append(make(**fields))
        except ClusterFileError as e:
            # The group's own message names the key; add its place.
            msg = str(e)
            head = f'host group {fields["name"]!r}: '
            if msg.startswith(head):
                msg = (f'host group {fields["name"]!r} ({place}): '
                       + msg[len(head):])
            else:
                msg = f'{place}: {msg}'
            raise ClusterFileError(msg) from None
    return out


def read(path: str) -> Any:
    """A cluster file's content (JSON); :class:`ClusterFileError` with the
    file name, and the line and column of a JSON syntax error."""
    try:
        # utf-8-sig: a byte order mark some editors write is no error.
        with open(path, encoding='utf-8-sig') as f:
            text = f.read(16 * 1024 * 1024 + 1)
    except OSError as e:
        raise ClusterFileError(f'cluster file {path}: cannot read: '
                               f'{e.strerror or e}') from None
    except UnicodeDecodeError as e:
        raise ClusterFileError(f'cluster file {path}: not UTF-8 text '
                               f'({e.reason})') from None
    if len(text) > 16 * 1024 * 1024:
        raise ClusterFileError(f'cluster file {path}: larger than '
                               '16 MiB')
    try:
        # NaN and Infinity parse (as Python's json does) and are then
        # refused by the group's check, which names the key.
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise ClusterFileError(
            f'cluster file {path}: invalid JSON at line {e.lineno} '
            f'column {e.colno}: {e.msg}') from None
    except ClusterFileError as e:
        raise ClusterFileError(f'cluster file {path}: {e}') from None
    return obj


def write(path: str | os.PathLike, doc: dict) -> None:
    """Write a cluster file (atomically: a reader sees the old file or the
    new one)."""
    path = os.fspath(path)
    text = json.dumps(doc, indent=2) + '\n'
    fileio.atomic_write(path, text, mode=0o644)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            name = out.get('name') if isinstance(out.get('name'), str) \
                else None
            where = f'host group {name!r}: ' if name else ''
            raise ClusterFileError(f'{where}key {key!r} appears twice')
        out[key] = value
    return out
