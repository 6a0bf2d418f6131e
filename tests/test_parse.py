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
    return sorted((r.seq, r.rows, r.lines, repr(from_ipc(r.batch).to_pylist())) for r in results)


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
    assert all(r.batch_len == len(r.batch) for r in results)


def test_results_do_not_share_slots(chunks: list[Chunk]) -> None:
    # more chunks than slots, results kept until the end: each must hold its own bytes
    ex = ProcessExecutor(1, slot_bytes=1 << 20)
    try:
        futures = [ex.submit(ParseTask(c)) for c in chunks * 3]
        results = [f.result(timeout=60) for f in futures]
    finally:
        ex.shutdown()
    firsts = [from_ipc(r.batch).column("ip")[0].as_py() for r in results]
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
    batch = from_ipc(result.batch)
    assert _ipc_into(batch, memoryview(bytearray(100))) == 0  # too small: the caller falls back
    target = bytearray(len(result.batch) + 1024)
    size = _ipc_into(batch, memoryview(target))
    assert from_ipc(bytes(target[:size])).equals(batch)
