"""Incremental runs: remember what was read of each input's *content*, so a re-run reads only what is new.

Identity
    An input is identified by what it holds, not by its name, so that logrotate renaming, compressing or
    copying a file does not make it look new. Its identity is the SHA-256 of its first ``fp_len``
    decompressed bytes, where ``fp_len`` is ``FINGERPRINT_BYTES`` (64 KiB) or the whole content when it
    is shorter. Decompressed, because ``a.log.1`` and the ``a.log.2.gz`` logrotate makes of it hold the
    same lines but not the same bytes on disk. Files whose first 64 KiB (or whole content, when
    shorter) are equal *start* alike: for timestamped access logs only copies do. Whether they hold
    the same lines past that is checked (see "Shared starts"), never assumed.

State (``version`` 2)
    One entry per content: ``fp_len``, ``fingerprint``, ``anchor`` (the first 16 hex digits of the
    SHA-256 of the first ``min(fp_len, ANCHOR_BYTES)`` bytes: the lookup key), ``offset`` (decompressed
    bytes consumed, up to the end of the last whole line taken, or of a cut last line taken because
    its file was no longer live), ``lines`` (how many lines those held), ``mark`` (the first 16 hex
    digits of the SHA-256 of the ``MARK_BYTES`` (4 KiB) before ``offset``, when recorded from a plain
    local file; "" otherwise, and in states written before it existed), ``path``, ``size`` and
    ``mtime_ns`` (the file it was last read or verified from, its size on disk and modification time as
    seen *before* it was read; ``size`` -1 means "not verified"), ``etag`` (a remote object's ETag as
    listed, "" for local files) and ``last_seen`` (UTC date an input last matched it). A remote input's
    ``path`` is its URL (credentials redacted: ``pipeline.inputs.remote``); its size, mtime and ETag come from
    the store's listing, so ``unchanged`` needs no read past the head.

Matching
    Each input's first ``FINGERPRINT_BYTES`` are decompressed (never more: a rotated ``.gz`` is not
    decompressed whole just to find nothing new). Entries are indexed by ``(min(fp_len, ANCHOR_BYTES),
    anchor)``, so an input costs one hash per distinct anchor length (``ANCHOR_BYTES``, plus the length
    of each content ever seen that was shorter than that) and one full check per candidate, however
    many entries there are. An entry matches when the input holds at least ``fp_len`` bytes and its
    first ``fp_len`` hash to the fingerprint (an entry with ``fp_len`` past the head, see "Shared
    starts", costs reading that far). A content first seen short still matches once it has grown, and
    is then re-recorded over the longer head. A file shorter than an entry's ``fp_len`` (a log just
    truncated by ``copytruncate`` and written again) cannot match it, and is new content.

    Of the entries an input matches, it *continues* the one that consumed most that it holds: its
    size and mtime on disk (and ETag) are those recorded, or its decompressed size reaches the offset
    and its bytes before the offset hash to the ``mark``. The decompressed size of a compressed file
    whose head does not end is measured (decompressed once; a rotated ``.gz`` is then recorded with its
    size and mtime, and found ``unchanged`` by them afterwards).

Shared starts
    Inputs that may hold the same lines are planned together: those matching one entry, and those one
    of whose heads starts with the other's (equal 64 KiB heads, or a short file's whole content). In
    such a group each entry is continued by one input (the one at the entry's path, else a plain
    one, else the biggest); every other input, biggest first, is compared byte for byte with those
    read (or already read to their end), and

    * if all of it is the start of one of them (an identical copy, ``a.log.1`` and the ``a.log.1.gz``
      gzip is still writing, a copy taken before the original grew) it is a ``duplicate``: its lines
      are read once, from the other. A shorter copy is recorded as its own content (identity over all
      of it, consumed to its end), so that it is not new once it is alone or written to;
    * else it is ``diverged``: it shares its start with another but goes on differently or further,
      and is read from the first line it does not share (line numbers continuing), then recorded as its
      own content under an identity over one byte past what it shares, so that it is told from the
      other in later runs. The lines both hold are read once.

    A copy that goes on differently within its first 64 KiB is another content (its head differs): it
    is read whole, and the lines it shares with the original are in the output twice. Comparing costs
    reading both inputs (decompressing a ``.gz``), at each run that finds them together, as long as
    neither continues its own entry: copies cost a read, not a hash.

Modes (``Plan.mode``, in the manifest's ``inputs[].mode``)
    * ``new``: no entry matches: read whole.
    * ``unchanged``: an entry is continued and nothing follows its offset: either the file's size and
      mtime on disk (and a remote object's ETag) are those recorded (checked without reading beyond the
      head; a renamed plain file with a cut last line left is not), or its decompressed size equals
      the offset. Skipped.
    * ``grown``: same path as last time, more content: read from the entry's offset, line numbers
      continuing from its ``lines + 1``.
    * ``rotated``: the content was last seen under another path (``a.log`` now ``a.log.1`` or
      ``a.log-20261201``, or compressed to ``a.log.2.gz``): read from the entry's offset like ``grown``.
    * ``diverged`` and ``duplicate``: see "Shared starts". A ``duplicate`` is also an input shorter
      than what was read of the content it matches, when no input of the run holds that content to
      compare with (a copy taken before the original grew): skipped with a warning, as all of it was
      read before.

    An entry's path holding less than its offset (a file truncated and written again, a hand-edited
    state), or a file whose bytes before the offset are not the mark's (another content with the same
    head), is read from its start as ``new`` content (or, when another input of the run holds what
    was read, ``diverged`` from the first line it does not share), with a warning: never skipped.

Each logrotate mode is then read exactly once: a renamed file continues from where its content stopped
(lines appended just before the rotation are read), a compressed one is found ``unchanged`` (its size
measured once), a ``copytruncate`` copy continues its content while the truncated original is new
content, ``dateext`` names are just other paths, and a deleted file's entry stays.

Cut last lines
    A last line without its newline is left for the next run while its file may be live, since a writer
    may be mid-line (``Plan.hold_tail``): a plain file read as ``new``, ``grown`` or ``diverged``. Once
    the input is no longer live, it is taken as a line (a row or a reject): renamed (``rotated``) or
    compressed. When a longer input holds the whole line, it is taken from there instead, and the cut
    file's entry is advanced past it. If a run took a cut last line and more was written to that
    content later (a writer that still had the renamed file open), the reader drops the rest of that
    line up to its newline (counted in no line: its start was the line), so no line is taken twice.
    A plain file first seen under a name it keeps (``dateext`` without ``compress``) holds its cut
    last line until it is renamed or compressed.

Entries are never pruned by default: a file absent from one run's inputs (deleted after rotation, or a
glob that missed it this time) must not be read again if it comes back, and an entry is one small JSON
object. ``last_seen`` is kept so that a later, explicit prune can drop entries not seen for a long time.

The state is only read here; the runner writes what :func:`updated` returns into the staging area, so
it changes only when a run commits, together with the rows. The size and mtime recorded are those seen
*before* the input was read, so lines appended while a run reads it make the next run look again.
``--full-refresh`` ignores the state.

Planned, then opened: an input is planned from its head, then opened again by the reader. The reader
checks that the file it opened starts with the head planned (``Plan.check``) before it skips anything;
a file replaced in between (logrotate renaming it and creating a new one) is not read, and is recorded
as failed (exit 3): its entry stays as it was, and the next run plans both files anew, losing nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import os
import stat
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
from isal import isal_zlib

from pipeline.inputs import remote
from pipeline.stages.read import Source

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 64 * 1024
ANCHOR_BYTES = 1024
_ANCHOR_HEX = 16
MARK_BYTES = 4096
_VERSION = 2

# Modes the runner does not read.
SKIPPED = frozenset({"unchanged", "duplicate"})

# What decompressing a damaged or half-written head can raise (ISA-L's stubs declare its error an
# instance, not a class; zstd errors come from Arrow as ValueError subclasses).
_DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    ValueError,
    lzma.LZMAError,
    cast("type[Exception]", isal_zlib.error),
)


@dataclass(frozen=True)
class Identity:
    """The content identity of a file: SHA-256 of its first ``fp_len`` decompressed bytes."""

    fp_len: int
    fingerprint: str
    anchor: str

    @property
    def key(self) -> str:
        """Key of the state entry of this content."""
        return f"{self.fp_len}:{self.fingerprint}"


@dataclass
class FileState:
    """What earlier runs took from one content, under whatever name it has now."""

    fp_len: int
    fingerprint: str  # SHA-256 of the first fp_len decompressed bytes
    anchor: str  # lookup key: see the module docstring
    offset: int  # decompressed bytes consumed
    lines: int  # lines they held
    path: str  # where it was last read or verified
    size: int  # raw size of that file before it was read; -1: not verified
    mtime_ns: int
    last_seen: str  # UTC date an input last matched this entry
    etag: str = ""  # remote inputs: the object's ETag as listed before it was read ("": none, or local)
    mark: str = ""  # SHA-256 (16 hex) of the MARK_BYTES before offset, when read from a plain file

    @property
    def key(self) -> str:
        """Key of this entry in the dict :func:`load_state` returns."""
        return f"{self.fp_len}:{self.fingerprint}"


@dataclass
class Plan:
    """What this run does with one input file."""

    path: str
    mode: str  # new, unchanged, grown, rotated, duplicate
    start_offset: int = 0
    first_line: int = 1
    key: str | None = None  # the state entry this input continues (None: new content)
    identity: Identity | None = None  # of the file as planned (None: its head could not be read)
    size: int = -1  # raw size and mtime before anything was read (recorded if the run commits)
    mtime_ns: int = -1
    etag: str = ""  # remote inputs: the ETag listed before anything was read
    check: tuple[int, str] | None = None  # (n, SHA-256) of the first n bytes planned: the reader's check
    hold_tail: bool = True  # leave an unterminated last line for the next run: the file may be live
    plain: bool = True  # not compressed
    covered: int = 0  # its size, when its cut last line is read whole from a longer copy (diverged)

    @property
    def reads(self) -> bool:
        """Whether the runner reads this input (``unchanged`` and ``duplicate`` are skipped)."""
        return self.mode not in SKIPPED


# ---------------------------------------------------------------------------------------------- heads


@dataclass
class Head:
    """The first decompressed bytes of a file."""

    data: bytes
    whole: bool  # the content ends within ``data`` (cleanly): ``len(data)`` is its decompressed size
    plain: bool  # not compressed: decompressed and raw bytes are the same


def read_head(path: str, length: int | None = None) -> Head:
    """The first ``length`` (default ``FINGERPRINT_BYTES``) decompressed bytes of ``path``; opening
    errors (``OSError``) are raised.

    A damaged or half-written compressed file gives the bytes decoded before the damage, with
    ``whole`` False: its size is then unknown.
    """
    length = FINGERPRINT_BYTES if length is None else length
    source = Source(path, block_bytes=length)  # remote: one request of the head's size
    plain = source.compression == "none"
    parts: list[bytes] = []
    got = 0
    try:
        while got < length:
            block = source.read(length - got)
            if not block:
                return Head(b"".join(parts), True, plain)
            parts.append(block)
            got += len(block)
    except _DECODE_ERRORS as exc:
        log.debug("incremental: head of %s: %s", path, exc)
        return Head(b"".join(parts), False, plain)
    finally:
        source.close()
    return Head(b"".join(parts), False, plain)


def identity_of(head: bytes | memoryview) -> Identity:
    """The identity of a content whose first bytes are ``head`` (all of them)."""
    return Identity(len(head), hashlib.sha256(head).hexdigest(), _anchor(head))


def _anchor(head: bytes | memoryview) -> str:
    return hashlib.sha256(head[:ANCHOR_BYTES]).hexdigest()[:_ANCHOR_HEX]


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


# ---------------------------------------------------------------------------------------------- load


def load_state(path: Path, strict: bool = False) -> dict[str, FileState]:
    """The state kept in the file ``path``, keyed by :attr:`FileState.key`; empty when there is none.

    An unreadable one (or one of another version) raises ValueError with ``strict``, else it is
    ignored with a warning, and every input is then read whole.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = data.get("version")
        if version == _VERSION:
            entries = [FileState(**entry) for entry in data["files"]]
            # an entry that consumed nothing, or hashes no byte, would match anything: never kept
            return {e.key: e for e in entries if e.offset > 0 and e.fp_len > 0}
        raise ValueError(f"unknown state version {version!r}")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        if strict:
            raise ValueError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from exc
        log.warning("incremental: ignoring unreadable %s (%s); processing every input", path, exc)
        return {}


# ---------------------------------------------------------------------------------------------- plan


class _Index:
    """The state's entries, looked up by anchor."""

    def __init__(self, state: dict[str, FileState]):
        self.state = state
        self.by_anchor: dict[tuple[int, str], list[str]] = defaultdict(list)
        for key, e in state.items():
            self.by_anchor[(min(e.fp_len, ANCHOR_BYTES), e.anchor)].append(key)
        self.anchor_lens = sorted({n for n, _ in self.by_anchor})

    def match(self, head: Head, longer: Callable[[set[int]], dict[int, str]]) -> list[str]:
        """The entries whose fingerprint ``head`` matches, the one that consumed most first.
        ``longer(lengths)`` gives the SHA-256 of the input's first ``n`` decompressed bytes for each
        ``n`` in ``lengths``, for entries fingerprinted past the head (see "Shared starts")."""
        view = memoryview(head.data)
        found: set[str] = set()
        past: list[str] = []  # candidates fingerprinted past the head
        for n in self.anchor_lens:
            if n > len(view):
                break
            for key in self.by_anchor.get((n, _anchor(view[:n])), ()):
                e = self.state[key]
                if e.fp_len > len(view):
                    if not head.whole:
                        past.append(key)
                elif hashlib.sha256(view[: e.fp_len]).hexdigest() == e.fingerprint:
                    found.add(key)
        if past:
            digests = longer({self.state[k].fp_len for k in past})
            found.update(k for k in past if digests.get(self.state[k].fp_len) == self.state[k].fingerprint)
        return sorted(found, key=lambda k: (-self.state[k].offset, -self.state[k].fp_len, k))


@dataclass
class _Seen:
    """What :func:`plan` saw of one input."""

    path: str
    abspath: str
    size: int = -1
    mtime_ns: int = -1
    etag: str = ""
    plain: bool = True
    known_size: int | None = None  # decompressed size, when known without reading past the head
    identity: Identity | None = None
    keys: list[str] = field(default_factory=list)  # the state entries it matches, most consumed first
    key: str | None = None  # the one it continues (if able), or the first
    able: bool = False  # holds what was read of ``key``'s content: continues it
    marked_off: bool = False  # as long, but its bytes before the offset are not the content's
    measured: int | None = None  # decompressed size, when known_size is not
    head: bytes = b""  # its first decompressed bytes, while plan() groups the inputs


def _where(path: str) -> str:
    """Where an input is, as recorded in the state: the absolute path, or a remote input's display URL."""
    return path if remote.is_url(path) else os.path.abspath(path)


def _look(path: str, index: _Index) -> _Seen:
    seen = _Seen(path, _where(path))
    try:
        if remote.is_url(path):
            # an object's identity on the store: size, mtime and ETag as listed (no request here)
            seen.size, seen.mtime_ns, seen.etag = remote.stat(path)
        else:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                return seen  # a FIFO would block; the reader reports what it is
            seen.size, seen.mtime_ns = st.st_size, st.st_mtime_ns
        head = read_head(path)
        seen.plain = head.plain
        if head.plain:
            seen.known_size = seen.size if seen.size >= 0 else (len(head.data) if head.whole else None)
        else:
            seen.known_size = len(head.data) if head.whole else None
        if head.data:
            seen.identity = identity_of(head.data)
            seen.head = head.data
            seen.keys = index.match(head, lambda lengths: _prefix_digests(path, lengths))
    except OSError as exc:
        log.debug("incremental: cannot look at %s (%s); the reader reports it", path, exc)
    return seen


def plan(files: list[str], state: dict[str, FileState]) -> list[Plan]:
    """Decide, for each input, whether to skip it, continue its content, or read it whole."""
    index = _Index(state)
    seen = [_look(path, index) for path in files]
    plans = [
        Plan(
            s.path,
            "new",
            identity=s.identity,
            size=s.size,
            mtime_ns=s.mtime_ns,
            etag=s.etag,
            check=(s.identity.fp_len, s.identity.fingerprint) if s.identity is not None else None,
            hold_tail=s.plain,
            plain=s.plain,
        )
        for s in seen
    ]
    for s in seen:
        _choose(s, state)
    for members in _groups(seen):
        _Group(seen, state, plans, members).plan()
    counts = Counter(p.mode for p in plans)
    log.info("incremental: %s", ", ".join(f"{n} {mode}" for mode, n in sorted(counts.items())) or "no input")
    return plans


def _groups(seen: list[_Seen]) -> list[list[int]]:
    """The inputs that may share a start: those matching one entry, and those one of whose heads
    starts with the other (equal 64 KiB heads, or a short file's whole content)."""
    parent = list(range(len(seen)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    first: dict[str, int] = {}
    for i, s in enumerate(seen):
        if s.key is not None:
            union(i, first.setdefault(s.key, i))
    # sorted, a head that starts another comes before it, and every head between them starts with it
    chain: list[int] = []
    for i in sorted((i for i, s in enumerate(seen) if s.head), key=lambda i: seen[i].head):
        while chain and not seen[i].head.startswith(seen[chain[-1]].head):
            chain.pop()
        if chain:
            union(i, chain[-1])
        chain.append(i)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(seen):
        if s.identity is not None:
            groups[find(i)].append(i)
        s.head = b""  # no longer needed: 64 KiB per input
    return list(groups.values())


class _Group:
    """Plans the inputs of one group: each continues its entry, is a prefix of what is read (a copy:
    ``duplicate``), or continues its own content from the first line it does not share (``diverged``)."""

    def __init__(self, seen: list[_Seen], state: dict[str, FileState], plans: list[Plan], members: list[int]):
        self.seen, self.state, self.plans, self.members = seen, state, plans, members
        self.readings: list[int] = []  # inputs read (or read to their end before): others compare with them

    def size(self, i: int) -> int:
        """Decompressed size of input ``i``: known from its head or listing, else measured (decompressed)."""
        return _size(self.seen[i])

    def plan(self) -> None:
        done: set[int] = set()
        keys = {k for i in self.members if (k := self.seen[i].key) is not None}
        # each entry is continued by one input: the one at its path, else a plain one, else the biggest
        for key in sorted(keys, key=lambda k: (-self.state[k].offset, k)):
            entry = self.state[key]
            able = [i for i in self.members if self.seen[i].key == key and self.seen[i].able]
            if able:
                best = max(able, key=lambda i: _rank(self.seen[i], entry))
                self._continue(best, entry)
                done.add(best)
        rest = [i for i in self.members if i not in done]
        if len(self.members) > 1:
            rest.sort(key=lambda i: (-self.size(i), not self.seen[i].plain, self.seen[i].path))
        for i in rest:
            self._other(i)

    def _continue(self, i: int, entry: FileState) -> None:
        s, p = self.seen[i], self.plans[i]
        p.key, p.start_offset, p.first_line = s.key, entry.offset, entry.lines + 1
        unchanged = s.size >= 0 and (s.size, s.mtime_ns, s.etag) == (entry.size, entry.mtime_ns, entry.etag)
        if unchanged and s.plain and s.size > entry.offset and s.abspath != entry.path:
            unchanged = False  # renamed with a cut last line left for later: taken now
        if unchanged or (s.measured if s.known_size is None else s.known_size) == entry.offset:
            p.mode = "unchanged"
        elif s.abspath == entry.path:
            p.mode = "grown"
        else:
            # renamed or compressed: no longer the live file, its last line is complete as it is
            p.mode, p.hold_tail = "rotated", False
        if not s.plain:
            p.hold_tail = False  # a compressed file is not written to (gzip >> aside): not live
        self.readings.append(i)

    def _other(self, i: int) -> None:
        """Input ``i`` continues no entry of this group: compare it with what is read."""
        s, p = self.seen[i], self.plans[i]
        entry = self.state.get(s.key) if s.key is not None else None
        p.key = s.key
        best, with_ = self._closest_read(i)
        size = self.size(i) if self.readings else -1
        if best is not None and best[0] >= size:
            self._read_through(i, best, with_, size)
            return
        if best is not None:
            self._diverged(i, best, with_, size)
        elif entry is not None and not self._shorter_than_read(i, entry):
            return  # a copy of what was read: skipped
        if not s.plain:
            p.hold_tail = False
        self.readings.append(i)

    def _closest_read(self, i: int) -> tuple[tuple[int, int, int] | None, int]:
        """Of the inputs read in this group, the one ``i`` shares most bytes with: (shared bytes, the
        line start before them, lines), and its index; (None, -1) when none is read."""
        best: tuple[int, int, int] | None = None
        with_ = -1
        for r in self.readings:
            shared = _shared(self.seen[i].path, self.seen[r].path)
            if best is None or shared[0] > best[0]:
                best, with_ = shared, r
        return best, with_

    def _read_through(self, i: int, best: tuple[int, int, int], with_: int, size: int) -> None:
        """Input ``i`` holds the same content as input ``with_``, or the start of it: read once."""
        s, p = self.seen[i], self.plans[i]
        log.warning(
            "incremental: %s holds the same content as %s, or the start of it; reading it once",
            s.path,
            self.seen[with_].path,
        )
        p.mode = "duplicate"
        if size < self.size(with_):
            # a shorter copy: remembered as its own content, all read through the other, so that
            # once alone (the other deleted) and written to, it is not new (its last line, cut
            # short, was taken with the other's: whatever completes it is dropped)
            p.key, p.identity = None, _distinct_identity(s.path, size)
            p.start_offset, p.first_line = size, best[2] + 1 + (size > best[1])

    def _diverged(self, i: int, best: tuple[int, int, int], with_: int, size: int) -> None:
        """Input ``i`` starts as input ``with_`` but goes on differently: read from where they part."""
        s, p = self.seen[i], self.plans[i]
        if best[0] >= self.size(with_):
            # the other's cut last line is read whole from here: taken, not left or cut there
            self.plans[with_].hold_tail = True
            self.plans[with_].covered = self.size(with_)
        log.warning(
            "incremental: %s starts with the first %d bytes of %s but goes on differently: read from"
            " its line %d",
            s.path,
            best[1],
            self.seen[with_].path,
            best[2] + 1,
        )
        p.mode, p.key, p.start_offset, p.first_line = "diverged", None, best[1], best[2] + 1
        p.identity = _distinct_identity(s.path, max(best[0] + 1, min(FINGERPRINT_BYTES, size)))

    def _shorter_than_read(self, i: int, entry: FileState) -> bool:
        """Input ``i`` matches ``entry``'s start but not all that was read of it: whether it is read
        (another content, or the file replaced at its path) rather than skipped as a copy."""
        s, p = self.seen[i], self.plans[i]
        if s.marked_off:
            log.warning(
                "incremental: %s starts as a content already read (up to %s) but does not hold what was"
                " read of it: another content; read from its start",
                s.path,
                entry.path,
            )
            p.mode, p.key = "new", None
            p.identity = _distinct_identity(s.path, max(entry.offset, min(FINGERPRINT_BYTES, self.size(i))))
            return True
        if s.abspath == entry.path:
            log.warning(
                "incremental: %s is shorter than what was already read of it (%d bytes): replaced; read"
                " from its start",
                s.path,
                entry.offset,
            )
            p.mode = "new"  # its entry is replaced by this content's when the run commits
            return True
        log.warning(
            "incremental: %s is shorter than what was already read of its content (%d bytes, last"
            " from %s): skipped as a copy",
            s.path,
            entry.offset,
            entry.path,
        )
        p.mode = "duplicate"
        return False


def _choose(s: _Seen, state: dict[str, FileState]) -> None:
    """The entry ``s`` continues: of those it matches, the one that consumed most that it holds."""
    for key in s.keys:
        able, marked_off = _can_continue(s, state[key])
        if able or key == s.keys[-1]:
            s.key, s.able, s.marked_off = key, able, marked_off
            return


def _can_continue(s: _Seen, entry: FileState) -> tuple[bool, bool]:
    """Whether ``s`` holds what was read of ``entry``'s content; whether it failed only on the mark."""
    if s.size >= 0 and (s.size, s.mtime_ns, s.etag) == (entry.size, entry.mtime_ns, entry.etag):
        return True, False  # unchanged since it was read: it holds at least what was taken
    if s.known_size is None and remote.is_url(s.path):
        return True, False  # not downloaded twice: the reader finds a shorter object (input failed)
    mark = None
    if s.known_size is None and s.measured is None and entry.mark and not remote.is_url(s.path):
        s.measured, mark = _scan(s.path, entry.offset)  # one decompression for both
    if _size(s) < entry.offset:
        return False, False
    if (
        entry.mark
        and not remote.is_url(s.path)
        and (mark or _mark(s.path, entry.offset, s.plain)) != entry.mark
    ):
        # same head, but not what was read before the offset: another content (a copy that went on
        # differently), whose lines before the offset were never read
        return False, True
    return True, False


def _size(s: _Seen) -> int:
    """Decompressed size of ``s``: known from its head or listing, else measured (decompressed once)."""
    if s.known_size is not None:
        return s.known_size
    if s.measured is None:
        s.measured = _measure(s.path)
    return s.measured


def _rank(s: _Seen, entry: FileState) -> tuple[bool, bool, int]:
    """Which of several inputs continuing one entry to read: the path it was read from, then a plain
    file (complete; a ``.gz`` may be half-written), then the biggest."""
    return (s.abspath == entry.path, s.plain, s.size)


def _blocks_of(path: str, size: int = 1 << 20) -> Iterator[bytes]:
    """The decompressed content of ``path`` in blocks of ``size`` bytes (the last may be shorter),
    up to its end or to damage (a half-written ``.gz``: what it holds so far)."""
    source = Source(path, block_bytes=size)
    try:
        while True:
            parts: list[bytes] = []
            got = 0
            while got < size:
                try:
                    part = source.read(size - got)
                except _DECODE_ERRORS as exc:
                    log.debug("incremental: %s ends in damage: %s", path, exc)
                    part = b""
                if not part:
                    break
                parts.append(part)
                got += len(part)
            if parts:
                yield b"".join(parts)
            if got < size:
                return
    finally:
        source.close()


def _measure(path: str) -> int:
    """The decompressed size of ``path`` (decompressing it): 0 when it cannot be opened."""
    try:
        return sum(len(b) for b in _blocks_of(path))
    except OSError as exc:
        log.debug("incremental: cannot measure %s (%s); the reader reports it", path, exc)
        return 0


def _shared(a: str, b: str) -> tuple[int, int, int]:
    """How many first decompressed bytes ``a`` and ``b`` share; where the last line of ``a`` ending
    within them ends; how many lines end before that."""
    shared = start = lines = 0
    try:
        for x, y in zip(_blocks_of(a), _blocks_of(b), strict=False):
            n = min(len(x), len(y))
            same = n
            if x[:n] != y[:n]:
                diff = np.frombuffer(x, np.uint8, n) != np.frombuffer(y, np.uint8, n)
                same = int(np.argmax(diff))
            cut = x.rfind(b"\n", 0, same)
            if cut >= 0:
                start = shared + cut + 1
                lines += x.count(b"\n", 0, cut + 1)
            shared += same
            if same < len(x) or same < len(y):
                break
    except OSError as exc:
        log.debug("incremental: cannot compare %s with %s (%s)", a, b, exc)
    return shared, start, lines


def _distinct_identity(path: str, length: int) -> Identity | None:
    """The identity of the first ``length`` bytes of ``path``: past what it shares with another."""
    if length <= FINGERPRINT_BYTES:
        try:
            head = read_head(path, length).data
        except OSError:
            return None
        return identity_of(head) if head else None
    digest = _prefix_digests(path, {length}).get(length)
    try:
        anchor = _anchor(read_head(path, ANCHOR_BYTES).data)
    except OSError:
        return None
    return Identity(length, digest, anchor) if digest is not None else None


def _prefix_digests(path: str, lengths: set[int]) -> dict[int, str]:
    """SHA-256 of the first ``n`` decompressed bytes of ``path``, for each ``n`` in ``lengths`` that it
    holds; read in blocks, so a prefix of any length costs no more memory than a block."""
    todo = sorted(lengths)
    out: dict[int, str] = {}
    h = hashlib.sha256()
    at = 0
    try:
        for block in _blocks_of(path):
            view = memoryview(block)
            while todo and at + len(view) >= todo[0]:
                n = todo.pop(0)
                upto = h.copy()
                upto.update(view[: n - at])
                out[n] = upto.hexdigest()
            if not todo:
                break
            h.update(view)
            at += len(view)
    except OSError as exc:
        log.debug("incremental: cannot read %s (%s)", path, exc)
    return out


# ---------------------------------------------------------------------------------------------- save


def updated(
    state: dict[str, FileState],
    plans: list[Plan],
    offsets: list[int],
    lines: list[int],
    errors: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """The state to save after this run (as JSON data).

    ``offsets``/``lines`` are where each input now stands: decompressed bytes and lines consumed of
    its content in total. ``errors`` (optional) holds each input's read error, or None: an input that
    failed keeps its entry, only advanced over what was taken, and is checked again next run. Pure,
    apart from reading the head of an input whose content grew past what :func:`plan` hashed.
    """
    today = _today()
    errs: Sequence[str | None] = errors if errors is not None else [None] * len(plans)
    files = {key: replace(e) for key, e in state.items()}
    sharing = Counter(p.key for p in plans if p.key is not None)
    done: set[str] = set()  # entries already replaced by this run's record of their content
    # inputs that were read first, so that a duplicate never overwrites what its original recorded
    for i in sorted(range(len(plans)), key=lambda i: plans[i].mode == "duplicate"):
        p, offset, n, verified = plans[i], offsets[i], lines[i], errs[i] is None
        old = state.get(p.key) if p.key is not None else None
        if old is not None and (p.mode == "duplicate" or (not verified and offset <= old.offset)):
            # nothing was taken from this input: its entry stays as it was
            if old.key not in done:
                files[old.key].last_seen = today
            continue
        elif p.mode == "duplicate" and (p.identity is None or p.identity.key in files):
            continue  # new content read from another input, recorded under the same identity
        if verified and p.covered > offset:
            offset, n = p.covered, n + 1  # its cut last line, read whole from a longer copy
        if offset <= 0:
            continue  # nothing consumed (empty, or only an unterminated line): nothing to remember
        ident = _recorded_identity(p, offset, old, shared=p.key is not None and sharing[p.key] > 1)
        if ident is None:
            log.warning("incremental: cannot fingerprint %s; its lines may be read again", p.path)
            continue
        entry = FileState(
            ident.fp_len,
            ident.fingerprint,
            ident.anchor,
            offset,
            n,
            _where(p.path),
            p.size if verified else -1,  # a failed input is looked at again next run
            p.mtime_ns,
            today,
            etag=p.etag if verified else "",
            mark=_recorded_mark(p, offset, old),
        )
        if old is not None:
            files.pop(old.key, None)
            done.add(old.key)
        files[entry.key] = entry
    saved = [asdict(e) for e in files.values()]
    return {"version": _VERSION, "files": saved}


def _recorded_mark(p: Plan, offset: int, old: FileState | None) -> str:
    """The mark of ``p``'s content at ``offset``: from a plain local file (a ``.gz`` would be decompressed
    again, so it has none, and is then trusted by its head alone)."""
    if old is not None and old.offset == offset:
        return old.mark
    if not p.plain or remote.is_url(p.path):
        return ""
    return _mark(p.path, offset, True) or ""


def _mark(path: str, offset: int, plain: bool) -> str | None:
    """SHA-256 (16 hex digits) of the ``MARK_BYTES`` decompressed bytes of ``path`` before ``offset``
    (all of them when fewer); None when it holds fewer than ``offset``, or cannot be read."""
    if not plain:
        return _scan(path, offset)[1]
    start = max(0, offset - MARK_BYTES)
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read(offset - start)
    except OSError as exc:
        log.debug("incremental: cannot read %s (%s)", path, exc)
        return None
    if len(data) < offset - start:
        return None
    return hashlib.sha256(data).hexdigest()[:_ANCHOR_HEX]


def _scan(path: str, offset: int) -> tuple[int, str | None]:
    """The decompressed size of ``path`` and its mark at ``offset`` (see :func:`_mark`), in one pass."""
    start = max(0, offset - MARK_BYTES)
    parts, at = [], 0
    try:
        for block in _blocks_of(path):
            if at + len(block) > start and at < offset:
                parts.append(block[max(0, start - at) : offset - at])
            at += len(block)
    except OSError as exc:
        log.debug("incremental: cannot read %s (%s)", path, exc)
        return 0, None
    data = b"".join(parts)
    if len(data) < offset - start:
        return at, None
    return at, hashlib.sha256(data).hexdigest()[:_ANCHOR_HEX]


def _recorded_identity(p: Plan, offset: int, old: FileState | None, shared: bool) -> Identity | None:
    """The identity to record for ``p``'s content, now that ``offset`` bytes of it are consumed."""
    if old is not None and (shared or old.fp_len > FINGERPRINT_BYTES):
        # another input matched the same entry over old.fp_len: a longer fingerprint might not fit it;
        # one past the head tells this content from another that shares its head: kept
        return Identity(old.fp_len, old.fingerprint, old.anchor)
    want = min(FINGERPRINT_BYTES, offset)
    if p.identity is not None and p.identity.fp_len >= want:
        return p.identity
    # The content grew past the head plan() hashed (appended to during the run): hash the longer head,
    # if the file still starts with what was planned.
    try:
        head = read_head(p.path).data
    except OSError:
        return p.identity
    if len(head) >= want and (p.identity is None or identity_of(head[: p.identity.fp_len]) == p.identity):
        return identity_of(head)
    log.warning("incremental: %s changed during the run; recording the head it had when planned", p.path)
    return p.identity


def needs_saving(state: dict[str, FileState], plans: list[Plan]) -> bool:
    """Whether the state :func:`updated` returns says more than ``state``: an input was read, or a
    skipped input was found under a new name or on-disk identity (recording it spares the next run a
    decompression)."""
    if any(p.reads for p in plans):
        return True
    for p in plans:
        old = state.get(p.key) if p.key is not None else None
        here = (_where(p.path), p.size, p.mtime_ns, p.etag)
        if p.mode == "unchanged" and old is not None and here != (old.path, old.size, old.mtime_ns, old.etag):
            return True
    return False
