"""Read stage: compression detection, line-aligned chunks, line numbers, long lines, broken files."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import validate
from pipeline.errors import ExitCode
from pipeline.runner import run_pipeline
from pipeline.stages.read import (
    BOM,
    LINE_BYTES,
    Chunk,
    Reader,
    detect_compression,
    resolve_inputs,
    split_lines,
)
from tests.conftest import SAMPLE, read_output

LINES = b"".join(b"line %d with some text\n" % i for i in range(5000))


def read_all(path: Path, chunk_bytes: int = 64 * 1024, max_line: int = 1 << 20) -> tuple[list[Chunk], object]:
    chunks: list[Chunk] = []
    report = Reader(0, str(path), chunk_bytes, max_line, 64, chunks.append).run()
    return chunks, report


def write_compressed(path: Path, data: bytes, kind: str) -> None:
    if kind == "gzip":
        path.write_bytes(gzip.compress(data))
    elif kind == "bz2":
        path.write_bytes(bz2.compress(data))
    elif kind == "xz":
        path.write_bytes(lzma.compress(data))
    elif kind == "zstd":
        with pa.CompressedOutputStream(str(path), "zstd") as out:
            out.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("kind", ["none", "gzip", "bz2", "xz", "zstd"])
def test_every_compression_gives_the_same_lines(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "log.bin"  # no telling suffix: detection is by magic bytes
    write_compressed(path, LINES, kind)
    chunks, report = read_all(path)
    assert report.compression == kind  # type: ignore[attr-defined]
    assert report.error is None  # type: ignore[attr-defined]
    assert b"".join(c.data for c in chunks) == LINES
    assert all(bytes(c.data).endswith(b"\n") for c in chunks)
    assert sum(c.n_lines for c in chunks) == 5000


def test_multi_member_gzip(tmp_path: Path) -> None:
    path = tmp_path / "cat.gz"
    path.write_bytes(gzip.compress(b"a\nb\n") + gzip.compress(b"c\n"))
    chunks, _ = read_all(path)
    assert b"".join(c.data for c in chunks) == b"a\nb\nc\n"


@pytest.mark.parametrize("chunk_bytes", [16, 100, 4096, 1 << 20])
def test_line_numbers_follow_chunks(tmp_path: Path, chunk_bytes: int) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(LINES)
    chunks, _ = read_all(path, chunk_bytes=max(chunk_bytes, 16))
    expected = 1
    for c in chunks:
        assert c.first_line == expected
        first = bytes(c.data).split(b"\n", 1)[0]
        assert first == b"line %d with some text" % (expected - 1)
        expected += c.n_lines


def test_no_final_newline_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"one\ntwo")
    chunks, report = read_all(tmp_path / "a.log")
    assert b"".join(c.data for c in chunks) == b"one\ntwo\n"
    assert report.lines == 2  # type: ignore[attr-defined]
    (tmp_path / "e.log").write_bytes(b"")
    chunks, report = read_all(tmp_path / "e.log")
    assert chunks == []
    assert report.lines == 0  # type: ignore[attr-defined]


def test_over_long_line_is_skipped_not_buffered(tmp_path: Path) -> None:
    path = tmp_path / "long.log"
    path.write_bytes(b"short\n" + b"x" * 50_000 + b"\nafter\n" + b"y" * 30_000)
    chunks, report = read_all(path, chunk_bytes=4096, max_line=1024)
    assert b"".join(c.data for c in chunks) == b"short\nafter\n"
    rejects = [
        (line, r, n)
        for c in chunks
        for line, r, n in zip(c.rejects.lines, c.rejects.reasons, c.rejects.raw_len, strict=True)
    ]
    assert rejects == [(2, "line too long", 50_000), (4, "line too long", 30_000)]
    assert sum(c.n_lines for c in chunks) == 4 == report.lines  # type: ignore[attr-defined]
    assert max(len(c.data) for c in chunks) <= 4096 + 1024


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(LINES)[:-2000])
    chunks, report = read_all(path)
    assert report.error is not None  # type: ignore[attr-defined]
    data = b"".join(c.data for c in chunks)
    assert LINES.startswith(data)
    assert len(data) > 0
    truncated = [r for c in chunks for r in c.rejects.reasons]
    assert truncated in ([], ["truncated input"])
    assert sum(c.n_lines for c in chunks) == report.lines  # type: ignore[attr-defined]


def test_unreadable_and_directory_inputs_are_reported(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    _, report = read_all(tmp_path / "d")
    assert "directory" in str(report.error)  # type: ignore[attr-defined]
    _, report = read_all(tmp_path / "missing.log")
    assert "FileNotFoundError" in str(report.error)  # type: ignore[attr-defined]


def test_resolve_inputs(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.log", "b.log.gz", "sub/c.log", ".hidden"):
        (tmp_path / name).write_bytes(b"x\n")
    files, missing = resolve_inputs([str(tmp_path), str(tmp_path / "*.gz"), str(tmp_path / "nope*")])
    names = [os.path.relpath(f, tmp_path) for f in files]
    assert names == ["a.log", "b.log.gz", "sub/c.log"]
    assert [m.path for m in missing] == [str(tmp_path / "nope*")]


def test_detect_compression() -> None:
    assert detect_compression(b"\x1f\x8b\x08") == "gzip"
    assert detect_compression(b"BZh91AY") == "bz2"
    assert detect_compression(b"\xfd7zXZ\x00") == "xz"
    assert detect_compression(b"\x28\xb5\x2f\xfd") == "zstd"
    assert detect_compression(b"127.0.0.1") == "none"


# ---------------------------------------------------------------------------------------------- damage

SMALL = b"".join(b"line %d of a small log\n" % i for i in range(120))
SUFFIX = {"gzip": "gz", "bz2": "bz2", "xz": "xz", "zstd": "zst"}


def compressed(data: bytes, kind: str, tmp_path: Path) -> bytes:
    path = tmp_path / f"src.{SUFFIX[kind]}"
    write_compressed(path, data, kind)
    return path.read_bytes()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["gzip", "bz2", "xz", "zstd"])
def test_truncated_archive_of_every_length_is_a_failed_input(tmp_path: Path, kind: str) -> None:
    """Cut after each byte (the magic number, the header, mid-block, the trailer): always an error,
    and what was kept is whole lines from the start, never more than the file held."""
    whole = compressed(SMALL, kind, tmp_path)
    path = tmp_path / f"cut.{SUFFIX[kind]}"  # the name tells a cut magic number from a one-byte log
    for length in range(1, len(whole)):
        path.write_bytes(whole[:length])
        chunks, report = read_all(path)
        assert report.error is not None, (kind, length)  # type: ignore[attr-defined]
        assert SMALL.startswith(b"".join(bytes(c.data) for c in chunks)), (kind, length)
    path.write_bytes(whole)
    chunks, report = read_all(path)
    assert report.error is None and b"".join(c.data for c in chunks) == SMALL  # type: ignore[attr-defined]


def test_a_short_file_is_an_archive_only_when_named_so(tmp_path: Path) -> None:
    (tmp_path / "one.log").write_bytes(b"\x1f")  # a one-byte log, not a cut gzip
    _, report = read_all(tmp_path / "one.log")
    assert report.error is None and report.compression == "none"  # type: ignore[attr-defined]
    (tmp_path / "e.gz").write_bytes(b"")  # empty: nothing was cut
    assert read_all(tmp_path / "e.gz")[1].error is None  # type: ignore[attr-defined]


GARBAGE = {
    "text": b"this is not compressed\n",
    "one zero": b"\x00",
    "zeros": b"\x00" * 4096,
    "random": bytes(range(256)) * 3,
    "a cut magic": b"\x28\xb5\x2f",
    "half an archive": gzip.compress(b"".join(b"other %d\n" % i for i in range(500)))[:300],
}


@pytest.mark.parametrize("kind", ["gzip", "bz2", "xz", "zstd"])
@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_trailing_garbage_keeps_every_line_before_it(tmp_path: Path, kind: str, garbage: str) -> None:
    lines = LINES * 10  # several of Arrow's and the decoders' reads
    path = tmp_path / "g.bin"
    path.write_bytes(compressed(lines, kind, tmp_path) + GARBAGE[garbage])
    chunks, report = read_all(path)
    data = b"".join(c.data for c in chunks)
    if garbage == "half an archive":  # a gzip's cut member after a gzip: its whole lines are read too
        assert data.startswith(lines)
    else:
        assert data == lines
        assert [r for c in chunks for r in c.rejects.reasons] == []
    if kind == "xz" and garbage in ("one zero", "zeros"):
        assert report.error is None  # type: ignore[attr-defined]  # xz's stream padding
    else:
        assert report.error is not None  # type: ignore[attr-defined]  # reported damaged, as gzip always was


def test_zstd_frames_concatenated_and_skippable(tmp_path: Path) -> None:
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"12345"
    data = compressed(b"a\nb\n", "zstd", tmp_path) + skippable + compressed(b"c\n", "zstd", tmp_path)
    (tmp_path / "f.zst").write_bytes(data)
    chunks, report = read_all(tmp_path / "f.zst")
    assert report.error is None and b"".join(c.data for c in chunks) == b"a\nb\nc\n"  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_bom_is_not_data_but_counts_in_offsets(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bom.bin"
    write_compressed(path, BOM + LINES, kind)
    chunks, report = read_all(path, chunk_bytes=4096)
    assert b"".join(c.data for c in chunks) == LINES
    assert report.end_offset == len(BOM + LINES)  # type: ignore[attr-defined]
    assert report.bytes_read == len(BOM + LINES)  # type: ignore[attr-defined]
    # a later run starting past it reads on from the right byte; a BOM-like start there is data
    chunks = []
    first = len(b"line 0 with some text\n")
    rest = Reader(0, str(path), 4096, 1 << 20, 64, chunks.append, start_offset=len(BOM) + first).run()
    assert b"".join(c.data for c in chunks) == LINES[first:] and rest.error is None


def test_bom_file_incremental_rerun_reads_on_at_the_right_line(tmp_path: Path) -> None:
    lines = (SAMPLE / "access-000.log").read_bytes().splitlines(keepends=True)
    log_file = tmp_path / "in" / "bom.log"
    log_file.parent.mkdir()
    log_file.write_bytes(BOM + b"".join(lines[:300]))
    out = tmp_path / "out"
    cfg = validate(
        {
            "run": {"inputs": [str(log_file)], "output": str(out), "progress": "off", "incremental": True},
            "parse": {"executor": "inline"},
        }
    )
    first = run_pipeline(cfg)
    assert first.exit_code == ExitCode.OK and first.manifest["lines"] == 300
    log_file.write_bytes(BOM + b"".join(lines))  # the log grows
    second = run_pipeline(cfg)
    assert second.exit_code == ExitCode.OK, second.error
    assert (second.manifest["inputs"][0]["mode"], second.manifest["lines"]) == ("grown", len(lines) - 300)
    table = read_output(out)
    plain = tmp_path / "plain.log"
    plain.write_bytes(b"".join(lines))
    full = tmp_path / "full"
    cfg_full = validate({"run": {"inputs": [str(plain)], "output": str(full), "progress": "off"}})
    assert run_pipeline(cfg_full).exit_code == ExitCode.OK
    assert table.equals(read_output(full))  # no BOM in a field, no line twice or lost
    assert not any(ip.startswith("\ufeff") for ip in table.column("ip").to_pylist())


@pytest.mark.parametrize("body", [b"\n" * 200_000, b"x\n" * 100_000, b"\r\n" * 70_000 + b"a\nb\n" * 5_000])
def test_a_chunk_holds_at_most_chunk_bytes_over_line_bytes_lines(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "short.log"
    path.write_bytes(body)
    chunks, report = read_all(path, chunk_bytes=64 * 1024)
    limit = 64 * 1024 // LINE_BYTES
    assert max(c.n_lines for c in chunks) == limit
    assert b"".join(bytes(c.data) for c in chunks) == body
    assert [c.first_line for c in chunks] == [
        1 + sum(c.n_lines for c in chunks[:k]) for k in range(len(chunks))
    ]
    assert all(bytes(c.data).count(b"\n") == c.n_lines for c in chunks)
    assert report.lines == body.count(b"\n")  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.sampled_from([0, 0, 1, 3, 70_000]), min_size=1, max_size=300),
    max_lines=st.integers(min_value=1, max_value=40),
)
def test_split_lines_cuts_whole_lines_in_order(lengths: list[int], max_lines: int) -> None:
    data = b"".join(b"y" * n + b"\n" for n in lengths)
    pieces = list(split_lines(data, max_lines))
    assert b"".join(bytes(p) for p, _ in pieces) == data
    assert [n for _, n in pieces] == [bytes(p).count(b"\n") for p, _ in pieces]
    assert all(1 <= n <= max_lines for _, n in pieces)
    assert all(n == max_lines for _, n in pieces[:-1])
