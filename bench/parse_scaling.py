"""Parse-stage scaling: the parse stage alone, with 1, 2, ... worker processes, on the same chunks.

Run from the repository root (``make bench-parse``)::

    .venv/bin/python -m bench parse [--files 8] [--lines 125000] [--workers 1,2] [--repeats 5]
        [--config configs/laptop.toml]

Why a stage benchmark: in a whole run the main process (readers, the writer's Parquet encoding, moving
data) needs about half a core, so on a 2-core machine a second parse worker shares its core with the
main process and a run cannot show what the stage itself does with a second core. Here the chunks are
read into memory first (``read.chunk_bytes`` of the config, cut by the pipeline's own reader) and then
fed through the pipeline's own parse stage: :class:`pipeline.executors.process.ProcessExecutor` (fork server,
shared-memory slots, at most 2 chunks per worker in flight, as the runner dispatches them) running
:func:`pipeline.stages.parse.parse_chunk`. The results are checked (rows + rejects == lines) and dropped, so
the main process only copies chunks into the slots and results out of them.

Each round runs every worker count once (alternating); the pool is started and warmed with one chunk
per worker before the clock starts. Reported: median seconds, lines/s, speed-up over the first worker
count, the workers' CPU per million lines and the main process's CPU.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from bench import REPO, SetupError, datasets, emit, log
from bench.environment import ensure_bytecode
from bench.report import md_table
from pipeline.config import load_config
from pipeline.executors.process import ProcessExecutor
from pipeline.formats import key_of
from pipeline.stages.parse import ParseResult, ParseTask
from pipeline.stages.read import Chunk, Reader, largest_chunk


@dataclass
class Round:
    """One timed pass of every chunk through a pool of ``workers`` processes."""

    workers: int
    seconds: float
    worker_cpu_s: float
    main_cpu_s: float
    lines: int


def read_chunks(files: list[Path], chunk_bytes: int, max_line_bytes: int, reject_bytes: int) -> list[Chunk]:
    """Every chunk of ``files``, cut by the pipeline's reader, held in memory."""
    chunks: list[Chunk] = []
    for i, path in enumerate(files):
        report = Reader(i, str(path), chunk_bytes, max_line_bytes, reject_bytes, chunks.append).run()
        if report.error:
            raise SetupError(f"{path}: {report.error}")
    return chunks


@dataclass
class Totals:
    """What the results of one pass add up to (the results themselves are dropped, as the writer does)."""

    lines: int = 0
    accounted: int = 0  # rows + rejects
    worker_cpu_s: float = 0.0


def parse_all(ex: ProcessExecutor, tasks: list[ParseTask]) -> tuple[Totals, float, float]:
    """Feed ``tasks`` to ``ex`` with at most 2 per worker in flight, like the runner's dispatcher.

    Returns the totals, the wall seconds and the main process's CPU seconds."""
    in_flight = threading.Semaphore(2 * ex.workers)
    totals = Totals()
    lock = threading.Lock()
    errors: list[BaseException] = []
    all_done = threading.Event()
    pending = [len(tasks)]

    def done(fut: Future[ParseResult]) -> None:
        # the result is dropped here, so its memory is reused as in a run (the writer drops it)
        try:
            r = fut.result()
            with lock:
                totals.lines += r.lines
                totals.accounted += r.rows + sum(r.reject_counts.values())
                totals.worker_cpu_s += r.cpu_s
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            errors.append(exc)
        in_flight.release()
        with lock:
            pending[0] -= 1
            if pending[0] == 0:
                all_done.set()

    t0, c0 = time.perf_counter(), time.process_time()
    for task in tasks:
        in_flight.acquire()
        ex.submit(task).add_done_callback(done)
    if not all_done.wait(timeout=600):
        raise SetupError("parsing did not finish within 600 s")
    seconds, main_cpu = time.perf_counter() - t0, time.process_time() - c0
    if errors:
        raise errors[0]
    return totals, seconds, main_cpu


def one_round(workers: int, tasks: list[ParseTask], start_method: str, slot_bytes: int) -> Round:
    """Start a pool, warm it with one chunk per worker, then time all ``tasks``."""
    ex = ProcessExecutor(workers, start_method, max_retries=0, slot_bytes=slot_bytes)
    try:
        parse_all(ex, tasks[:workers])  # workers forked and warm before the clock starts
        totals, seconds, main_cpu = parse_all(ex, tasks)
    finally:
        ex.shutdown()
    if totals.accounted != totals.lines:
        raise SetupError(f"{workers} workers: rows + rejected = {totals.accounted} != {totals.lines} lines")
    return Round(workers, seconds, totals.worker_cpu_s, main_cpu, totals.lines)


def report(rounds: list[Round]) -> str:
    """Markdown table: medians per worker count and the speed-up over the first one."""
    counts = sorted({r.workers for r in rounds})
    med = {w: statistics.median(r.seconds for r in rounds if r.workers == w) for w in counts}
    rows = []
    for w in counts:
        mine = [r for r in rounds if r.workers == w]
        lines = mine[0].lines
        rows.append(
            [
                str(w),
                f"{med[w]:.3f}",
                ", ".join(f"{r.seconds:.3f}" for r in mine),
                f"{lines / med[w]:,.0f}",
                f"{med[counts[0]] / med[w]:.2f}x",
                f"{statistics.median(r.worker_cpu_s for r in mine) / lines * 1e6:.3f}",
                f"{statistics.median(r.main_cpu_s for r in mine):.3f}",
            ]
        )
    headers = ["workers", "median s", "runs s", "lines/s", f"vs {counts[0]}", "worker CPU-s/1M", "main CPU-s"]
    return md_table(headers, rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(prog="python -m bench parse", description=__doc__.split("\n", 1)[0])
    ap.add_argument("--files", type=int, default=8, help="number of log files (default 8)")
    ap.add_argument("--lines", type=int, default=125_000, help="lines per file (default 125000)")
    ap.add_argument("--workers", default="1,2", help="comma list of worker counts (default 1,2)")
    ap.add_argument("--repeats", "-r", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--config", default="configs/laptop.toml", help="chunk size etc. (default laptop.toml)")
    a = ap.parse_args(argv)
    try:
        a.worker_counts = [int(w) for w in a.workers.split(",")]
    except ValueError:
        ap.error(f"--workers wants a comma list of integers, got {a.workers!r}")
    if min(a.worker_counts) < 1 or a.repeats < 1 or a.files < 1 or a.lines < 1:
        ap.error("--workers, --repeats, --files and --lines must be at least 1")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rounds and print the table; 0 on success, 2 on a set-up error."""
    a = parse_args(argv)
    try:
        ensure_bytecode()
        cfg = load_config(REPO / a.config if not Path(a.config).exists() else a.config)
        dataset = datasets.ensure(a.files, a.lines, False, REPO / ".venv" / "bin" / "logpipe")
        files = sorted(dataset.path.iterdir())
        chunks = read_chunks(files, cfg.read.chunk_bytes, cfg.read.max_line_bytes, cfg.parse.reject_bytes)
        settings = (key_of(cfg.run.format), cfg.read.max_line_bytes, cfg.parse.reject_bytes)
        tasks = [ParseTask(c, *settings) for c in chunks]
        slot_bytes = largest_chunk(cfg.read.chunk_bytes, cfg.read.max_line_bytes)
        rounds = []
        for i in range(a.repeats):
            for w in a.worker_counts:
                rounds.append(one_round(w, tasks, cfg.parse.start_method, slot_bytes))
                log(f"parse stage, round {i + 1}: {w} worker(s) {rounds[-1].seconds:.3f} s")
    except SetupError as exc:
        log(f"error: {exc}")
        return 2
    emit(
        f"# Parse stage alone: {dataset.name} ({dataset.lines:,} lines, {len(chunks)} chunks of "
        f"{cfg.read.chunk_bytes:,} bytes), {a.repeats} alternating rounds, medians\n"
    )
    emit(report(rounds))
    return 0
