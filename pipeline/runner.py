"""The run: the locks, the plan, the stages wired together, the accounting and the commit.

::

      main process                                              | workers (pipeline.executors)
      ------------------------------------------------------------+------------------------------
      input files (pipeline.plan: what to read of each, formats)  |
         |                                                        |
      [read: read.workers threads] (pipeline.stages.intake)       |
         |  open, decompress (C, no GIL), cut line-aligned chunks |
         v                                                        |
      chunk channel (read.queue_depth chunks, blocks when full)   |
         |                                                        |
      [dispatch thread] --- ParseTask (chunk bytes) ------------> | [parse.executor: a pool of
         (at most executor.max_in_flight chunks in flight,        |  parse.workers processes, or
          2 per worker; pipeline.stages.dispatch)                 |  a Dask cluster's workers]
      [collect thread]  <-- ParseResult (Arrow IPC bytes) ------- |  parse_chunk(): the format's
         |  reject guard (run.max_reject_ratio)                   |  plan (numpy/Arrow), the time
         |                                                        |  window, the transforms
      result channel (parse.queue_depth results, blocks when full)|
         |                                                        |
      [write.workers threads] Parquet (C++, no GIL) into staging  |
         |                                                        |
      commit (pipeline.output.record): dataset and record         |
        published together; OUTPUT.meta/last-run.json every run   |

Which thread owns or changes which state (:mod:`pipeline.stages.flow` has the channels; anything not
listed is set before the threads start and only read after):

    ============  ============================================================================
    thread        owns or changes
    ============  ============================================================================
    main          the locks, the plan (a frozen :class:`pipeline.plan.RunPlan`), the executor's
                  start and its shutdown after a failure, closing or aborting the writers, the
                  accounting check, the commit, the manifest
    read          the chunk channel's puts and its end marker; each input's read report in the
    (+ its pool)  record and its offset (one slot per input); ``stats.read``; progress (bytes)
    dispatch      takes in-flight slots; ``executor.submit``; which future is a byte range
    collect       gives in-flight slots back; the reject guard; the byte ranges' order
                  (``Renumber``) and their inputs' read reports; ``transform_s``, ``absent``,
                  ``panels``, ``stats.parse``; the result channel's puts and end markers; the
                  executor's shutdown after a run without failure
    write-k       writer k and its files; the record's parsed counts; reject examples;
                  ``stats.write``; progress (rows)
    sampler       ``samples`` (reads counters and channel depths only)
    any           :class:`pipeline.stages.flow.RunState`: the first failure and the stop flag
    ============  ============================================================================

Every channel is bounded, so memory is set by the config, not by the input (docs/operations.md: "Memory").
Any failure sets ``stop``: every thread polls it while blocked on a channel, the pool is shut down, the
staging directory is removed and the previous output stays untouched. Without one, the collect thread
shuts the pool down as soon as the last result is in, while the writers still close their files.
The accounting invariant ``rows + rejected == lines`` is checked before anything is committed.

Before anything is read or created, the run checks that the output is logpipe's to replace
(pipeline.output.safety); under the locks of the output and of its record it then reads the published
record (pipeline.output.dataset): an incremental run appends only to a dataset that its record
describes, and otherwise rebuilds it in full, committing the rebuild only if it holds at least the rows
the dataset held (``--allow-shrink`` drops them deliberately).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline.config import Config, ResolvedConfig
from pipeline.config_source import compiled_for
from pipeline.diagnostics.stats import RunStats, Samples
from pipeline.errors import ExitCode, HistoryShrinks, Interrupted, NoInput, PipelineError
from pipeline.executors import Executor, make_executor
from pipeline.inputs.ranges import Renumber
from pipeline.output import safety
from pipeline.output.dataset import Contents, Published, dir_id, inspect, read_json, shrinks
from pipeline.output.layout import REPORT, Layout
from pipeline.output.lock import OutputLock
from pipeline.output.record import (
    Committer,
    RejectGuard,
    RunRecord,
    check_output_path,
    write_json,
    write_last_run,
)
from pipeline.plan import RunPlan, find_inputs, input_specs, make_plan
from pipeline.report.data import RejectExamples
from pipeline.report.progress import Progress, use_bars
from pipeline.stages.dispatch import Dispatch
from pipeline.stages.flow import Channel, RunState, Sampler, Shared, StageThreads
from pipeline.stages.intake import Intake, reads_by_ranges
from pipeline.stages.parse import ParseResult
from pipeline.stages.read import Chunk, input_size, largest_chunk
from pipeline.stages.write import PartitionWriter, partition_writers, write_results
from pipeline.transforms import TransformSpec, output_schema

if TYPE_CHECKING:
    from pipeline.report.panels import Panels

log = logging.getLogger(__name__)

# the manifest's status of a run that failed, by exit code (any other: "failed")
_STATUS = {
    ExitCode.SIGINT: "interrupted",
    ExitCode.SIGTERM: "interrupted",
    ExitCode.NO_INPUT: "no_input",
    ExitCode.FORMAT_MISMATCH: "format_mismatch",
    ExitCode.SHRINK: "shrink",
}


@dataclass
class RunResult:
    """The outcome of a run: its exit code and the manifest written for it."""

    exit_code: ExitCode
    manifest: dict[str, Any]
    error: BaseException | None = None
    extras: dict[str, Any] | None = None  # the report's raw material (pipeline.report.data)


def _auto_workers(given: Config, resolved: ResolvedConfig) -> dict[str, int]:
    """The worker counts that ``"auto"`` chose on this machine, by setting name."""
    return {
        f"{stage}.workers": getattr(resolved, stage).workers
        for stage in ("read", "parse", "write")
        if getattr(given, stage).workers == "auto"
    }


def _panels(cfg: ResolvedConfig) -> Panels | None:
    """The access-log panels' merge, for a run that draws a report or keeps them for ``logpipe
    report``: they cost the parse workers noticeably more CPU (BENCHMARKS.md)."""
    if not (cfg.run.report or cfg.run.panels):
        return None
    from pipeline.report.panels import Panels, budget_for  # imports pyarrow.compute: only if needed

    return Panels(budget=budget_for(cfg.read.chunk_bytes))


class Pipeline:
    """One run of the pipeline over a resolved :class:`Config`."""

    def __init__(
        self,
        cfg: Config,
        full_refresh: bool = False,
        budget_bytes: int | None = None,
        *,
        protected: Sequence[Path] = (),
        allow_shrink: bool = False,
    ):
        self.cfg = cfg.resolved()
        self.auto = _auto_workers(cfg, self.cfg)  # what "auto" chose on this machine, for the manifest
        self.full_refresh = full_refresh
        self.protected = protected  # folders the output must not hold (the config file's)
        self.allow_shrink = allow_shrink  # a rebuild may publish fewer rows than the dataset held
        self.published: Published | None = None  # the dataset and record as the run found them
        self.plan: RunPlan | None = None  # what the run reads and how, once planned
        self.rebuild: str | None = None  # why an incremental run rebuilds in full instead of appending
        self.carried = Contents({})  # files an incremental run carries over from the published dataset
        self.contents = Contents({})  # what the dataset holds once this run commits
        # logpipe profile: read about this many bytes, then stop at a line's end
        # (see pipeline.diagnostics.profile)
        self.budget_bytes = budget_bytes
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        self.layout = Layout.of(self.cfg.run.output, self.cfg.run.meta_dir)
        self.record = RunRecord(self.run_id)
        self.transforms = tuple(TransformSpec.parse(entry) for entry in self.cfg.run.transforms)
        self.transform_s: dict[str, float] = {}  # seconds in each transform, summed over the workers
        self.absent: dict[int, set[str]] = {}  # JSON lines: keys no chunk of the input had a value for
        self.guard = RejectGuard(self.cfg.run.max_reject_ratio, "of the run")
        self.stats = RunStats()
        for stage in ("read", "parse", "write"):
            getattr(self.stats, stage).workers = getattr(self.cfg, stage).workers
        self.stats.parse.executor = self.cfg.parse.executor
        self.samples = Samples(self.stats.started)
        self.reject_examples = RejectExamples()
        self.panels = _panels(self.cfg)
        self.window: dict[str, Any] | None = None  # the panels of run.report_days of the dataset
        self.state = RunState()
        self.chunks: Channel[Chunk] = Channel(self.cfg.read.queue_depth, self.state)
        self.results: Channel[ParseResult] = Channel(
            self.cfg.parse.queue_depth, self.state, consumers=self.cfg.write.workers
        )
        self.offsets: list[int] = []  # where each input stands after this run (incremental state)
        self.writers: list[PartitionWriter] = []
        self.executor: Executor | None = None
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
            safety.check_paths(self.layout, input_specs(self.cfg), self.protected, self.cfg.run.report)
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
        code = ExitCode.OK
        try:
            committer.recover()
            files, settings, sources = find_inputs(self.cfg, self.layout, self.record)
            self.published = inspect(self.layout)
            data_dir, meta_dir = committer.prepare()
            plan = self.plan = make_plan(
                self.cfg, files, settings, self.published, self.full_refresh, self.record, sources
            )
            self.rebuild = plan.rebuild
            self.offsets = [p.start_offset for p in plan.reads]
            schema = output_schema(self.transforms, plan.schema)  # a transform's error fails the run
            if plan.appends:
                schema = self._keep(committer, schema)
            self._run_stages(plan, data_dir, meta_dir, schema)
            _warn_absent(plan, self.absent)
            self.record.check_accounting(sum(w.rows for w in self.writers))
            self.guard.check_total(self.record.lines, self.record.rejected)
            code = ExitCode.INPUTS_FAILED if self.record.failed_inputs() else ExitCode.OK
            if self.record.lines == 0 and not plan.seen_before:
                raise NoInput(self.record.no_input_message(read_json(self.layout.manifest)))
            if self.record.lines == 0 and not plan.state_changed():
                committer.discard()  # an incremental run that found nothing new: the output stays as is
                self._window(self.layout.output, None)
                return self._finish(RunResult(code, self._manifest("unchanged", code)))
            self.contents = committer.staged(self.carried, (f for w in self.writers for f in w.files))
            _check_history(
                plan, self.published, self.layout.output, self.contents.rows, files, self.allow_shrink
            )
            self._window(data_dir, self.contents.files)
            if self.cfg.run.incremental:
                write_json(
                    meta_dir / self.layout.state.name, plan.new_state(self.offsets, self.record.counts)
                )
            outputs = [asdict(f) for w in self.writers for f in w.files]
            manifest = self._manifest("ok", code, committed=True, outputs=outputs)
            extras = self._extras()  # published with the record, and as the last run's
            write_json(meta_dir / REPORT, extras, indent=None)
            published = committer.commit(manifest, self.contents)
            done = self._finish(_committed(code, published, extras))
            if self.cfg.run.compact and done.error is None:
                from pipeline.output.compact import compact_after_run

                touched = {f"date={f.date}" for w in self.writers for f in w.files}
                compact_after_run(self.layout, self.cfg.write, self.cfg.run.compact, touched)
            return done
        except BaseException as exc:
            result = self._failed(committer, exc, code)
            if result is None:  # not an error of the run's (SystemExit, GeneratorExit)
                raise
            return result
        finally:
            if self.progress is not None:
                self.progress.close()

    def _failed(self, committer: Committer, exc: BaseException, code: ExitCode) -> RunResult | None:
        """The result of a run that raised ``exc`` (``code``: its exit code had it committed); None
        for what is not the run's to report."""
        if committer.done is not None and isinstance(exc, Interrupted | KeyboardInterrupt):
            # a signal after the commit (while cleaning up, or recording it): the run committed
            signum = exc.signum if isinstance(exc, Interrupted) else 2
            return self._finish(_committed(code, {**committer.done, "signal": signum}, None))
        error = exc if not isinstance(exc, KeyboardInterrupt) else Interrupted(2)
        committer.discard()
        if not isinstance(exc, Exception | KeyboardInterrupt):
            return None
        code = _exit_code(error)
        status = _STATUS.get(code, "failed")
        if committer.exchanged:
            error = PipelineError(
                f"{error}; the dataset was published but not its record: the next run completes the commit"
            )
        return self._finish(RunResult(code, self._manifest(status, code, error=error), error))

    def _finish(self, result: RunResult) -> RunResult:
        if result.extras is None:
            result.extras = self._extras()
        write_last_run(self.layout, result.manifest, result.extras)
        return result

    def _extras(self) -> dict[str, Any]:
        """What only the report draws: the workers' intervals, the samples, reject examples."""
        from pipeline.output import manifest

        return dict(
            manifest.extras(
                self.stats,
                self.samples.to_dict(self.cfg.read.queue_depth, self.cfg.parse.queue_depth),
                self.reject_examples.to_list(),
                self.window if self.window is not None else self.panels.to_dict() if self.panels else None,
            )
        )

    def _window(self, root: Path, names: Iterable[str] | None) -> None:
        """An incremental run's report covers ``run.report_days`` of the dataset at ``root`` (its files
        ``names``; None: those on disk), not only its new lines (``report.history.run_window``)."""
        if self.panels is not None and self.cfg.run.incremental and self.cfg.run.report_days:
            from pipeline.report.history import run_window

            self.window = run_window(
                root, names, self.cfg.run.report_days, self.panels.budget, self.layout.meta
            )

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

    # ------------------------------------------------------------------ stages

    def _run_stages(self, plan: RunPlan, data_dir: Path, meta_dir: Path, schema: pa.Schema) -> None:
        """Run the stage threads to the end; raise the run's first failure, once every thread that
        can stop has stopped, the executor is shut down and the writers closed (or aborted)."""
        cfg, stats = self.cfg, self.stats
        total = sum(input_size(p.path) for p in plan.reads if p.reads)
        progress = self.progress = Progress(total, use_bars(cfg.run.progress))
        self.writers = partition_writers(
            cfg.write,
            cfg.write.workers,
            data_dir,
            self.run_id,
            schema,
            rejects_dir=meta_dir / self.layout.rejects.name,
            parquet_options=plan.parquet_options(schema),
        )
        executor = self.executor = make_executor(
            cfg.parse,
            largest_chunk(cfg.read.chunk_bytes, cfg.read.max_line_bytes),
            compiled_for(cfg.parse.compiled, total),
        )
        stats.parse.workers = executor.reported_workers(stats.parse.workers)
        threads = _stage_threads(self, plan, executor, progress)
        threads.run(executor, self.writers, Sampler(self.samples, stats, self.chunks, self.results))

    # ------------------------------------------------------------------ record

    def _manifest(
        self,
        status: str,
        code: ExitCode,
        committed: bool = False,
        outputs: list[dict[str, Any]] | None = None,
        error: BaseException | None = None,
    ) -> dict[str, Any]:
        from pipeline.output import manifest

        facts = manifest.RunFacts(
            self.record,
            self.stats,
            self.layout,
            self.cfg,
            self.started,
            datetime.now(UTC),
            time.perf_counter() - self.t0,
            auto=self.auto,
            transform_s=self.transform_s,
            reject_files=[f for w in self.writers for f in w.reject_files],
            dataset_rows=self.contents.rows,
            dataset_files=len(self.contents.files),
            rebuilt=self.rebuild,
        )
        built = manifest.build(
            facts, status=status, exit_code=int(code), committed=committed, outputs=outputs or [], error=error
        )
        return dict(built)


def run_pipeline(
    cfg: Config,
    full_refresh: bool = False,
    budget_bytes: int | None = None,
    *,
    protected: Sequence[Path] = (),
    allow_shrink: bool = False,
) -> RunResult:
    """Run the pipeline described by ``cfg``; see :meth:`Pipeline.run`."""
    return Pipeline(cfg, full_refresh, budget_bytes, protected=protected, allow_shrink=allow_shrink).run()


def _stage_threads(run: Pipeline, plan: RunPlan, executor: Executor, progress: Progress) -> StageThreads:
    """The stage threads of ``run``: read, dispatch (with its collect thread), one per writer."""
    shared = Shared(run.state, run.record, progress)
    renumber = Renumber()  # byte ranges' results, put back in file order
    by_ranges = reads_by_ranges(run.cfg, executor.reads_ranges, run.budget_bytes)
    threads = StageThreads(run.state)
    stats = run.stats
    reads = Intake(
        run.cfg,
        plan.reads,
        run.chunks,
        shared,
        stats.read,
        run.offsets,
        renumber if by_ranges else None,
        run.budget_bytes,
        plan.in_order(),
        plan.pack_key(),
    )
    threads.add("read", reads.run)
    make_task = plan.tasks(run.cfg, run.transforms, run.panels is not None)
    run.guard.expect(sum(1 for p in plan.reads if p.reads))
    dispatch = Dispatch(
        executor,
        plan,
        make_task,
        run.chunks,
        run.results,
        shared,
        stats.parse,
        run.guard,
        renumber,
        run.transform_s,
        run.absent,
        run.panels,
    )
    threads.add("dispatch", dispatch.run)
    for k, w in enumerate(run.writers):
        threads.add(
            f"write-{k}", write_results, w, run.results, shared, stats.write, plan.path, run.reject_examples
        )
    return threads


def _check_history(
    plan: RunPlan, prev: Published | None, output: Path, rows: int, files: list[str], allow_shrink: bool
) -> None:
    """A rebuild must not drop rows of an incremental history (pipeline.output.dataset.shrinks)."""
    if prev is None or plan.appends or (not plan.incremental and prev.state is None):
        return  # appending; or a dataset of full runs, which is no history: each run publishes its inputs
    what = shrinks(prev, output, rows, files)
    if what is None:
        return
    if allow_shrink:
        log.warning("%s (--allow-shrink: they are dropped)", what)
        return
    raise HistoryShrinks(
        f"{what} (or the config keeps fewer rows now). Nothing was committed. To publish the rebuild "
        "anyway, dropping those rows: run again with --allow-shrink"
    )


def _committed(code: ExitCode, manifest: dict[str, Any], extras: dict[str, Any] | None) -> RunResult:
    """The result of a run that committed; a signal that came during the commit (held back until
    it was done) makes it an interrupted run whose data and record are the new ones."""
    signum = manifest.get("signal")
    if isinstance(signum, int):
        error = Interrupted(signum, committed=True)
        code = _exit_code(error)
        manifest = {**manifest, "exit_code": int(code)}
        return RunResult(code, manifest, error, extras=extras)
    return RunResult(code, manifest, extras=extras)


def _warn_absent(plan: RunPlan, absent: dict[int, set[str]]) -> None:
    """JSON lines: a mapped key that no line of an input has a value for is most likely misspelt."""
    for file_id, keys in sorted(absent.items()):
        for key in sorted(keys):
            log.warning(
                "jsonl: no line of %s has a value for the key %r (its column is all null): is it "
                "spelt as the lines spell it?",
                plan.path(file_id),
                key,
            )


def _exit_code(error: BaseException) -> ExitCode:
    if isinstance(error, Interrupted):
        return ExitCode.SIGINT if error.signum == 2 else ExitCode.SIGTERM
    code = getattr(error, "exit_code", ExitCode.FAILURE)
    return code if isinstance(code, ExitCode) else ExitCode.FAILURE
