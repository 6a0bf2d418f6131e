"""Arrow arrays built straight from buffers, every one through :func:`from_buffers`, which checks them.

Why not ``pa.array``: its first call in a process imports pandas (pyarrow probes every input for pandas
types), a noticeable start-up cost in each process that calls it, the main process and the fork
server alike. The pipeline never needs pandas, so it builds its arrays from numpy buffers instead.

Why checked: ``pa.Array.from_buffers`` trusts its buffers. Offsets that run backwards or past the data
make an array whose readers overrun memory (a segfault, a heap corruption, "Negative buffer resize" in
a later kernel), and offsets that stay in bounds but are wrong shift values between rows with no error
at all. A parser's spans come from the data, so a line nobody foresaw must fail loudly here, as an
:class:`ArrayBuffersError` that the parse stage reports with the chunk's file and lines, never as a crash.
The checks are a few vectorised passes over the offsets (BENCHMARKS.md: the cost per chunk).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

# the variable-width types built here: their offsets' dtype (by type id: cheaper than pa.types.is_*)
_OFFSETS = {
    pa.string().id: np.int32,
    pa.binary().id: np.int32,
    pa.large_string().id: np.int64,
    pa.large_binary().id: np.int64,
}


class ArrayBuffersError(ValueError):
    """Buffers that do not make a valid Arrow array of the length asked for: what is wrong, and the
    array's type and length."""


def from_buffers(
    type: pa.DataType, length: int, buffers: Sequence[pa.Buffer | np.ndarray | None]
) -> pa.Array:
    """``pa.Array.from_buffers(type, length, buffers)`` after checking that the buffers hold such an
    array: the validity bitmap (or None) covers ``length`` bits; a fixed-width type's data holds
    ``length`` values; a binary or string type's offsets (``length + 1`` of them) start at 0 or more,
    never decrease and end within the data. Numpy arrays are taken as buffers without a copy.
    Raises :class:`ArrayBuffersError` otherwise.

    Only flat types (fixed width, binary, string and their large variants) are built here."""
    if length < 0:
        raise ArrayBuffersError(f"{type} array of negative length {length}")
    bufs = [b if b is None or isinstance(b, pa.Buffer) else pa.py_buffer(b) for b in buffers]
    if not bufs:
        raise ArrayBuffersError(f"{type} array of length {length}: no buffers")
    validity = bufs[0]
    if validity is not None and validity.size * 8 < length:
        raise ArrayBuffersError(
            f"{type} array of length {length}: validity bitmap of {validity.size} bytes is too small"
        )
    dtype = _OFFSETS.get(type.id)
    if dtype is not None:
        _check_offsets(type, length, bufs, dtype)
    else:
        width = type.bit_width
        if not isinstance(width, int) or width <= 0 or len(bufs) != 2:
            raise ArrayBuffersError(f"{type} is not a flat type that from_buffers builds")
        need = (length * width + 7) // 8
        data = bufs[1]
        if data is None or data.size < need:
            have = 0 if data is None else data.size
            raise ArrayBuffersError(
                f"{type} array of length {length}: data of {have} bytes, needs {need} bytes"
            )
    return pa.Array.from_buffers(type, length, bufs)


def _check_offsets(type: pa.DataType, length: int, bufs: list[pa.Buffer | None], dtype: Any) -> None:
    if len(bufs) != 3 or bufs[1] is None:
        raise ArrayBuffersError(f"{type} array of length {length}: needs validity, offsets and data")
    offsets_buf, data = bufs[1], bufs[2]
    width = np.dtype(dtype).itemsize
    if offsets_buf.size < (length + 1) * width:
        raise ArrayBuffersError(
            f"{type} array of length {length}: offsets buffer of {offsets_buf.size} bytes, "
            f"needs {(length + 1) * width}"
        )
    offsets: Any = np.frombuffer(offsets_buf, dtype=dtype, count=length + 1)
    first, last = int(offsets[0]), int(offsets[-1])
    size = 0 if data is None else data.size
    if first < 0 or last > size:
        raise ArrayBuffersError(
            f"{type} array of length {length}: offsets run from {first} to {last}, outside the "
            f"{size} bytes of data"
        )
    # argmax stops at the first decrease; on a bool array it is several times cheaper than any()
    decreases = offsets[1:] < offsets[:-1]
    row = int(decreases.argmax()) if length else 0
    if length and decreases[row]:
        raise ArrayBuffersError(
            f"{type} array of length {length}: value {row} has a negative length "
            f"(offsets {int(offsets[row])} then {int(offsets[row + 1])})"
        )


def string_from_buffers(
    length: int,
    offsets: pa.Buffer | np.ndarray,
    data: pa.Buffer | np.ndarray | bytes | memoryview,
    validity: pa.Buffer | None = None,
) -> pa.Array:
    """A string array from its offsets and data (checked as :func:`from_buffers` does)."""
    raw = data if isinstance(data, pa.Buffer | np.ndarray) else pa.py_buffer(data)
    return from_buffers(pa.string(), length, [validity, offsets, raw])


def string_buffers(values: pa.Array) -> tuple[pa.Buffer | None, np.ndarray, np.ndarray]:
    """A string array's validity bitmap, its offsets (int64, from 0) and the bytes they point into
    (uint8), checked: offsets that never decrease and lie within the data, so that code reading the
    values' bytes by them (a compiled loop without bounds checks) stays inside. The bitmap is the
    array's own: it starts at the array's offset, not at bit 0."""
    validity, offsets, data = values.buffers()
    rel = np.frombuffer(offsets, dtype=np.int32, count=len(values) + 1, offset=4 * values.offset)
    text = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    if rel[0] < 0 or rel[-1] > len(text) or (np.diff(rel) < 0).any():
        raise ArrayBuffersError(f"string offsets outside their {len(text)} bytes, or going back")
    base = int(rel[0])
    return validity, rel.astype(np.int64) - base, text[base : int(rel[-1])]


def string_columns_from_buffers(
    count: int,
    rows: int,
    offsets: pa.Buffer | np.ndarray,
    data: pa.Buffer | np.ndarray,
    validity: Sequence[pa.Buffer | None],
) -> list[pa.Array]:
    """``count`` string arrays of ``rows`` rows each that share one data buffer and one offsets buffer
    (int32, ``count * rows + 1`` of them, column ``f``'s from ``f * rows``): column ``f`` is
    ``string_from_buffers(rows, offsets[f * rows:(f + 1) * rows + 1], data, validity[f])``. The
    offsets are checked once, all together: offsets that never decrease and lie within the data make
    every window of them valid, so the columns need no check each (a pass over its offsets and a few
    Python calls per column, which a format of many string columns pays at every chunk)."""
    if count < 0 or rows < 0 or len(validity) != count:
        raise ArrayBuffersError(f"{count} string columns of {rows} rows, {len(validity)} validity bitmaps")
    buf = offsets if isinstance(offsets, pa.Buffer) else pa.py_buffer(offsets)
    raw = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    _check_offsets(pa.string(), count * rows, [None, buf, raw], np.int32)
    for f, bitmap in enumerate(validity):
        if bitmap is not None and bitmap.size * 8 < rows:
            raise ArrayBuffersError(
                f"string column {f} of {rows} rows: validity bitmap of {bitmap.size} bytes is too small"
            )
    return [
        pa.Array.from_buffers(pa.string(), rows, [validity[f], buf.slice(f * rows * 4, (rows + 1) * 4), raw])
        for f in range(count)
    ]


def int64_array(values: Sequence[int] | np.ndarray) -> pa.Array:
    """An int64 array without nulls (from a 1-D sequence)."""
    data = np.ascontiguousarray(values, dtype=np.int64)
    if data.ndim != 1:
        raise ValueError(f"int64_array takes 1-D values, not shape {data.shape}")
    return from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def bool_array(values: np.ndarray) -> pa.Array:
    """A boolean array without nulls (from a 1-D numpy bool array)."""
    bits = np.packbits(np.ascontiguousarray(values, dtype=bool), bitorder="little")
    return from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def binary_array(
    values: Sequence[bytes], type: pa.DataType | None = None, valid: np.ndarray | None = None
) -> pa.Array:
    """A binary array (``type=pa.string()``: a string array, the caller vouches for UTF-8); null where
    ``valid`` (a numpy bool array, None: no nulls) is false."""
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    bitmap = None if valid is None or valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return from_buffers(
        type or pa.binary(), len(values), [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))]
    )


def repeat_string(value: str, n: int) -> pa.Array:
    """``value`` ``n`` times as a dictionary-free string array."""
    raw = value.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])


def constant_dictionary(value: str, n: int) -> pa.Array:
    """``value`` ``n`` times as a dictionary array: the one value once, and ``n`` zero indices (int32)."""
    indices = from_buffers(pa.int32(), n, [None, pa.py_buffer(np.zeros(n, dtype=np.int32))])
    return pa.DictionaryArray.from_arrays(indices, repeat_string(value, 1))


def dictionary_array(values: list[str], indices: np.ndarray) -> pa.Array:
    """A dictionary array (int32 indices) of ``values``, each row ``values[indices[i]]``; an index
    outside ``values`` is an :class:`ArrayBuffersError`."""
    idx = np.ascontiguousarray(indices, dtype=np.int32)
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(values)):
        raise ArrayBuffersError(f"dictionary indices outside its {len(values)} values")
    dictionary = binary_array([v.encode() for v in values], pa.string())  # pa.array would import pandas
    return pa.DictionaryArray.from_arrays(
        from_buffers(pa.int32(), len(idx), [None, pa.py_buffer(idx)]), dictionary
    )
