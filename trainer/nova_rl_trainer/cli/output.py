"""Writing the commands' JSON outputs: strict JSON, replaced atomically."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from nova_rl_weigher import fileio


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


def write_json(path: str, doc: Any) -> None:
    """Write ``doc`` to ``path`` (parents created); readers never see a
    half-written file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = json.dumps(_clean(doc), indent=2, default=_default) + '\n'
    fileio.atomic_write(path, text)
