"""Reading a policy artifact's ``weights.npz``: checked before anything is
decompressed, never unpickled.

:func:`read_npz` reads the bytes of an ``np.savez`` file (the caller has
read them, bounded, from the artifact directory) and raises
:class:`manifest.ArtifactError`, never another exception:

- the npz is inspected before anything is decompressed: at most
  :data:`manifest.MAX_ARRAYS` members, each a ``.npy`` of a floating-point
  dtype (object dtypes, which would need unpickling, are refused) whose
  size, computed from its header, adds up to at most the ``max_bytes``
  given (:data:`manifest.MAX_WEIGHTS_UNCOMPRESSED_BYTES` for an artifact; a
  zip bomb is refused from its headers); the arrays are then read exactly
  as declared, never unpickled.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib

import numpy as np

from nova_rl_weigher import fileio
from nova_rl_weigher.manifest import ArtifactError
from nova_rl_weigher.manifest import MAX_ARRAYS


def _zip_entry_count(data: bytes) -> int | None:
    """Entries the zip's end-of-central-directory record declares (None if
    there is none: zipfile will say what is wrong)."""
    start = max(0, len(data) - 22 - 0xFFFF)
    at = data.rfind(b'PK\x05\x06', start)
    if at < 0 or at + 22 > len(data):
        return None
    return struct.unpack_from('<H', data, at + 10)[0]


def read_npz(data: bytes, max_bytes: int,
             max_arrays: int = MAX_ARRAYS) -> dict[str, np.ndarray]:
    """The arrays of an ``np.savez`` file, checked before decompressing.

    Every member must be a ``.npy`` with a floating-point, non-object dtype;
    the sizes its header declares (and the zip's uncompressed sizes) must
    add up to at most ``max_bytes``, checked for all members before any
    array is read. Arrays are read exactly as their header declares, never
    unpickled. Raises :class:`ArtifactError`.
    """
    entries = _zip_entry_count(data)
    if entries is not None and entries > max_arrays:
        raise ArtifactError(f'{entries} members, more than {max_arrays}')
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError,
            EOFError, NotImplementedError) as e:
        raise ArtifactError(f'not a zip file: {str(e)[:200]}') from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_arrays:
            raise ArtifactError(f'{len(infos)} members, more than '
                                f'{max_arrays}')
        headers = {}
        total = declared = 0
        for info in infos:
            name = info.filename
            if not name.endswith('.npy') or name[:-4] in headers \
                    or '/' in name:
                raise ArtifactError(f'member {fileio.brief(name)} is not a '
                                    'distinct .npy array')
            declared += info.file_size
            if declared > max_bytes + 1024 * max_arrays:
                raise ArtifactError(f'members expand to more than '
                                    f'{max_bytes} bytes uncompressed (zip '
                                    'headers)')
            shape, fortran, dtype, offset = _npy_header(zf, info)
            count = math.prod(shape)
            total += count * dtype.itemsize
            if total > max_bytes:
                raise ArtifactError(f'arrays hold more than {max_bytes} bytes '
                                    f'uncompressed (npy headers; {name}: '
                                    f'shape {shape}, dtype {dtype})')
            headers[name[:-4]] = (info, shape, fortran, dtype, offset)
        arrays = {}
        for key, (info, shape, fortran, dtype, offset) in headers.items():
            nbytes = math.prod(shape) * dtype.itemsize
            try:
                with zf.open(info) as fp:
                    fp.read(offset)
                    raw = fp.read(nbytes)
            except (zipfile.BadZipFile, ValueError, OSError, EOFError,
                    NotImplementedError, zlib.error) as e:
                raise ArtifactError(f'{key}: {str(e)[:200]}') from None
            if len(raw) != nbytes:
                raise ArtifactError(f'{key}: {len(raw)} bytes of data, its '
                                    f'header declares {nbytes}')
            # A writable array, as np.load returns (the trainer copies the
            # policy's arrays into torch tensors).
            arrays[key] = np.frombuffer(bytearray(raw), dtype=dtype).reshape(
                shape, order='F' if fortran else 'C')
        return arrays


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo
                ) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    fmt = np.lib.format
    name = info.filename
    try:
        with zf.open(info) as fp:
            major, minor = fmt.read_magic(fp)
            if (major, minor) == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fp)
            elif (major, minor) == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(fp)
            else:
                raise ValueError(f'npy format {major}.{minor} not supported')
            offset = fp.tell()
    except Exception as e:  # noqa: BLE001 - numpy's parser raises many kinds
        raise ArtifactError(f'{fileio.brief(name)}: bad npy header: '
                            f'{str(e)[:200]}') from None
    if dtype.hasobject:
        raise ArtifactError(f'{name}: dtype {dtype} holds Python objects '
                            '(would need unpickling); refused')
    if dtype.kind != 'f' or dtype.fields is not None or dtype.subdtype:
        raise ArtifactError(f'{name}: dtype {dtype} is not floating point')
    if not isinstance(shape, tuple) or not all(
            type(d) is int and d >= 0 for d in shape) or len(shape) > 8:
        raise ArtifactError(f'{name}: bad shape {fileio.brief(shape)}')
    return shape, bool(fortran), dtype, offset
