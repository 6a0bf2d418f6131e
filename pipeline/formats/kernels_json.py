"""The compiled read of JSON lines for key maps of nested paths (:mod:`pipeline.formats.jsonl_nested`):
one pass over each line's bytes that checks it is strict JSON and finds the spans of the wanted paths'
values, and over the chunk, that Arrow's JSON reader would read it in one go.

Loaded with :mod:`pipeline.formats.kernels` (which imports this module), so :func:`pipeline.formats.
compiled.loaded` covers it. Its codes, shapes and hashes are declared in :mod:`pipeline.formats.
jsonl_nested`, which reads its results without Numba. Its loops read a line's bytes only below the
line's end (``ends[i]``, at most the chunk's length), and write at most one span per line and path into
arrays sized for them.

Why "in one go" matters: a key map's values are what Arrow's reader gives the whole chunk, and that
reader types each column by every line's value of it, stopping at a line where a key's value changes
type or an object repeats a key (the chunk is then read in parts). So the read gives up the chunk (a
code other than :data:`DONE`) where any line is not strict JSON, repeats a key, or gives a key another
kind of value (bool, number, string, object, list; null goes with all) than another line gives it; and
where a wanted value is one it does not read (an object or a list, a number with an exponent or beyond
18 digits, ``-0``). A wanted string with an escape is marked :data:`ESCAPED`, for the caller to decode. Lists
are typed by all their elements together, as Arrow does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from pipeline.formats.jsonl_nested import (
    BOOL,
    CONFLICT,
    DEEP,
    DONE,
    DUPLICATE,
    ESCAPED,
    FLOAT,
    FULL,
    INT,
    INVALID,
    ITEM,
    K_BOOL,
    K_FLOAT,
    K_LIST,
    K_NUMBER,
    K_OBJECT,
    K_STRING,
    LITERAL,
    NULL,
    OFFSET,
    PRIME,
    STRING,
    UNREAD,
)
from pipeline.formats.kernels import _CACHE

_MAX_DEPTH = 64
_MAX_INT_DIGITS = 18
_PROBES = 64  # a table this crowded is given up (FULL) rather than searched on
_PRIME, _OFFSET, _ITEM = np.uint64(PRIME), np.uint64(OFFSET), np.uint64(ITEM)  # typed for the loops


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _mix(h: Any, x: Any) -> Any:
    return ((h ^ x) * _PRIME) | np.uint64(1)  # never 0: 0 marks an empty slot


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _ws(a: Any, p: int, end: int) -> int:
    while p < end and a[p] == 32:  # a line of the read holds no tab or line end (jsonl._object_shaped)
        p += 1
    return p


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _at(a: Any, p: int, end: int) -> int:
    return a[p] if p < end else 0


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _hex(c: int) -> int:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _string(a: Any, p: int, end: int, key: bool) -> tuple[int, bool, Any]:
    """The string whose opening quote is at ``p``: the position after its closing quote (-1: invalid, or
    a ``\\u`` escape of a surrogate, which Arrow's reader may refuse), whether it holds an escape, and
    for a ``key``, the hash of its raw bytes."""
    q = p + 1
    esc = False
    h = _OFFSET
    while q < end:
        c = a[q]
        if c == 34:
            return q + 1, esc, h
        if key:
            h = (h ^ np.uint64(c)) * _PRIME
        if c == 92:
            esc = True
            n = _at(a, q + 1, end)
            if n == 117:
                v = 0
                for k in range(2, 6):
                    d = _hex(_at(a, q + k, end))
                    if d < 0:
                        return -1, esc, h
                    v = v * 16 + d
                if 0xD800 <= v <= 0xDFFF:
                    return -1, esc, h
                q += 6
                continue
            if n in (34, 92, 47, 98, 102, 110, 114, 116):
                q += 2
                continue
            return -1, esc, h
        if c < 32:
            return -1, esc, h
        q += 1
    return -1, esc, h


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _number(a: Any, p: int, end: int) -> tuple[int, int, bool, bool]:
    """The number at ``p``: the position after it (-1: not a JSON number), its int part's digits,
    whether it has a fraction (or is ``-0``) and whether it has an exponent."""
    q = p
    neg = 1 if a[q] == 45 else 0
    q += neg
    first = _at(a, q, end)
    if first == 48:
        q += 1
    elif 49 <= first <= 57:
        while 48 <= _at(a, q, end) <= 57:
            q += 1
    else:
        return -1, 0, False, False
    digits = q - p - neg
    fraction = neg == 1 and digits == 1 and first == 48
    if _at(a, q, end) == 46:
        q += 1
        if not 48 <= _at(a, q, end) <= 57:
            return -1, 0, False, False
        while 48 <= _at(a, q, end) <= 57:
            q += 1
        fraction = True
    exponent = False
    c = _at(a, q, end)
    if c in (101, 69):  # a tuple, never a set: Numba would build the set at every value
        q += 1
        c = _at(a, q, end)
        if c in (43, 45):
            q += 1
        if not 48 <= _at(a, q, end) <= 57:
            return -1, 0, False, False
        while 48 <= _at(a, q, end) <= 57:
            q += 1
        exponent = True
    return q, digits, fraction, exponent


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _word(a: Any, p: int, end: int, word: Any) -> int:
    for k in range(len(word)):
        if _at(a, p + k, end) != word[k]:
            return -1
    return p + len(word)


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _slot(table: Any, h: Any) -> Any:
    """The row of ``h`` in an open-addressing table (column 0 the hash, 0 where empty; a power of two
    rows), -1 where it is crowded."""
    mask = np.int64(table.shape[0] - 1)
    s = np.int64(h >> np.uint64(40)) & mask
    for _ in range(_PROBES):
        if table[s, 0] == 0 or table[s, 0] == h:
            return s
        s = (s + 1) & mask
    return -1


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _kind(table: Any, h: Any, bit: int, stamp: Any) -> int:
    """Add ``bit`` to the kinds of type path ``h`` (row: hash, kinds, the object that last had it as a
    key), and where ``stamp`` > 0, check it is the first time the object ``stamp`` has it: :data:`DONE`,
    or why the chunk is given up."""
    s = _slot(table, h)
    if s < 0:
        return FULL
    table[s, 0] = h
    if stamp > 0:
        if table[s, 2] == stamp:
            return DUPLICATE
        table[s, 2] = stamp
    k = table[s, 1] | np.uint64(bit)
    table[s, 1] = k
    if k & (k - np.uint64(1)) == 0 or k == np.uint64(K_NUMBER | K_FLOAT):  # one kind (or none)
        return DONE
    return CONFLICT


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _child(children: Any, node: int, step: Any) -> Any:
    """The trie child of ``node`` for a key of hash ``step`` (or :func:`_element`), -1 where none.
    ``children``: an open-addressing table (a power of two rows) of ``_mix(node, step)`` and the child."""
    h = _mix(np.uint64(node), step)
    mask = np.int64(children.shape[0] - 1)
    s = np.int64(h >> np.uint64(40)) & mask
    while children[s, 0] != 0:
        if children[s, 0] == h:
            return np.int64(children[s, 1])
        s = (s + 1) & mask
    return -1


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy", inline="always")
def _element(index: int) -> Any:
    """The step of a list's element ``index`` in the trie's table (:func:`_child`)."""
    return _mix(_ITEM, np.uint64(index))


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def json_paths(
    a: Any,
    starts: Any,
    ends: Any,
    lines: Any,
    children: Any,
    out: Any,
    spans: Any,
    shapes: Any,
    path_type: Any,
    table: Any,
) -> tuple[int, int]:
    """Read the ``lines`` (object-shaped, within the chunk ``a``) as JSON: for each wanted path (the
    trie ``children`` (:func:`_child`; root 0) and ``out``, the path each node ends), its value's span on
    each line (``spans``: path, start/end, line; a string's without its quotes) and shape, and its type
    path's hash (``path_type``); each type path's kinds in ``table`` (:func:`_kind`). A key's hash is
    FNV-1a of its raw bytes (:func:`_string`). Returns :data:`DONE` or why the chunk is given up, and
    the line's position in ``lines`` where it was."""
    true, false, null = (
        np.array([116, 114, 117, 101]),
        np.array([102, 97, 108, 115, 101]),
        np.array([110, 117, 108, 108]),
    )
    kind_of = np.zeros(_MAX_DEPTH, dtype=np.int8)  # 0 object, 1 list
    node_of = np.zeros(_MAX_DEPTH, dtype=np.int64)
    th_of = np.zeros(_MAX_DEPTH, dtype=np.uint64)
    id_of = np.zeros(_MAX_DEPTH, dtype=np.uint64)  # an object's number in the chunk (for repeated keys)
    count_of = np.zeros(_MAX_DEPTH, dtype=np.int64)
    objects = np.uint64(0)
    for li in range(lines.shape[0]):
        i = lines[li]
        end = ends[i]
        p = _ws(a, starts[i], end)
        if _at(a, p, end) != 123:
            return INVALID, li
        d = 0
        objects += np.uint64(1)
        kind_of[0], node_of[0], th_of[0], id_of[0], count_of[0] = 0, 0, _OFFSET, objects, 0
        p = _ws(a, p + 1, end)
        closed = _at(a, p, end) == 125
        if closed:
            d = -1
            p += 1
        while not closed:
            # a member's key, or a list's element: the value's trie node and hashes
            if kind_of[d] == 0:
                if _at(a, p, end) != 34:
                    return INVALID, li
                q, esc, kh = _string(a, p, end, True)
                if q < 0:
                    return INVALID, li
                if esc:  # Arrow's reader names a key by its decoded text: two spellings, one key
                    return UNREAD, li
                vn = -1
                if node_of[d] >= 0:
                    vn = _child(children, node_of[d], kh)
                vth, stamp = _mix(th_of[d], kh), id_of[d]
                p = _ws(a, q, end)
                if _at(a, p, end) != 58:
                    return INVALID, li
                p = _ws(a, p + 1, end)
                count_of[d] += 1
                element = False
            else:
                vn = -1
                if node_of[d] >= 0:
                    vn = _child(children, node_of[d], _element(count_of[d]))
                vth, stamp = _mix(th_of[d], _ITEM), np.uint64(0)
                element = count_of[d] == 0
                count_of[d] += 1
            wanted = out[vn] if vn >= 0 else -1
            if wanted == LITERAL:
                return UNREAD, li
            c = _at(a, p, end)
            if c in (123, 91):
                if wanted >= 0:
                    return UNREAD, li
                code = _kind(table, vth, K_OBJECT if c == 123 else K_LIST, stamp)
                if code != DONE:
                    return code, li
                if d + 1 >= _MAX_DEPTH:
                    return DEEP, li
                d += 1
                if c == 123:
                    objects += np.uint64(1)
                kind_of[d], node_of[d], th_of[d], id_of[d], count_of[d] = (
                    1 if c == 91 else 0,
                    vn,
                    vth,
                    objects,
                    0,
                )
                p = _ws(a, p + 1, end)
                if _at(a, p, end) != (93 if c == 91 else 125):
                    continue  # the container's first member or element
                d -= 1  # an empty one
                p += 1
            else:
                lo, hi, shape, bit = p, p, NULL, 0
                if c == 34:
                    q, esc, _ = _string(a, p, end, False)
                    if q < 0:
                        return INVALID, li
                    lo, hi, shape, bit = p + 1, q - 1, ESCAPED if esc else STRING, K_STRING
                elif c == 45 or 48 <= c <= 57:
                    q, digits, fraction, exponent = _number(a, p, end)
                    if q < 0:
                        return INVALID, li
                    # -0: Arrow's reader makes it 0 in a column of ints, which its text does not say
                    minus_zero = c == 45 and q == p + 2 and a[p + 1] == 48
                    if wanted >= 0 and (exponent or digits > _MAX_INT_DIGITS or minus_zero):
                        return UNREAD, li
                    plain = not fraction and not exponent and digits <= _MAX_INT_DIGITS
                    hi, shape, bit = q, INT if plain else FLOAT, K_NUMBER if plain else K_FLOAT
                elif c == 116:
                    q = _word(a, p, end, true)
                    hi, shape, bit = q, BOOL, K_BOOL
                elif c == 102:
                    q = _word(a, p, end, false)
                    hi, shape, bit = q, BOOL, K_BOOL
                elif c == 110:
                    q = _word(a, p, end, null)
                    hi = q
                    if element:  # Arrow's reader (pyarrow 26) makes an invalid array of [null, ...]
                        return UNREAD, li
                else:
                    return INVALID, li
                if q < 0:
                    return INVALID, li
                code = _kind(table, vth, bit, stamp)
                if code != DONE:
                    return code, li
                if wanted >= 0:
                    spans[wanted, 0, li], spans[wanted, 1, li] = lo, hi
                    shapes[wanted, li] = shape
                    path_type[wanted] = vth
                p = q
            # after a value: the next member or element, or the end of containers
            while True:
                if d < 0:
                    break
                p = _ws(a, p, end)
                c = _at(a, p, end)
                if c == 44:
                    p = _ws(a, p + 1, end)
                    break
                if c != (93 if kind_of[d] else 125):
                    return INVALID, li
                d -= 1
                p += 1
            if d < 0:
                closed = True
        if _ws(a, p, end) != end:
            return INVALID, li
    return DONE, lines.shape[0]


@njit(cache=_CACHE, nogil=True, boundscheck=False, error_model="numpy")
def parts(a: Any, lo: Any, hi: Any, has: Any, part: int, out_lo: Any, out_hi: Any, out_has: Any) -> None:
    """A part of each value ``a[lo:hi]`` that ``has`` one (:class:`pipeline.formats.jsonl.Entry`): 0
    the path (before the first ``?``), 1 the query (after it; none without one), 2 the host and 3 the
    port of an address ``host:port`` or ``[host]:port`` (a bare value is its own host, and its own
    port where it is all digits), as ``jsonl._part``'s patterns read them."""
    for i in range(lo.shape[0]):
        s, e = lo[i], hi[i]
        out_lo[i], out_hi[i], out_has[i] = s, e, has[i]
        if not has[i]:
            continue
        if part <= 1:
            q = s
            while q < e and a[q] != 63:
                q += 1
            if part == 0:
                out_hi[i] = q
            elif q < e:
                out_lo[i] = q + 1
            else:
                out_has[i] = False
            continue
        # the host and the port: [host]:digits, or host:digits where the host holds no ":", "[" or "]"
        host_lo, host_hi, colon = s, s, -1
        if e > s and a[s] == 91:
            q = s + 1
            while q < e and a[q] != 93:
                q += 1
            if q + 1 < e and a[q + 1] == 58:
                host_lo, host_hi, colon = s + 1, q, q + 1
        else:
            q = s
            while q < e and a[q] != 58 and a[q] != 91 and a[q] != 93:
                q += 1
            if q < e and a[q] == 58:
                host_lo, host_hi, colon = s, q, q
        digits = colon >= 0 and colon + 1 < e
        for r in range(colon + 1, e if digits else 0):
            if not 48 <= a[r] <= 57:
                digits = False
                break
        if part == 2:
            if digits:
                out_lo[i], out_hi[i] = host_lo, host_hi
            continue
        alone = e > s
        for r in range(s, e):
            if not 48 <= a[r] <= 57:
                alone = False
                break
        if alone:
            continue
        if digits:
            out_lo[i] = colon + 1
        else:
            out_has[i] = False
