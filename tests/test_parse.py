"""Parse stage: the process boundary, shared-memory slots, and surviving killed workers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from pipeline.errors import StageError
from pipeline.parse import InlineExecutor, ParseResult, ParseTask, ProcessExecutor, from_ipc
from pipeline.read import Chunk, Reader


def chunks_of(path: Path, chunk_bytes: int = 64 * 1024) -> list[Chunk]:
    out: list[Chunk] = []
    Reader(0, str(path), chunk_bytes, 1 << 20, 4096, out.append).run()
    return out


def summary(results: list[ParseResult]) -> list[tuple[int, int, int, str]]:
    return sorted(
        (r.seq, r.rows, r.lines, repr([(p.date, from_ipc(p.ipc).to_pylist()) for p in r.parts]))
        for r in results
    )


@pytest.fixture(scope="module")
def chunks(sample_dir: Path) -> list[Chunk]:
    return chunks_of(sample_dir / "access-000.log")


@pytest.fixture(scope="module")
def sample_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "sample"


@pytest.mark.parametrize("slot_bytes", [0, 1 << 20, 1024], ids=["pipe", "shared-memory", "slot-too-small"])
def test_process_executor_equals_inline(chunks: list[Chunk], slot_bytes: int) -> None:
    inline = InlineExecutor()
    expected = summary([inline.submit(ParseTask(c)).result() for c in chunks])
    ex = ProcessExecutor(2, slot_bytes=slot_bytes)
    try:
        results = [f.result(timeout=60) for f in [ex.submit(ParseTask(c)) for c in chunks]]
    finally:
        ex.shutdown()
    assert summary(results) == expected
    assert sum(r.lines for r in results) == 2000
    assert all(p.size == len(p.ipc) and p.rows == from_ipc(p.ipc).num_rows for r in results for p in r.parts)


def test_results_do_not_share_slots(chunks: list[Chunk]) -> None:
    # more chunks than slots, results kept until the end: each must hold its own bytes
    ex = ProcessExecutor(1, slot_bytes=1 << 20)
    try:
        futures = [ex.submit(ParseTask(c)) for c in chunks * 3]
        results = [f.result(timeout=60) for f in futures]
    finally:
        ex.shutdown()
    firsts = [from_ipc(r.parts[0].ipc).column("ip")[0].as_py() for r in results]
    assert firsts[: len(chunks)] == firsts[len(chunks) : 2 * len(chunks)]


def _kill_a_worker(ex: ProcessExecutor) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        procs = list(ex._pool._processes.values())  # test-only peek at the pool's workers
        if procs and procs[0].pid is not None:
            os.kill(procs[0].pid, signal.SIGKILL)
            return
        time.sleep(0.01)
    raise AssertionError("no worker started")


@pytest.mark.timeout(120)
def test_killed_worker_is_replaced_and_chunks_retried(chunks: list[Chunk]) -> None:
    inline = InlineExecutor()
    expected = summary([inline.submit(ParseTask(c)).result() for c in chunks])
    ex = ProcessExecutor(2, max_retries=3, slot_bytes=1 << 20)
    try:
        futures = [ex.submit(ParseTask(c)) for c in chunks]
        _kill_a_worker(ex)
        results = [f.result(timeout=60) for f in futures]
        assert ex.restarts >= 1
    finally:
        ex.shutdown()
    assert summary(results) == expected


@pytest.mark.timeout(120)
def test_retries_exhausted_names_file_and_lines(chunks: list[Chunk]) -> None:
    ex = ProcessExecutor(1, max_retries=0, slot_bytes=1 << 20)
    try:
        futures = [ex.submit(ParseTask(c)) for c in chunks * 4]
        _kill_a_worker(ex)
        errors = []
        for f in futures:
            try:
                f.result(timeout=60)
            except StageError as exc:
                errors.append(str(exc))
    finally:
        ex.shutdown()
    assert errors, "a killed worker with max_retries=0 must fail its chunk"
    assert "access-000.log" in errors[0] and "chunk lines " in errors[0]
    assert "parse.max_retries=0" in errors[0]


def test_shutdown_unlinks_shared_memory() -> None:
    ex = ProcessExecutor(1, slot_bytes=1 << 16)
    names = [s.inp.name for s in ex._slots] + [s.out.name for s in ex._slots]
    assert names
    ex.shutdown()
    for name in names:
        assert not Path("/dev/shm", name.lstrip("/")).exists()


def test_batch_that_does_not_fit_its_slot_comes_back_through_the_pipe(chunks: list[Chunk]) -> None:
    from pipeline.parse import _ipc_into, parse_chunk

    result = parse_chunk(ParseTask(chunks[0]))
    batches = [from_ipc(p.ipc) for p in result.parts]
    assert _ipc_into(batches, memoryview(bytearray(100))) is None  # too small: the caller falls back
    target = bytearray(sum(p.size for p in result.parts) + 1024)
    sizes = _ipc_into(batches, memoryview(target))
    assert sizes == [p.size for p in result.parts]
    assert from_ipc(bytes(target[: sizes[0]])).equals(batches[0])


def test_each_date_comes_back_as_a_batch_that_owns_its_buffers() -> None:
    # the writer may keep a date's rows buffered for a long time: a few rows of one date must not
    # keep the whole chunk alive (nor need a copy in the writer)
    line = '1.2.3.4 - - [{day}/Nov/2026:10:00:00 +0000] "GET /{pad} HTTP/1.1" 200 5 "-" "agent"\n'
    data = (line.format(day="01", pad="a" * 50) * 5000 + line.format(day="02", pad="b") * 10).encode()
    chunk = Chunk(0, "x.log", 0, 1, data, 5010)
    inline = InlineExecutor().submit(ParseTask(chunk)).result()
    ex = ProcessExecutor(1, slot_bytes=1 << 20)
    try:
        shared = ex.submit(ParseTask(chunk)).result(timeout=60)
    finally:
        ex.shutdown()
    for result in (inline, shared):
        assert [(p.date, p.rows) for p in result.parts] == [("2026-11-01", 5000), ("2026-11-02", 10)]
        big, small = (from_ipc(p.ipc) for p in result.parts)
        assert small.get_total_buffer_size() < big.get_total_buffer_size() / 100
        assert small.column("path").to_pylist() == ["/b"] * 10
