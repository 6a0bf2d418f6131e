"""The engine's compiled typing (:mod:`pipeline.formats.kernels`), importable without Numba: a chunk's
field spans in, typed values and Arrow string columns out, each kind in one loop over its spans.

The engine calls these only where :func:`pipeline.formats.compiled.loaded` says the loops are loaded,
and otherwise types with numpy (:mod:`pipeline.formats.vector`, :mod:`pipeline.formats.numbers`); both
give the same values and the same rejects (tests/fuzz_formats.py, ``typing``). What a loop leaves
unread (a number in a form it does not know) the caller reads the numpy way.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.arrays import string_buffers, string_columns_from_buffers, string_from_buffers
from pipeline.formats.compiled import KERNELS
from pipeline.formats.compiled import contiguous as _c
from pipeline.formats.vector import BoolArray, ByteArray, IntArray, kept_bitmaps

# what :func:`numbers` made of each value
VALUE, NULL, TOO_BIG, UNREAD = 0, 1, 2, 3


def _kernels() -> Any:
    return sys.modules[KERNELS]


def check_spans(a: ByteArray, spans: IntArray) -> None:
    """Refuse spans (field, start/end, line) that do not lie within the chunk: the loops read the bytes
    of every span without checking their indexes."""
    if not _kernels().spans_within(_c(spans), len(a)):
        raise ValueError(f"spans outside the chunk of {len(a)} bytes, or ending before they start")


def time_local(a: ByteArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
    """``parse_time_local`` of :mod:`pipeline.formats.vector`, compiled."""
    n = len(lo)
    us, days, ok = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, bool)
    _kernels().time_local(a, _c(lo), _c(hi), us, days, ok)
    return us, days, ok


def time_rfc3339(a: ByteArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
    """``parse_time_rfc3339`` of :mod:`pipeline.formats.vector`, compiled."""
    n = len(lo)
    us, days, ok = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, bool)
    _kernels().time_rfc3339(a, _c(lo), _c(hi), us, days, ok)
    return us, days, ok


def time_iso8601(a: ByteArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
    """``parse_time_iso8601`` of :mod:`pipeline.formats.engine`, compiled. nginx's ``$time_iso8601`` is
    the RFC 3339 form with an offset right after the seconds: the RFC 3339 loop reads it, and a sign at
    byte 19 refuses what else that loop reads (a fraction, ``Z``), which leaves exactly 25 bytes."""
    us, days, ok = time_rfc3339(a, lo, hi)
    sign = a.take(lo + 19, mode="clip")  # a span of under 20 bytes the loop has refused already
    return us, days, ok & ((sign == 43) | (sign == 45))


def time_clf_ms(a: ByteArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
    """``parse_time_clf_ms`` of :mod:`pipeline.formats.vector`, compiled."""
    n = len(lo)
    us, days, ok = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, bool)
    _kernels().time_clf_ms(a, _c(lo), _c(hi), us, days, ok)
    return us, days, ok


def time_w3c(
    a: ByteArray, dlo: IntArray, dhi: IntArray, tlo: IntArray, thi: IntArray
) -> tuple[IntArray, IntArray, BoolArray]:
    """``parse_date_time`` of :mod:`pipeline.formats.w3c_values` (a W3C log's date and time), compiled."""
    n = len(dlo)
    us, days, ok = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, bool)
    _kernels().time_w3c(a, _c(dlo), _c(dhi), _c(tlo), _c(thi), us, days, ok)
    return us, days, ok


def ip_port(
    a: ByteArray, lo: IntArray, hi: IntArray, null: BoolArray
) -> tuple[IntArray, IntArray, IntArray, BoolArray]:
    """``address:port`` split (see ``kernels.ip_port``): the address's spans, the port (int64) and which
    spans split (not ``null``)."""
    n = len(lo)
    ip_lo, ip_hi, port, use = (
        np.empty(n, np.int64),
        np.empty(n, np.int64),
        np.empty(n, np.int64),
        np.empty(n, bool),
    )
    _kernels().ip_port(a, _c(lo), _c(hi), np.ascontiguousarray(null, dtype=bool), ip_lo, ip_hi, port, use)
    return ip_lo, ip_hi, port, use


def status(a: ByteArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, BoolArray]:
    """Three-digit statuses (int16; 0 where not one) and which spans are one."""
    values, ok = np.empty(len(lo), np.int16), np.empty(len(lo), bool)
    _kernels().status(a, _c(lo), _c(hi), values, ok)
    return values, ok


@lru_cache(maxsize=64)
def _spellings(nulls: tuple[bytes, ...]) -> tuple[ByteArray, IntArray, IntArray]:
    sizes = np.array([len(s) for s in nulls], dtype=np.int64)
    hi = np.cumsum(sizes)
    return np.frombuffer(b"".join(nulls) + b"\0", dtype=np.uint8), hi - sizes, hi


def nulls(a: ByteArray, lo: IntArray, hi: IntArray, spellings: tuple[bytes, ...], empty: bool) -> BoolArray:
    """Whether each span is ``-``, one of ``spellings`` or (``empty``) nothing."""
    null = np.empty(len(lo), bool)
    _kernels().nulls(a, _c(lo), _c(hi), *_spellings(spellings), empty, null)
    return null


@lru_cache(maxsize=64)
def _field_spellings(
    wanted: tuple[tuple[int, tuple[bytes, ...], bool], ...],
) -> tuple[IntArray, ByteArray, IntArray, IntArray, IntArray, BoolArray]:
    fields = np.array([k for k, _, _ in wanted], dtype=np.int64)
    spell, spell_lo, spell_hi = _spellings(tuple(s for _, spellings, _ in wanted for s in spellings))
    counts = np.array([len(spellings) for _, spellings, _ in wanted], dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return fields, spell, spell_lo, spell_hi, first, np.array([e for _, _, e in wanted], dtype=bool)


def nulls_at(
    a: ByteArray, spans: IntArray, wanted: tuple[tuple[int, tuple[bytes, ...], bool], ...]
) -> BoolArray:
    """:func:`nulls` of several fields at once: for each ``(field, spellings, empty)`` of ``wanted``, a
    row of whether its span (``spans``: field, start/end, line; checked by :func:`check_spans`) of each
    line is null."""
    fields, spell, spell_lo, spell_hi, first, empty = _field_spellings(wanted)
    if len(fields) and (fields.min() < 0 or fields.max() >= spans.shape[0]):
        raise ValueError(f"fields {fields.tolist()} of spans of {spans.shape[0]} fields")
    null = np.empty((len(fields), spans.shape[2]), bool)
    _kernels().nulls_at(a, _c(spans), fields, spell, spell_lo, spell_hi, first, empty, null)
    return null


def numbers(
    a: ByteArray, lo: IntArray, hi: IntArray, null: BoolArray, whole: bool, multi: bool
) -> tuple[IntArray, IntArray]:
    """Each span's number (int64 with ``whole``, else float64), lists summed with ``multi``, and its
    state: :data:`VALUE`, :data:`NULL`, :data:`TOO_BIG` or :data:`UNREAD` (for the caller to read)."""
    n = len(lo)
    ints, floats, state = np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.int8)
    _kernels().numbers(a, _c(lo), _c(hi), null, whole, multi, ints, floats, state)
    return (ints if whole else floats), state


def request(
    a: ByteArray, lo: IntArray, hi: IntArray, dash: BoolArray
) -> tuple[IntArray, BoolArray, BoolArray]:
    """The request lines split (see ``kernels.request``): the six cuts of each, which split, and which
    of those hold a query."""
    n = len(lo)
    cut, split, has_q = np.empty((6, n), np.int64), np.empty(n, bool), np.empty(n, bool)
    _kernels().request(a, _c(lo), _c(hi), dash, cut, split, has_q)
    return cut, split, has_q


def part_spans(
    a: ByteArray, lo: IntArray, hi: IntArray, has: BoolArray, part: int
) -> tuple[IntArray, IntArray, BoolArray]:
    """The spans of a part of each value (:func:`pipeline.formats.kernels_json.parts`: 0 the path, 1 the
    query, 2 the host, 3 the port) and which values have it."""
    check_spans(a, np.stack([lo, hi])[None, :, :])  # the loop reads every span's bytes unchecked
    n = len(lo)
    out_lo, out_hi, out_has = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, bool)
    _kernels().kernels_json.parts(a, _c(lo), _c(hi), np.ascontiguousarray(has), part, out_lo, out_hi, out_has)
    return out_lo, out_hi, out_has


def string_columns(
    a: ByteArray,
    lo: IntArray,
    hi: IntArray,
    take: IntArray,
    valid: list[BoolArray | None],
    fields: IntArray | None = None,
) -> list[pa.Array]:
    """``vector.string_columns``, compiled: the spans (fields, lines) of the lines ``take`` copied
    column by column into one buffer, which the columns share; a null holds no bytes. ``fields``: the
    rows of ``lo`` and ``hi`` to take, one column each (default: every row)."""
    rows = np.arange(lo.shape[0]) if fields is None else np.asarray(fields, dtype=np.int64)
    k, n = len(rows), len(take)
    if n == 0:
        return [pa.nulls(0, pa.string()) for _ in range(k)]
    if take.min() < 0 or take.max() >= lo.shape[1]:
        raise ValueError(f"rows outside the {lo.shape[1]} lines typed")
    if k and (rows.min() < 0 or rows.max() >= lo.shape[0] or hi.shape != lo.shape):
        raise ValueError(f"fields outside the {lo.shape[0]} fields split")
    mask = np.ones((k, lo.shape[1]), dtype=bool)
    for f, v in enumerate(valid):
        if v is not None:
            mask[f] = v
    offsets = np.empty(k * n + 1, dtype=np.int32)
    offsets[-1] = -1  # left so where the data would pass 2 GiB
    data = _kernels().gather_strings(
        a, _c(lo), _c(hi), rows, mask, np.ascontiguousarray(take, dtype=np.int64), offsets
    )
    if len(data) != offsets[-1]:
        raise ValueError(f"string columns of {k} fields and {n} rows: more than 2 GiB of text")
    return string_columns_from_buffers(k, n, offsets, data, kept_bitmaps(valid, take))


def decode_percent(values: pa.Array) -> pa.Array | None:
    """A string array (offset 0) with each ``%XX`` decoded, its nulls kept; None where none is."""
    validity, rel, text = string_buffers(values)  # checked: the loop reads the bytes unchecked
    if not (text == 37).any():  # a pass that numpy vectorises, where most columns hold no "%"
        return None
    out = np.empty(len(text), dtype=np.uint8)
    out_offsets = np.empty(len(values) + 1, dtype=np.int32)
    size = _kernels().decode_percent(text, rel, out, out_offsets)
    if size > len(out):
        raise RuntimeError(f"decoded strings of {size} bytes from {len(out)}")
    if size == len(out):  # each %XX decoded leaves two bytes out
        return None
    return string_from_buffers(len(values), out_offsets, out[:size], validity)
