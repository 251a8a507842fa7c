"""A DevStack sandbox for ``devstack/plugin.sh``: no VM, no root.

A temporary tree stands for the machine DevStack works on::

    <root>/tree/opt/stack                 $DEST
    <root>/tree/opt/stack/nova-rl-weigher  -> this repository (the clone)
    <root>/tree/opt/stack/data            $DATA_DIR (venv: $DEVSTACK_VENV)
    <root>/tree/etc/nova/nova.conf        $NOVA_CONF
    <root>/tree/etc/systemd/system        $SYSTEMD_DIR
    <root>/record                         what the stand-ins record (outside
                                          the tree, which tests compare)

Each phase runs as DevStack runs it, in a fresh ``bash`` under ``set -eu -o
pipefail``: the stand-ins (``stand-ins.sh``), then ``devstack/settings``, then
``source devstack/plugin.sh <mode> [phase]``.
"""

from __future__ import annotations

import configparser
import getpass
import os
from pathlib import Path
import stat
import subprocess

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / 'devstack'
STAND_INS = Path(__file__).with_name('stand-ins.sh')

#: The services of a one-node DevStack with Nova.
NOVA_SERVICES = ('key', 'n-api', 'n-cond', 'n-sch', 'n-cpu', 'placement-api',
                 'g-api')
#: What Ceilometer's DevStack plugin enables (with its Gnocchi backend).
TELEMETRY_SERVICES = ('ceilometer-acompute', 'ceilometer-acentral',
                      'ceilometer-anotification', 'gnocchi-api',
                      'gnocchi-metricd')

#: The part of the nova.conf DevStack's lib/nova writes that matters here:
#: [filter_scheduler] exists (enabled_filters), weight_classes does not.
DEVSTACK_NOVA_CONF = """\

[DEFAULT]
debug = True
state_path = /opt/stack/data/nova
my_ip = 127.0.0.1

[filter_scheduler]
enabled_filters = ComputeFilter,ImagePropertiesFilter,SameHostFilter
track_instance_changes = False

[scheduler]
workers = 2
"""

STRICT = 'set -eu -o pipefail'


def with_weight_classes(value: str) -> str:
    """DevStack's nova.conf with ``[filter_scheduler] weight_classes`` set
    (as another plugin, earlier in local.conf, would have)."""
    return DEVSTACK_NOVA_CONF.replace(
        '[filter_scheduler]\n',
        '[filter_scheduler]\nweight_classes = %s\n' % value)


class Sandbox:
    """One sandbox; ``settings`` are extra environment variables
    (``RL_WEIGHER_*``, ``DISABLED_SERVICES``, ...)."""

    def __init__(self, root: Path, nova_conf: str | None = DEVSTACK_NOVA_CONF,
                 services: tuple[str, ...] = NOVA_SERVICES,
                 **settings: str) -> None:
        self.root = Path(root)
        self.tree = self.root / 'tree'
        self.record = self.root / 'record'
        self.dest = self.tree / 'opt' / 'stack'
        self.data_dir = self.dest / 'data'
        self.venv = self.data_dir / 'venv'
        self.nova_conf = self.tree / 'etc' / 'nova' / 'nova.conf'
        self.systemd_dir = self.tree / 'etc' / 'systemd' / 'system'
        self.services = services
        self.settings = dict(settings)
        # venv/installed: where the setup_develop stand-in leaves a marker
        # per package (site-packages, in a real venv).
        for d in (self.record, self.venv / 'installed',
                  self.nova_conf.parent, self.systemd_dir):
            d.mkdir(parents=True, exist_ok=True)
        (self.dest / 'nova-rl-weigher').symlink_to(REPO)
        if nova_conf is not None:
            self.nova_conf.write_text(nova_conf)

    # -- running phases ---------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k in ('PATH', 'HOME', 'LANG', 'LC_ALL', 'TMPDIR')}
        env.update({
            'DEST': str(self.dest),
            'DATA_DIR': str(self.data_dir),
            'DEVSTACK_VENV': str(self.venv),
            'NOVA_CONF': str(self.nova_conf),
            'SYSTEMD_DIR': str(self.systemd_dir),
            'STACK_USER': getpass.getuser(),
            'ENABLED_SERVICES': ','.join(self.services),
            'SANDBOX_RECORD': str(self.record),
        })
        env.update(self.settings)
        return env

    def script(self, *args: str, before: str = '', after: str = '') -> str:
        return '\n'.join([
            STRICT,
            f'source {STAND_INS}',
            f'source {PLUGIN_DIR}/settings',
            before,
            f'source {PLUGIN_DIR}/plugin.sh {" ".join(args)}',
            after,
        ])

    def run(self, *args: str, check: bool = True, before: str = '',
            after: str = '') -> subprocess.CompletedProcess:
        """``source plugin.sh ARGS`` in a fresh strict bash."""
        proc = subprocess.run(
            ['bash', '-c', self.script(*args, before=before, after=after)],
            env=self.env(), capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(
                'plugin.sh %s failed (%d):\n%s%s' % (
                    ' '.join(args), proc.returncode, proc.stdout,
                    proc.stderr))
        return proc

    def stack(self) -> None:
        """Every stack phase, in stack.sh's order."""
        for phase in ('pre-install', 'install', 'post-config', 'extra',
                      'test-config'):
            self.run('stack', phase)

    def merge_post_config(self, local_conf: Path) -> None:
        """stack.sh's merge of local.conf's [[post-config|$NOVA_CONF]]."""
        proc = subprocess.run(
            ['bash', '-c', f'{STRICT}\nsource {STAND_INS}\n'
             f'merge_post_config {local_conf}'],
            env=self.env(), capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise AssertionError('merge failed:\n' + proc.stderr)

    # -- what it did --------------------------------------------------------

    def calls(self) -> list[str]:
        log = self.record / 'calls.log'
        return log.read_text().splitlines() if log.exists() else []

    def units(self) -> set[str]:
        """'enabled X' / 'active X' lines the systemctl stand-in keeps."""
        path = self.record / 'units'
        return set(path.read_text().split('\n')) - {''} \
            if path.exists() else set()

    def installed(self) -> set[str]:
        d = self.venv / 'installed'
        return {p.name for p in d.iterdir()} if d.exists() else set()

    def conf_text(self) -> str:
        return self.nova_conf.read_text()

    def ini(self) -> configparser.ConfigParser:
        """nova.conf as sections of raw strings; oslo.config's [DEFAULT] is
        a section like the others."""
        parser = configparser.ConfigParser(interpolation=None,
                                           default_section='(none)')
        parser.read_string(self.conf_text())
        return parser

    def snapshot(self) -> dict[str, tuple]:
        """Every path under the tree: type, mode and content or target."""
        out: dict[str, tuple] = {}
        for dirpath, dirnames, filenames in os.walk(self.tree):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                rel = str(path.relative_to(self.tree))
                if stat.S_ISLNK(st.st_mode):
                    out[rel] = ('link', os.readlink(path))
                elif stat.S_ISDIR(st.st_mode):
                    out[rel] = ('dir', stat.S_IMODE(st.st_mode))
                else:
                    out[rel] = ('file', stat.S_IMODE(st.st_mode),
                                path.read_bytes())
        return out
