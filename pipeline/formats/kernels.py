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

import os
from typing import Any

from numba import njit

from pipeline.formats.compiled import LINE_END, OK, OTHER, PLAIN, STOP, TRIED

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
                good = c == LINE_END if to_end[k] else c == STOP
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
            nl, special = _line_end(a, s)
            e = nl
            if e > s and a[e - 1] == 13:
                e -= 1
                special = _special_between(a, s, e)
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
