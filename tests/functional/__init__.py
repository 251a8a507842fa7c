"""Functional tests: a real in-process Nova scheduler with the RL weigher.

Nova must be monkey patched (or told not to be) before anything imports
eventlet, oslo or nova, so this package does it first.

By default the tests run in native threading mode, which is what
``nova-scheduler``, ``nova-conductor`` and ``nova-compute`` use in Nova 34
(``monkey_patch.patch(backend='threading')`` in ``nova/cmd/*.py``). Nova's
own ``nova/tests/functional/__init__.py`` calls ``monkey_patch.patch()``
with the eventlet default, and the two calls only agree when the choice comes
from ``OS_NOVA_DISABLE_EVENTLET_PATCHING``, so it is set here unless the
caller set it. Run with ``OS_NOVA_DISABLE_EVENTLET_PATCHING=0`` to run the
same tests under eventlet. ``nova.monkey_patch.is_patched()`` tells which
mode a run used.
"""

# autopep8: off
import os  # noqa: E402
import sys  # noqa: E402

if 'eventlet' not in sys.modules:
    os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
# else: something imported eventlet before this package (e.g. unit test
# modules collected first in the same pytest run import nova_rl_weigher,
# which pulls in futurist -> eventlet). Native threading mode can no longer
# be enforced then, so fall back to eventlet, like Nova's own functional
# tests do by default.
from nova import monkey_patch; monkey_patch.patch()  # noqa: E402,E702
# autopep8: on

# nova.test installs fixtures that poison some OS calls (e.g. subprocess,
# sysfs reads) made by a first import of numpy; import it up front.
import numpy  # noqa: F401,E402
