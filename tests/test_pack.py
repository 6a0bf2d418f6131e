"""Small files parsed several to a task (pipeline/stages/pack.py): the same rows, rejects (file, line,
reason) and per-file record as each file parsed alone, for every format (headed ones included)."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import validate
from pipeline.errors import ExitCode
from pipeline.formats import get_format, key_of
from pipeline.formats.base import Reason, RejectRows
from pipeline.runner import run_pipeline
from pipeline.stages.pack import Packer, pack_chunks
from pipeline.stages.parse import ParseResult, ParseTask, from_ipc, parse_chunk
from pipeline.stages.read import Chunk, Reader
from pipeline.transforms import TransformSpec
from tests.conftest import manifest, read_output, reference_parse, rejects_dir

SERVER_LOGS = Path(__file__).parent / "server_logs"
NOV_2 = 1_793_577_600_000_000  # 2026-11-02T00:00:00Z, microseconds since the epoch
YEAR_2010 = 1_262_304_000_000_000  # 2010-01-01T00:00:00Z
# JSON lines by a key map whose optional keys each file may or may not write
JSONL = key_of({"jsonl": {"ts": "t", "ip": "ip", "user_agent": "ua", "extra": "x.y"}})
JSONL_OPTIONAL = ("ua", "x")


def jsonl_line(rng: random.Random, keys: tuple[str, ...]) -> bytes:
    record: dict[str, Any] = {"t": f"01/Nov/2026:10:{rng.randrange(60):02d}:00 +0000", "ip": "10.0.0.1"}
    if "ua" in keys:
        record["ua"] = rng.choice(["curl/8", None, "-"])  # null is no value
    if "x" in keys:
        record["x"] = {"y": 1} if rng.random() < 0.7 else {}
    return json.dumps(record).encode()


def combined_line(rng: random.Random) -> bytes:
    """A combined line of November 2026, or now and then one no format reads."""
    kind = rng.random()
    if kind < 0.04:
        return b"not a log line at all"
    if kind < 0.06:
        return b""
    if kind < 0.07:
        return b"1.2.3.4 - - [\x00] nul"
    day, hour = rng.randint(1, 3), rng.randint(0, 23)
    when = f"{day:02d}/Nov/2026:{hour:02d}:{rng.randint(0, 59):02d}:00 +0000"
    path = rng.choice(["/", "/a?b=1", "/x y", "/api/v1/items"])
    agent = rng.choice(["curl/8.5.0", "Googlebot/2.1", "Mozilla/5.0"])
    return (
        f'10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)} - - [{when}] "GET {path} HTTP/1.1" '
        f'{rng.choice([200, 404, 500])} {rng.randint(0, 9999)} "-" "{agent}"'
    ).encode()


def write_small_files(root: Path, rng: random.Random, n: int) -> dict[str, list[bytes]]:
    """``n`` small combined logs, gzip and plain, of 0-300 lines (some empty, some without a final
    newline, some with lines no format reads); each file's lines by path."""
    files = {}
    for k in range(n):
        count = rng.choice([0, 1, 2, 7, 30, 120, 300])
        lines = [combined_line(rng) for _ in range(count)]
        text = b"\n".join(lines) + (b"\n" if lines and rng.random() < 0.8 else b"")
        name = root / f"{k // 10:02d}" / f"access-{k:03d}.log"
        name.parent.mkdir(parents=True, exist_ok=True)
        if rng.random() < 0.5:
            name = name.with_suffix(".log.gz")
            name.write_bytes(gzip.compress(text, mtime=0))
        else:
            name.write_bytes(text)
        files[str(name)] = lines
    return files


def run(
    inputs: Path,
    out: Path,
    serial: bool = False,
    fmt: str = "combined",
    since: str | None = "2026-11-01T06:00:00Z",  # some rows of each file filtered: counted per file
    **read: Any,
) -> Any:
    data: dict[str, Any] = {
        "run": {
            "inputs": [str(inputs)],
            "output": str(out),
            "progress": "off",
            "format": fmt,
            "file_column": "file",
            **({"since": since} if since else {}),
            "max_reject_ratio": 1.0,
        },
        "read": {"chunk_bytes": "64KiB", **read},
        "parse": {"workers": 2},
    }
    if serial:
        data["parse"] = {"workers": 1, "executor": "inline"}
        data["read"] = {**data["read"], "workers": 1}
    result = run_pipeline(validate(data))
    assert result.exit_code == ExitCode.OK, result.error
    return result


def outcome(out: Path) -> tuple[list[Any], list[Any], list[Any]]:
    """The rows, the rejects (file, line, reason) and each input's record of a run."""
    rows = read_output(out).to_pylist()
    where = rejects_dir(out)
    rejects = pq.read_table(where).select(["file", "line", "reason"]).to_pylist() if where.exists() else []
    keys = ("path", "lines", "rows", "rejected", "filtered", "skipped", "bytes_read", "end_offset", "error")
    files = [tuple(f[k] for k in keys) for f in manifest(out)["inputs"]]
    return rows, sorted(rejects, key=lambda r: (r["file"], r["line"])), sorted(files)


@pytest.mark.slow
def test_many_small_files_read_packed_as_each_file_alone_and_as_a_serial_run(tmp_path: Path) -> None:
    files = write_small_files(tmp_path / "logs", random.Random(11), 120)
    packed = run(tmp_path / "logs", tmp_path / "packed")
    alone = run(tmp_path / "logs", tmp_path / "alone", pack_bytes=0)
    serial = run(tmp_path / "logs", tmp_path / "serial", pack_bytes=0, serial=True)
    got = outcome(tmp_path / "packed")
    assert got == outcome(tmp_path / "alone") == outcome(tmp_path / "serial")
    # packed: far fewer tasks than files (the test would pass without any packing otherwise)
    tasks = packed.manifest["stages"]["parse"]["items_in"]
    assert tasks * 5 < len(files) <= alone.manifest["stages"]["parse"]["items_in"]
    assert serial.manifest["lines"] == sum(len(lines) for lines in files.values())
    # each file's own counts against a plain-Python reference, and every row names its own file
    rows, rejects, inputs = got
    by_file = Counter(r["file"] for r in rows)
    rejected = Counter(r["file"] for r in rejects)
    for path, lines, n_rows, n_rejected, filtered, *_ in inputs:
        ref, ref_rejected = reference_parse(files[path])
        assert lines == len(files[path])
        assert (n_rows + filtered, n_rejected) == (len(ref), ref_rejected)
        assert by_file[path] == n_rows and rejected[path] == n_rejected
    assert {r["file"] for r in rejects} <= set(files)


def w3c_file(rng: random.Random, dialect: str, header: bool, lines: int) -> bytes:
    """A CloudFront or IIS log: the server's file of the documentation, its data lines shuffled and
    cut to ``lines`` (its header kept or dropped)."""
    name = "cloudfront.log" if dialect == "cloudfront" else "w3c.log"
    all_lines = (SERVER_LOGS / name).read_bytes().splitlines()
    head = [ln for ln in all_lines[:4] if ln.startswith(b"#")]
    body = [ln for ln in all_lines if not ln.startswith(b"#")]
    picked = [rng.choice(body) for _ in range(lines)]
    return b"".join(ln + b"\n" for ln in (head if header else []) + picked)


@pytest.mark.slow
@pytest.mark.parametrize("dialect", ["cloudfront", "w3c"])
def test_small_w3c_files_keep_their_own_headers(tmp_path: Path, dialect: str) -> None:
    rng = random.Random(3)
    logs = tmp_path / "logs"
    logs.mkdir()
    for k in range(24):
        # most with their header, some without (read with the default fields), some empty
        data = w3c_file(rng, dialect, rng.random() < 0.75, rng.choice([0, 1, 3, 12]))
        (logs / f"E2ABC{k:03d}.2026-12-05-{k % 24:02d}.a1b2c3.gz").write_bytes(gzip.compress(data, mtime=0))
    runs = {
        "packed": run(logs, tmp_path / "packed", fmt=dialect, since=None),
        "alone": run(logs, tmp_path / "alone", fmt=dialect, since=None, pack_bytes=0),
        "serial": run(logs, tmp_path / "serial", True, dialect, None, pack_bytes=0),
    }
    assert outcome(tmp_path / "packed") == outcome(tmp_path / "alone") == outcome(tmp_path / "serial")
    assert (
        runs["packed"].manifest["stages"]["parse"]["items_in"]
        < runs["alone"].manifest["stages"]["parse"]["items_in"]
    )
    assert runs["packed"].manifest["skipped"] > 0


def parse_alone(task: ParseTask) -> list[Any]:
    """What each file of ``task`` gives parsed as a chunk of its own (the segments' data cut back out)."""
    out = []
    at = 0
    for k, seg in enumerate(task.chunk.segments):
        data = bytes(task.chunk.data[at : at + seg.size])
        at += seg.size
        chunk = Chunk(seg.file_id, seg.path, seg.seq, seg.first_line, data, seg.n_lines, seg.rejects)
        origin = task.origins[k] if task.origins else ()
        out.append(summary(parse_chunk(replace(task, chunk=chunk, origin=origin, origins=()))))
    return out


def summary(result: ParseResult) -> list[Any]:
    """Each file's rows (by its origin column), rejects (line, reason, raw) and counts."""
    rows = [r for p in result.parts for r in from_ipc(p.ipc).to_pylist()]
    rejects = from_ipc(result.rejects).to_pylist()
    out, at = [], 0
    for f in result.files():
        mine = sorted((r for r in rows if r.get("file") == f"f{f.file_id}"), key=repr)
        out.append(
            (
                f.file_id,
                f.lines,
                f.rows,
                f.reject_counts,
                f.filtered,
                f.skipped,
                f.absent,
                mine,
                rejects[at : at + f.rejects],
            )
        )
        at += f.rejects
    return out


segment = st.tuples(
    st.integers(0, 40),  # lines
    st.floats(0, 0.5),  # share of lines no format reads
    st.integers(0, 2),  # reader rejects before its first line
    st.booleans(),  # a header (W3C)
)


@settings(max_examples=20, deadline=None)
@given(
    st.lists(segment, min_size=2, max_size=8),
    st.sampled_from(["combined", "cloudfront", "w3c", "alb", "jsonl"]),
    st.integers(0, 2**16),
)
def test_a_packed_chunk_parses_as_each_of_its_files_alone(segments: list[Any], fmt: str, seed: int) -> None:
    rng = random.Random(seed)
    chunks = []
    for k, (n, bad, before, header) in enumerate(segments):
        if fmt == "combined":
            lines = [combined_line(rng) for _ in range(n)]
            data = b"".join(ln + b"\n" for ln in lines)
        elif fmt == "jsonl":
            keys = tuple(k for k in JSONL_OPTIONAL if rng.random() < 0.5)
            data = b"".join(jsonl_line(rng, keys) + b"\n" for _ in range(n))
        elif fmt == "alb":
            body = (SERVER_LOGS / "alb.log").read_bytes().splitlines()
            data = b"".join(rng.choice(body) + b"\n" for _ in range(n))
        else:
            data = w3c_file(rng, fmt, header, n)
        lines = data.split(b"\n")[:-1]
        lines = [b"garbage \x01 line" if rng.random() < bad else ln for ln in lines]
        data = b"".join(ln + b"\n" for ln in lines)
        rejects = RejectRows()
        for j in range(before):
            rejects.add(1 + j, Reason.TOO_LONG, b"x" * 10, 4)
        chunk = Chunk(k, f"f{k}", 0, 1 + before, data, len(lines) + before, rejects, whole=True)
        chunks.append(chunk)
    # the packer's rule: a W3C file without its own header only starts a pack
    key = JSONL if fmt == "jsonl" else get_format(fmt).key
    packs: list[Chunk] = []
    packer = Packer(
        packs.append, 1 << 20, 1 << 20, 1 << 20, lambda c: (key, get_format(key).stands_alone(c.data))
    )
    for chunk in chunks:
        packer.add(chunk)
    packer.flush()
    assert sum(len(p.segments) or 1 for p in packs) == len(chunks)
    for packed in packs:
        if not packed.segments:
            continue
        origins = tuple((("file", s.path),) for s in packed.segments)
        since = (NOV_2 if fmt == "combined" else YEAR_2010) if seed % 3 == 0 else None
        transforms = (TransformSpec("tests.transform_examples:by_line"),) if seed % 2 else ()
        task = ParseTask(packed, key, since_us=since, origins=origins, transforms=transforms)
        assert summary(parse_chunk(task)) == [f[0] for f in parse_alone(task)]


def test_the_packer_keeps_chunks_of_one_key_within_a_chunk_and_its_lines() -> None:
    sent: list[Chunk] = []

    def chunk(k: int, size: int, lines: int = 1, whole: bool = True) -> Chunk:
        return Chunk(k, f"f{k}", 0, 1, b"x" * (size - 1) + b"\n", lines, whole=whole)

    keys = {0: "a", 1: "a", 2: "b", 3: "a", 4: "a", 5: "b", 6: "a"}
    packer = Packer(sent.append, 100, 5, 60, lambda c: (keys[c.file_id], True))
    packer.add(chunk(0, 40))
    packer.add(chunk(1, 50))  # 90 bytes of "a"
    packer.add(chunk(2, 30))  # 120 bytes held: the largest pack ("a") goes
    assert [[s.file_id for s in c.segments] for c in sent] == [[0, 1]]
    packer.add(chunk(3, 70))  # more than pack_bytes: alone, at once
    packer.add(chunk(4, 10, lines=4))
    packer.add(chunk(6, 10, lines=2))  # 6 lines of "a": over the lines' limit, the pack before goes
    packer.add(chunk(5, 10, whole=False))  # not a whole read: at once
    assert [c.file_id for c in sent[1:]] == [3, 4, 5]
    packer.flush()
    assert sorted([s.file_id for s in c.segments] or [c.file_id] for c in sent[4:]) == [[2], [6]]
    assert sent[0].data == b"x" * 39 + b"\n" + b"x" * 49 + b"\n" and sent[0].n_lines == 2


def test_a_w3c_file_stands_alone_only_with_its_own_fields_before_its_lines() -> None:
    fmt = get_format("cloudfront")
    data = (SERVER_LOGS / "cloudfront.log").read_bytes()
    assert fmt.stands_alone(data)  # #Version, then #Fields
    assert not fmt.stands_alone(data.split(b"\n", 2)[2])  # the lines without the header
    assert not fmt.stands_alone(b"\n" + data)  # a blank line first is no directive
    assert not fmt.stands_alone(b"#Version: 1.0\n")
    assert get_format("combined").stands_alone(b"anything\n")


def test_the_reader_marks_a_small_files_whole_read(tmp_path: Path) -> None:
    small, large = tmp_path / "small.log", tmp_path / "large.log"
    small.write_bytes(b"a\nb\nc")
    large.write_bytes(b"x" * 100 + b"\n" + b"y" * (70 << 10) + b"\n")

    def chunks(path: Path, hold: int) -> list[Chunk]:
        out: list[Chunk] = []
        Reader(0, str(path), 64 << 10, 1 << 20, 64, out.append, hold_bytes=hold).run()
        return out

    assert [(c.whole, bytes(c.data), c.n_lines) for c in chunks(small, 1 << 20)] == [(True, b"a\nb\nc\n", 3)]
    assert [c.whole for c in chunks(small, 0)] == [False, False]  # its last line came apart
    assert [c.whole for c in chunks(large, 1 << 20)] == [False, False]
    assert sum(c.n_lines for c in chunks(large, 1 << 20)) == 2


def test_the_origin_columns_of_a_packed_chunk_name_each_rows_file() -> None:
    lines = [b'1.2.3.4 - - [01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n'] * 3
    chunks = [Chunk(k, f"f{k}", 0, 1, b"".join(lines[: k + 1]), k + 1, whole=True) for k in range(3)]
    packed = pack_chunks(chunks)
    origins = tuple((("source", "s"), ("file", f"f{k}")) for k in range(3))
    result = parse_chunk(ParseTask(packed, "combined", origins=origins))
    batch = pa.Table.from_batches([from_ipc(p.ipc) for p in result.parts])
    assert sorted(batch.column("file").to_pylist()) == ["f0", "f1", "f1", "f2", "f2", "f2"]
    assert set(batch.column("source").to_pylist()) == {"s"}
    assert [(f.file_id, f.rows, f.lines) for f in result.files()] == [(0, 1, 1), (1, 2, 2), (2, 3, 3)]
