"""The parse stage's threads (``pipeline/stages/dispatch.py``) and the read stage's
(``pipeline/stages/intake.py``): at most ``max_in_flight`` chunks out, results handed on whatever order
they finish in, the reject guard stopping a run, every planned input read into the chunk channel."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from pipeline.config import Config, ResolvedConfig, validate
from pipeline.diagnostics.stats import RunStats, Samples
from pipeline.errors import FormatMismatch, PipelineError
from pipeline.executors import Executor
from pipeline.inputs.ranges import Renumber
from pipeline.output.layout import Layout
from pipeline.output.record import RejectGuard, RunRecord
from pipeline.plan import RunPlan, find_inputs, make_plan
from pipeline.report.progress import Progress
from pipeline.stages.dispatch import Dispatch
from pipeline.stages.flow import Channel, RunState, Sampler, Shared, StageThreads
from pipeline.stages.intake import Intake
from pipeline.stages.parse import ParseResult, ParseTask, parse_chunk
from pipeline.stages.read import Chunk
from pipeline.synthetic import generate


class _Backwards(Executor):
    """Holds chunks until ``max_in_flight`` are out (or none came for a moment), then parses them
    last first."""

    workers = 1
    max_in_flight = 3

    def __init__(self) -> None:
        self.pending: list[tuple[ParseTask, Future[ParseResult]]] = []
        self.most = 0
        self.lock = threading.Lock()

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        fut: Future[ParseResult] = Future()
        with self.lock:
            self.pending.append((task, fut))
            self.most = max(self.most, len(self.pending))
            full = len(self.pending) == self.max_in_flight
        if full:
            self.flush()
        else:
            threading.Timer(0.05, self.flush).start()
        return fut

    def flush(self) -> None:
        with self.lock:
            todo, self.pending = self.pending[::-1], []
        for task, fut in todo:
            fut.set_result(parse_chunk(task))

    def shutdown(self, cancel: bool = False) -> None:
        self.flush()


def _setup(tmp_path: Path, lines: int = 6000, **run: object) -> tuple[ResolvedConfig, RunPlan, RunRecord]:
    src = tmp_path / "logs"
    if not src.exists():
        generate(src, files=2, lines=lines, bad=0.0)
    cfg = validate(
        {
            "run": {"inputs": [str(src)], "output": str(tmp_path / "out"), **run},
            "read": {"chunk_bytes": "64KiB", "workers": 2},
        }
    ).resolved()
    record = RunRecord("test")
    files, settings, sources = find_inputs(cfg, Layout.of(cfg.run.output, cfg.run.meta_dir), record)
    return cfg, make_plan(cfg, files, settings, None, False, record, sources), record


def _read(cfg: ResolvedConfig, plan: RunPlan, record: RunRecord, state: RunState) -> list[Chunk]:
    chunks: Channel[Chunk] = Channel(1000, state)
    offsets = [0] * len(plan.reads)
    progress = Progress(0, False)
    try:
        Intake(
            cfg, plan.reads, chunks, Shared(state, record, progress), RunStats().read, offsets, None, None
        ).run()
    finally:
        progress.close()  # its ticker would log into later tests
    out = []
    while (chunk := chunks.get()) is not None:
        out.append(chunk)
    assert offsets == [record.counts[i].end_offset for i in range(len(plan.reads))]
    return out


def _dispatch(
    cfg: Config, plan: RunPlan, record: RunRecord, state: RunState, executor: Executor, chunks: list[Chunk]
) -> list[ParseResult]:
    into: Channel[Chunk] = Channel(len(chunks) + 1, state)
    for chunk in chunks:
        into.put(chunk)
    into.close()
    results: Channel[ParseResult] = Channel(len(chunks) + 1, state)
    progress = Progress(0, False)
    dispatch = Dispatch(
        executor,
        plan,
        plan.tasks(cfg, (), panels=False),
        into,
        results,
        Shared(state, record, progress),
        RunStats().parse,
        RejectGuard(cfg.run.max_reject_ratio, "of the run"),
        Renumber(),
        transform_s={},
        absent={},
        panels=None,
    )
    threads = StageThreads(state)  # as the run has it: a failure shuts the executor down
    threads.add("dispatch", dispatch.run)
    stats = RunStats()
    with contextlib.suppress(PipelineError):
        try:
            threads.run(executor, [], Sampler(Samples(stats.started), stats, into, results))
        finally:
            progress.close()  # its ticker would log into later tests
    out = []
    while state.failure is None and (result := results.get()) is not None:
        out.append(result)
    return out


@pytest.mark.timeout(60)
def test_every_input_is_read_and_every_chunk_handed_on_with_at_most_max_in_flight_out(tmp_path: Path) -> None:
    cfg, plan, record = _setup(tmp_path)
    state = RunState()
    chunks = _read(cfg, plan, record, state)
    assert len(chunks) > 6 and {c.file_id for c in chunks} == {0, 1}
    assert [c.lines for c in record.counts] == [6000, 6000]
    executor = _Backwards()
    results = _dispatch(cfg, plan, record, state, executor, chunks)
    assert state.failure is None
    assert executor.most == executor.max_in_flight  # out of order, never more than its slots
    assert sorted((r.file_id, r.seq) for r in results) == sorted((c.file_id, c.seq) for c in chunks)
    assert sum(r.lines for r in results) == 12000


@pytest.mark.timeout(60)
def test_the_reject_guard_stops_the_run_naming_the_input(tmp_path: Path) -> None:
    src = tmp_path / "logs"
    src.mkdir()
    (src / "notes.log").write_text("not an access log line at all\n" * 6000)
    cfg, plan, record = _setup(tmp_path)
    state = RunState()
    chunks = _read(cfg, plan, record, state)
    _dispatch(cfg, plan, record, state, _Backwards(), chunks)
    assert isinstance(state.failure, FormatMismatch)
    assert "notes.log" in str(state.failure)
