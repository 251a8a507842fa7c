"""Training checkpoints without pickle: tensors in ``.npz``, the rest JSON.

``torch.save`` pickles, and this project never unpickles a model file, so a
checkpoint is a directory holding ``tensors.npz`` (loaded with
``allow_pickle=False``) and ``state.json`` (step counters, optimiser
hyper-parameters, RNG states, curves). Nested state dicts are flattened to
``a/b/c`` keys. Written atomically: a new directory is filled (the state
file through :func:`nova_rl_weigher.fileio.atomic_write`, the one atomic
writer, so it is synced before the directory is renamed), then renamed over
the old one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np
import torch

from nova_rl_weigher import fileio

TENSORS = 'tensors.npz'
STATE = 'state.json'


def _flatten(obj: Any, prefix: str, tensors: dict[str, np.ndarray]) -> Any:
    """Move tensors out of ``obj`` into ``tensors``; return the JSON rest."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().numpy()
        return {'__tensor__': key, 'dtype': str(obj.dtype)}
    if isinstance(obj, np.ndarray):
        tensors[prefix] = obj
        return {'__ndarray__': prefix}
    if isinstance(obj, dict):
        return {'__dict__': [[_flatten(k, f'{prefix}/k{i}', tensors),
                              _flatten(v, f'{prefix}/{i}', tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {'__list__' if isinstance(obj, list) else '__tuple__':
                [_flatten(v, f'{prefix}/{i}', tensors)
                 for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    raise TypeError(f'cannot checkpoint {type(obj).__name__} at {prefix}')


def _unflatten(obj: Any, tensors: Any) -> Any:
    if isinstance(obj, dict):
        if '__tensor__' in obj:
            dtype = getattr(torch, obj['dtype'].replace('torch.', ''))
            return torch.from_numpy(tensors[obj['__tensor__']].copy()).to(
                dtype)
        if '__ndarray__' in obj:
            return tensors[obj['__ndarray__']].copy()
        if '__dict__' in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors)
                    for k, v in obj['__dict__']}
        if '__list__' in obj:
            return [_unflatten(v, tensors) for v in obj['__list__']]
        if '__tuple__' in obj:
            return tuple(_unflatten(v, tensors) for v in obj['__tuple__'])
        raise ValueError(f'malformed checkpoint entry {obj!r}')
    return obj


def save(path: str, state: dict) -> None:
    tensors: dict[str, np.ndarray] = {}
    doc = _flatten(state, 'root', tensors)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.ckpt-', dir=parent)
    try:
        np.savez(os.path.join(tmp, TENSORS), **tensors)
        fileio.atomic_write(os.path.join(tmp, STATE), json.dumps(doc))
        old = None
        if os.path.exists(path):
            old = path + '.old'
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load(path: str) -> dict:
    with open(os.path.join(path, STATE)) as f:
        doc = json.load(f)
    with np.load(os.path.join(path, TENSORS), allow_pickle=False) as z:
        tensors = {k: z[k] for k in z.files}
    return _unflatten(doc, tensors)


def exists(path: str) -> bool:
    return os.path.exists(os.path.join(path, STATE))
