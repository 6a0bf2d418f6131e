"""Wiring: the stages, the bounded queues between them, failure handling and the commit.

::

      main process                                              | workers (pipeline.executors)
      ------------------------------------------------------------+------------------------------
      input files                                                 |
         |                                                        |
      [read pool: read.workers threads]                           |
         |  open, decompress (C, no GIL), cut line-aligned chunks |
         v                                                        |
      chunk queue (read.queue_depth chunks, blocks when full)     |
         |                                                        |
      [dispatch thread] --- ParseTask (chunk bytes) ------------> | [parse.executor: a pool of
         (at most executor.max_in_flight chunks in flight,        |  parse.workers processes, or
          2 per worker)                                           |  a Dask cluster's workers]
      [collect thread]  <-- ParseResult (Arrow IPC bytes) ------- |  parse_chunk(): the format's
         |  reject guard (run.max_reject_ratio)                   |  plan (numpy/Arrow), the time
         |                                                        |  window, the transforms
      write queue (parse.queue_depth results, blocks when full)   |
         |                                                        |
      [write.workers threads] Parquet (C++, no GIL) into staging  |
         |                                                        |
      commit (pipeline.output.record): dataset and record published      |
        together; OUTPUT.meta/last-run.json for every run         |

Every queue is bounded, so memory is set by the config, not by the input (README: "Memory").
Any failure sets ``stop``: every thread polls it while blocked on a queue, the pool is shut down, the
staging directory is removed and the previous output stays untouched. Without one, the collect thread
shuts the pool down as soon as the last result is in, while the writers still close their files.
The accounting invariant ``rows + rejected == lines`` is checked before anything is committed.

Before anything is read or created, the run checks that the output is logpipe's to replace
(pipeline.output.safety); under the locks of the output and of its record it then reads the published record
(pipeline.output.dataset): an incremental run appends only to a dataset that its record describes, and
otherwise rebuilds it in full, committing the rebuild only if it holds at least the rows the dataset
held (``--allow-shrink`` drops them deliberately).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from pipeline.config import Config
from pipeline.diagnostics.stats import RunStats, Samples, advice, bottleneck, queue_hints
from pipeline.errors import (
    ExitCode,
    FormatMismatch,
    HistoryShrinks,
    Interrupted,
    NoInput,
    PipelineError,
    StageError,
)
from pipeline.executors import Executor, make_executor
from pipeline.formats import (
    Format,
    FormatKey,
    choose,
    get_format,
    key_of,
    parquet_options,
    union_schema,
)
from pipeline.inputs import incremental, ranges
from pipeline.inputs.ranges import RangeChunk, Renumber
from pipeline.inputs.remote import RemoteReadError, Settings, is_url, redact_config
from pipeline.output import safety
from pipeline.output.dataset import Contents, Published, dir_id, inspect, read_json, shrinks
from pipeline.output.layout import REPORT, Layout
from pipeline.output.lock import OutputLock
from pipeline.output.record import (
    DETECT_LINES,
    Committer,
    FileCounts,
    RejectGuard,
    RunRecord,
    check_output_path,
    write_json,
    write_last_run,
)
from pipeline.report.data import RejectExamples
from pipeline.report.progress import Progress, use_bars
from pipeline.runtime import release_free_heap
from pipeline.stages.parse import ParseResult, ParseTask, from_ipc
from pipeline.stages.read import (
    Chunk,
    FileReport,
    Reader,
    head_lines,
    input_size,
    largest_chunk,
    resolve_inputs,
)
from pipeline.stages.write import PartitionWriter
from pipeline.transforms import TransformSpec, output_schema

if TYPE_CHECKING:
    from pipeline.report.panels import Panels

log = logging.getLogger(__name__)

T = TypeVar("T")
_END = object()  # end-of-stream marker on a queue
_POLL_S = 0.1  # how often a blocked thread looks at the stop flag
_STOP_JOIN_S = 10.0  # how long a failed run waits for its stage threads, all together
# ... and one stopped by a signal: SIGTERM ends a run within about a second, even with a thread stuck in
# a transform (the inline and thread executors' chunks run in threads that nothing can stop)
_SIGNAL_JOIN_S = 0.8


class _Stopped(Exception):
    """Raised inside a stage thread when the run is being stopped."""


@dataclass
class RunResult:
    """The outcome of a run: its exit code and the manifest written for it."""

    exit_code: ExitCode
    manifest: dict[str, Any]
    error: BaseException | None = None
    extras: dict[str, Any] | None = None  # the report's raw material (pipeline.report.data)


@dataclass
class _State:
    """Shared by the stage threads of one run."""

    stop: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.failure is None:
                self.failure = exc
        self.stop.set()


class Pipeline:
    """One run of the pipeline over a resolved :class:`Config`."""

    def __init__(
        self,
        cfg: Config,
        full_refresh: bool = False,
        sample_bytes: int | None = None,
        *,
        protected: Sequence[Path] = (),
        allow_shrink: bool = False,
    ):
        self.cfg = cfg.resolved()
        # what "auto" chose on this machine, for the manifest
        self.auto = {
            f"{stage}.workers": self.cfg.workers(stage)
            for stage in ("read", "parse", "write")
            if getattr(cfg, stage).workers == "auto"
        }
        self.full_refresh = full_refresh
        self.protected = protected  # folders the output must not hold (the config file's)
        self.allow_shrink = allow_shrink  # a rebuild may publish fewer rows than the dataset held
        self.published: Published | None = None  # the dataset and record as the run found them
        self.rebuild: str | None = None  # why an incremental run rebuilds in full instead of appending
        self.carried = Contents({})  # files an incremental run carries over from the published dataset
        self.contents = Contents({})  # what the dataset holds once this run commits
        # logpipe profile: read about this many bytes, then stop at a line's end
        # (see pipeline.diagnostics.profile)
        self.sample_bytes = sample_bytes
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        self.layout = Layout.of(self.cfg.run.output, self.cfg.run.meta_dir)
        self.record = RunRecord(self.run_id)
        self.formats: list[Format] = []  # each input's format, by plan index
        self.union: tuple[FormatKey, ...] = ()  # the formats of a run that has several
        self.transforms = tuple(TransformSpec.parse(entry) for entry in self.cfg.run.transforms)
        self.transform_s: dict[str, float] = {}  # seconds in each transform, summed over the workers
        self.absent: dict[int, set[str]] = {}  # JSON lines: keys no chunk of the input had a value for
        self.guard = RejectGuard(self.cfg.run.max_reject_ratio, "of the run")
        self.stats = RunStats()
        self.stats.read.workers = self.cfg.workers("read")
        self.stats.parse.workers = self.cfg.workers("parse")
        self.stats.write.workers = self.cfg.workers("write")
        self.stats.parse.executor = self.cfg.parse.executor
        self.samples = Samples(self.stats.started)
        self.reject_examples = RejectExamples()
        # the access-log panels cost the parse workers about a quarter more CPU (BENCHMARKS.md): only
        # for a run that draws a report, or asks to keep them for `logpipe report`
        self.panels: Panels | None = None
        if self.cfg.run.report or self.cfg.run.panels:
            from pipeline.report.panels import Panels  # imports pyarrow.compute: only when it is needed

            self.panels = Panels()
        self.state = _State()
        self.chunks: queue.Queue[Any] = queue.Queue(maxsize=self.cfg.read.queue_depth)
        self.results: queue.Queue[Any] = queue.Queue(maxsize=self.cfg.parse.queue_depth)
        self.plans: list[incremental.Plan] = []
        self.known: dict[str, incremental.FileState] = {}  # incremental: what earlier runs took
        self.offsets: list[int] = []  # where each input stands after this run (incremental state)
        self.writers: list[PartitionWriter] = []
        self.executor: Executor | None = None
        self.renumber = (
            Renumber()
        )  # remote inputs read by the Dask workers themselves (pipeline.inputs.ranges)
        self._range_of: dict[int, tuple[int, int]] = {}  # a range's future (by id): its file and range
        self.progress: Progress | None = None
        self.started = datetime.now(UTC)
        self.t0 = time.perf_counter()

    # ------------------------------------------------------------------ run

    def run(self) -> RunResult:
        """Run every stage under the locks of the output and of its record; commit on success; always
        record the run.

        Refused before anything is touched: an output that is not logpipe's to replace, paths that
        collide, and an output another run holds (:attr:`ExitCode.LOCKED`); none writes a record.
        """
        locks = [OutputLock(self.layout.output, self.run_id), OutputLock(self.layout.meta, self.run_id)]
        try:
            safety.check_paths(self.layout, self._specs(), self.protected, self.cfg.run.report)
            check_output_path(self.layout)
            for lock in locks:
                lock.acquire()
            safety.check_owned(self.layout, read_json(self.layout.manifest), dir_id(self.layout.output))
        except PipelineError as exc:  # refused, locked, or the lock file cannot be created
            for lock in reversed(locks):
                lock.release()
            code = _exit_code(exc)
            status = {ExitCode.LOCKED: "locked", ExitCode.REFUSED: "refused"}.get(code, "failed")
            return RunResult(code, self._manifest(status, code, error=exc), exc)
        try:
            return self._run_locked()
        finally:
            for lock in reversed(locks):
                lock.release()

    def _run_locked(self) -> RunResult:
        committer = Committer(self.layout, self.run_id)
        try:
            committer.recover()
            files, settings = self._inputs()
            self.published = inspect(self.layout)
            data_dir, meta_dir = committer.prepare()
            self._plan(files)
            self._formats(settings)
            schema = output_schema(self.transforms, self._schema())  # a transform's error fails the run
            if self._appends():
                schema = self._keep(committer, schema)
            self._run_stages(data_dir, meta_dir, schema)
            self._warn_absent()
            self.record.check_accounting(sum(w.rows for w in self.writers))
            self.guard.check_total(self.record.lines, self.record.rejected)
            code = ExitCode.INPUTS_FAILED if self.record.failed_inputs() else ExitCode.OK
            if self.record.lines == 0 and not self._nothing_new():
                raise NoInput(self.record.no_input_message(read_json(self.layout.manifest)))
            if self.record.lines == 0 and not self._state_changed():
                committer.discard()  # an incremental run that found nothing new: the output stays as is
                return self._finish(RunResult(code, self._manifest("unchanged", code)))
            self.contents = committer.staged(self.carried, (f for w in self.writers for f in w.files))
            self._check_history(files)
            if self.cfg.run.incremental:
                write_json(meta_dir / self.layout.state.name, self._new_state())
            outputs = [asdict(f) for w in self.writers for f in w.files]
            manifest = self._manifest("ok", code, committed=True, outputs=outputs)
            extras = self._extras()  # published with the record, and as the last run's
            write_json(meta_dir / REPORT, extras, indent=None)
            published = committer.commit(manifest, self.contents)
            return self._finish(self._committed(code, published, extras))
        except BaseException as exc:
            if committer.done is not None and isinstance(exc, Interrupted | KeyboardInterrupt):
                # a signal after the commit (while cleaning up, or recording it): the run committed
                signum = exc.signum if isinstance(exc, Interrupted) else 2
                return self._finish(self._committed(code, {**committer.done, "signal": signum}, None))
            error = exc if not isinstance(exc, KeyboardInterrupt) else Interrupted(2)
            committer.discard()
            if not isinstance(exc, Exception | KeyboardInterrupt):
                raise
            code = _exit_code(error)
            status = {
                ExitCode.SIGINT: "interrupted",
                ExitCode.SIGTERM: "interrupted",
                ExitCode.NO_INPUT: "no_input",
                ExitCode.FORMAT_MISMATCH: "format_mismatch",
                ExitCode.SHRINK: "shrink",
            }.get(code, "failed")
            if committer.exchanged:
                error = PipelineError(
                    f"{error}; the dataset was published but not its record: the next run completes "
                    "the commit"
                )
            return self._finish(RunResult(code, self._manifest(status, code, error=error), error))
        finally:
            if self.progress is not None:
                self.progress.close()

    def _committed(
        self, code: ExitCode, manifest: dict[str, Any], extras: dict[str, Any] | None
    ) -> RunResult:
        """The result of a run that committed; a signal that came during the commit (held back until
        it was done) makes it an interrupted run whose data and record are the new ones."""
        signum = manifest.get("signal")
        if isinstance(signum, int):
            error = Interrupted(signum, committed=True)
            code = _exit_code(error)
            manifest = {**manifest, "exit_code": int(code)}
            return RunResult(code, manifest, error, extras=extras)
        return RunResult(code, manifest, extras=extras)

    def _finish(self, result: RunResult) -> RunResult:
        if result.extras is None:
            result.extras = self._extras()
        write_last_run(self.layout, result.manifest, result.extras)
        return result

    def _extras(self) -> dict[str, Any]:
        """What only the report draws: the workers' intervals, the samples, reject examples."""
        return {
            "timeline": {"lanes": self.stats.timeline.lanes()},
            "samples": self.samples.to_dict(self.cfg.read.queue_depth, self.cfg.parse.queue_depth),
            "reject_examples": self.reject_examples.to_list(),
            "panels": self.panels.to_dict() if self.panels is not None else None,
        }

    def _warn_absent(self) -> None:
        """JSON lines: a mapped key that no line of an input has a value for is most likely misspelt."""
        for file_id, keys in sorted(self.absent.items()):
            for key in sorted(keys):
                log.warning(
                    "jsonl: no line of %s has a value for the key %r (its column is all null): is it "
                    "spelt as the lines spell it?",
                    self.plans[file_id].path,
                    key,
                )

    def _specs(self) -> list[str]:
        """Every input spec of the run (``run.inputs`` or the sources')."""
        run = self.cfg.run
        return [spec for s in run.sources for spec in s.inputs] or list(run.inputs)

    def _appends(self) -> bool:
        """Whether this run adds to the published dataset (an incremental run over a dataset that its
        record describes) rather than replacing it."""
        return self.cfg.run.incremental and not self.full_refresh and self.rebuild is None

    def _check_history(self, files: list[str]) -> None:
        """A rebuild must not drop rows of an incremental history (pipeline.output.dataset.shrinks)."""
        prev = self.published
        if prev is None or self._appends() or (not self.cfg.run.incremental and prev.state is None):
            return  # appending; or a dataset of full runs, which is no history: each run publishes its inputs
        what = shrinks(prev, self.layout.output, self.contents.rows, files)
        if what is None:
            return
        if self.allow_shrink:
            log.warning("%s (--allow-shrink: they are dropped)", what)
            return
        raise HistoryShrinks(
            f"{what} (or the config keeps fewer rows now). Nothing was committed. To publish the rebuild "
            "anyway, dropping those rows: run again with --allow-shrink"
        )

    def _nothing_new(self) -> bool:
        """An incremental run over inputs it has seen before, which found no new line: not an error."""
        return self.cfg.run.incremental and not self.full_refresh and bool(self.known)

    def _state_changed(self) -> bool:
        """Whether this run learnt something about its inputs that the published state lacks."""
        return incremental.needs_saving(self.known, self.plans)

    def _new_state(self) -> dict[str, Any]:
        lines = [c.first_line - 1 + c.lines for c in self.record.counts]
        errors = [c.error for c in self.record.counts]
        return incremental.updated(self.known, self.plans, self.offsets, lines, errors)

    def _inputs(self) -> tuple[list[str], list[str | dict[str, str]]]:
        """Every input file, and the format setting of each: ``run.inputs`` with ``run.format``, or
        each of ``[[run.sources]]`` with its own (a file in two sources is read once, with the first)."""
        run = self.cfg.run
        sources = [(s.inputs, s.format) for s in run.sources] or [(run.inputs, run.format)]
        by_file: dict[str, str | dict[str, str]] = {}
        remote = Settings(run.storage_options, self.cfg.read.max_retries, self.cfg.read.timeout_s)
        for specs, setting in sources:
            files, missing = resolve_inputs(specs, remote)
            self.record.missing += missing
            for path in files:
                by_file.setdefault(path, setting)
        kept, skipped = safety.own_files(self.layout, self._specs(), by_file)
        if skipped:
            log.info(
                "input: skipped %d files of the output %s and its record, inside the input folder",
                len(skipped),
                self.layout.output,
            )
        return kept, [by_file[path] for path in kept]

    def _formats(self, settings: list[str | dict[str, str]]) -> None:
        """Each input's compiled format (``auto``: the built-in that parses most of its first lines),
        and the columns' union when there are several."""
        keys: list[FormatKey] = []
        for plan, counts, setting in zip(self.plans, self.record.counts, settings, strict=True):
            if setting == "auto":
                keys.append(self._detect(plan.path))
            else:
                keys.append(key_of(setting))
            counts.format = keys[-1] if isinstance(keys[-1], str) else f"{keys[-1][0]} format string"
        self.formats = [get_format(k) for k in keys]
        distinct = tuple(dict.fromkeys(keys))
        self.union = distinct if len(distinct) > 1 else ()

    def _detect(self, path: str) -> FormatKey:
        try:
            lines = head_lines(path)
        except (OSError, EOFError, ValueError):
            return "combined"  # the reader reports the file's error
        if not lines:
            return "combined"  # nothing to read: whatever the format
        chosen = choose(lines)
        if chosen is None:
            raise FormatMismatch(
                f"format auto: no built-in format reads any of the first {len(lines):,} lines of {path}, "
                "and they are not JSON lines. Paste the server's format into the config "
                "([run.format] nginx = '...' or apache = '...'), or leave the file out with a glob"
            )
        key, rows = chosen
        name = key if isinstance(key, str) else "JSON lines"
        log.info("format auto: %s looks like %s (%d of %d lines)", path, name, rows, len(lines))
        return key

    def _schema(self) -> pa.Schema:
        """The columns the formats give (their union when there are several)."""
        if self.union:
            return union_schema(self.union)
        return self.formats[0].schema if self.formats else get_format("combined").schema

    def _plan(self, files: list[str]) -> None:
        """Decide what to read of each input (incremental runs: what earlier runs did not read)."""
        prev = self.published
        if self.cfg.run.incremental and not self.full_refresh and prev is not None and prev.problem:
            self.rebuild = prev.problem
            log.warning(
                "incremental: %s: rebuilding the dataset from every input instead of adding to it (committed "
                "only if it holds at least the rows the dataset held)",
                prev.problem,
            )
        if not self.cfg.run.incremental:
            self.plans = [incremental.Plan(p, "new") for p in files]
        else:
            if self._appends() and prev is not None:
                self.known = prev.state or {}
            self.plans = incremental.plan(files, self.known)
        self.record.counts = [FileCounts(p.path, mode=p.mode, first_line=p.first_line) for p in self.plans]
        self.offsets = [p.start_offset for p in self.plans]

    def _keep(self, committer: Committer, schema: pa.Schema) -> pa.Schema:
        """Incremental runs: carry the published dataset over into this run's, under the schema of both
        (see :meth:`pipeline.output.record.Committer.carry_over`)."""
        merged, self.carried, rewritten = committer.carry_over(schema)
        log.info(
            "incremental: kept %d files of the previous output (%d rewritten)",
            len(self.carried.files),
            rewritten,
        )
        return merged

    def _run_stages(self, data_dir: Path, meta_dir: Path, schema: pa.Schema) -> None:
        cfg = self.cfg
        single = self.formats[0].parquet_options if len({f.key for f in self.formats}) == 1 else None
        # the format's own settings suit its own types; a column a transform (or the dataset) retyped
        # takes the settings of its type: an encoding of integers cannot write floats
        own = self.formats[0].schema if single is not None else pa.schema([])
        retyped = [f.name for f in schema if f.name in own.names and own.field(f.name).type != f.type]
        if retyped:
            single = None
        options = {
            key: [c for c in value if c in schema.names]
            if isinstance(value, list)
            else {c: v for c, v in value.items() if c in schema.names}
            for key, value in (single or parquet_options(schema)).items()
        }
        total = sum(input_size(p.path) for p in self.plans if p.reads)
        self.progress = Progress(total, use_bars(cfg.run.progress))
        self.writers = [
            PartitionWriter(
                data_dir,
                f"{self.run_id}-w{k}",
                schema,
                rejects_dir=meta_dir / self.layout.rejects.name,
                parquet_options=options,
                row_group_rows=cfg.write.row_group_rows,
                max_rows_per_file=cfg.write.max_rows_per_file,
                max_open_files=cfg.write.max_open_files,
                compression=cfg.write.compression,
                compression_level=cfg.write.compression_level,
            )
            for k in range(cfg.workers("write"))
        ]
        self.executor = make_executor(cfg.parse, largest_chunk(cfg.read.chunk_bytes, cfg.read.max_line_bytes))
        self.stats.parse.workers = self.executor.reported_workers(self.stats.parse.workers)
        threads: list[threading.Thread] = []
        sampling = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(sampling,), name="sampler", daemon=True)
        try:
            sampler.start()
            threads = [
                self._thread("read", self._read_all),
                self._thread("dispatch", self._dispatch),
                *(self._thread(f"write-{k}", self._write_loop, w) for k, w in enumerate(self.writers)),
            ]
            for t in threads:
                t.start()
            # The main thread only waits, so SIGINT/SIGTERM (delivered to it) are handled at once.
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=_POLL_S)
        except BaseException as exc:
            self.state.fail(exc)
            raise
        finally:
            failed = self.state.failure is not None
            if failed:
                # cancel chunks not yet started, so the threads waiting for them can finish
                self.executor.shutdown(cancel=True)
            budget = _SIGNAL_JOIN_S if isinstance(self.state.failure, Interrupted) else _STOP_JOIN_S
            deadline = time.monotonic() + budget  # one budget for all: each stuck thread adds none
            for t in threads:
                # bounded: a thread stuck in a read that never returns (a hung network mount) must not
                # keep a stopped run alive; the threads are daemons and end with the process
                t.join(timeout=None if not failed else max(0.0, deadline - time.monotonic()))
                if t.is_alive():
                    log.warning("%s thread did not stop within %.1f s; leaving it behind", t.name, budget)
            if not failed:
                self.executor.shutdown()
            sampling.set()
            sampler.join()
            self.stats.machine.finish()
            alive = {t.name for t in threads if t.is_alive()}
            for k, w in enumerate(self.writers):
                if self.state.failure is None:
                    w.close()
                elif f"write-{k}" not in alive:  # a writer still in a write keeps its files to itself
                    w.abort()
        if self.state.failure is not None:
            raise self.state.failure

    def _thread(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        def body() -> None:
            try:
                target(*args)
            except _Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread through state
                self.state.fail(exc)

        return threading.Thread(target=body, name=name, daemon=True)

    def _sample(self, done: threading.Event) -> None:
        """Counts and queue depths every ``samples.period`` seconds, for the report's charts."""
        stats = self.stats
        while True:
            finished = done.wait(self.samples.period)
            values = (stats.read.lines, stats.parse.lines, stats.write.lines)
            self.samples.take(time.perf_counter(), (*values, self.chunks.qsize(), self.results.qsize()))
            if finished:
                return

    # ------------------------------------------------------------------ queues

    def _put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if self.state.stop.is_set():
                    raise _Stopped from None

    def _get(self, q: queue.Queue[T]) -> T:
        while True:
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if self.state.stop.is_set():
                    raise _Stopped from None

    # ------------------------------------------------------------------ read

    def _read_all(self) -> None:
        """Read every file with ``read.workers`` threads, then mark the end of the chunk stream."""
        cfg, stats = self.cfg, self.stats.read
        stats.start()
        with ThreadPoolExecutor(cfg.workers("read"), thread_name_prefix="read") as pool:
            futures = {
                i: pool.submit(self._read_one, i, plan) for i, plan in enumerate(self.plans) if plan.reads
            }
            try:
                for i, fut in futures.items():
                    report = fut.result()
                    if report is None:  # read by byte ranges: the collect thread reports it
                        continue
                    self.record.set_read(i, report)
                    # after a read error too: the lines taken before it are in this run's output
                    self.offsets[i] = max(self.offsets[i], report.end_offset)
            except BaseException:
                self.state.stop.set()  # readers still running must not wait for queue space
                raise
        stats.finish()
        self._put(self.chunks, _END)

    def _read_one(self, file_id: int, plan: incremental.Plan) -> FileReport | None:
        stats = self.stats.read
        stats.add(items_in=1)
        if self._by_ranges(plan) and self._emit_ranges(file_id, plan.path):
            return None
        t0, c0 = time.perf_counter(), time.thread_time()
        blocked = 0.0
        mark = t0  # where the current busy interval began

        def emit(chunk: Chunk) -> None:
            nonlocal blocked, mark
            b0 = time.perf_counter()
            self._put(self.chunks, chunk)
            b1 = time.perf_counter()
            blocked += b1 - b0
            stats.interval("busy", mark, b0)
            stats.interval("blocked", b0, b1)
            mark = b1
            stats.add(items_out=1, lines=chunk.n_lines, bytes=len(chunk.data))

        assert self.progress is not None
        reader = Reader(
            file_id,
            plan.path,
            self.cfg.read.chunk_bytes,
            self.cfg.read.max_line_bytes,
            self.cfg.parse.reject_bytes,
            emit,
            on_bytes=lambda n: self.progress.add(read_bytes=n) if self.progress else None,
            start_offset=plan.start_offset,
            first_line=plan.first_line,
            hold_tail=(self.cfg.run.incremental and plan.hold_tail) or self.sample_bytes is not None,
            check=plan.check,
            enough=self._enough,
        )
        try:
            return reader.run()
        finally:
            stats.interval("busy", mark, time.perf_counter())
            stats.add(
                busy_s=time.perf_counter() - t0 - blocked,
                blocked_out_s=blocked,
                cpu_s=time.thread_time() - c0,
            )

    def _by_ranges(self, plan: incremental.Plan) -> bool:
        """Whether the executor's workers may read this input themselves (pipeline.inputs.ranges): a
        remote input of a whole run (not incremental, not a profile's sample) on an executor that reads
        ranges."""
        return (
            self.executor is not None
            and self.executor.reads_ranges
            and is_url(plan.path)
            and not self.cfg.run.incremental
            and self.sample_bytes is None
            and plan.start_offset == 0
        )

    def _emit_ranges(self, file_id: int, path: str) -> bool:
        """Plan ``path``'s byte ranges and queue them; False (nothing queued) when it cannot be cut:
        compressed, empty, of unknown size or unreadable (the driver's reader takes it then)."""
        whole = ranges.probe(path)
        if whole is None:
            return False
        todo = ranges.chunks(file_id, whole, self.cfg.read.chunk_bytes)
        self.renumber.expect(file_id, todo)
        log.info("read: %s by %d byte range(s), read by the Dask workers", path, len(todo))
        for chunk in todo:
            self._put(self.chunks, chunk)
            assert chunk.source is not None
            size = chunk.source.end - chunk.source.start
            self.stats.read.add(items_out=1, bytes=size)
            if self.progress is not None:
                self.progress.add(read_bytes=size)
        return True

    def _enough(self) -> bool:
        return self.sample_bytes is not None and self.stats.read.bytes >= self.sample_bytes

    # ------------------------------------------------------------------ parse

    def _dispatch(self) -> None:
        """Feed chunks to the executor, at most its ``max_in_flight``; results go to ``_collect``."""
        assert self.executor is not None
        stats = self.stats.parse
        slots = threading.Semaphore(self.executor.max_in_flight)
        done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        collector = self._thread("collect", self._collect, done, slots)
        collector.start()
        submitted = 0
        try:
            while True:
                while not slots.acquire(timeout=_POLL_S):
                    if self.state.stop.is_set():
                        raise _Stopped
                with stats.timed("wait_in_s"):
                    chunk = self._get(self.chunks)
                if chunk is _END:
                    break
                stats.start()
                task = ParseTask(
                    chunk,
                    self.formats[chunk.file_id].key,
                    self.cfg.read.max_line_bytes,
                    self.cfg.parse.reject_bytes,
                    since_us=_micros(self.cfg.run.since),
                    until_us=_micros(self.cfg.run.until),
                    transforms=self.transforms,
                    union=self.union,
                    panels=self.panels is not None,
                )
                fut = self.executor.submit(task)
                if isinstance(chunk, RangeChunk):
                    with self.state.lock:
                        self._range_of[id(fut)] = (chunk.file_id, chunk.seq)
                submitted += 1
                stats.add(items_in=1)
                fut.add_done_callback(done.put)
        finally:
            done.put((_END, submitted))
            collector.join()

    def _collect(self, done: queue.SimpleQueue[Any], slots: threading.Semaphore) -> None:
        stats = self.stats.parse
        expected: int | None = None
        seen = 0
        while expected is None or seen < expected:
            item = done.get()
            if isinstance(item, tuple):
                expected = item[1]
                continue
            seen += 1
            fut: Future[ParseResult] = item
            if self.state.stop.is_set():
                slots.release()
                continue
            with self.state.lock:
                where = self._range_of.pop(id(fut), None)
            try:
                result = fut.result()
            except BaseException as exc:  # noqa: BLE001 - a StageError with file and lines
                cause = exc.__cause__
                if where is None or not isinstance(cause, RemoteReadError):
                    self.state.fail(exc)
                    slots.release()
                    continue
                # a range that could not be read: its file failed, as a read failing on the driver
                error = f"{type(cause).__name__}: {cause}"
                path = self.plans[where[0]].path
                log.warning("read: %s: %s (lines read so far are kept)", path, error)
                self._moved_on(where[0], slots, *self.renumber.fail(*where, error))
                continue
            if where is None:
                self._pass_on(result)
                slots.release()
                continue
            # a byte range: held (in its slot) until the ranges before it in its file are in
            self._moved_on(result.file_id, slots, *self.renumber.take(result))
        stats.finish()
        if not self.state.stop.is_set():
            for _ in self.writers:
                self._put(self.results, _END)
            # Every chunk is parsed: stop the workers now, while the writers close their files, not
            # after (joining them took 8-12 ms at the end of every run). The main thread's own
            # shutdown() later finds nothing left to do.
            assert self.executor is not None
            self.executor.shutdown()

    def _moved_on(
        self,
        file_id: int,
        slots: threading.Semaphore,
        ready: list[ParseResult],
        dropped: int,
        report: FileReport | None,
    ) -> None:
        """Byte ranges: pass on those now in file order, free the slots of those and of the dropped."""
        for r in ready:
            self._pass_on(r)
            slots.release()
        for _ in range(dropped):
            slots.release()
        if report is not None:
            self.record.set_read(file_id, report)

    def _pass_on(self, result: ParseResult) -> None:
        """Judge, count and queue one result for the writers (its lines numbered in its file)."""
        stats = self.stats.parse
        if self.state.stop.is_set():
            return
        try:
            self._judge(result)
        except BaseException as exc:  # noqa: BLE001 - the guard's
            self.state.fail(exc)
            return
        with self.state.lock:
            for name, seconds in result.transform_s.items():
                self.transform_s[name] = self.transform_s.get(name, 0.0) + seconds
            if result.lines:
                seen = self.absent.setdefault(result.file_id, set(result.absent))
                seen &= set(result.absent)
        stats.add(
            busy_s=result.busy_s,
            cpu_s=result.cpu_s,
            items_out=1,
            lines=result.lines,
            bytes=result.in_bytes,
        )
        stats.interval("busy", result.started, result.started + result.busy_s, result.worker)
        if self.panels is not None:
            self.panels.add(result.panels)
        assert self.progress is not None
        self.progress.add(lines=result.lines)
        try:
            with stats.timed("blocked_out_s"):
                self._put(self.results, result)
        except _Stopped:
            pass

    def _judge(self, result: ParseResult) -> None:
        """Feed the reject guard; it raises when the input does not look like the configured format."""

        def examples() -> list[tuple[int, str, bytes]]:
            # the guard keeps no more than DETECT_LINES: never a Python object for every reject
            batch = from_ipc(result.rejects).slice(0, DETECT_LINES)
            cols = (batch.column(name).to_pylist() for name in ("line", "reason", "raw"))
            return list(zip(*cols, strict=True))

        rejected = sum(result.reject_counts.values())
        fmt = self.formats[result.file_id].name
        self.guard.add(self.plans[result.file_id].path, result.lines, rejected, examples, fmt)

    # ------------------------------------------------------------------ write

    def _write_loop(self, writer: PartitionWriter) -> None:
        stats = self.stats.write
        while True:
            with stats.timed("wait_in_s"):
                item = self._get(self.results)
            if item is _END:
                break
            result: ParseResult = item
            stats.start()
            path = self.plans[result.file_id].path
            try:
                with stats.busy():
                    for part in result.parts:
                        writer.add(part.date, from_ipc(part.ipc))
                    rejects = from_ipc(result.rejects)
                    writer.add_rejects(path, rejects)
                self.reject_examples.add(path, rejects)
            except OSError as exc:
                raise StageError("write", f"{type(exc).__name__}: {exc}", file=path) from exc
            self.record.add_parsed(result.file_id, result.rows, result.reject_counts, result.filtered)
            stats.add(items_in=1, lines=result.rows, bytes=result.in_bytes)
            assert self.progress is not None
            self.progress.add(rows=result.rows)
            release_free_heap()  # at most every RELEASE_INTERVAL_S: see pipeline/runtime.py
        with stats.busy():
            try:
                writer.close()
            except OSError as exc:
                raise StageError("write", f"{type(exc).__name__}: {exc}") from exc
        stats.add(items_out=len(writer.files))
        stats.finish()

    # ------------------------------------------------------------------ record

    def _manifest(
        self,
        status: str,
        code: ExitCode,
        committed: bool = False,
        outputs: list[dict[str, Any]] | None = None,
        error: BaseException | None = None,
    ) -> dict[str, Any]:
        stages = self.stats.summary(time.perf_counter() - self.t0)
        extra: dict[str, Any] = {}
        if committed:
            extra["dataset_rows"] = self.contents.rows
            extra["dataset_files"] = len(self.contents.files)
            extra["rebuilt"] = self.rebuild
        if not committed:
            previous = read_json(self.layout.manifest)
            if previous is not None:
                keep = ("run_id", "status", "finished_at", "rows")
                extra["previous_run"] = {k: previous.get(k) for k in keep}
        return self.record.manifest(
            status=status,
            committed=committed,
            started=self.started,
            finished=datetime.now(UTC),
            wall_s=time.perf_counter() - self.t0,
            stages=stages,
            config=redact_config(self.cfg.model_dump()),  # storage_options' values: credentials
            auto=self.auto,
            layout=self.layout,
            outputs=outputs or [],
            error=error,
            exit_code=int(code),
            rejects=[str(self.layout.rejects / f) for w in self.writers for f in w.reject_files]
            if committed
            else [],
            transforms={name: round(s, 4) for name, s in self.transform_s.items()},
            bottleneck=bottleneck(stages),
            advice=advice(stages, self.stats.machine.cores),
            queue_hints=queue_hints(stages),
            machine=self.stats.machine.summary(),
            **extra,
        )


def run_pipeline(
    cfg: Config,
    full_refresh: bool = False,
    sample_bytes: int | None = None,
    *,
    protected: Sequence[Path] = (),
    allow_shrink: bool = False,
) -> RunResult:
    """Run the pipeline described by ``cfg``; see :meth:`Pipeline.run`."""
    return Pipeline(cfg, full_refresh, sample_bytes, protected=protected, allow_shrink=allow_shrink).run()


def _micros(when: datetime | None) -> int | None:
    """Microseconds since the epoch (UTC) of an aware datetime."""
    return None if when is None else (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _exit_code(error: BaseException) -> ExitCode:
    if isinstance(error, Interrupted):
        return ExitCode.SIGINT if error.signum == 2 else ExitCode.SIGTERM
    code = getattr(error, "exit_code", ExitCode.FAILURE)
    return code if isinstance(code, ExitCode) else ExitCode.FAILURE
