"""What every executor does alike (``pipeline/executors``): parallel output equals the serial
reference, errors name the chunk, ``shutdown`` is safe twice, a later ``submit`` is refused, and
``shutdown(cancel=True)`` leaves no future pending. Backend details are in test_executor_process.py and
test_dask.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import get_args

import pytest

from pipeline.config import Config, ParseSection, validate
from pipeline.errors import StageError
from pipeline.executors import KINDS, Executor, make_executor
from pipeline.executors.inline import InlineExecutor
from pipeline.executors.process import ProcessExecutor
from pipeline.executors.thread import ThreadExecutor
from pipeline.stages.parse import ParseResult, ParseTask
from pipeline.stages.read import Chunk, largest_chunk
from pipeline.transforms import TransformSpec
from tests.conftest import SAMPLE, chunks_of, summary, wait_until_no_workers

# a LocalCluster costs ~1 s to start and stop: one test of it in the default suite, the rest slow
DASK = pytest.param("dask", marks=pytest.mark.slow)


@pytest.fixture(scope="module")
def chunks() -> list[Chunk]:
    return chunks_of(SAMPLE / "access-000.log")


def chunk_limit(cfg: Config) -> int:
    """The largest chunk the reader cuts with ``cfg``'s read settings."""
    return largest_chunk(cfg.read.chunk_bytes, cfg.read.max_line_bytes)


def executor(kind: str) -> Executor:
    cfg = validate({"parse": {"executor": kind, "workers": 2}, "read": {"chunk_bytes": "64KiB"}}).resolved()
    return make_executor(cfg.parse, chunk_limit(cfg))


@pytest.fixture
def ex(request: pytest.FixtureRequest) -> Iterator[Executor]:
    made = executor(request.param)
    try:
        yield made
    finally:
        made.shutdown(cancel=True)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ex", ["inline", "thread", "process", "dask"], indirect=True)
def test_parallel_equals_serial(ex: Executor, chunks: list[Chunk]) -> None:
    expected = summary([InlineExecutor().submit(ParseTask(c)).result() for c in chunks])
    results = [f.result(timeout=60) for f in [ex.submit(ParseTask(c)) for c in chunks * 2]]
    assert summary(results[: len(chunks)]) == expected
    assert summary(results[len(chunks) :]) == expected
    assert sum(r.lines for r in results) == 2 * 2000
    assert all(r.cpu_s > 0 and r.busy_s > 0 and r.worker for r in results)
    assert ex.max_in_flight >= ex.workers >= 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ex", ["inline", "thread", "process", DASK], indirect=True)
def test_errors_name_the_chunk(ex: Executor) -> None:
    # a transform's exception crosses back (pickled, for processes and Dask) as a StageError with the
    # chunk's file and lines; it is not retried
    line = '1.2.3.4 - - [01/Nov/2026:10:00:00 +0000] "GET /explode HTTP/1.1" 200 5 "-" "agent"\n'
    chunk = Chunk(0, "boom.log", 0, 41, line.encode(), 1)
    spec = TransformSpec.parse("tests.transform_examples:explode")
    fut = ex.submit(ParseTask(chunk, transforms=(spec,)))
    with pytest.raises(StageError, match="found /explode") as info:
        fut.result(timeout=60)
    assert "boom.log" in str(info.value) and "lines 41-41" in str(info.value)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["inline", "thread", "process", DASK])
def test_shutdown_twice_then_submit_is_refused(kind: str, chunks: list[Chunk]) -> None:
    ex = executor(kind)
    ex.submit(ParseTask(chunks[0])).result(timeout=60)
    ex.shutdown()
    ex.shutdown()  # twice: nothing left to do
    late = ex.submit(ParseTask(chunks[0]))
    with pytest.raises(StageError, match="cannot schedule new futures"):
        late.result(timeout=5)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["inline", "thread", "process", DASK])
def test_cancel_leaves_no_future_pending(kind: str, chunks: list[Chunk]) -> None:
    ex = executor(kind)
    futures: list[Future[ParseResult]] = [ex.submit(ParseTask(c)) for c in chunks * 4]
    started = time.monotonic()
    ex.shutdown(cancel=True)
    ex.shutdown(cancel=True)
    # done() rather than wait(): wait() does not count a future cancelled by its owner as done
    while not all(f.done() for f in futures) and time.monotonic() - started < 30:
        time.sleep(0.05)
    assert all(f.done() for f in futures)
    for fut in futures:  # finished before the cancel, cancelled, or failed by it: never left waiting
        assert fut.cancelled() or fut.exception() is None or isinstance(fut.exception(), StageError)


def test_thread_executor_parses_like_inline(chunks: list[Chunk]) -> None:
    threads, inline = ThreadExecutor(2), InlineExecutor()
    try:
        got = [f.result(timeout=30) for f in [threads.submit(ParseTask(c)) for c in chunks]]
    finally:
        threads.shutdown()
    want = [inline.submit(ParseTask(c)).result() for c in chunks]
    assert [(r.rows, r.reject_counts, [p.ipc for p in r.parts]) for r in got] == [
        (r.rows, r.reject_counts, [p.ipc for p in r.parts]) for r in want
    ]
    assert {r.worker for r in got} <= {"parse_0", "parse_1"}  # the timeline's lanes


def test_unknown_executor_names_the_allowed_ones() -> None:
    cfg = validate({"parse": {"workers": 1}}).resolved()
    cfg.parse.__dict__["executor"] = "gpu"  # past validation, as a caller with a stale config could
    with pytest.raises(ValueError, match="process, thread, inline, dask"):
        make_executor(cfg.parse, chunk_limit(cfg))


def _hanging_task(chunk: Chunk) -> ParseTask:
    return ParseTask(chunk, transforms=(TransformSpec.parse("tests.transform_examples:hang"),))


def test_the_process_executor_keeps_each_pools_own_process_table() -> None:
    # the table is how workers a broken pool left behind are killed at shutdown; a copy (the pool's
    # dict is empty when the pool starts) would kill nothing, and the interpreter's exit would wait
    # for such a worker forever
    ex = ProcessExecutor(1)
    try:
        assert ex._pools.tables[-1] is ex._pools.pool._processes
    finally:
        ex.shutdown()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["thread", "process", DASK])
def test_a_chunk_over_the_time_limit_fails_and_the_rest_stops_promptly(
    kind: str, chunks: list[Chunk]
) -> None:
    cfg = validate(
        {"parse": {"executor": kind, "workers": 2, "chunk_timeout_s": 0.5}, "read": {"chunk_bytes": "64KiB"}}
    ).resolved()
    ex = make_executor(cfg.parse, chunk_limit(cfg))
    try:
        fut = ex.submit(_hanging_task(chunks[1]))
        with pytest.raises(StageError) as info:
            fut.result(timeout=30)
        message = str(info.value)
        assert "access-000.log" in message and chunks[1].line_range in message
        assert "parse.chunk_timeout_s = 0.5 s (transforms: tests.transform_examples:hang)" in message
        more = [ex.submit(_hanging_task(c)) for c in chunks[2:4]]
    finally:
        started = time.monotonic()
        ex.shutdown(cancel=True)
        ex.shutdown(cancel=True)
        stopped = time.monotonic() - started
    assert stopped < 5, f"shutdown took {stopped:.1f} s"
    assert all(f.done() for f in more)
    if kind == "process":  # no worker left behind, in any pool the executor had (pytest would wait for it)
        wait_until_no_workers()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("kind", "reads_ranges", "reported"),
    [
        ("inline", False, 7),
        ("thread", False, 7),
        ("process", False, 7),
        pytest.param("dask", True, 2, marks=pytest.mark.slow),
    ],
)
def test_capabilities(kind: str, reads_ranges: bool, reported: int) -> None:
    # local executors: chunks are read in this process and parse.workers is reported as configured;
    # a cluster reads remote byte ranges itself and reports the workers it has (here the 2 it started)
    made = executor(kind)
    try:
        assert isinstance(made, Executor)
        assert made.reads_ranges is reads_ranges
        assert made.reported_workers(7) == reported
    finally:
        made.shutdown()


def test_every_kind_the_config_accepts_is_built() -> None:
    # the config's allowed values are the registry's, in the same order (errors list them)
    assert KINDS == ("process", "thread", "inline", "dask")
    field = ParseSection.model_fields["executor"]
    assert get_args(field.annotation) == KINDS
