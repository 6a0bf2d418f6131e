"""The read stage's threads: every input of the plan read by ``read.workers`` threads into the chunk
channel, then its end of stream.

A remote input of a whole run may instead be cut into byte ranges that the executor's workers read
themselves (an executor that declares :attr:`pipeline.executors.Executor.reads_ranges`): only the
ranges are queued here, and the dispatch puts their results back in file order
(:mod:`pipeline.inputs.ranges`).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pipeline.config import Config, ResolvedConfig
from pipeline.diagnostics.stats import StageStats
from pipeline.inputs import incremental, ranges
from pipeline.inputs.ranges import Renumber
from pipeline.inputs.remote import is_url, size_of
from pipeline.stages.flow import Channel, Shared
from pipeline.stages.pack import Packer, PackKey
from pipeline.stages.read import LINE_BYTES, Chunk, FileRead, Reader

log = logging.getLogger(__name__)


@dataclass
class Intake:
    """Reads the plan's inputs into ``chunks``; each input's report goes to the record and how far it
    was read to ``offsets`` (the incremental state)."""

    cfg: ResolvedConfig
    reads: tuple[incremental.Plan, ...]
    chunks: Channel[Chunk]
    shared: Shared
    stats: StageStats
    offsets: list[int]  # by file id: where each input stands after this run
    renumber: Renumber | None  # byte ranges' order (None: no input is read by byte ranges)
    budget_bytes: int | None  # logpipe profile: read about this many bytes, then stop at a line's end
    in_order: frozenset[int] = frozenset()  # inputs never read by byte ranges (a header governs their lines)
    pack_key: PackKey = lambda chunk: None  # how a small file's whole read is packed with others'

    def run(self) -> None:
        """Read every file with ``read.workers`` threads, then mark the end of the chunk stream."""
        stats = self.stats
        stats.start()
        read = self.cfg.read
        max_lines = max(1, read.chunk_bytes // LINE_BYTES)
        packer = Packer(self.chunks.put, read.chunk_bytes, max_lines, read.pack_bytes, self.pack_key)
        with ThreadPoolExecutor(read.workers, thread_name_prefix="read") as pool:
            futures = {
                i: pool.submit(self._read_one, i, plan, packer)
                for i, plan in enumerate(self.reads)
                if plan.reads
            }
            try:
                for i, fut in futures.items():
                    report = fut.result()
                    if report is None:  # read by byte ranges: the collect thread reports it
                        continue
                    self.shared.record.set_read(i, report)
                    # after a read error too: the lines taken before it are in this run's output
                    self.offsets[i] = max(self.offsets[i], report.end_offset)
                packer.flush()
            except BaseException:
                self.shared.state.stop.set()  # readers still running must not wait for queue space
                raise
        stats.finish()
        self.chunks.close()

    def _read_one(self, file_id: int, plan: incremental.Plan, packer: Packer) -> FileRead | None:
        stats = self.stats
        stats.add(items_in=1)
        if self._by_ranges(file_id, plan) and self._emit_ranges(file_id, plan.path):
            return None
        t0, c0 = time.perf_counter(), time.thread_time()
        blocked = 0.0
        mark = t0  # where the current busy interval began

        def emit(chunk: Chunk) -> None:
            nonlocal blocked, mark
            b0 = time.perf_counter()
            packer.add(chunk)
            b1 = time.perf_counter()
            blocked += b1 - b0
            stats.interval("busy", mark, b0)
            stats.interval("blocked", b0, b1)
            mark = b1
            stats.add(items_out=1, lines=chunk.n_lines, bytes=len(chunk.data))

        read = self.cfg.read
        reader = Reader(
            file_id,
            plan.path,
            read.chunk_bytes,
            read.max_line_bytes,
            self.cfg.parse.reject_bytes,
            emit,
            on_bytes=lambda n: self.shared.progress.add(read_bytes=n),
            start_offset=plan.start_offset,
            first_line=plan.first_line,
            hold_tail=(self.cfg.run.incremental and plan.hold_tail) or self.budget_bytes is not None,
            check=plan.check,
            enough=self._enough,
            hold_bytes=read.pack_bytes,
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

    def _by_ranges(self, file_id: int, plan: incremental.Plan) -> bool:
        """Whether the executor's workers may read this input themselves: a remote input read from its
        start, in a run that reads by ranges at all (see :func:`reads_by_ranges`), whose lines do not
        depend on a header earlier in the file."""
        return (
            self.renumber is not None
            and is_url(plan.path)
            and plan.start_offset == 0
            and file_id not in self.in_order
            and not self._packable(plan.path)
        )

    def _packable(self, path: str) -> bool:
        """A remote object listed as no larger than a chunk and ``read.pack_bytes``: read here whole,
        to be packed with others in one task, not probed and read by the executor's workers."""
        size = size_of(path)
        return 0 < size <= min(self.cfg.read.pack_bytes, self.cfg.read.chunk_bytes)

    def _emit_ranges(self, file_id: int, path: str) -> bool:
        """Plan ``path``'s byte ranges and queue them; False (nothing queued) when it cannot be cut:
        compressed, empty, of unknown size or unreadable (the driver's reader takes it then)."""
        assert self.renumber is not None
        whole = ranges.probe(path)
        if whole is None:
            return False
        todo = ranges.chunks(file_id, whole, self.cfg.read.chunk_bytes)
        self.renumber.expect(file_id, todo)
        log.info("read: %s by %d byte range(s), read by the executor's workers", path, len(todo))
        for chunk in todo:
            self.chunks.put(chunk)
            assert chunk.source is not None
            size = chunk.source.end - chunk.source.start
            self.stats.add(items_out=1, bytes=size)
            self.shared.progress.add(read_bytes=size)
        return True

    def _enough(self) -> bool:
        return self.budget_bytes is not None and self.stats.bytes >= self.budget_bytes


def reads_by_ranges(cfg: Config, executor_reads_ranges: bool, budget_bytes: int | None) -> bool:
    """Whether a run may have remote inputs read by byte ranges: on an executor whose workers read
    them, in a whole run (not incremental, not a profile's sample)."""
    return executor_reads_ranges and not cfg.run.incremental and budget_bytes is None
