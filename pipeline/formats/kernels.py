"""The engine's per-byte loops, compiled to machine code by Numba: one pass over a chunk's bytes that
finds its lines and splits each into its fields.

Why compiled: the vectorised split (``engine._fast_spans``) makes a dozen numpy passes per field over
arrays of a few thousand lines, and numpy's fixed cost per call is most of what it spends; one loop over
the bytes does the same work in one pass ([BENCHMARKS.md](../../BENCHMARKS.md#one-engine-compiled)).

Loading: importing this module imports Numba (~0.2 s) and loads the compiled functions from Numba's
on-disk cache (compiled on the first import after an install, a few seconds). So nothing imports it on
the way to a small run: the fork server's warm-up does (``pipeline.executors.warmup``), once for all
workers, and the engine uses these loops only in a process that has them loaded
(:func:`pipeline.formats.compiled.loaded`); every other process runs the numpy engine, which gives the
same spans.

Memory safety: a compiled loop does not check its indexes. These loops only read ``a`` up to a byte that
is a ``\\n`` (every chunk ends with one, which the caller checks) and write at most one span per line and
field into arrays sized for every line. The tests run them with Numba's bounds checks on
(``NUMBA_BOUNDSCHECK=1``); such a build must not share the cache with the unchecked one, so a process
with the checks on and no ``NUMBA_CACHE_DIR`` of its own compiles without caching.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from pipeline.formats.compiled import LINE_END, OK, OTHER, PLAIN, STOP, TO_END, TRIED
from pipeline.formats.compiled_types import NULL, TOO_BIG, UNREAD, VALUE
from pipeline.formats.vector import MAX_DAY, MIN_DAY

# Numba's cache does not tell a bounds-checked build from an unchecked one (its key is the signature)
_CACHE = os.environ.get("NUMBA_BOUNDSCHECK") != "1" or "NUMBA_CACHE_DIR" in os.environ


@njit(cache=_CACHE, nogil=True, boundscheck=False)
def _line_end(a: Any, p: int) -> tuple[int, bool]:
    """The position of the ``\\n`` that ends the line at or after ``p``, and whether a byte before it
    is special (below 32, above 126 or a backslash; a CRLF's ``\\r`` counts, the caller rechecks)."""
    special = False
    while a[p] != 10:
        c = a[p]
        if c < 32 or c > 126 or c == 92:
            special = True
        p += 1
    return p, special


@njit(cache=_CACHE, nogil=True, boundscheck=False)
def _special_between(a: Any, lo: int, hi: int) -> bool:
    for q in range(lo, hi):
        c = a[q]
        if c < 32 or c > 126 or c == 92:
            return True
    return False


@njit(cache=_CACHE, nogil=True, boundscheck=False)
def _holds(a: Any, p: int, lits: Any, lo: int, size: int) -> bool:
    """Whether ``a`` holds ``lits[lo:lo + size]`` at ``p`` (a literal holds no \n, and ``a`` ends with
    one: the comparison stops there at the latest)."""
    for j in range(size):  # noqa: SIM110  (Numba compiles the loop, not all() over a generator)
        if a[p + j] != lits[lo + j]:
            return False
    return True


@njit(cache=_CACHE, nogil=True, boundscheck=False)
def split_lines(
    a: Any,
    max_line: int,
    every: bool,
    quick: bool,
    lits: Any,
    lit_lo: Any,
    lit_hi: Any,
    width: Any,
    to_end: Any,
    listy: Any,
    seek: Any,
    classes: Any,
    spans: Any,
    status: Any,
    starts: Any,
    ends: Any,
) -> tuple[int, int]:
    """Every line of the chunk ``a`` (complete lines, the last byte a ``\\n``): its bounds (without the
    line end; a CRLF's ``\\r`` is not part of the line) and status (``OK``, ``TRIED``, ``OTHER`` of
    :mod:`pipeline.formats.compiled`), and the field spans of the lines split, in line order, as
    ``engine._fast_spans`` gives them: a field ends at the first occurrence of the first byte of the
    literal after it (or after ``width`` bytes, or at the line end), and the whole literal must follow.

    ``every``: stop at the first line not split (the caller wants every line split or none).
    ``quick``: whether any line can be split (false when a literal holds a special byte: such lines are
    never candidates). ``lits[lit_lo[k]:lit_hi[k]]``: literal ``k`` (before field ``k``; the last one
    after the last field). ``listy[k]``: an unquoted list, which may not be followed by another list
    separator. ``seek[k]``: the field ends where the whole literal after it first occurs, not where its
    first byte does (the reference regex's own split of an unquoted field; ``engine._fast_spans`` with
    ``whole``). ``classes[k, byte]``: the byte's class in field ``k``. Returns (lines, lines split)."""
    n = a.shape[0]
    nf = width.shape[0]
    line = 0
    taken = 0
    s = 0
    while s < n:
        good = quick
        p = s
        lo = lit_lo[0]
        for j in range(lit_hi[0] - lo):
            if a[p] != lits[lo + j]:
                good = False
                break
            p += 1
        k = 0
        while good and k < nf:
            spans[k, 0, taken] = p
            table = classes[k]
            lo = lit_lo[k + 1]
            size = lit_hi[k + 1] - lo
            if width[k] > 0:  # a time that holds the literal's first byte: it ends by its width
                end = p + width[k]
                while p < end and table[a[p]] < LINE_END:
                    p += 1
                good = p == end
            else:
                c = table[a[p]]
                while True:
                    while c == PLAIN:
                        p += 1
                        c = table[a[p]]
                    if c != STOP or not seek[k] or _holds(a, p, lits, lo, size):
                        break
                    p += 1  # the literal's first byte alone: still the field's
                    c = table[a[p]]
                if to_end[k]:  # the line end; a word (a built-in format's last) is not empty nor ends a space
                    good = c == LINE_END and (
                        to_end[k] == TO_END or (p > spans[k, 0, taken] and a[p - 1] != 32)
                    )
                else:
                    good = c == STOP
            end = p
            for j in range(size):
                if not good or a[p] != lits[lo + j]:
                    good = False
                    break
                p += 1
            if good and listy[k] and size < 3:
                # a list goes on at ", " or " : " (the bytes after a short literal may be the rest of one)
                if a[end] == 44 and end + 1 < n and a[end + 1] == 32:
                    good = size == 2
                elif a[end] == 32 and end + 2 < n and a[end + 1] == 58 and a[end + 2] == 32:
                    good = False
            spans[k, 1, taken] = end
            k += 1
        e = p
        if good:
            if a[p] == 13 and p + 1 < n and a[p + 1] == 10:
                nl = p + 1
            else:
                good = a[p] == 10
                nl = p
        if good and s < e and e - s <= max_line:
            status[line] = OK
            taken += 1
        else:
            # the bytes the split read are plain (a special byte ends a field's scan, and the literals
            # hold none when ``quick``): what is left to look at starts where it stopped
            q = p if quick else s
            nl, special = _line_end(a, q)
            e = nl
            if e > s and a[e - 1] == 13:
                e -= 1
                special = _special_between(a, q, e)
            status[line] = OTHER if special or e == s or e - s > max_line else TRIED
            if every:
                starts[line] = s
                ends[line] = e
                return line + 1, taken
        starts[line] = s
        ends[line] = e
        line += 1
        s = nl + 1
    return line, taken


@njit(cache=_CACHE, nogil=True, boundscheck=False)
def split_variants(
    a: Any,
    max_line: int,
    quick: Any,
    lits: Any,
    lit_lo: Any,
    lit_hi: Any,
    lit_base: Any,
    width: Any,
    to_end: Any,
    listy: Any,
    seek: Any,
    classes: Any,
    field_base: Any,
    counted: Any,
    need: Any,
    useful: Any,
    spans: Any,
    group: Any,
    starts: Any,
    ends: Any,
) -> tuple[int, int]:
    """Every line of the chunk ``a`` split by the first of several plans (a format's variants, in
    order) whose split takes it, as ``servers.VariantsFormat`` tries them with numpy: the split of
    :func:`split_lines`, then, where that failed at the literal after a field that ``seek`` would read
    on, the whole-literal split (until there it reads as the first). The tables are the variants' end
    to end: variant ``v``'s fields are ``field_base[v]`` to ``field_base[v + 1]`` of ``width`` ...
    ``classes``, its literals start at ``lit_base[v]`` of ``lit_lo``/``lit_hi``.

    A line holds every byte of a variant's literals: one whose literals hold more of a byte ``counted[j]``
    (``need[v, j]``) than the line is not tried. The previous line's variant is tried first (a chunk's
    lines are mostly of one), then, unless it is the first, the variants before it, into the scratch
    line ``spans[:, :, -1]`` (one that splits the line takes it); ``useful[prev, j]``: whether the
    count of byte ``j`` can rule one of those out, ``useful[len(need), j]``: any variant.

    ``group[line]``: the variant that split it; -1: not a candidate (a special byte, empty, longer than
    ``max_line``); ``len(need)``: a candidate that no variant's literals fit; ``len(need) + 1``: one that
    some variant's fit but none split. The spans of the lines split go to ``spans[:, :, taken]`` in
    line order (a variant's own fields first). Returns (lines, lines split)."""
    n = a.shape[0]
    nv = need.shape[0]
    nc = need.shape[1]
    scratch = spans.shape[2] - 1
    counts = np.zeros(nc, dtype=np.int64)
    line = 0
    taken = 0
    s = 0
    prev = 0
    while s < n:
        # phase 0: the previous line's variant; 1: those before it (it split the line); 2: every other
        # one (it did not)
        phase, v, use_seek, slot, seek_prev = 0, prev, False, taken, False
        chosen, nl, e, q = -1, s, s, s
        while True:
            # --- variant v's split of the line at s (split_lines' loop, into spans[:, :, slot])
            # (written out, not shared: a loop shared with split_lines, even inlined, made it 2x slower)
            fb = field_base[v]
            nf = field_base[v + 1] - fb
            lb = lit_base[v]
            good = quick[v]
            retry = False
            p = s
            lo = lit_lo[lb]
            for j in range(lit_hi[lb] - lo):
                if a[p] != lits[lo + j]:
                    good = False
                    break
                p += 1
            k = 0
            while good and k < nf:
                f = fb + k
                spans[k, 0, slot] = p
                table = classes[f]
                lo = lit_lo[lb + k + 1]
                size = lit_hi[lb + k + 1] - lo
                if width[f] > 0:
                    end = p + width[f]
                    while p < end and table[a[p]] < LINE_END:
                        p += 1
                    good = p == end
                else:
                    c = table[a[p]]
                    while True:
                        while c == PLAIN:
                            p += 1
                            c = table[a[p]]
                        if c != STOP or not (use_seek and seek[f]) or _holds(a, p, lits, lo, size):
                            break
                        p += 1
                        c = table[a[p]]
                    if to_end[f]:
                        good = c == LINE_END and (
                            to_end[f] == TO_END or (p > spans[k, 0, slot] and a[p - 1] != 32)
                        )
                    else:
                        good = c == STOP
                end = p
                for j in range(size):
                    if not good or a[p] != lits[lo + j]:
                        retry = good and seek[f] and not use_seek
                        good = False
                        break
                    p += 1
                if good and listy[f] and size < 3:
                    if a[end] == 44 and end + 1 < n and a[end + 1] == 32:
                        good = size == 2
                    elif a[end] == 32 and end + 2 < n and a[end + 1] == 58 and a[end + 2] == 32:
                        good = False
                spans[k, 1, slot] = end
                k += 1
            if good and not (a[p] == 13 and p + 1 < n and a[p + 1] == 10):
                good = a[p] == 10
            if not good and retry and phase != 0:
                use_seek = True  # the same variant again, reading on where the literal did not follow
                continue
            if quick[v] and p > q:
                q = p  # the bytes before are plain
            # --- what it means for the line, and which variant is next
            if phase == 0:
                # a line the previous line's variant did not split is most likely another format's:
                # its whole-literal split waits for the line's counts to say that it fits
                seek_prev = retry
                if good and p > s and p - s <= max_line:
                    chosen, e = v, p
                    nl = p + 1 if a[p] == 13 else p
                    phase = 1
                else:
                    nl, special = _line_end(a, q)
                    e = nl
                    if e > s and a[e - 1] == 13:
                        e -= 1
                        special = _special_between(a, q, e)
                    if special or e == s or e - s > max_line:
                        break
                    chosen = nv
                    phase = 2
                if phase == 1 and v == 0:
                    break  # the first variant split it
                # the line's count of each counted byte that can rule a variant out
                for j in range(nc):
                    counts[j] = _INT_MAX  # a count that cannot rule a variant out: not counted
                    if useful[prev if phase == 1 else nv, j]:
                        b = counted[j]
                        m = 0
                        start = np.uint64(s)  # an unsigned index: LLVM vectorises the count
                        for x in range(e - s):
                            m += a[start + np.uint64(x)] == b
                        counts[j] = m
                v = -1
            elif good:  # phase 1 (into the scratch line) or 2
                chosen = v
                if phase == 1:
                    for k in range(nf):
                        spans[k, 0, taken] = spans[k, 0, scratch]
                        spans[k, 1, taken] = spans[k, 1, scratch]
                break
            # the next variant whose literals the line's counts fit
            last = prev if phase == 1 else nv
            v += 1
            while v < last:
                fits = True
                for j in range(nc):
                    if counts[j] < need[v, j]:
                        fits = False
                        break
                if fits and phase == 2:
                    chosen = nv + 1
                # the previous line's variant: its first split failed, so only its whole-literal one
                # is left, where that failed at such a literal
                if fits and not (phase == 2 and v == prev and not seek_prev):
                    break
                v += 1
            if v >= last:
                break
            use_seek = phase == 2 and v == prev
            slot = scratch if phase == 1 else taken
        group[line] = chosen
        if 0 <= chosen < nv:
            taken += 1
            prev = chosen
        starts[line] = s
        ends[line] = e
        line += 1
        s = nl + 1
    return line, taken


# --- typing: the values of the split fields (pipeline/formats/compiled_types.py wraps these) --------------
#
# Each reads only the bytes of its spans, ``a[lo[i]:hi[i]]``, which lie within ``a`` (the split found
# them there); the wrappers check that before they call.

_MONTH_NAMES = np.frombuffer(b"janfebmaraprmayjunjulaugsepoctnovdec", dtype=np.uint8)
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
# exact powers of ten as doubles (10**22 is the last one a double holds exactly)
_POWERS = np.array([10.0**e for e in range(23)], dtype=np.float64)
_MICRO_PLACES = np.array([100_000, 10_000, 1000, 100, 10, 1], dtype=np.int64)  # a fraction's digits
_EXACT = 1 << 53  # every integer below it is a double exactly
_FIVES = np.array([5**e for e in range(23)], dtype=np.int64)  # 5**22 < 2**52: a remainder shifts 10 bits
_INT_MAX = np.iinfo(np.int64).max
_INT32_MAX = np.iinfo(np.int32).max
_TENTH, _LAST = divmod(
    int(_INT_MAX), 10
)  # m * 10 + c passes int64 where m > _TENTH, or m == _TENTH, c > _LAST


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def spans_within(spans: Any, n: int) -> bool:
    """Whether every span (field, start/end, line) lies within a chunk of ``n`` bytes."""
    for f in range(spans.shape[0]):
        for i in range(spans.shape[2]):
            if spans[f, 0, i] < 0 or spans[f, 1, i] < spans[f, 0, i] or spans[f, 1, i] > n:
                return False
    return True


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _number(a: Any, p: int, n: int) -> int:
    """The ``n`` ASCII digits at ``p`` as a number; -1 if a byte is not a digit."""
    v = 0
    for q in range(p, p + n):
        c = int(a[q]) - 48
        if c < 0 or c > 9:
            return -1
        v = v * 10 + c
    return v


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _month(a: Any, p: int) -> int:
    """The month (1-12) whose English name's three letters are at ``p``, in any case; 0 if none."""
    b0, b1, b2 = a[p] | 0x20, a[p + 1] | 0x20, a[p + 2] | 0x20
    for m in range(12):
        if b0 == _MONTH_NAMES[3 * m] and b1 == _MONTH_NAMES[3 * m + 1] and b2 == _MONTH_NAMES[3 * m + 2]:
            return m + 1
    return 0


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _utc_seconds(
    year: int, month: int, day: int, hour: int, minute: int, sec: int, off_h: int, off_m: int, sign: int
) -> tuple[int, bool]:
    """A local civil time and its UTC offset as seconds since the epoch (UTC), and whether it is a real
    date and time: ``civil_seconds`` of :mod:`pipeline.formats.vector`, for one value."""
    if year < 1 or month < 1 or month > 12 or day < 1 or hour > 23 or minute > 59 or sec > 59:
        return 0, False
    if off_h > 23 or off_m > 59:
        return 0, False
    leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
    if day > _MONTH_DAYS[month - 1] + (1 if month == 2 and leap else 0):
        return 0, False
    y = year - (1 if month <= 2 else 0)  # days from civil date (H. Hinnant's algorithm)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    secs = (era * 146097 + doe - 719468) * 86400 + hour * 3600 + minute * 60 + sec
    secs -= sign * (off_h * 3600 + off_m * 60)
    days = secs // 86400
    if days < MIN_DAY or days > MAX_DAY:  # the UTC date must be a real calendar date too
        return 0, False
    return secs, True


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def time_local(a: Any, lo: Any, hi: Any, us: Any, days: Any, ok: Any) -> None:
    """``dd/Mon/yyyy:HH:MM:SS +zzzz`` at each span: microseconds since the epoch (UTC), the UTC day
    and whether it is one (``parse_time_local`` of :mod:`pipeline.formats.vector`); 0 where not."""
    for i in range(lo.shape[0]):
        p = lo[i]
        secs, good = 0, False
        if hi[i] - p == 26 and a[p + 2] == 47 and a[p + 6] == 47 and a[p + 11] == 58 and a[p + 14] == 58:
            sign = 1 if a[p + 21] == 43 else (-1 if a[p + 21] == 45 else 0)
            day, year, hour = _number(a, p, 2), _number(a, p + 7, 4), _number(a, p + 12, 2)
            minute, sec = _number(a, p + 15, 2), _number(a, p + 18, 2)
            off_h, off_m = _number(a, p + 22, 2), _number(a, p + 24, 2)
            month = _month(a, p + 3)
            if (
                a[p + 17] == 58
                and a[p + 20] == 32
                and sign != 0
                and month > 0
                and min(day, year, hour, minute, sec) >= 0
                and min(off_h, off_m) >= 0
            ):
                secs, good = _utc_seconds(year, month, day, hour, minute, sec, off_h, off_m, sign)
        us[i] = secs * 1_000_000
        days[i] = secs // 86400
        ok[i] = good


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def time_rfc3339(a: Any, lo: Any, hi: Any, us: Any, days: Any, ok: Any) -> None:
    """``yyyy-mm-ddTHH:MM:SS[.f]`` and ``Z`` or ``+hh:mm`` at each span (one to nine digits of fraction,
    kept to the microsecond): ``parse_time_rfc3339`` of :mod:`pipeline.formats.vector`; 0 where not one."""
    for i in range(lo.shape[0]):
        p, end = lo[i], hi[i]
        secs, micros, good = 0, 0, False
        if end - p >= 20:  # the 19 bytes of the date and time, and at least the zone's one
            zulu = a[end - 1] == 90
            off_h, off_m, sign = 0, 0, 1
            zone_ok = zulu
            if not zulu:
                z = end - 6  # "+hh:mm": after the 19 bytes at the earliest where a fraction is there
                off_h, off_m = _number(a, z + 1, 2), _number(a, z + 4, 2)
                sign = -1 if a[z] == 45 else 1
                zone_ok = (a[z] == 43 or a[z] == 45) and a[z + 3] == 58 and min(off_h, off_m) >= 0
            frac_lo = p + 19
            frac_hi = end - (1 if zulu else 6)
            count = frac_hi - frac_lo - 1  # digits after the dot
            good = zone_ok and (frac_hi == frac_lo or (1 <= count <= 9 and a[frac_lo] == 46))
            for q in range(max(count, 0) if good and frac_hi > frac_lo else 0):
                c = int(a[frac_lo + 1 + q]) - 48
                if c < 0 or c > 9:
                    good = False
                    break
                if q < 6:
                    micros += c * _MICRO_PLACES[q]
            year, month, day = _number(a, p, 4), _number(a, p + 5, 2), _number(a, p + 8, 2)
            hour, minute, sec = _number(a, p + 11, 2), _number(a, p + 14, 2), _number(a, p + 17, 2)
            good = (
                good
                and a[p + 4] == 45
                and a[p + 7] == 45
                and a[p + 10] == 84
                and a[p + 13] == 58
                and a[p + 16] == 58
                and min(year, month, day, hour, minute, sec) >= 0
            )
            if good:
                secs, good = _utc_seconds(year, month, day, hour, minute, sec, off_h, off_m, sign)
        us[i] = secs * 1_000_000 + (micros if good else 0)
        days[i] = secs // 86400
        ok[i] = good


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def time_clf_ms(a: Any, lo: Any, hi: Any, us: Any, days: Any, ok: Any) -> None:
    """``dd/Mon/yyyy:HH:MM:SS.mmm`` (HAProxy's accept date, read as UTC) at each span:
    ``parse_time_clf_ms`` of :mod:`pipeline.formats.vector`; 0 where not one."""
    for i in range(lo.shape[0]):
        p = lo[i]
        secs, millis, good = 0, 0, False
        if hi[i] - p == 24 and a[p + 2] == 47 and a[p + 6] == 47 and a[p + 11] == 58 and a[p + 14] == 58:
            day, year, hour = _number(a, p, 2), _number(a, p + 7, 4), _number(a, p + 12, 2)
            minute, sec, millis = _number(a, p + 15, 2), _number(a, p + 18, 2), _number(a, p + 21, 3)
            month = _month(a, p + 3)
            if (
                a[p + 17] == 58
                and a[p + 20] == 46
                and month > 0
                and min(day, year, hour, minute, sec, millis) >= 0
            ):
                secs, good = _utc_seconds(year, month, day, hour, minute, sec, 0, 0, 1)
        us[i] = secs * 1_000_000 + (millis * 1000 if good else 0)
        days[i] = secs // 86400
        ok[i] = good


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def ip_port(a: Any, lo: Any, hi: Any, null: Any, ip_lo: Any, ip_hi: Any, port: Any, use: Any) -> None:
    """``address:port`` at each span not ``null``, split at its last colon (an IPv6 address holds
    colons), the port one to five digits, the address without a space (a line's text before the
    address, an unknown prefix, is not read as part of it); an address in brackets without them.
    ``use``: it split; where not, the address is the empty span at the start and the port 0."""
    for i in range(lo.shape[0]):
        p, end = lo[i], hi[i]
        c = end - 1
        while c >= p and a[c] != 58:
            c -= 1
        length = end - c - 1
        v = _number(a, c + 1, length) if c > p and 1 <= length <= 5 else -1
        for j in range(p, c):
            if a[j] == 32:
                v = -1
                break
        good = v >= 0 and not null[i]
        use[i] = good
        port[i] = v if good else 0
        h = c if good else p
        if good and a[p] == 91 and a[h - 1] == 93 and h - p > 2:
            ip_lo[i], ip_hi[i] = p + 1, h - 1
        else:
            ip_lo[i], ip_hi[i] = p, h


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def status(a: Any, lo: Any, hi: Any, values: Any, ok: Any) -> None:
    """A three-digit HTTP status at each span (0 and not ok where it is not one)."""
    for i in range(lo.shape[0]):
        v = _number(a, lo[i], 3) if hi[i] - lo[i] == 3 else -1
        ok[i] = v >= 0
        values[i] = max(v, 0)


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def nulls(a: Any, lo: Any, hi: Any, spell: Any, spell_lo: Any, spell_hi: Any, empty: bool, null: Any) -> None:
    """Whether each span is the log's empty value: ``-``, ``spell[spell_lo[j]:spell_hi[j]]`` for some
    ``j``, or (with ``empty``) nothing."""
    for i in range(lo.shape[0]):
        null[i] = _is_null(a, lo[i], hi[i], spell, spell_lo, spell_hi, 0, spell_lo.shape[0], empty)


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _separator(a: Any, p: int, end: int) -> int:
    """The length of the list separator at ``p`` (nginx's ``", "`` or ``" : "``), 0 if none."""
    if end - p >= 2 and a[p] == 44 and a[p + 1] == 32:
        return 2
    if end - p >= 3 and a[p] == 32 and a[p + 1] == 58 and a[p + 2] == 32:
        return 3
    return 0


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _item(a: Any, p: int, end: int, whole: bool) -> tuple[int, int, int, bool]:
    """The number at ``p``: ``\\d+`` (``whole``) or ``\\d+(\\.\\d+)?``, up to the first byte
    that cannot go on. Returns where it ends (``p``: none), its digits as an integer, how many of them
    follow the dot, and whether the integer passed ``_INT_MAX`` (its value is then unusable)."""
    q, m, frac, over = p, 0, 0, False
    while q < end and 48 <= a[q] <= 57:
        c = int(a[q]) - 48
        over = over or m > _TENTH or (m == _TENTH and c > _LAST)
        m = 0 if over else m * 10 + c
        q += 1
    if q > p and not whole and q + 1 < end and a[q] == 46 and 48 <= a[q + 1] <= 57:
        q += 1
        while q < end and 48 <= a[q] <= 57:
            c = int(a[q]) - 48
            over = over or m > _TENTH or (m == _TENTH and c > _LAST)
            m = 0 if over else m * 10 + c
            frac += 1
            q += 1
    return q, m, frac, over


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _nearest(m: int, k: int) -> float:
    """``m / 10**k`` as the nearest double (ties to even), for ``2**53 <= m < 2**63`` and ``0 <= k <
    23``, where ``m / 10.0**k`` would round twice (a Caddy time, ``1646861401.5241024``: 17 digits).
    ``m / 5**k`` by integer long division to 54 bits or more, the remainder the sticky bit, then times
    ``2**-k``, which is exact."""
    d = _FIVES[k]
    q = m // d
    r = m - q * d
    e = -k
    while q < _EXACT:  # ten bits at a time: q << 10 and r << 10 stay below 2**63
        r <<= 10
        t = r // d
        r -= t * d
        q = (q << 10) | t
        e -= 10
    drop = 1
    while q >> (53 + drop):  # q has 53 + drop bits, 1 <= drop <= 10
        drop += 1
    low = q & ((1 << drop) - 1)
    q >>= drop
    half = 1 << (drop - 1)
    if low > half or (low == half and (r != 0 or (q & 1) == 1)):
        q += 1
    return math.ldexp(float(q), e + drop)


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def numbers(
    a: Any, lo: Any, hi: Any, null: Any, whole: bool, multi: bool, ints: Any, floats: Any, state: Any
) -> None:
    """The numbers at the spans not ``null``: a whole number (``whole``: into ``ints``) or a decimal
    (into ``floats``), with ``multi`` also a list of them and ``-`` (nginx's after upstream retries,
    ``0.012, 0.034`` or ``1 : -``), summed from the left. ``state``: ``VALUE``; ``NULL`` (``null``, or a
    list of nothing but ``-``); ``TOO_BIG`` (beyond int64); ``UNREAD``: anything else, which the caller
    reads one by one (a decimal is read here where its digits make an integer below 2**63 and follow
    the dot at most 22 times: below 2**53 that integer divided by the power of ten, both exact doubles,
    is the nearest double, what any correct parser gives; above, :func:`_nearest` gives it)."""
    for i in range(lo.shape[0]):
        p, end = lo[i], hi[i]
        total_i, total_f, seen, big, s = 0, 0.0, False, False, VALUE
        if null[i]:
            s = NULL
        while s == VALUE:
            if p < end and a[p] == 45 and (p + 1 == end or _separator(a, p + 1, end) > 0):
                q = p + 1  # "-": an upstream that gave no value
            else:
                q, m, frac, over = _item(a, p, end, whole)
                if q == p or (not whole and (over or frac >= _POWERS.shape[0])):
                    s = UNREAD
                    break
                seen = True
                if whole:
                    big = big or over or total_i > _INT_MAX - m
                    total_i = 0 if big else total_i + m
                else:
                    total_f += m / _POWERS[frac] if m < _EXACT else _nearest(m, frac)
            if q == end:
                break
            sep = _separator(a, q, end) if multi else 0
            if sep == 0 or q + sep >= end:
                s = UNREAD
                break
            p = q + sep
        if s == VALUE and not seen:
            s = NULL
        elif s == VALUE and big:
            s = TOO_BIG
        ints[i] = total_i if s == VALUE else 0
        floats[i] = total_f if s == VALUE else 0.0
        state[i] = s


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def request(a: Any, lo: Any, hi: Any, dash: Any, cut: Any, split: Any, has_q: Any) -> None:
    """The request line at each span not ``dash`` split into method, target and protocol at its two
    spaces (three words, none empty), the target at its first ``?``. ``cut[:, i]``: the method's end,
    the target's start, the path's end, the query's start, the target's end and the protocol's start;
    all ``lo`` where it does not split (``split`` false). ``has_q``: a split target holds a ``?``."""
    for i in range(lo.shape[0]):
        p, end = lo[i], hi[i]
        s1, s2, third = -1, -1, False
        if not dash[i]:
            for q in range(p, end):
                if a[q] == 32:
                    if s1 < 0:
                        s1 = q
                    elif s2 < 0:
                        s2 = q
                    else:
                        third = True
                        break
        good = not dash[i] and s1 > p and s2 > s1 + 1 and s2 < end - 1 and not third
        question = -1
        if good:
            for q in range(s1 + 1, s2):
                if a[q] == 63:
                    question = q
                    break
        split[i] = good
        has_q[i] = question >= 0
        if good:
            cut[0, i] = s1
            cut[1, i] = s1 + 1
            cut[2, i] = question if question >= 0 else s2
            cut[3, i] = question + 1 if question >= 0 else s2
            cut[4, i] = s2
            cut[5, i] = s2 + 1
        else:
            for r in range(6):
                cut[r, i] = p


@intrinsic
def _copy(typingctx: Any, dst: Any, at: Any, src: Any, lo: Any, n: Any) -> Any:
    """``dst[at:at + n] = src[lo:lo + n]`` as one ``memcpy``: a loop over the bytes runs ~15 times
    slower (LLVM does not vectorise it). Checks nothing: the caller does."""
    sig = types.void(dst, at, src, lo, n)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> None:
        d = context.make_array(signature.args[0])(context, builder, args[0])
        s = context.make_array(signature.args[2])(context, builder, args[2])
        dst, src = builder.gep(d.data, [args[1]]), builder.gep(s.data, [args[3]])
        cgutils.raw_memcpy(builder, dst, src, args[4], 1)  # type: ignore[no-untyped-call]

    return sig, codegen


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def gather_strings(a: Any, lo: Any, hi: Any, fields: Any, valid: Any, take: Any, offsets: Any) -> Any:
    """Columns of strings: the spans of field ``fields[f]`` (a row of ``lo`` and ``hi``) of the lines
    ``take``, in that order, one after the other in one data buffer (returned); ``offsets[f * len(take)
    + r]`` is where row ``r`` of column ``f`` starts, and the last offset where the data ends. A span
    not ``valid[f]`` (null) holds nothing. Returns an empty buffer, the offsets unfinished, when the
    data would pass 2 GiB (int32 offsets)."""
    k, n = fields.shape[0], take.shape[0]
    size = 0
    for f in range(k):
        for r in range(n):
            i = take[r]
            offsets[f * n + r] = size
            if valid[f, i]:
                j = fields[f]
                # the copies below check no index: these are the bounds of the chunk
                if lo[j, i] < 0 or hi[j, i] < lo[j, i] or hi[j, i] > a.shape[0]:
                    raise IndexError("gather_strings: a span outside the chunk")
                size += hi[j, i] - lo[j, i]
            if size > _INT32_MAX:
                return np.empty(0, dtype=np.uint8)
    offsets[k * n] = size
    out = np.empty(size, dtype=np.uint8)
    w = 0
    for f in range(k):
        for r in range(n):
            i = take[r]
            if valid[f, i]:
                j = fields[f]
                p, length = lo[j, i], hi[j, i] - lo[j, i]
                if p < 0 or length < 0 or p + length > a.shape[0] or w + length > size:
                    raise IndexError("gather_strings: a span outside the chunk")
                _copy(out, w, a, p, length)  # type: ignore[call-arg]  # (typingctx is Numba's)
                w += length  # type: ignore[unreachable]  # (mypy reads _copy's type as Numba's)
    return out


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _is_null(
    a: Any, p: int, end: int, spell: Any, spell_lo: Any, spell_hi: Any, j: int, last: int, empty: bool
) -> bool:
    """Whether ``a[p:end]`` is ``-``, ``spell[spell_lo[j]:spell_hi[j]]`` for a ``j`` up to ``last``, or
    (with ``empty``) nothing."""
    n = end - p
    found = (n == 1 and a[p] == 45) or (empty and n == 0)
    while not found and j < last:
        s = spell_lo[j]
        if spell_hi[j] - s == n:
            found = True
            for q in range(n):
                if a[p + q] != spell[s + q]:
                    found = False
                    break
        j += 1
    return found


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def nulls_at(
    a: Any,
    spans: Any,
    fields: Any,
    spell: Any,
    spell_lo: Any,
    spell_hi: Any,
    first: Any,
    empty: Any,
    null: Any,
) -> None:
    """:func:`nulls` of several fields in one call: ``null[j, i]`` for field ``fields[j]``'s span of line
    ``i`` (``spans[fields[j], :, i]``), its spellings ``first[j]`` to ``first[j + 1]`` of ``spell_lo``
    and ``spell_hi``, ``empty[j]`` its own ``empty``."""
    for j in range(fields.shape[0]):
        lo, hi, out = spans[fields[j], 0], spans[fields[j], 1], null[j]
        s, last, e = first[j], first[j + 1], empty[j]
        for i in range(lo.shape[0]):
            out[i] = _is_null(a, lo[i], hi[i], spell, spell_lo, spell_hi, s, last, e)


# --- separated lines: W3C logs (pipeline/formats/compiled.py wraps these) --------------------------------


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def split_separated(a: Any, sep: int, starts: Any, ends: Any, lines: Any, fields: int, ok: Any) -> Any:
    """Which of the lines ``lines`` the byte ``sep`` splits into ``fields`` fields (``ok[r]``), and the
    spans of their fields (returned: fields, start/end, line split): field ``k`` of the ``j``-th line
    split is ``a[spans[k, 0, j]:spans[k, 1, j]]``.

    Each line's count of separators first (a loop that LLVM vectorises): the spans are allocated for
    the lines that hold the fields only, each of which holds at least ``fields - 1`` bytes, so a header
    of many fields over many short lines costs no more memory than the chunk's size."""
    taken = 0
    for r in range(lines.shape[0]):
        i = lines[r]
        count = 0
        start = np.uint64(starts[i])  # an unsigned index: LLVM vectorises the count
        for x in range(ends[i] - starts[i]):
            count += a[start + np.uint64(x)] == sep
        ok[r] = fields > 0 and count == fields - 1
        taken += ok[r]
    spans = np.empty((2, max(fields, 1), taken), dtype=np.int64)
    j = 0
    for r in range(lines.shape[0]):
        if not ok[r]:
            continue
        i = lines[r]
        p, end = starts[i], ends[i]
        k = 0
        spans[0, 0, j] = p
        for q in range(p, end):
            if a[q] == sep and k + 1 < fields:  # (the count said: fields - 1 of them)
                spans[1, k, j] = q
                k += 1
                spans[0, k, j] = q + 1
        spans[1, k, j] = end
        j += 1
    return spans


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def time_w3c(a: Any, dlo: Any, dhi: Any, tlo: Any, thi: Any, us: Any, days: Any, ok: Any) -> None:
    """``yyyy-mm-dd`` at the date spans and ``HH:MM:SS[.f]`` (one to six digits of fraction) at the time
    spans, read as UTC: ``parse_date_time`` of :mod:`pipeline.formats.w3c_values`; 0 where not one."""
    for i in range(dlo.shape[0]):
        d, t = dlo[i], tlo[i]
        size = thi[i] - t
        secs, micros, good = 0, 0, False
        if dhi[i] - d == 10 and size >= 8 and a[d + 4] == 45 and a[d + 7] == 45:
            good = a[t + 2] == 58 and a[t + 5] == 58 and (size == 8 or (10 <= size <= 15 and a[t + 8] == 46))
            for q in range(t + 9, thi[i] if good else t + 9):
                c = int(a[q]) - 48
                if c < 0 or c > 9:
                    good = False
                    break
                micros += c * _MICRO_PLACES[q - t - 9]
            year, month, day = _number(a, d, 4), _number(a, d + 5, 2), _number(a, d + 8, 2)
            hour, minute, sec = _number(a, t, 2), _number(a, t + 3, 2), _number(a, t + 6, 2)
            if good and min(year, month, day, hour, minute, sec) >= 0:
                secs, good = _utc_seconds(year, month, day, hour, minute, sec, 0, 0, 1)
            else:
                good = False
        us[i] = secs * 1_000_000 + (micros if good else 0)
        days[i] = secs // 86400
        ok[i] = good


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _hex_digit(c: int) -> int:
    """The value of the hex digit ``c`` (either case), -1 if it is not one."""
    if 48 <= c <= 57:
        return c - 48
    low = c | 0x20
    return low - 87 if 97 <= low <= 102 else -1


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def decode_percent(data: Any, offsets: Any, out: Any, out_offsets: Any) -> int:
    """The strings ``data[offsets[i]:offsets[i + 1]]`` into ``out`` one after the other (value ``i`` at
    ``out_offsets[i]``), each ``%XX`` (two hex digits within the value) as its byte. Returns the bytes
    written (at most those read)."""
    w = 0
    for i in range(offsets.shape[0] - 1):
        out_offsets[i] = w
        q, end = offsets[i], offsets[i + 1]
        while q < end:
            c = data[q]
            q += 1
            if c == 37 and q + 1 < end:
                high, low = _hex_digit(data[q]), _hex_digit(data[q + 1])
                if high >= 0 and low >= 0:
                    c = high * 16 + low
                    q += 2
            out[w] = c
            w += 1
    out_offsets[offsets.shape[0] - 1] = w
    return w


# the JSON lines' loops, loaded with these (compiled.loaded() names this module)
from pipeline.formats import kernels_json  # noqa: E402,F401
