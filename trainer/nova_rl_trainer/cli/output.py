"""Writing the commands' outputs: strict JSON, replaced atomically, and
the check every command makes of its output paths before its work."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from nova_rl_trainer.cli.options import CliError
from nova_rl_weigher import fileio


class OutputError(CliError):
    """An output path that cannot be written: one line, exit status 2."""


def _default(o: Any) -> Any:
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f'{type(o).__name__} is not JSON serialisable')


def _clean(value: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def check_writable(path: str | None, directory: bool = False) -> None:
    """:class:`OutputError` unless ``path`` (None: no such output) can be
    written: a file, or with ``directory`` a directory to write files
    into. It must not be the other kind, and the directory that will hold
    it (the nearest one that exists, for parents still to be created) must
    be one this user may create files in. Nothing is created.

    Commands call this before their work: a mistyped output path then
    costs no simulation or training, and no output is written when another
    one cannot be (evaluate's report after its JSON, publish's --json after
    the install)."""
    if path is None:
        return
    full = os.path.abspath(path)
    if os.path.lexists(full):
        if os.path.isdir(full) != directory:
            kind = 'not a directory' if directory else 'a directory'
            raise OutputError(f'cannot write {path}: it is {kind}')
        holder = full if directory else os.path.dirname(full)
    else:
        holder = os.path.dirname(full)
        while not os.path.lexists(holder):
            holder = os.path.dirname(holder)
        if not os.path.isdir(holder):
            raise OutputError(f'cannot write {path}: {holder} is not a '
                              'directory')
    if not os.access(holder, os.W_OK | os.X_OK):
        raise OutputError(f'cannot write {path}: {holder} is not writable '
                          f'by this user (uid {os.geteuid()})')


def write_json(path: str, doc: Any) -> None:
    """Write ``doc`` to ``path`` (parents created); readers never see a
    half-written file. :class:`OutputError` if it cannot be written."""
    check_writable(path)
    text = json.dumps(_clean(doc), indent=2, default=_default) + '\n'
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fileio.atomic_write(path, text)
    except OSError as e:
        raise OutputError(f'cannot write {path}: {e.strerror or e}') \
            from None
