"""Compaction: the small files of a date partition rewritten into a few large ones, committed as a run
commits.

Each incremental run adds one file per writer to every date partition it has rows for, so a run every 15
minutes leaves about 96 files a day per writer, and readers open each one. A compaction merges the
*small* files of a partition (fewer rows than ``write.max_rows_per_file``) into files of up to that many
rows, with row groups of ``write.row_group_rows`` rows; full files stay as they are. A partition is
compacted when it holds at least ``min_files`` small files and the merge leaves fewer files than that.

The rows are exactly the same, in the same order within a date (the small files' rows in name order,
which is the order the runs wrote them in). Every column keeps the encoding settings the newest of the
merged files was written with (codec, dictionary, statistics, delta encodings: the format's per-column
Parquet options, read from its metadata), so a compacted file is encoded as the writer encodes.

The commit is a run's commit (:class:`pipeline.output.record.Committer`), under the locks a run takes:
the whole dataset is staged beside the output (untouched files hard-linked, the merged ones written), the
record is staged with it (the incremental state, rejects and report linked; ``dataset.json`` listing the
new files; the committed run's manifest naming the new directory and its file count), and the output
directory is exchanged with the staged one in one ``renameat2``. So a reader sees the old files or the new
ones, never both nor neither; SIGINT and SIGTERM are held back during the renames; after a crash the next
run or compaction completes or undoes the commit and removes the staged files. New files are named like a
run's (``part-<id>-w0-<seq>.parquet``, with a fresh id), so only logpipe's names are ever removed, and an
output holding anything else is refused before anything is touched.

What a reader can observe: a reader that lists the files (a glob, ``pyarrow.dataset``, DuckDB, polars)
gets either every old file or every new one, each holding the same rows. The one thing it can meet is a
file that is gone: it listed the files before the exchange and opens a merged-away one after it, and
gets "No such file or directory", never a wrong row; reading again succeeds. On a plain file system no
name can stay readable without also being listed, so that window cannot be closed; it is as long as the
reader's own time between listing and opening its files. Files the compaction keeps are hard-linked under
their names, so those stay readable throughout.

Every compaction that starts is recorded in ``OUTPUT.meta/last-compaction.json``, whatever its outcome;
one with nothing to do, or refused or locked out before it starts, writes nothing.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import ExitCode, Interrupted, PipelineError
from pipeline.output import safety
from pipeline.output.dataset import Contents, DataFile, differences, dir_id, inspect, read_json
from pipeline.output.dataset import sizes as on_disk
from pipeline.output.layout import Layout
from pipeline.output.lock import OutputLock
from pipeline.output.record import Committer, _column, _link, _link_tree, check_output_path, write_json
from pipeline.report.date_summaries import SUMMARIES, DateSummaries

if TYPE_CHECKING:
    from pipeline.config import WriteSection

log = logging.getLogger(__name__)

LAST_COMPACTION = "last-compaction.json"
# the old files are removed this long after the exchange (see Committer.linger_s): listing a directory
# takes a reader far less
LINGER_S = 1.0
# the status of a compaction that did not run to its end, by exit code (any other: "failed")
_STATUS = {
    ExitCode.LOCKED: "locked",
    ExitCode.REFUSED: "refused",
    ExitCode.SIGINT: "interrupted",
    ExitCode.SIGTERM: "interrupted",
}
# codecs that take a level (write.compression_level)
_LEVELLED = ("zstd", "gzip", "brotli")
# encodings a writer may choose for a column that is not dictionary-encoded
_ENCODINGS = ("DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY", "BYTE_STREAM_SPLIT")


@dataclass(frozen=True)
class Sizes:
    """How big the merged files and their row groups are, and the codec's level (the ``[write]``
    settings of the same names)."""

    row_group_rows: int
    max_rows_per_file: int
    compression_level: int | None = None

    @classmethod
    def of(cls, write: WriteSection) -> Sizes:
        return cls(write.row_group_rows, write.max_rows_per_file, write.compression_level)


@dataclass(frozen=True)
class Merge:
    """The small files of one partition, merged into one or more files."""

    partition: str  # date=YYYY-MM-DD
    sources: tuple[DataFile, ...]  # in name order

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.sources)


@dataclass
class Outcome:
    """What a compaction did: ``status`` compacted, unchanged, failed, interrupted, locked or refused."""

    status: str
    exit_code: ExitCode
    compaction_id: str
    output: str
    partitions: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None
    signal: int | None = None  # a signal held back during the commit's renames
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "program": "logpipe",
            "status": self.status,
            "exit_code": int(self.exit_code),
            "compaction_id": self.compaction_id,
            "output": self.output,
            "started_at": self.started_at,
            "wall_s": self.wall_s,
            "error": None if self.error is None else str(self.error),
            "signal": self.signal,
            "partitions": self.partitions,
        }
        data["files_before"] = sum(p["files_before"] for p in self.partitions)
        data["files_after"] = sum(p["files_after"] for p in self.partitions)
        data["rows"] = sum(p["rows"] for p in self.partitions)
        return data

    def summary(self) -> str:
        """One line for the command's output."""
        if self.status == "unchanged":
            return f"nothing to compact in {self.output}"
        data = self.to_json()
        n = len(self.partitions)
        return (
            f"compacted {n} partition{'s' if n > 1 else ''} of {self.output}: {data['files_before']:,} files "
            f"into {data['files_after']:,}, {data['rows']:,} rows, in {self.wall_s:.1f} s"
        )


def new_id() -> str:
    """A fresh id of the form of a run's (pipeline.output.layout.RUN_ID)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def choose(
    contents: Contents, min_files: int, max_rows: int, partitions: Iterable[str] | None = None
) -> list[Merge]:
    """The partitions worth compacting (only ``partitions``, if given): at least ``min_files`` files of
    fewer than ``max_rows`` rows, which merged make fewer files."""
    small: dict[str, list[DataFile]] = defaultdict(list)
    for f in contents.files.values():
        if f.rows < max_rows:
            small[f.path.split("/", 1)[0]].append(f)
    wanted = None if partitions is None else set(partitions)
    merges = []
    for part, files in sorted(small.items()):
        after = -(-sum(f.rows for f in files) // max_rows)
        if len(files) >= max(min_files, 2) and after < len(files) and (wanted is None or part in wanted):
            merges.append(Merge(part, tuple(sorted(files, key=lambda f: f.path))))
    return merges


def writer_options(meta: pq.FileMetaData) -> dict[str, Any]:
    """The Parquet settings a file was written with, as :class:`pyarrow.parquet.ParquetWriter` takes
    them: its codec, and which columns have a dictionary, statistics or another encoding."""
    if meta.num_row_groups == 0:
        return {"compression": "zstd"}
    group = meta.row_group(0)
    columns = [group.column(i) for i in range(group.num_columns)]
    codec = columns[0].compression.lower() if columns else "zstd"
    encodings = {}
    for c in columns:
        other = [e for e in _ENCODINGS if e in c.encodings]
        if other and not c.has_dictionary_page:
            encodings[c.path_in_schema] = other[0]
    return {
        "compression": "none" if codec == "uncompressed" else codec,
        "use_dictionary": [c.path_in_schema for c in columns if c.has_dictionary_page],
        "write_statistics": [c.path_in_schema for c in columns if c.is_stats_set],
        "column_encoding": encodings,
    }


class _Files:
    """The merged files of one partition: row groups of ``row_group_rows`` rows, a new file after
    ``max_rows_per_file`` rows."""

    def __init__(self, root: Path, merge: Merge, name: str, seq: Iterator[int], sizes: Sizes, newest: Path):
        meta = pq.read_metadata(newest)
        self.schema = meta.schema.to_arrow_schema()
        self.options = writer_options(meta)
        self.root, self.merge, self.name, self.seq, self.sizes = root, merge, name, seq, sizes
        self.written: list[DataFile] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows = 0  # in the open file
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self._buffer.append(batch)
        self._buffered += batch.num_rows
        while self._buffered >= self._room():
            self._flush(self._room())

    def _room(self) -> int:
        """Rows for the next row group: a whole one, or what the open file still takes."""
        return min(self.sizes.row_group_rows, self.sizes.max_rows_per_file - self._rows)

    def _flush(self, rows: int) -> None:
        table = pa.Table.from_batches(self._buffer, self.schema)
        self._buffer = table.slice(rows).to_batches()
        self._buffered -= min(rows, table.num_rows)
        if self._writer is None:
            rel = f"{self.merge.partition}/part-{self.name}-{next(self.seq):05d}.parquet"
            self.written.append(DataFile(rel, 0, 0))
            level = {}
            if self.sizes.compression_level is not None and self.options["compression"] in _LEVELLED:
                level = {"compression_level": self.sizes.compression_level}
            self._writer = pq.ParquetWriter(self.root / rel, self.schema, **self.options, **level)
        group = table.slice(0, rows)
        self._writer.write_table(group, row_group_size=max(group.num_rows, 1))
        self._rows += group.num_rows
        if self._rows >= self.sizes.max_rows_per_file:
            self._close()

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        last = self.written[-1]
        self.written[-1] = DataFile(last.path, self._rows, (self.root / last.path).stat().st_size)
        self._writer, self._rows = None, 0

    def close(self) -> list[DataFile]:
        if self._buffered:
            self._flush(self._buffered)
        self._close()
        return self.written

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _conform(batch: pa.RecordBatch, schema: pa.Schema, path: Path) -> pa.RecordBatch:
    """``batch`` under ``schema``: a file written before a column was added or retyped gets it null or
    cast (as an incremental run's carry-over does)."""
    if batch.schema.equals(schema, check_metadata=False):
        return pa.RecordBatch.from_arrays(batch.columns, schema=schema)
    table = pa.Table.from_batches([batch])
    columns = [_column(table, f, path) for f in schema]
    arrays = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def merge_files(
    source: Path, staging: Path, merge: Merge, name: str, seq: Iterator[int], sizes: Sizes
) -> list[DataFile]:
    """Write the rows of ``merge``'s files (under ``source``) into new files under ``staging``, one
    row group at a time (memory: about two row groups); the files written."""
    (staging / merge.partition).mkdir(parents=True, exist_ok=True)
    out = _Files(staging, merge, name, seq, sizes, source / merge.sources[-1].path)
    try:
        for f in merge.sources:
            path = source / f.path
            reader = pq.ParquetFile(path)
            try:
                for batch in reader.iter_batches(batch_size=sizes.row_group_rows):
                    out.add(_conform(batch, out.schema, path))
            finally:
                reader.close()
        written = out.close()
    except BaseException:
        out.abort()
        raise
    rows = sum(f.rows for f in written)
    if rows != merge.rows:
        raise PipelineError(
            f"compacting {merge.partition}: wrote {rows:,} rows of its {merge.rows:,}; nothing was committed"
        )
    return written


def compact(layout: Layout, sizes: Sizes, min_files: int) -> Outcome:
    """``logpipe compact``: refuse an output that is not logpipe's, take the locks a run takes (another
    run or compaction holding them: :attr:`ExitCode.LOCKED` at once), then :func:`compact_locked`.
    Refused, locked or missing: nothing is touched and nothing recorded."""
    outcome = Outcome("unchanged", ExitCode.OK, new_id(), str(layout.output))
    locks = [OutputLock(layout.output, outcome.compaction_id), OutputLock(layout.meta, outcome.compaction_id)]
    try:
        safety.check_paths(layout, [], [], "")
        check_output_path(layout)
        if not layout.output.is_dir():
            raise PipelineError(f"the output {layout.output} does not exist: there is nothing to compact")
        for lock in locks:
            lock.acquire()
        safety.check_owned(layout, read_json(layout.manifest), dir_id(layout.output))
    except PipelineError as exc:
        for lock in reversed(locks):
            lock.release()
        return _ended(outcome, exc, _STATUS.get(_code(exc), "failed"))
    try:
        return compact_locked(layout, sizes, min_files, compaction_id=outcome.compaction_id)
    finally:
        for lock in reversed(locks):
            lock.release()


def compact_locked(
    layout: Layout,
    sizes: Sizes,
    min_files: int,
    partitions: Iterable[str] | None = None,
    compaction_id: str | None = None,
) -> Outcome:
    """Compact the partitions :func:`choose` picks (only ``partitions``, if given) and commit them; the
    caller holds the output's locks. First completes or undoes an interrupted commit and removes what
    killed runs left behind. Records the outcome in ``last-compaction.json`` unless nothing was to do."""
    t0 = time.perf_counter()
    outcome = Outcome("unchanged", ExitCode.OK, compaction_id or new_id(), str(layout.output))
    committer = Committer(layout, outcome.compaction_id, linger_s=LINGER_S)
    try:
        committer.recover()
        recorded = _recorded(layout)
        merges = choose(recorded, min_files, sizes.max_rows_per_file, partitions)
        if not merges:
            log.info("nothing to compact in %s", layout.output)
            return outcome
        outcome.partitions, outcome.signal = _commit(committer, recorded, merges, sizes)
        outcome.status = "compacted"
        if outcome.signal is not None:
            outcome.exit_code = _code(Interrupted(outcome.signal, committed=True))
    except BaseException as exc:
        if committer.done is not None and isinstance(exc, Interrupted | KeyboardInterrupt):
            outcome.status = "compacted"  # a signal after the commit: the new files are published
            outcome.signal = exc.signum if isinstance(exc, Interrupted) else 2
            outcome.exit_code = _code(Interrupted(outcome.signal))
        else:
            committer.discard()
            if not isinstance(exc, Exception | KeyboardInterrupt):
                raise
            error = Interrupted(2) if isinstance(exc, KeyboardInterrupt) else exc
            outcome.partitions = []
            _ended(outcome, error, _STATUS.get(_code(error), "failed"))
    outcome.wall_s = round(time.perf_counter() - t0, 3)
    try:
        write_json(layout.meta / LAST_COMPACTION, outcome.to_json())
    except OSError as exc:
        log.error("cannot write %s: %s", layout.meta / LAST_COMPACTION, exc)
    return outcome


def compact_after_run(layout: Layout, write: WriteSection, min_files: int, partitions: Iterable[str]) -> None:
    """``run.compact``: compact the ``partitions`` a run wrote to, under the run's locks. A failure is
    logged (the run's commit stands); a signal is raised as it would be after the run's commit."""
    outcome = compact_locked(layout, Sizes.of(write), min_files, partitions)
    if outcome.status == "interrupted" and outcome.error is not None:
        raise outcome.error
    if outcome.error is not None:
        log.error("compaction after the run failed (the run's commit stands): %s", outcome.error)
    elif outcome.status == "compacted":
        log.info("%s", outcome.summary())
        if outcome.signal is not None:
            raise Interrupted(outcome.signal)


def _ended(outcome: Outcome, error: BaseException, status: str) -> Outcome:
    outcome.status, outcome.error, outcome.exit_code = status, error, _code(error)
    return outcome


def _code(error: BaseException) -> ExitCode:
    if isinstance(error, Interrupted):
        return ExitCode.SIGINT if error.signum == 2 else ExitCode.SIGTERM
    code = getattr(error, "exit_code", ExitCode.FAILURE)
    return code if isinstance(code, ExitCode) else ExitCode.FAILURE


def _recorded(layout: Layout) -> Contents:
    """What the published dataset holds, checked against the files on disk; an error when the record
    is missing or unreadable or does not describe them (a run repairs that: it rebuilds the dataset)."""
    published = inspect(layout)
    out = layout.output
    if published.recorded is None:
        if not published.on_disk:
            return Contents({})
        why = published.problem or f"its record of the files ({layout.dataset}) is missing"
        raise PipelineError(f"cannot compact {out}: {why}; the next `logpipe run` rebuilds it")
    diffs = differences(published.recorded, published.on_disk)
    if diffs:
        raise PipelineError(
            f"cannot compact {out}: it is not the dataset its record describes ({'; '.join(diffs)}); "
            "the next `logpipe run` rebuilds it"
        )
    return published.recorded


def _commit(
    committer: Committer, recorded: Contents, merges: list[Merge], sizes: Sizes
) -> tuple[list[dict[str, Any]], int | None]:
    """Stage the dataset (kept files linked, merged ones written) and its record, and publish both;
    what each partition became, and the signal held back during the renames (None: none came)."""
    lay = committer.layout
    data_dir, meta_dir = committer.prepare()
    merged = {f.path for m in merges for f in m.sources}
    files: dict[str, DataFile] = {}
    for f in recorded.files.values():
        if f.path not in merged:
            (data_dir / f.path).parent.mkdir(parents=True, exist_ok=True)
            _link(lay.output / f.path, data_dir / f.path)
            files[f.path] = f
    seq = count()
    partitions, replaced = [], []
    for m in merges:
        written = merge_files(lay.output, data_dir, m, f"{committer.run_id}-w0", seq, sizes)
        files.update((w.path, w) for w in written)
        replaced.append((m, [w.path for w in written]))
        partitions.append(
            {
                "partition": m.partition,
                "rows": m.rows,
                "files_before": len(m.sources),
                "files_after": len(written),
                "bytes_before": sum(f.bytes for f in m.sources),
                "bytes_after": sum(w.bytes for w in written),
            }
        )
    contents = Contents(files)
    if contents.rows != recorded.rows or on_disk(data_dir).keys() != files.keys():
        raise PipelineError(f"the compacted dataset {data_dir} does not hold the rows of {lay.output}")
    for entry in lay.current.iterdir():
        if entry.name not in (lay.manifest.name, lay.dataset.name):
            if entry.is_dir():
                _link_tree(entry, meta_dir / entry.name)
            else:
                _link(entry, meta_dir / entry.name)
    manifest = {k: v for k, v in (read_json(lay.manifest) or {}).items() if k != "signal"}
    published = committer.commit({**manifest, "dataset_files": len(files)}, contents)
    kept = DateSummaries(lay.meta / SUMMARIES)
    for m, paths in replaced:
        day = date.fromisoformat(m.partition.removeprefix("date="))
        kept.carry_over(lay.output, day, (f.path for f in m.sources), paths)
    signum = published.get("signal")
    return partitions, signum if isinstance(signum, int) else None
