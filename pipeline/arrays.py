"""Arrow arrays built straight from buffers.

Why not ``pa.array``: its first call in a process imports pandas (pyarrow probes every input for pandas
types), which costs ~0.2 s of CPU in each process that calls it, the main process and the fork server
alike. The pipeline never needs pandas, so it builds its few arrays from numpy buffers instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def int64_array(values: Sequence[int] | np.ndarray) -> pa.Array:
    """An int64 array without nulls (from a 1-D sequence)."""
    data = np.ascontiguousarray(values, dtype=np.int64)
    if data.ndim != 1:
        raise ValueError(f"int64_array takes 1-D values, not shape {data.shape}")
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def bool_array(values: np.ndarray) -> pa.Array:
    """A boolean array without nulls (from a 1-D numpy bool array)."""
    bits = np.packbits(np.ascontiguousarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def binary_array(
    values: Sequence[bytes], type: pa.DataType | None = None, valid: np.ndarray | None = None
) -> pa.Array:
    """A binary array (``type=pa.string()``: a string array, the caller vouches for UTF-8); null where
    ``valid`` (a numpy bool array, None: no nulls) is false."""
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    bitmap = None if valid is None or valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        type or pa.binary(), len(values), [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))]
    )


def repeat_string(value: str, n: int) -> pa.Array:
    """``value`` ``n`` times as a dictionary-free string array."""
    raw = value.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])
