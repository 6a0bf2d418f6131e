"""Vectorised building blocks shared by the log formats: byte spans into a chunk, in, Arrow arrays out.

A parser finds, for every line of a chunk at once, the byte span of each field (numpy over the raw
bytes); these functions turn spans into typed values without a Python object per line: strings are cut
out of the chunk buffer with one Arrow ``take``, numbers are parsed by Arrow's string casts in C++,
timestamps arithmetically from their fixed-width digits.

Many take spans "in order through the chunk" (``lo0 <= hi0 <= lo1 ...``), like the spans of one field
over successive lines: then ``lo0, hi0, lo1, hi1, ...`` is a valid Arrow offsets buffer over the
chunk, and a string array over it costs nothing to build (see :func:`span_strings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from pipeline.arrays import bool_array, int64_array, string_columns_from_buffers, string_from_buffers
from pipeline.formats.base import FormatResult, Reason, RejectRows, partitions

# pyarrow.compute is imported inside the functions that use it: the main process imports the formats
# only for their schemas, and importing compute (building hundreds of function wrappers) would delay
# its first chunk (BENCHMARKS.md, "Design figures"). The workers get it from the fork server, which
# warms it up.

# numpy's dtype-level typing fights mixed int/bool arithmetic; these names document intent
IntArray = npt.NDArray[Any]
BoolArray = npt.NDArray[Any]
ByteArray = npt.NDArray[Any]

BOT_PATTERN = "bot|crawler|spider|curl|python-requests"

DAY_US = 86_400_000_000
TS_WIDTH = 26  # len("01/Nov/2026:00:00:01 +0000")
MONTHS = [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"]
MONTH_KEYS = np.array([(m[0] << 16) | (m[1] << 8) | m[2] for m in MONTHS], dtype=np.int64)
MONTH_ORDER = np.argsort(MONTH_KEYS)
MONTH_SORTED = MONTH_KEYS[MONTH_ORDER]
DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
TS_DIGITS = np.array([0, 1, 7, 8, 9, 10, 12, 13, 15, 16, 18, 19, 22, 23, 24, 25])
TS_SEP_POS = np.array([2, 6, 11, 14, 17, 20])
TS_SEP_VAL = np.frombuffer(b"//::: ", dtype=np.uint8)
EPOCH = date(1970, 1, 1)
MIN_DAY = (date.min - EPOCH).days
MAX_DAY = (date.max - EPOCH).days
MAX_EPOCH_US = (MAX_DAY + 1) * 86_400_000_000  # 10000-01-01: an epoch time from it on is none
MAX_DIGITS = 18  # any 18-digit number fits in int64; longer ones are checked one by one


def windows(a: ByteArray, lo: IntArray, width: int) -> ByteArray:
    """The ``width`` bytes starting at each ``lo``, as a (len(lo), width) array.

    One fancy index over a sliding-window view (rows, not a 2-D index matrix); starts too close to the
    end are clipped, so callers must validate what they read (they do: every byte is checked).
    """
    if len(a) < width:
        a = np.concatenate([a, np.zeros(width - len(a), dtype=a.dtype)])
    view = np.lib.stride_tricks.sliding_window_view(a, width)
    rows: ByteArray = view[np.clip(lo, 0, len(a) - width)]
    return rows


def fast_candidates(a: ByteArray, starts: IntArray, newlines: IntArray, crlf: BoolArray) -> BoolArray:
    """Lines made only of printable ASCII without backslashes: the only ones the fast path may take.
    ``newlines``: the position of every line's \\n; ``crlf``: lines whose \\n follows a \\r."""
    special = (a - np.uint8(32)) > 94  # < 32 wraps around: one compare for both ends
    special |= a == 92
    special[newlines] = False
    special[newlines[crlf] - 1] = False  # the \r of a CRLF line end
    bad_lines = np.searchsorted(starts, np.flatnonzero(special), side="right") - 1
    ok = newlines - crlf > starts
    ok[bad_lines] = False
    return ok


def parse_time_local(a: ByteArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
    """Parse ``dd/Mon/yyyy:HH:MM:SS +zzzz`` at ``a[lo:hi]`` for every line at once.

    Returns microseconds since the epoch (UTC, offset applied), the UTC day number and a validity mask.
    Impossible dates (31 Apr, 29 Feb outside leap years), hours > 23, offsets beyond +-23:59 are invalid.
    """
    ok = (hi - lo) == TS_WIDTH
    t = windows(a, lo, TS_WIDTH)  # (lines, 26) uint8
    digits = t[:, TS_DIGITS] - 48  # uint8: anything but '0'..'9' wraps to > 9
    ok &= (digits <= 9).all(axis=1) & (t[:, TS_SEP_POS] == TS_SEP_VAL).all(axis=1)
    ok &= (t[:, 21] == 43) | (t[:, 21] == 45)
    # Plain integer arithmetic on rows of digits. (Not a BLAS matrix product: OpenBLAS starts
    # threads that spin on idle cores, and the cores belong to the other workers.)
    d = digits.T.astype(np.int64)  # (16, lines), each row contiguous
    day, year = d[0] * 10 + d[1], d[2] * 1000 + d[3] * 100 + d[4] * 10 + d[5]
    hour, minute, sec = d[6] * 10 + d[7], d[8] * 10 + d[9], d[10] * 10 + d[11]
    off_h, off_m = d[12] * 10 + d[13], d[14] * 10 + d[15]
    low = t[:, 3:6].astype(np.int64) | 0x20  # month names compare case-blind
    key = (low[:, 0] << 16) | (low[:, 1] << 8) | low[:, 2]
    k = np.minimum(np.searchsorted(MONTH_SORTED, key), 11)
    ok &= MONTH_SORTED[k] == key
    month = MONTH_ORDER[k] + 1
    offset = (off_h * 3600 + off_m * 60) * np.where(t[:, 21] == 45, -1, 1)
    return civil_seconds(ok, year, month, day, hour, minute, sec, offset, off_h, off_m)


_RFC_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_RFC_SEP_POS = np.array([4, 7, 10, 13, 16])
_RFC_SEP_VAL = np.frombuffer(b"--T::", dtype=np.uint8)
_FRACTION = 9  # nanoseconds at most; digits after the sixth (below a microsecond) are dropped


def parse_time_rfc3339(a: ByteArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
    """Parse ``yyyy-mm-ddTHH:MM:SS[.f]`` followed by ``Z`` or ``+hh:mm`` (a load balancer's and Envoy's
    times; one to nine digits of fraction, kept to the microsecond) for every line at once:
    microseconds since the epoch (UTC), the UTC day and a validity mask."""
    width = hi - lo
    ok = width >= 20
    t = windows(a, lo, 19)
    digits = t[:, _RFC_DIGITS] - 48
    ok &= (digits <= 9).all(axis=1) & (t[:, _RFC_SEP_POS] == _RFC_SEP_VAL).all(axis=1)
    zulu = a.take(hi - 1, mode="clip") == 90
    z = windows(a, np.maximum(hi - 6, 0), 6)
    zone = ((z[:, 0] == 43) | (z[:, 0] == 45)) & (z[:, 3] == 58)
    zd = z[:, [1, 2, 4, 5]].astype(np.int64) - 48
    zone &= ((zd >= 0) & (zd <= 9)).all(axis=1)
    ok &= zulu | zone
    frac_lo = lo + 19
    frac_hi = hi - np.where(zulu, 1, 6)
    count = frac_hi - frac_lo - 1  # digits after the dot
    no_fraction = frac_hi == frac_lo
    ok &= no_fraction | ((count >= 1) & (count <= _FRACTION) & (a.take(frac_lo, mode="clip") == 46))
    # the fraction's digits, gathered for all lines at once (a fraction within the chunk's last bytes,
    # whose window is cut short, byte by byte), then read column by column
    window = windows(a, frac_lo + 1, _FRACTION)
    for j in np.flatnonzero(frac_lo + 1 + _FRACTION > len(a)):
        window[j] = a.take(frac_lo[j] + 1 + np.arange(_FRACTION), mode="clip")
    columns = window.T - np.uint8(48)  # anything but '0'..'9' wraps to > 9
    inside = ~no_fraction
    micros = np.zeros(len(lo), dtype=np.int64)
    for p in range(_FRACTION):
        inside &= p < count
        ok &= ~inside | (columns[p] <= 9)
        if p < 6:
            micros += np.where(inside, columns[p], 0).astype(np.int64) * 10 ** (5 - p)
    d = digits.T.astype(np.int64)
    year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]
    month, day = d[4] * 10 + d[5], d[6] * 10 + d[7]
    hour, minute, sec = d[8] * 10 + d[9], d[10] * 10 + d[11], d[12] * 10 + d[13]
    off_h = np.where(zulu, 0, zd[:, 0] * 10 + zd[:, 1])
    off_m = np.where(zulu, 0, zd[:, 2] * 10 + zd[:, 3])
    sign = np.where(z[:, 0] == 45, -1, 1)
    us, days, ok = civil_seconds(
        ok, year, month, day, hour, minute, sec, sign * (off_h * 3600 + off_m * 60), off_h, off_m
    )
    return us + np.where(ok, micros, 0), days, ok


_CLF_MS_WIDTH = 24  # len("06/Feb/2009:12:14:14.655")
_CLF_MS_DIGITS = np.array([0, 1, 7, 8, 9, 10, 12, 13, 15, 16, 18, 19, 21, 22, 23])
_CLF_MS_SEP_POS = np.array([2, 6, 11, 14, 17, 20])
_CLF_MS_SEP_VAL = np.frombuffer(b"//:::.", dtype=np.uint8)


def parse_time_clf_ms(a: ByteArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
    """Parse ``dd/Mon/yyyy:HH:MM:SS.mmm`` (HAProxy's accept date; it writes no offset, so the time is
    read as UTC) for every line at once: microseconds since the epoch, the UTC day and a validity mask."""
    ok = (hi - lo) == _CLF_MS_WIDTH
    t = windows(a, lo, _CLF_MS_WIDTH)
    digits = t[:, _CLF_MS_DIGITS] - 48
    ok &= (digits <= 9).all(axis=1) & (t[:, _CLF_MS_SEP_POS] == _CLF_MS_SEP_VAL).all(axis=1)
    d = digits.T.astype(np.int64)
    day, year = d[0] * 10 + d[1], d[2] * 1000 + d[3] * 100 + d[4] * 10 + d[5]
    hour, minute, sec = d[6] * 10 + d[7], d[8] * 10 + d[9], d[10] * 10 + d[11]
    millis = d[12] * 100 + d[13] * 10 + d[14]
    low = t[:, 3:6].astype(np.int64) | 0x20
    key = (low[:, 0] << 16) | (low[:, 1] << 8) | low[:, 2]
    k = np.minimum(np.searchsorted(MONTH_SORTED, key), 11)
    ok &= MONTH_SORTED[k] == key
    month = MONTH_ORDER[k] + 1
    zero = np.zeros(len(lo), dtype=np.int64)
    us, days, ok = civil_seconds(ok, year, month, day, hour, minute, sec, zero, zero, zero)
    return us + np.where(ok, millis * 1000, 0), days, ok


def civil_seconds(
    ok: BoolArray,
    year: IntArray,
    month: IntArray,
    day: IntArray,
    hour: IntArray,
    minute: IntArray,
    sec: IntArray,
    offset: IntArray,
    off_h: IntArray,
    off_m: IntArray,
) -> tuple[IntArray, IntArray, BoolArray]:
    """A local civil time and its UTC offset (seconds east) as microseconds since the epoch (UTC),
    the UTC day number and ``ok`` narrowed to real dates and times: no 31 Apr, no 29 Feb outside leap
    years, hours up to 23, offsets within +-23:59. Invalid lines get 0."""
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    dim = DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + ((month == 2) & leap)
    ok = ok & (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= dim)
    ok &= (hour <= 23) & (minute <= 59) & (sec <= 59) & (off_h <= 23) & (off_m <= 59)
    # days from civil date (H. Hinnant's algorithm), vectorised
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    local_days = era * 146097 + doe - 719468
    secs = local_days * 86400 + hour * 3600 + minute * 60 + sec - offset
    days = np.floor_divide(secs, 86400)
    ok &= (days >= MIN_DAY) & (days <= MAX_DAY)  # the UTC date must be a real calendar date too
    secs = np.where(ok, secs, 0)
    return secs * 1_000_000, np.where(ok, days, 0), ok


def epoch_times(us: Any, ok: BoolArray) -> tuple[IntArray, IntArray, BoolArray]:
    """Times given as microseconds since the epoch where ``ok`` (floats are rounded; a value past the
    calendar may be beyond int64): the microseconds as int64, their UTC days, and which are times (``ok``
    and a calendar date)."""
    ok = ok & (np.abs(us) < MAX_EPOCH_US)  # before the cast: a larger value would not fit
    kept = np.where(ok, us, 0)
    micros = (np.round(kept) if kept.dtype.kind == "f" else kept).astype(np.int64)
    days = np.floor_divide(micros, 86_400_000_000)
    ok &= (days >= MIN_DAY) & (days <= MAX_DAY)
    return np.where(ok, micros, 0), np.where(ok, days, 0), ok


def merge_lines(
    idx: IntArray, spans: IntArray, lines: list[int] | IntArray, more: list[IntArray] | IntArray
) -> tuple[IntArray, IntArray]:
    """The lines and spans of one pass with another's (``lines`` and their spans: an array like
    ``spans``, or one (field, start/end) array per line) merged in, in line order. Spans are
    (field, start/end, line)."""
    if not len(lines):
        return idx, spans
    idx = np.concatenate([idx, np.asarray(lines, dtype=idx.dtype)])
    spans = np.concatenate([spans, more if isinstance(more, np.ndarray) else np.stack(more, axis=2)], axis=2)
    by_line = np.argsort(idx, kind="stable")
    return idx[by_line], spans[:, :, by_line]


def reject_blank_and_long(
    rejects: RejectRows,
    data: bytes | memoryview,
    starts: IntArray,
    ends: IntArray,
    too_long: BoolArray,
    first_line: int,
    reject_bytes: int,
) -> None:
    """Reject the empty lines and those longer than ``max_line_bytes`` (``too_long``), with their reason."""
    rejects.add_blank(first_line + np.flatnonzero(ends == starts), Reason.EMPTY)
    reject_lines(
        rejects, np.flatnonzero(too_long), Reason.TOO_LONG, data, starts, ends, first_line, reject_bytes
    )


def reject_lines(
    rejects: RejectRows,
    lines: IntArray,
    reason: Reason | Sequence[Reason],
    data: bytes | memoryview,
    starts: IntArray,
    ends: IntArray,
    first_line: int,
    reject_bytes: int,
) -> None:
    """Reject the lines numbered ``lines`` (in the chunk whose lines are ``starts``/``ends``) with
    ``reason`` (one for all, or one per line), as :meth:`RejectRows.add` would one by one: a chunk of
    another format's lines is all rejects, and a Python call per line would cost more than its parse."""
    if len(lines) == 0:
        return
    lo, hi = starts[lines], ends[lines]
    cut = np.minimum(hi, lo + reject_bytes).tolist()
    rejects.lines += (lines + first_line).tolist()
    rejects.reasons += [str(reason)] * len(lines) if isinstance(reason, Reason) else [str(r) for r in reason]
    rejects.raw += [bytes(data[x:y]) for x, y in zip(lo.tolist(), cut, strict=True)]
    rejects.raw_len += (hi - lo).tolist()


def keep_between(
    result: FormatResult, since_us: int | None, until_us: int | None
) -> tuple[FormatResult, int]:
    """The rows of a parsed chunk whose ``ts`` is in ``[since_us, until_us)`` (microseconds since the
    epoch; None: no bound), and how many were left out."""
    batch = result.batch
    ts = timestamps(batch)
    keep = np.ones(batch.num_rows, dtype=bool)
    if since_us is not None:
        keep &= ts >= since_us
    if until_us is not None:
        keep &= ts < until_us
    if keep.all():
        return result, 0
    kept = batch.filter(bool_array(keep))
    days = np.floor_divide(ts[keep], DAY_US)
    rows = None if result.rows is None else result.rows[keep]
    return FormatResult(kept, partitions(days), result.rejects, rows), int(len(keep) - keep.sum())


def timestamps(batch: pa.RecordBatch) -> IntArray:
    """The ``ts`` column as microseconds since the epoch (no copy; null rows read as 0)."""
    ts = batch.column("ts")
    values: IntArray = np.frombuffer(ts.buffers()[1], dtype=np.int64, count=len(ts) + ts.offset)[ts.offset :]
    return values


def line_bounds(a: ByteArray) -> tuple[IntArray, IntArray, IntArray, BoolArray]:
    """Where each line of a chunk of complete ``\n``-terminated lines starts and ends (without its
    line end; a CRLF's ``\r`` is not part of the line), where its ``\n`` is, and which end in CRLF."""
    newlines = np.flatnonzero(a == 10)
    if len(newlines) == 0 or newlines[-1] != len(a) - 1:
        raise ValueError("chunk must consist of complete lines ending in \\n")
    starts = np.empty_like(newlines)
    starts[0] = 0
    starts[1:] = newlines[:-1] + 1
    crlf = (newlines > starts) & (a[newlines - 1] == 13)
    return starts, newlines - crlf, newlines, crlf


def parse_ints(
    data: bytes | memoryview, a: ByteArray, lo: IntArray, hi: IntArray
) -> tuple[IntArray, BoolArray, BoolArray]:
    """The response size: value, null mask ("-") and a mask of values that fit int64.

    Digits are known to be digits here (both paths checked that); only the value is computed.
    """
    length = hi - lo
    null = is_dash(a, lo, hi)
    value = np.zeros(len(lo), dtype=np.int64)
    ok = np.ones(len(lo), dtype=bool)
    short = ~null & (length <= MAX_DIGITS)
    if short.any():
        value[short] = cast_spans(data, lo, hi, short, np.int64)[short]
    for j in np.flatnonzero(~null & (length > MAX_DIGITS)):
        v = int(bytes(data[lo[j] : hi[j]]))
        if v <= np.iinfo(np.int64).max:
            value[j] = v
        else:
            ok[j] = False
    return value, null, ok


def string_columns(
    buf: pa.Buffer, lo: IntArray, hi: IntArray, take: IntArray, valid: list[BoolArray | None]
) -> list[pa.Array]:
    """Cut string columns out of the chunk buffer with one ``take``, no Python object per value.

    ``lo``/``hi`` are (fields, lines) byte spans. Fields follow each other within a line and lines
    follow each other, so the spans of every field of every line, in that order, are in order through
    the chunk (see _span_strings). One ``take`` gathers the spans field by field (each field's rows in
    the order ``take``) into one contiguous array, which the columns then share: one ``take`` costs
    less than one per column (BENCHMARKS.md, "Design figures").
    ``valid``: each field's validity in the original row order, or None (no nulls). ``take`` may
    leave lines out: the columns have ``len(take)`` rows.
    """
    k, n = len(lo), len(take)
    if n == 0:
        return [pa.nulls(0, pa.string()) for _ in range(k)]
    inter = span_strings(buf, lo.T.ravel(), hi.T.ravel(), None)  # line by line, field by field
    gathered = inter.take(int64_array((2 * (take[None, :] * k + np.arange(k)[:, None])).ravel()))
    _, all_offsets, data = gathered.buffers()
    # offsets that do not start at 0 are valid Arrow: each column is a window on the shared data
    return string_columns_from_buffers(k, n, all_offsets, data, kept_bitmaps(valid, take))


def kept_bitmaps(valid: list[BoolArray | None], take: IntArray) -> list[pa.Buffer | None]:
    """Each column's validity bitmap of the rows ``take`` (``valid``: each column's validity in the
    original row order, or None); None where every row taken is valid."""
    bitmaps = []
    for v in valid:
        kept = None if v is None else v[take]
        bitmaps.append(
            None if kept is None or kept.all() else pa.py_buffer(np.packbits(kept, bitorder="little"))
        )
    return bitmaps


def is_bot(user_agent: pa.Array) -> pa.Array:
    """The bot pattern matched once per distinct agent: a chunk has a few dozen distinct agents among
    thousands of lines, so hashing then matching costs less than matching every line (BENCHMARKS.md,
    "Design figures")."""
    import pyarrow.compute as pc  # lazily: see the imports at the top

    encoded = pc.dictionary_encode(user_agent)
    matches = pc.match_substring_regex(encoded.dictionary, BOT_PATTERN, ignore_case=True)
    return matches.take(encoded.indices)


def span_strings(
    data: bytes | memoryview | ByteArray | pa.Buffer, lo: IntArray, hi: IntArray, valid: BoolArray | None
) -> pa.Array:
    """The spans ``data[lo:hi]`` as the even elements of one string array over the chunk, no copy.

    Spans must be in order through the chunk (``lo0 <= hi0 <= lo1 ...``), like the spans of one field
    over successive lines: then ``lo0, hi0, lo1, hi1, ...`` is a valid offsets buffer. The odd elements
    (the bytes between spans) are null, and so are the spans not ``valid``, so kernels skip them."""
    n = len(lo)
    offsets = np.empty(2 * n, dtype=np.int32)
    offsets[0::2] = lo
    offsets[1::2] = hi
    bits = np.zeros(2 * n - 1, dtype=bool)
    bits[0::2] = True if valid is None else valid
    bitmap = pa.py_buffer(np.packbits(bits, bitorder="little"))
    return string_from_buffers(2 * n - 1, offsets, pa.py_buffer(data), bitmap)


def find(a: ByteArray, lo: IntArray, hi: IntArray, char: str) -> IntArray:
    """The position of the first ``char`` in each span (in order through the chunk), -1 if none."""
    import pyarrow.compute as pc  # lazily: see the imports at the top

    if len(lo) == 0:
        return np.zeros(0, dtype=np.int64)
    found = pc.find_substring(span_strings(a, lo, hi, None), char)
    rel = np.frombuffer(found.buffers()[1], dtype=np.int32, count=2 * len(lo) - 1)[0::2]
    return np.where(rel >= 0, lo + rel, -1)


def is_dash(a: ByteArray, lo: IntArray, hi: IntArray) -> BoolArray:
    """Whether each span is exactly "-" (the log's empty value). Positions past the end are clipped,
    so spans from unchecked candidates are safe to test."""
    dash: BoolArray = ((hi - lo) == 1) & (a.take(lo, mode="clip") == 45)
    return dash


def all_digits(a: ByteArray, lo: IntArray, hi: IntArray) -> BoolArray:
    """Whether each span (in order through the chunk, see _span_strings) is one or more ASCII digits."""
    import pyarrow.compute as pc  # lazily: see the imports at the top

    if len(lo) == 0:
        return np.zeros(0, dtype=bool)
    digits = pc.ascii_is_decimal(span_strings(a, lo, hi, None))
    # the values bitmap, unpacked by hand: to_numpy() on an array with nulls would import pandas
    bits = np.unpackbits(
        np.frombuffer(digits.buffers()[1], dtype=np.uint8), count=2 * len(lo) - 1, bitorder="little"
    )
    ok: BoolArray = bits[0::2].astype(bool)
    return ok


def cast_spans(
    data: bytes | memoryview,
    lo: IntArray,
    hi: IntArray,
    valid: BoolArray | None,
    dtype: type[np.integer[Any]],
) -> IntArray:
    """The numbers written at ``data[lo:hi]`` (digits only, already checked; ``valid``: which to parse,
    None for all), parsed by Arrow's string cast in C++, which is faster than numpy digit arithmetic
    (BENCHMARKS.md, "Design figures").
    Spans must be in order through the chunk (see _span_strings). Where not valid, the result is
    undefined."""
    import pyarrow.compute as pc  # lazily: see the imports at the top

    n = len(lo)
    if n == 0:
        return np.zeros(0, dtype=dtype)
    parsed = pc.cast(span_strings(data, lo, hi, valid), pa.from_numpy_dtype(dtype))
    values: IntArray = np.frombuffer(parsed.buffers()[1], dtype=dtype, count=2 * n - 1)
    return np.ascontiguousarray(values[0::2])
