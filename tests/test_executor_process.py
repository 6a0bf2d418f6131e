"""The process executor: shared-memory slots, a small or full /dev/shm, and surviving killed workers
(``pipeline/executors/process.py`` and ``shm.py``; what every executor does is in test_executors.py)."""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from pipeline.config import validate
from pipeline.errors import StageError
from pipeline.executors import make_executor, process_pools, process_slots
from pipeline.executors.inline import InlineExecutor
from pipeline.executors.process import ProcessExecutor, describe_exit
from pipeline.executors.shm import SharedSlot
from pipeline.stages.parse import ParseTask, from_ipc
from pipeline.stages.read import Chunk, largest_chunk
from tests.conftest import SAMPLE, chunks_of, summary


@pytest.fixture(scope="module")
def chunks() -> list[Chunk]:
    return chunks_of(SAMPLE / "access-000.log")


def test_slots_are_sized_from_the_read_settings() -> None:
    # the executor sizes its slots to hold the largest chunk the reader cuts
    cfg = validate(
        {"parse": {"workers": 1}, "read": {"chunk_bytes": "64KiB", "max_line_bytes": "4KiB"}}
    ).resolved()
    ex = make_executor(cfg.parse, largest_chunk(cfg.read.chunk_bytes, cfg.read.max_line_bytes))
    try:
        assert isinstance(ex, ProcessExecutor) and ex.max_in_flight == 2
        assert largest_chunk(64 * 1024, 4096) == 64 * 1024 + 4096 + 1
        assert all(slot.inp.size >= largest_chunk(64 * 1024, 4096) for slot in ex._slots.slots)
    finally:
        ex.shutdown()


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
        procs = list(ex._pools.pool._processes.values())  # test-only peek at the pool's workers
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
    names = [s.inp.name for s in ex._slots.slots] + [s.out.name for s in ex._slots.slots]
    assert names
    ex.shutdown()
    for name in names:
        assert not Path("/dev/shm", name.lstrip("/")).exists()


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


# ---------------------------------------------------------------- a small or full /dev/shm


def test_slots_are_allocated_up_front() -> None:
    # a block whose pages come on first write would SIGBUS mid-run on a full tmpfs, not fail here
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    ex = ProcessExecutor(1, slot_bytes=1 << 20)
    try:
        blocks = [b for s in ex._slots.slots for b in (s.inp, s.out)]
        assert len(blocks) == 4
        for block in blocks:
            st = os.stat(Path("/dev/shm", block.name.lstrip("/")))
            assert st.st_blocks * 512 >= block.size
    finally:
        ex.shutdown()


@pytest.mark.parametrize(
    ("fit", "expected"),
    [(0, "too little for 4 shared-memory slots"), (2, "room for 2 of 4 shared-memory slots")],
    ids=["no-room", "room-for-some"],
)
def test_slots_fit_in_half_the_free_shm(
    chunks: list[Chunk],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fit: int,
    expected: str,
) -> None:
    slot_bytes = 1 << 20
    each = SharedSlot.footprint(slot_bytes, slot_bytes + slot_bytes // 2)
    monkeypatch.setattr(process_slots, "shm_free_bytes", lambda: 2 * fit * each + each // 2)
    inline = InlineExecutor()
    want = summary([inline.submit(ParseTask(c)).result() for c in chunks])
    with caplog.at_level(logging.WARNING, logger="pipeline.executors.process"):
        ex = ProcessExecutor(2, slot_bytes=slot_bytes)
    try:
        assert len(ex._slots.slots) == fit
        results = [f.result(timeout=60) for f in [ex.submit(ParseTask(c)) for c in chunks * 2]]
    finally:
        ex.shutdown()
    assert summary(results[: len(chunks)]) == want
    assert summary(results[len(chunks) :]) == want
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert expected in warnings[0] and "go through pipes" in warnings[0]
    assert "--shm-size" in warnings[0] and "read.chunk_bytes" in warnings[0]


def test_plenty_of_shm_is_no_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(process_slots, "shm_free_bytes", lambda: 1 << 40)
    with caplog.at_level(logging.WARNING, logger="pipeline.executors.process"):
        ex = ProcessExecutor(2, slot_bytes=1 << 16)
    ex.shutdown()
    assert not caplog.records


def _no_space(*args: object, **kwargs: object) -> ProcessPoolExecutor:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_pool_that_cannot_start_is_a_stage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # the pool's queues create semaphores, which live in /dev/shm too
    created: list[SharedSlot] = []
    create = SharedSlot.create

    def recording_create(in_bytes: int, out_bytes: int) -> SharedSlot:
        created.append(create(in_bytes, out_bytes))
        return created[-1]

    monkeypatch.setattr(SharedSlot, "create", recording_create)
    monkeypatch.setattr(process_pools, "ProcessPoolExecutor", _no_space)
    with pytest.raises(StageError, match="cannot start the worker pool") as info:
        ProcessExecutor(2, slot_bytes=1 << 16)
    assert "/dev/shm is full" in str(info.value) and "--shm-size" in str(info.value)
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert created
    for slot in created:  # the slots made before are not left behind
        for block in (slot.inp, slot.out):
            assert not Path("/dev/shm", block.name.lstrip("/")).exists()


@pytest.mark.timeout(60)
def test_pool_that_cannot_restart_fails_the_chunks_instead_of_hanging(
    chunks: list[Chunk], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker dies and the new pool cannot be made (ENOSPC creating its semaphores): the parse-retry
    # thread used to die of it, leaving the chunks' futures pending and the run waiting forever.
    ex = ProcessExecutor(1, max_retries=2, slot_bytes=1 << 20)
    try:
        futures = [ex.submit(ParseTask(c)) for c in chunks * 4]
        monkeypatch.setattr(ex._pools, "_new_pool", _no_space)
        _kill_a_worker(ex)
        later = ex.submit(ParseTask(chunks[0]))  # to the broken pool: must fail the same way
        errors: list[StageError] = []
        for f in [*futures, later]:
            try:
                f.result(timeout=20)  # TimeoutError here is the hang this test is about
            except StageError as exc:
                errors.append(exc)
        assert errors and later.exception(timeout=0) is not None
        assert ex._pools.thread.is_alive()
        started = time.monotonic()
    finally:
        ex.shutdown()
    assert time.monotonic() - started < 15
    for err in errors:
        assert "the pool could not be restarted" in str(err) and "chunk lines " in str(err)
        assert "No space left on device" in str(err) and "/dev/shm is full" in str(err)
        assert isinstance(err.__cause__, OSError) and err.__cause__.errno == errno.ENOSPC


def test_a_workers_end_is_described_from_its_exit_status() -> None:
    # what a retried chunk's warning says of its worker: only SIGKILL suggests the OOM killer
    assert describe_exit(7, -signal.SIGKILL) == "worker 7 was killed by SIGKILL (e.g. by the OOM killer)"
    assert describe_exit(7, -signal.SIGSEGV) == "worker 7 was killed by SIGSEGV"
    assert describe_exit(7, 3) == "worker 7 exited with code 3 (a transform or a library ended the process)"
