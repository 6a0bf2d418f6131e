"""Read stage (threads): open each input, decompress it and cut it into line-aligned chunks.

Reading waits on the disk and on decompression in C (ISA-L, bz2, lzma and pyarrow release the GIL), so
it runs in a thread pool, not in processes. Memory per reader is bounded by ``chunk_bytes +
max_line_bytes``: a line that grows past ``max_line_bytes`` without a newline is skipped to its end and
rejected, never buffered.
"""

from __future__ import annotations

import bz2
import errno
import glob
import hashlib
import logging
import lzma
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pyarrow as pa
from isal import isal_zlib

from pipeline.formats.base import Reason, RejectRows
from pipeline.inputs import remote

log = logging.getLogger(__name__)

# Magic bytes at the start of each supported compressed format.
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_SUFFIXES = {"gzip": (".gz", ".gzip"), "bz2": (".bz2",), "xz": (".xz",), "zstd": (".zst", ".zstd")}
# A UTF-8 byte order mark: some Windows tools start a text file with it. It is not part of the first
# line (it would stick to its first field), so the reader drops it; offsets still count its bytes.
BOM = b"\xef\xbb\xbf"


def largest_chunk(chunk_bytes: int, max_line_bytes: int) -> int:
    """The largest chunk the reader cuts: ``read.chunk_bytes`` plus the rest of a line
    (``read.max_line_bytes``), plus its newline."""
    return chunk_bytes + max_line_bytes + 1


@dataclass(frozen=True)
class Segment:
    """One file's lines in a chunk that packs the whole reads of several small files
    (:mod:`pipeline.stages.pack`): who they are, and how many bytes of the chunk's data are theirs."""

    file_id: int
    path: str
    seq: int
    first_line: int  # number of its first line in the chunk's data
    n_lines: int  # its lines in the chunk's data plus ``len(rejects)``
    size: int  # bytes of its lines in the chunk's data (they follow the segment before)
    rejects: RejectRows  # lines the reader had to reject

    @property
    def data_lines(self) -> int:
        """Its lines in the chunk's data."""
        return self.n_lines - len(self.rejects)


@dataclass
class Chunk:
    """Consecutive complete lines of one file, plus lines the reader itself had to reject; or, with
    ``segments``, the whole reads of several small files one after the other (the first one's file id,
    path, seq and first line; the reader's rejects in each segment)."""

    file_id: int
    path: str
    seq: int
    first_line: int  # 1-based number of the first line in ``data``
    data: bytes | memoryview  # complete lines, each ending in b"\n" (may be empty)
    n_lines: int  # lines in ``data`` plus ``len(rejects)``
    rejects: RejectRows = field(default_factory=RejectRows)
    whole: bool = False  # the whole of what this run reads of its file
    segments: tuple[Segment, ...] = ()  # the files it packs (empty: its lines are one file's)

    @property
    def line_range(self) -> str:
        """Human-readable line range, for error messages."""
        if not self.segments:
            return f"lines {self.first_line}-{self.first_line + max(self.n_lines, 1) - 1}"
        more = len(self.segments) - 1
        names = ", ".join(s.path for s in self.segments[1:4]) + (", ..." if more > 3 else "")
        first = self.segments[0]
        return (
            f"lines {first.first_line}-{first.first_line + max(first.n_lines, 1) - 1}, and the whole "
            f"read of {more} more file(s) parsed with it: {names}"
        )


@dataclass
class FileRead:
    """What the reader saw of one input file; goes into the manifest."""

    path: str
    compression: str = "none"
    size: int = 0  # bytes on disk
    bytes_read: int = 0  # bytes after decompression
    lines: int = 0
    chunks: int = 0
    error: str | None = None
    end_offset: int = 0  # decompressed offset just past the last line taken (incremental runs)
    held_bytes: int = 0  # an unterminated last line left for the next run (incremental runs)

    def to_dict(self) -> dict[str, Any]:
        """Its fields by name: all scalars, so no deep copy (``dataclasses.asdict`` costs ~0.3 ms an
        input, which a run of thousands of small files pays in its record twice)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# What ISA-L's inflate raises on damaged input (its stubs declare ``error`` an instance, not a class).
_InflateError = cast("type[Exception]", isal_zlib.error)

# A chunk holds at most ``chunk_bytes // LINE_BYTES`` lines. The parse's working memory and a chunk's
# rejects cost a few hundred bytes per line whatever the line's length, so a chunk of blank lines would
# need hundreds of times its size in its worker (BENCHMARKS.md, "Memory whatever the lines"). Ending a
# chunk at that many lines bounds the per-line part by a few chunk_bytes (operations.md, "Memory"); access-log
# lines, hundreds of bytes long, never reach it.
LINE_BYTES = 64
# the cuts of a chunk with too many lines are found a window of this many bytes at a time
_CUT_WINDOW = 64 * 1024
# Compressed input is fed to the decompressor in blocks of this size.
_RAW_BLOCK = 256 * 1024
# zstd: decompressed bytes asked of Arrow at a time once the compressed file's end was reached
_TAIL_PIECE = 4096


class _Decoder:
    """Incremental gzip/bz2/xz decoding with the standard library, never more output than asked for.

    Why not ``pa.CompressedInputStream`` (used for zstd): when a file is truncated or corrupt, its
    ``read(n)`` raises and drops everything it had decompressed in that call, up to ``chunk_bytes`` of
    complete lines. Here every byte decoded before the damage is returned first, and the error comes on
    the following read. ``max_length`` bounds each step's output, so a small "zip bomb" block cannot
    blow up memory. Concatenated members (``cat a.gz b.gz``, ``gzip >> log.gz``) are read in turn.
    All three release the GIL while they work.

    gzip is inflated by ISA-L (``isal``, the zlib interface over Intel's Intelligent Storage
    Acceleration Library) instead of zlib: several times faster on the yardstick's logs (BENCHMARKS.md,
    "Design figures"), with the same incremental interface.
    """

    def __init__(self, raw: BinaryIO, kind: str):
        self._raw = raw
        self._kind = kind
        self._d = self._new()
        self._tail = b""  # zlib: input given but not yet consumed
        self._drained = True  # zlib: the last call may have left output inside the decompressor
        self._error: Exception | None = None

    def _new(self) -> Any:
        if self._kind == "gzip":
            return isal_zlib.decompressobj(wbits=31)
        if self._kind == "bz2":
            return bz2.BZ2Decompressor()
        return lzma.LZMADecompressor(format=lzma.FORMAT_AUTO)

    def _needs_input(self) -> bool:
        if self._kind == "gzip":
            return not self._tail and self._drained
        return bool(self._d.needs_input)

    def read(self, n: int) -> bytes:
        """Up to ``n`` decoded bytes; b"" at the end; raises on damage once the good bytes are out."""
        if self._error is not None:
            raise self._error
        parts: list[bytes] = []
        got = 0
        while got < n:
            if self._d.eof:  # end of one member; another may follow
                rest = self._d.unused_data
                if self._kind == "xz":
                    rest = rest.lstrip(b"\0")  # stream padding between xz streams
                rest = rest or self._raw.read(_RAW_BLOCK)
                if not rest:
                    break
                self._d, self._tail, self._drained = self._new(), b"", True
                feed = rest
            elif self._needs_input():
                feed = self._raw.read(_RAW_BLOCK)
                if not feed:
                    self._error = EOFError("compressed stream ends before its end marker (truncated file)")
                    break
            else:
                feed = self._tail
            try:
                out = self._d.decompress(feed, n - got)
            except (_InflateError, OSError, lzma.LZMAError, EOFError) as exc:
                self._error = exc
                break
            if self._kind == "gzip":
                self._tail = self._d.unconsumed_tail
                self._drained = len(out) < n - got
            parts.append(out)
            got += len(out)
        if not got and self._error is not None:
            # nothing decoded before the damage (an archive cut inside its header): b"" would read as
            # a clean end, an empty file
            raise self._error
        return b"".join(parts)


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _ZstdFrames:
    """The compressed bytes of a zstd file, handed to Arrow's codec only as far as they are frames.

    Arrow's ``CompressedInputStream`` drops what it had decompressed in a read that meets bad input, so
    garbage after the last frame cost up to a read's worth of good lines. Here the frame structure is
    followed (frame and block headers only: the bytes are handed on as read, in the same pieces), and
    whatever follows a complete frame that is not another frame ends the stream there, cleanly for
    Arrow: :attr:`error` says why, and :class:`Source` raises it once every good byte is out. A file
    that ends inside a frame is :attr:`truncated` (Arrow raises its own error for it too, not always).
    """

    def __init__(self, raw: Any):
        self._raw = raw
        self._buf = b""  # bytes read from raw that start a header not complete yet
        self._body = 0  # bytes to hand on unchecked before the next header (block body, checksum)
        self._in_frame = False  # the next header is a block's (else a frame's, or the end)
        self._checksum = False  # the current frame ends with a 4-byte checksum
        self._at = 0  # offset of the next byte handed on
        self.error: Exception | None = None
        self.truncated = False
        self.at_end = False  # the file's last bytes were read
        self.closed = False

    def _header(self, data: bytes, pos: int) -> int:
        """Length of the header at ``data[pos:]``, its body's length put in ``_body``; 0 when it is not
        all there, -1 when it is not a frame's (trailing garbage)."""
        left = len(data) - pos
        if self._in_frame:
            if left < 3:
                return 0
            head = int.from_bytes(data[pos : pos + 3], "little")
            last, kind, size = head & 1, (head >> 1) & 3, head >> 3
            self._body = 1 if kind == 1 else size  # an RLE block holds its one byte
            if last:
                self._in_frame = False
                self._body += 4 if self._checksum else 0
            return 3
        if left < 4:
            return 0
        magic = data[pos : pos + 4]
        if magic == _ZSTD_MAGIC:
            if left < 5:
                return 0
            fhd = data[pos + 4]
            if fhd & 0x08:  # the reserved bit: not a frame header
                return -1
            fcs = (0, 2, 4, 8)[fhd >> 6] or (1 if fhd & 0x20 else 0)
            size = 5 + (0 if fhd & 0x20 else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
            if left < size:
                return 0
            self._checksum, self._in_frame = bool(fhd & 0x04), True
            return size
        if magic[1:] == b"\x2a\x4d\x18" and magic[0] & 0xF0 == 0x50:  # a skippable frame
            if left < 8:
                return 0
            self._body = int.from_bytes(data[pos + 4 : pos + 8], "little")
            return 8
        return -1

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (fewer at a header cut by the read: its rest comes with the next)."""
        n = n if n >= 0 else _RAW_BLOCK
        while self.error is None and not self.truncated:
            want = max(n - len(self._buf), 16)
            more = b"" if self.at_end else bytes(self._raw.read(want))
            self.at_end = self.at_end or len(more) < want  # a short read is the end (files, RemoteStream)
            data = self._buf + more if self._buf else more
            pos = 0  # data[:pos] is checked
            bad = False
            while pos < len(data):
                if self._body:
                    step = min(self._body, len(data) - pos)
                    pos, self._body = pos + step, self._body - step
                    continue
                size = self._header(data, pos)
                bad = size < 0
                if size <= 0:
                    break
                pos += size
            self._buf = data[pos:]
            if bad:
                self._buf = b""
                self.error = OSError(
                    "data after the last zstd frame is not a zstd frame"
                    f" (trailing garbage at byte {self._at + pos:,})"
                )
            elif self.at_end and (self._buf or self._body or self._in_frame):
                if self._buf and not self._in_frame and self._at + pos > 0:
                    self.error = OSError(
                        f"data after the last zstd frame is not a zstd frame ({len(self._buf)} bytes"
                        f" of trailing garbage at byte {self._at + pos:,})"
                    )
                else:
                    self.truncated = True  # the file ends inside a frame (or its first magic number)
                    pos, self._buf = len(data), b""  # Arrow is given the cut frame: it says so too
            if pos or self.at_end:
                self._at += pos
                return data[:pos]
        return b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._at

    def close(self) -> None:
        self.closed = True


class Source:
    """A decompressed byte stream over one file that can also tell how far into the file it is.

    ``path`` may be a remote input's display name (:func:`pipeline.inputs.remote.is_url`): its bytes then come
    from ranged requests of ``block_bytes`` (see :mod:`pipeline.inputs.remote`); a local file never pays for
    that check beyond a regular expression.
    """

    def __init__(self, path: str, block_bytes: int = remote.DEFAULT_BLOCK):
        self._raw: BinaryIO | pa.NativeFile | remote.RemoteStream
        self._stream: _Decoder | pa.NativeFile | remote.RemoteStream
        self._frames: _ZstdFrames | None = None
        self._error: Exception | None = None  # zstd: damage met after good bytes, raised on the next read
        if remote.is_url(path):
            self._open_remote(path, block_bytes)
            return
        with open(path, "rb") as fh:
            head = fh.read(8)
        self.compression = _compression_of(head, path)
        if self.compression == "none":
            # Arrow's files run in C++ without the GIL
            self._raw = pa.OSFile(path, "rb")
            self._stream = self._raw
        else:
            self._raw = open(path, "rb")  # noqa: SIM115 - closed in close()
            self._stream = self._decoder(self._raw)
        self.size = os.path.getsize(path)

    def _open_remote(self, path: str, block_bytes: int) -> None:
        raw = remote.open_stream(path, block_bytes)
        self._raw = raw
        try:
            # the first request: no extra round trip
            self.compression = _compression_of(raw.peek(8), remote.path_of(path))
        except BaseException:
            raw.close()
            raise
        self._stream = raw if self.compression == "none" else self._decoder(cast("BinaryIO", raw))
        self.size = raw.size if raw.size is not None else 0

    def _decoder(self, raw: BinaryIO) -> _Decoder | pa.NativeFile:
        if self.compression != "zstd":
            return _Decoder(raw, self.compression)
        # Arrow's codec pulls the compressed bytes through the Python stream (GIL held for the copy,
        # not for the decompression)
        self._frames = _ZstdFrames(raw)
        return pa.CompressedInputStream(pa.PythonFile(self._frames, mode="r"), "zstd")

    def read(self, n: int) -> bytes:
        """Up to ``n`` decompressed bytes; b"" at the end."""
        frames = self._frames
        if frames is not None:
            return self._read_zstd(frames, n)
        return bytes(self._stream.read(n))

    def _read_zstd(self, frames: _ZstdFrames, n: int) -> bytes:
        """Arrow's zstd stream read in small pieces: one that meets damage loses what it had decoded
        (see :class:`_ZstdFrames`), the pieces before it are returned and the error comes next time.
        Once the file's end is in sight, the pieces get smaller still: a truncated file loses at most
        one of those."""
        if self._error is not None:
            raise self._error
        parts: list[bytes] = []
        got = 0
        try:
            while got < n:
                piece = _TAIL_PIECE if frames.at_end else _RAW_BLOCK
                block = self._stream.read(min(piece, n - got))
                if not block:
                    break
                parts.append(block)
                got += len(block)
        except OSError as exc:
            self._error = exc
        if got < n and self._error is None:
            if frames.error is not None:
                self._error = frames.error  # trailing garbage
            elif frames.truncated:
                self._error = EOFError("compressed stream ends before its end marker (truncated file)")
        if not got and self._error is not None:
            raise self._error
        return b"".join(parts)

    def skip(self, n: int) -> int:
        """Skip the first ``n`` decompressed bytes; returns how many were there to skip."""
        if self.compression == "none":
            if isinstance(self._raw, remote.RemoteStream) and self._raw.size is None:
                return int(self._raw.seek(n))  # size unknown: a short file shows at the first read
            return int(self._raw.seek(min(n, self.size)))
        done = 0
        while done < n and (block := self.read(min(n - done, 1 << 20))):
            done += len(block)
        return done

    def consumed(self) -> int:
        """Bytes of the file (compressed) consumed so far."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        """Close the stream and the file."""
        try:
            if isinstance(self._stream, pa.NativeFile):
                self._stream.close()
        finally:
            self._raw.close()


def head_lines(path: str, max_lines: int = 1000, max_bytes: int = 4 << 20) -> list[bytes]:
    """The first non-empty complete lines of a file, decompressed (to recognise its format)."""
    source = Source(path, block_bytes=max_bytes)
    try:
        head = source.read(max_bytes)
    finally:
        source.close()
    head = head.removeprefix(BOM)
    lines = head.split(b"\n")
    lines = lines[:-1] if len(lines) > 1 else lines  # the last piece may be a cut line
    return [line for line in lines[: max_lines + 1] if line.strip()][:max_lines]


def resolve_inputs(
    specs: list[str], settings: remote.Settings | None = None
) -> tuple[list[str], list[FileRead]]:
    """Expand files, directories (every file inside, recursively) and globs into a sorted file list.

    Specs that match nothing come back as failed reports, so a missing input is visible in the
    manifest instead of silently producing an empty run. Hidden files (``.name``) inside directories
    are skipped. A path given twice is read once. URLs (``s3://``, ``https://``, ...) are expanded by
    :func:`pipeline.inputs.remote.resolve` with ``settings``, into display names with credentials redacted.
    """
    files: dict[str, None] = {}
    missing: list[FileRead] = []
    for spec in specs:
        if remote.is_url(spec):
            found, why = remote.resolve(spec, settings or remote.Settings())
            if not found:
                missing.append(FileRead(remote.redact(spec), error=why))
            files.update(dict.fromkeys(found))
            continue
        spec = remote.local_path(spec)  # noqa: PLW2901 - file:///x is the local path /x
        path = Path(spec)
        if path.is_dir():
            found = sorted(
                str(p)
                for p in path.rglob("*")
                if not any(part.startswith(".") for part in p.relative_to(path).parts)
                and (p.is_file() or not p.exists())
            )
            why = "the directory holds no file (hidden files are skipped)"
        elif glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if not Path(p).is_dir())
            why = "the pattern matches no file"
        elif path.exists() or path.is_symlink():
            found = [spec]
        else:
            found, why = [], _missing_reason(path)
        if not found:
            missing.append(FileRead(spec, error=why))
        files.update(dict.fromkeys(found))
    return list(files), missing


def input_size(path: str) -> int:
    """Bytes of an input (remote: as listed; 0 when unknown or not a regular file): progress totals."""
    if remote.is_url(path):
        return remote.size_of(path)
    return os.path.getsize(path) if os.path.isfile(path) else 0


def _missing_reason(path: Path) -> str:
    """Why ``path`` is not there, naming the first missing directory: a typo shows where it is."""
    for parent in reversed(path.parents):
        if parent != Path(".") and not parent.exists():
            return f"no such file or directory (the directory {parent} does not exist)"
    return "no such file or directory"


def _join(head: bytes, body: memoryview) -> bytes | memoryview:
    """``head + body`` with one copy at most (``bytes + bytes[:n]`` copies the body twice: the slice,
    then the sum), and none when there is no head. The result may be a view of the read block."""
    if not head:
        return body
    joined = np.empty(len(head) + len(body), dtype=np.uint8)  # not zero-filled, unlike bytearray
    joined[: len(head)] = np.frombuffer(head, dtype=np.uint8)
    joined[len(head) :] = np.frombuffer(body, dtype=np.uint8)
    return joined.data


def split_lines(data: bytes | memoryview, max_lines: int) -> Iterator[tuple[bytes | memoryview, int]]:
    """``data`` (complete lines) in pieces of at most ``max_lines`` lines, each with its line count;
    the pieces are views of ``data``, not copies.

    The cuts are found from the newlines' count per window of :data:`_CUT_WINDOW` bytes, then the
    positions inside the one window each cut falls in: a list of every newline's position would cost 8
    bytes per line, as much as the chunk of blank lines it is meant to bound.
    """
    a = np.frombuffer(data, dtype=np.uint8)
    newline = a == 10
    n = int(np.count_nonzero(newline))
    if n <= max_lines:
        yield data, n
        return
    view = memoryview(data).cast("B")
    windows = np.arange(0, len(a), _CUT_WINDOW)
    before = np.cumsum(np.add.reduceat(newline, windows, dtype=np.int64))  # newlines up to each window's end
    start = 0
    for target in range(max_lines, n, max_lines):
        w = int(np.searchsorted(before, target))  # the window holding the target-th newline
        seen = int(before[w - 1]) if w else 0
        inside = np.flatnonzero(newline[windows[w] : windows[w] + _CUT_WINDOW])
        cut = int(windows[w] + inside[target - seen - 1]) + 1
        yield view[start:cut], max_lines
        start = cut
    yield view[start:], n - (n - 1) // max_lines * max_lines


def detect_compression(head: bytes) -> str:
    """Compression of a file from its first bytes: gzip, bz2, xz, zstd or none."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "none"


def _compression_of(head: bytes, path: str) -> str:
    """:func:`detect_compression`, and for a file shorter than a magic number that starts it, in a file
    named for that compression (``x.gz`` holding ``\\x1f``), the compression: an archive cut that short
    is a truncated archive (its decoder says so), not a one-line log."""
    found = detect_compression(head)
    if found != "none" or len(head) >= 8 or not head:
        return found
    name = path.lower()
    for magic, kind in _MAGIC:
        if magic.startswith(head) and len(head) < len(magic) and name.endswith(_SUFFIXES[kind]):
            return kind
    return found


class _ChunkMaker:
    """The state of cutting one file's blocks into chunks: the number of the next line, the incomplete
    line carried to the next block, an over-long line being skipped (only its head is kept, for its
    reject) and the reader's rejects waiting to ride on the next chunk."""

    __slots__ = (
        "carry", "file_id", "line_no", "max_line_bytes", "path", "pending", "reject_bytes", "report",
        "seq", "skip_head", "skip_len", "skipping",
    )  # fmt: skip

    def __init__(self, reader: Reader, report: FileRead) -> None:
        self.file_id, self.path, self.report = reader.file_id, reader.path, report
        self.max_line_bytes, self.reject_bytes = reader.max_line_bytes, reader.reject_bytes
        self.line_no = reader.first_line  # number of the next line to start
        self.carry = b""  # an incomplete line carried to the next block
        self.skipping = False  # inside an over-long line, discarding until its newline
        self.skip_head = b""
        self.skip_len = 0  # length of the over-long line so far
        self.pending = RejectRows()  # reader rejects waiting to ride on the next chunk
        self.seq = 0

    def whole_lines(self, block: bytes) -> bytes | memoryview | None:
        """The complete lines that ``block`` ends (None: none), with the carried start of the first;
        keeps the rest of the block as the carry."""
        start = 0
        if self.skipping:
            nl = block.find(b"\n")
            self.skip_len += len(block) if nl < 0 else nl
            if nl < 0:
                return None
            self.reject_long()
            start = nl + 1
        cut = block.rfind(b"\n", start)
        if cut < 0:
            self.carry = carry = self.carry + block[start:]
            if len(carry) > self.max_line_bytes:
                self._skip_carry()
            return None
        data = _join(self.carry, memoryview(block)[start : cut + 1])
        self.carry = carry = block[cut + 1 :]
        if len(carry) > self.max_line_bytes:
            self._skip_carry()
        return data

    def _skip_carry(self) -> None:
        """The carried line is over-long: skip it to its end, keeping its head for the reject."""
        self.skip_head, self.skip_len = self.carry[: self.reject_bytes], len(self.carry)
        self.carry, self.skipping = b"", True

    def reject_long(self) -> None:
        """The over-long line being skipped has ended: its reject."""
        self.pending.add(
            self.line_no, Reason.TOO_LONG, self.skip_head, self.reject_bytes, length=self.skip_len
        )
        self.line_no += 1
        self.skipping = False

    def make(self, data: bytes | memoryview, n: int | None = None) -> Chunk:
        """The chunk of ``data`` (``n`` lines, counted when None) and the rejects pending."""
        if n is None:
            # numpy counts faster than bytes.count, without holding the GIL
            n = int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == 10))
        pending, line_no, report = self.pending, self.line_no, self.report
        chunk = Chunk(self.file_id, self.path, self.seq, line_no, data, n + len(pending), pending)
        self.line_no = line_no + n
        self.pending = RejectRows()
        self.seq += 1
        report.chunks += 1
        report.lines += chunk.n_lines
        return chunk


@dataclass
class Reader:
    """Cuts one file into chunks. ``emit`` is called with each chunk (it may block: back-pressure)."""

    file_id: int
    path: str
    chunk_bytes: int
    max_line_bytes: int
    reject_bytes: int
    emit: Callable[[Chunk], None]
    on_bytes: Callable[[int], None] = lambda n: None  # progress: compressed bytes consumed
    start_offset: int = 0  # decompressed bytes already processed by an earlier run: skipped
    first_line: int = 1  # number of the first line read (continues an earlier run's count)
    hold_tail: bool = False  # leave an unterminated last line for the next run (it may still grow)
    check: tuple[int, str] | None = None  # (n, SHA-256 hex) of the first n bytes it must start with
    enough: Callable[[], bool] = lambda: False  # a sample (logpipe profile) stops reading when true
    # a first chunk of at most this many bytes waits for the next one: without one, it is the file's
    # whole read (``Chunk.whole``), which may be packed with other files' (0: none waits)
    hold_bytes: int = 0
    _cut_by_network: bool = field(default=False, init=False)  # a remote read failed mid-file

    @property
    def max_lines(self) -> int:
        """The most lines a chunk holds (see :data:`LINE_BYTES`)."""
        return max(1, self.chunk_bytes // LINE_BYTES)

    def run(self) -> FileRead:
        """Read the whole file; errors are recorded in the report, never raised."""
        report = FileRead(self.path)
        try:
            if not remote.is_url(self.path):
                mode = os.stat(self.path).st_mode
                if stat.S_ISDIR(mode):
                    raise IsADirectoryError(errno.EISDIR, "is a directory")
                if not stat.S_ISREG(mode):
                    # a FIFO would block open() until a writer appears; sockets and devices are not logs
                    raise OSError(errno.EINVAL, "not a regular file (FIFO, socket or device)")
            source = Source(self.path, block_bytes=self.chunk_bytes)
            report.compression, report.size = source.compression, source.size
        except OSError as exc:
            report.error = f"{type(exc).__name__}: {exc.strerror or exc}"
            log.warning("read: cannot open %s: %s", self.path, report.error)
            return report
        try:
            try:
                first = self._position(source, report)
            except (OSError, EOFError, lzma.LZMAError, _InflateError) as exc:
                report.error = f"{type(exc).__name__}: {exc}"
                first = None
            if first is None:
                log.warning("read: %s: %s", self.path, report.error)
                return report
            self._emit_all(source, report, first)
        finally:
            source.close()
        return report

    def _emit_all(self, source: Source, report: FileRead, first: bytes) -> None:
        """Emit every chunk of the file; a small first chunk waits until the file's end tells whether it
        is the whole read (``Chunk.whole``)."""
        held: Chunk | None = None
        for chunk in self._chunks(source, report, first):
            if held is not None and self._absorbs(held, chunk):
                # its lines follow on (a last line without its newline comes as a chunk of its own)
                data = bytes(held.data) + bytes(chunk.data)
                held = Chunk(
                    self.file_id,
                    self.path,
                    0,
                    held.first_line,
                    data,
                    held.n_lines + chunk.n_lines,
                    held.rejects,
                )
                report.chunks -= 1
                continue
            if held is not None:
                self.emit(held)
                held = None
            if chunk.seq == 0 and self.hold_bytes and len(chunk.data) <= self.hold_bytes:
                held = chunk
            else:
                self.emit(chunk)
        if held is not None:
            held.whole = True
            self.emit(held)

    def _absorbs(self, held: Chunk, chunk: Chunk) -> bool:
        """Whether the small first chunk ``held`` takes in the next one: no reader rejects between
        them, and the two within ``hold_bytes``, ``chunk_bytes`` and a chunk's lines."""
        return (
            not chunk.rejects
            and len(held.data) + len(chunk.data) <= min(self.hold_bytes, self.chunk_bytes)
            and held.n_lines + chunk.n_lines <= self.max_lines
        )

    def _position(self, source: Source, report: FileRead) -> bytes | None:
        """Check the file starts as planned, skip ``start_offset``: the bytes read past it, to be cut
        first; None (``report.error`` set) when the file is not the one planned or is too short."""
        head = b""
        if self.check is not None:
            n, digest = self.check
            parts, got = [], 0
            while got < n and (part := source.read(n - got)):
                parts.append(part)
                got += len(part)
            head = b"".join(parts)
            if hashlib.sha256(head).hexdigest() != digest:
                # replaced (by logrotate) since its head was planned: skipping start_offset of another
                # content would lose lines; the next run plans it again
                report.error = "changed since it was planned (replaced?): not read, planned again next run"
                return None
        start = self.start_offset
        report.end_offset = start
        if start <= len(head):
            before, rest = head[start - 1 : start] if start else b"", head[start:]
        else:
            if source.compression == "none":  # seeks: to the offset from the file's start
                skipped = source.skip(start - 1)
            else:  # decompresses: from where the head ends
                skipped = len(head) + source.skip(start - len(head) - 1)
            before, rest = source.read(1), b""
            if skipped + len(before) < start:
                got = skipped + len(before)
                report.error = f"file is shorter ({got} bytes) than already processed ({start})"
                return None
        if before not in (b"", b"\n"):
            # an earlier run took the last line of this content unterminated (its file was no longer
            # live), and more was written to it since: that line is taken, the rest of it is dropped
            while (nl := rest.find(b"\n")) < 0:
                report.end_offset += len(rest)
                rest = source.read(self.chunk_bytes)
                if not rest:
                    break
            else:
                report.end_offset += nl + 1
                rest = rest[nl + 1 :]
            log.warning("read: %s: the rest of a line an earlier run took unterminated is dropped", self.path)
        return rest

    def _blocks(self, stream: Source, report: FileRead, first: bytes) -> Iterator[bytes]:
        at_start = self.start_offset == 0
        if first:
            report.bytes_read += len(first)  # the BOM too: offsets count every decompressed byte
            at_start = False
            yield first.removeprefix(BOM) if self.start_offset == 0 else first
        while not self.enough():
            try:
                block = stream.read(self.chunk_bytes)
            except (OSError, EOFError, lzma.LZMAError, _InflateError) as exc:
                report.error = f"{type(exc).__name__}: {exc}"
                # the network failed, not the data: the line it cut is not damaged, only unfinished
                self._cut_by_network = isinstance(exc, remote.RemoteReadError)
                log.warning("read: %s: %s (lines read so far are kept)", self.path, report.error)
                return
            if not block:
                return
            report.bytes_read += len(block)  # the BOM too: offsets count every decompressed byte
            if at_start:
                at_start = False
                block = block.removeprefix(BOM)
            yield block

    def _chunks(self, stream: Source, report: FileRead, first: bytes = b"") -> Iterator[Chunk]:
        maker = _ChunkMaker(self, report)
        last_pos = 0
        for block in self._blocks(stream, report, first):
            pos = stream.consumed()
            self.on_bytes(pos - last_pos)
            last_pos = pos
            data = maker.whole_lines(block)
            if data is not None:
                for piece, n in split_lines(data, self.max_lines):
                    yield maker.make(piece, n)
        if maker.skipping:
            maker.reject_long()
        report.end_offset += report.bytes_read
        carry = maker.carry
        if carry and ((self.hold_tail and report.error is None) or self._cut_by_network):
            # not counted as read: the next run reads it whole (a failed input is read again from there)
            report.held_bytes = len(carry)
            report.end_offset -= len(carry)
        elif carry:
            if report.error is None:
                yield maker.make(carry + b"\n")  # last line without a final newline is still a line
            else:
                # the fragment before a decompression error is not a whole line
                maker.pending.add(maker.line_no, Reason.TRUNCATED, carry, self.reject_bytes)
                maker.line_no += 1
        if len(maker.pending):
            yield maker.make(b"")
