"""The run's record: what each input gave, the accounting checks, the manifest, and the commit.

The wiring (``pipeline.runner``) moves chunks; this module keeps the books and publishes the result.

* :class:`RunRecord` counts lines, rows and rejects per input (from several threads) and checks that
  ``rows + rejected == lines`` before anything is committed; the manifest is built from it
  (``pipeline.output.manifest``).
* :class:`RejectGuard` stops a run whose lines do not look like the configured format: more than
  ``run.max_reject_ratio`` of an input's first lines rejected, or of all lines at the end.
* :class:`Committer` publishes the dataset and its record (manifest, rejects, incremental state)
  together. They live in two directories (the dataset must hold nothing but data, see
  ``pipeline.output.layout``), so no single rename can swap both. The commit is three renames, ordered so that
  a manifest never describes data that is not there, and a crash at any point is completed or undone
  by the next run before it does anything else:

  1. the published record ``META/current`` is moved aside to ``META/retired-RUN``;
  2. the dataset's staging directory is swapped with the output directory (``renameat2`` exchange:
     readers see the old dataset or the new one, never a mix);
  3. the new record ``META/staging-RUN`` becomes ``META/current``.

  Between 1 and 3 there is no published manifest at all. The new manifest names the inode of the
  directory it describes (``dataset_id``), so recovery can tell whether step 2 happened: if the output
  is that directory, step 3 is completed; if not, step 1 is undone.

  Before step 1 the commit checks that every file the run staged is still there (with the size it
  had), and the record it publishes says what the whole dataset holds (pipeline.output.dataset). SIGINT and
  SIGTERM are held back from step 1 to step 3 (pipeline.output.signals): a signal in the middle leaves the
  new dataset with its new record, and the run says so; any other failure during step 2 is undone only
  if the exchange did not happen. Only names that a run created (its run id in them) are ever removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import FormatMismatch, PipelineError, StageError
from pipeline.output.dataset import Contents, DataFile, differences, dir_id, read_json, sizes
from pipeline.output.layout import META_WORK, Layout
from pipeline.output.lock import pid_alive
from pipeline.output.signals import deferred
from pipeline.stages.read import FileRead
from pipeline.stages.write import WrittenFile
from pipeline.text import safe_text

log = logging.getLogger(__name__)

# An input is judged by its reject ratio once this many of its lines are parsed (and at the end of the
# run over all lines): enough lines that a few odd ones at the top of a file do not fail a run.
EARLY_LINES = 1000
EXAMPLES = 3  # example lines shown when the format does not match
DETECT_LINES = 50  # rejected lines kept to name the format they look like


@dataclass
class FileCounts(FileRead):
    """Per-input accounting: what the reader reported, plus the parse results and the run's plan."""

    rows: int = 0
    rejected: int = 0
    filtered: int = 0  # rows outside run.since / run.until
    skipped: int = 0  # header and comment lines (a W3C file's directives): neither rows nor rejects
    format: str = ""  # the format it was read with (chosen from its first lines with format = "auto")
    mode: str = (
        "new"  # incremental runs: new, unchanged, grown, rotated or duplicate (pipeline.inputs.incremental)
    )
    first_line: int = 1


@dataclass
class RunRecord:
    """The counts of one run, filled in by the stage threads; the manifest is built from them
    (``pipeline.output.manifest``)."""

    run_id: str
    counts: list[FileCounts] = field(default_factory=list)
    missing: list[FileRead] = field(default_factory=list)
    reject_reasons: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_parsed(
        self, file_id: int, rows: int, reject_counts: dict[str, int], filtered: int = 0, skipped: int = 0
    ) -> None:
        """Count the rows, rejects, filtered rows and skipped header lines of one chunk of input
        ``file_id`` (thread-safe)."""
        with self._lock:
            c = self.counts[file_id]
            c.rows += rows
            c.filtered += filtered
            c.skipped += skipped
            c.rejected += sum(reject_counts.values())
            for reason, n in reject_counts.items():
                self.reject_reasons[reason] = self.reject_reasons.get(reason, 0) + n

    def set_read(self, file_id: int, report: FileRead) -> None:
        """Take what the reader reported about input ``file_id``."""
        for name, value in report.to_dict().items():
            setattr(self.counts[file_id], name, value)

    @property
    def lines(self) -> int:
        return sum(c.lines for c in self.counts)

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.counts)

    @property
    def rejected(self) -> int:
        return sum(c.rejected for c in self.counts)

    @property
    def filtered(self) -> int:
        return sum(c.filtered for c in self.counts)

    @property
    def skipped(self) -> int:
        return sum(c.skipped for c in self.counts)

    def failed_inputs(self) -> list[str]:
        """Inputs that could not be read (whole or in part), and specs that matched nothing."""
        return [c.path for c in self.counts if c.error] + [m.path for m in self.missing]

    def check_accounting(self, written: int) -> None:
        """Raise unless every line read became a row, a reject, a filtered row or a skipped header line,
        and every row was written."""
        lines, rows, rejected, filtered, skipped = (
            self.lines,
            self.rows,
            self.rejected,
            self.filtered,
            self.skipped,
        )
        if rows + rejected + filtered + skipped != lines or written != rows:
            raise PipelineError(
                f"accounting mismatch: rows {rows} + rejected {rejected} + filtered {filtered} + skipped "
                f"{skipped} != lines read {lines} (rows written: {written}); nothing was committed"
            )
        for c in self.counts:
            if c.rows + c.rejected + c.filtered + c.skipped != c.lines:
                raise PipelineError(
                    f"accounting mismatch for {c.path}: {c.rows} + {c.rejected} + {c.filtered} + "
                    f"{c.skipped} != {c.lines}"
                )

    def no_input_message(self, previous: dict[str, Any] | None) -> str:
        """Why a run that read no line commits nothing; ``previous``: the committed run's manifest."""
        failed = [c for c in self.counts if c.error] + self.missing
        empty = [c for c in self.counts if not c.error]
        parts = [f"{len(failed)} could not be read"] if failed else []
        parts += [f"{len(empty)} empty"] if empty else []
        kept = "there was no previous output"
        if previous is not None:
            run, when = previous.get("run_id"), previous.get("finished_at")
            kept = f"the previous output (run {run}, finished {when}) is kept"
        return (
            f"no input lines were read ({len(failed) + len(empty)} inputs: {', '.join(parts) or 'none'}); "
            f"nothing was committed and {kept}"
        )


@dataclass
class _Seen:
    lines: int = 0
    rejected: int = 0
    examples: list[tuple[int, str, bytes]] = field(default_factory=list)  # up to DETECT_LINES
    checked: bool = False
    fmt: str = ""  # how messages name the input's format


class RejectGuard:
    """Fails a run whose input does not look like the configured format (``run.max_reject_ratio``).

    A wrong ``run.format`` rejects every line; committing that would replace good output with an empty
    dataset and a rejects file. Every input is judged the same way, on its first :data:`EARLY_LINES`
    lines: as soon as that many are parsed (a run over a large input stops within a chunk or two), or at
    the end over all its lines when it has fewer; then the whole run is judged. So nginx's ``error.log``
    in an input folder fails the run whether it has 50 lines or 5,000, with a message naming it.
    """

    def __init__(self, max_ratio: float, fmt: str, early_lines: int = EARLY_LINES) -> None:
        self.max_ratio = max_ratio
        self.fmt = fmt
        self.early_lines = early_lines
        self._seen: dict[str, _Seen] = {}
        self._files = 0
        self._lock = threading.Lock()

    def expect(self, files: int) -> None:
        """The run reads ``files`` inputs: a file judged before the others are seen (the first chunk
        back, or the first file of a pack of small ones) is still one among others."""
        self._files = files

    def add(
        self,
        path: str,
        lines: int,
        rejected: int,
        examples: Callable[[], list[tuple[int, str, bytes]]],
        fmt: str | None = None,
    ) -> None:
        """Count a parsed chunk of ``path``; raise :class:`FormatMismatch` when the input is over the ratio.

        ``examples`` gives (line, reason, raw bytes) of the chunk's rejects; it is called only while
        examples are still wanted.
        """
        with self._lock:
            seen = self._seen.setdefault(path, _Seen(fmt=fmt or self.fmt))
            seen.lines += lines
            seen.rejected += rejected
            if rejected and len(seen.examples) < DETECT_LINES:
                seen.examples += examples()[: DETECT_LINES - len(seen.examples)]
            if seen.checked or seen.lines < self.early_lines:
                return
            seen.checked = True
            if seen.rejected > self.max_ratio * seen.lines:
                what = f"{seen.rejected:,} of the first {seen.lines:,} lines of {path}"
                raise self._error(what, seen, self._among_others())

    def check_total(self, lines: int, rejected: int) -> None:
        """Judge every input not judged yet (fewer than :data:`EARLY_LINES` lines), then the whole run:
        raise :class:`FormatMismatch` if too many lines were rejected."""
        for path, seen in sorted(self._seen.items()):
            if not seen.checked and seen.lines and seen.rejected > self.max_ratio * seen.lines:
                what = f"{seen.rejected:,} of the {seen.lines:,} lines of {path}"
                raise self._error(what, seen, self._among_others())
        if lines and rejected > self.max_ratio * lines:
            worst = max(self._seen.items(), key=lambda kv: (kv[1].rejected, kv[0]), default=None)
            seen = worst[1] if worst else _Seen()
            raise self._error(f"{rejected:,} of {lines:,} lines", seen)

    def _among_others(self) -> bool:
        return max(len(self._seen), self._files) > 1

    def _error(self, what: str, seen: _Seen, among_others: bool = False) -> FormatMismatch:
        # the first line stands alone (--quiet prints only it); the examples are escaped log text
        shown = [
            f"  line {n}: {reason}: {safe_text(raw, 200)}" for n, reason, raw in seen.examples[:EXAMPLES]
        ]
        advice = "\nSet run.format to the format the server writes, or raise run.max_reject_ratio."
        if among_others:
            # a folder of logs often holds another server file (nginx's error.log beside access.log)
            advice = (
                "\nIf this file does not belong to the run, leave it out with a glob that names the logs "
                '(inputs = ["/var/log/nginx/access.log*"]), or give it a [[run.sources]] entry with its own '
                "format; otherwise set run.format to the format the server writes, or raise "
                "run.max_reject_ratio."
            )
        return FormatMismatch(
            f"the lines do not look like the configured format {seen.fmt or self.fmt}: {safe_text(what)} "
            f"were rejected (more than run.max_reject_ratio = {self.max_ratio:g})"
            + _likely(seen.fmt or self.fmt, [raw for _, _, raw in seen.examples])
            + ("\nfor example:\n" + "\n".join(shown) if shown else "")
            + advice
        )


def _likely(current: str, lines: list[bytes]) -> str:
    """``; they look like the built-in format 'main' (48 of 50 rejected lines)``, or nothing."""
    from pipeline.formats import detect  # the parsers: only when there is something to name

    if not lines:
        return ""
    name, rows = detect(lines)[0]
    if rows == 0 or repr(name) == current:
        return ""
    return (
        f"; they look like the built-in format {name!r} ({rows} of {len(lines)} rejected lines parse with it:"
        f' set run.format = "{name}")'
    )


def write_last_run(layout: Layout, manifest: dict[str, Any], extras: dict[str, Any] | None = None) -> None:
    """Record ``manifest`` as the latest run (``META/last-run.json``), whatever its outcome, and the
    report's data beside it (``last-report.json``)."""
    try:
        layout.meta.mkdir(parents=True, exist_ok=True)
        write_json(layout.last_run, manifest)
        if extras is not None:
            write_json(layout.last_report, extras, indent=None)
    except OSError as exc:
        log.error("cannot write %s: %s", layout.last_run, exc)


# write_json's temporary files: removed by a later run once their process is gone
_TMP = re.compile(r"\.[\w.-]+\.json\.tmp-(\d+)")


def write_json(path: Path, data: dict[str, Any], indent: int | None = 2) -> None:
    """Write JSON atomically (temp file, fsync, rename), so readers never see half a manifest."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=indent, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk says nothing of where: say which file of the record
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OSError(exc.errno, f"{exc.strerror or exc} (writing the record's {path})") from exc


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False if unsupported."""
    # the symbols already loaded into this process (libc among them): ctypes.util.find_library would
    # run /sbin/ldconfig in a subprocess, on the critical path of every run's commit
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def check_output_path(layout: Layout) -> None:
    """Raise a clear error if the output or the metadata directory (or a parent) is not a directory."""
    for path in (layout.output, layout.meta):
        for p in (path, *path.parents):
            if p.exists() and not p.is_dir():
                needed = "" if p == path else f" (needed for {path})"
                raise PipelineError(f"{p} is not a directory{needed}")


class DoesNotFit(PipelineError):
    """An existing column's values do not fit the type this run gives it."""

    def __init__(self, column: str, old: pa.DataType, new: pa.DataType, path: Path, cause: Exception):
        self.column, self.old, self.new = column, old, new
        super().__init__(
            f"the column {column} was {old} and is {new} now; the values of {path} do not fit ({cause})"
        )


@dataclass
class Committer:
    """The staging directories of one run and their publication (see the module docstring)."""

    layout: Layout
    run_id: str
    exchanged: bool = False  # step 2 happened: the staging path holds the previous dataset
    # seconds the previous dataset is kept (at the staging path) after the commit: a reader that opened
    # one of its directories just before the exchange still lists every file of it
    linger_s: float = 0.0
    done: dict[str, Any] | None = None  # the manifest published by step 3, once it is

    @property
    def data_staging(self) -> Path:
        return self.layout.data_staging(self.run_id)

    @property
    def meta_staging(self) -> Path:
        return self.layout.meta_staging(self.run_id)

    def recover(self) -> None:
        """Complete or undo a commit that a crash interrupted, and remove what killed runs left behind.

        Only safe while holding the output's lock: then no other run can be using these directories.
        Only names with a run id in them (and temporary files of processes that are gone) are removed.
        """
        lay = self.layout
        work = sorted(e.name for e in _entries(lay.meta) if META_WORK.fullmatch(e.name))
        for name in (n for n in work if n.startswith("staging-")):
            staged = lay.meta / name
            manifest = read_json(staged / "manifest.json")
            if (
                manifest is not None
                and not lay.current.exists()
                and manifest.get("dataset_id") == dir_id(lay.output)
            ):
                os.rename(staged, lay.current)  # step 3 of a commit whose data swap happened
                log.warning("completed the commit of run %s, interrupted by a crash", manifest.get("run_id"))
            else:
                log.warning("removing %s, left behind by an interrupted run", staged)
                shutil.rmtree(staged, ignore_errors=True)
        for name in (n for n in work if n.startswith("retired-")):
            retired = lay.meta / name
            if not lay.current.exists():
                os.rename(retired, lay.current)  # undo step 1: the data swap never happened
                log.warning("restored the record of the previous run from %s", retired)
            else:
                shutil.rmtree(retired, ignore_errors=True)
        for entry in _entries(lay.meta):
            m = _TMP.fullmatch(entry.name)
            if m is not None and not pid_alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
        pattern = lay.data_work()
        for entry in _entries(lay.output.parent):
            if pattern.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                log.warning("removing %s, left behind by an interrupted run", entry.path)
                shutil.rmtree(entry.path, ignore_errors=True)

    def prepare(self) -> tuple[Path, Path]:
        """Create the staging directories of the dataset and of the record; both paths."""
        lay = self.layout
        try:
            check_output_path(lay)
            lay.output.parent.mkdir(parents=True, exist_ok=True)
            lay.meta.mkdir(parents=True, exist_ok=True)
            self.data_staging.mkdir()
            self.meta_staging.mkdir()
        except (OSError, PipelineError) as exc:
            raise StageError("write", f"cannot prepare the output directory {lay.output}: {exc}") from exc
        return self.data_staging, self.meta_staging

    def dataset_schema(self, schema: pa.Schema) -> pa.Schema:
        """The columns of the published dataset's files and of ``schema``, in that order: what an
        incremental run writes, so that every file of the dataset has them all. A column whose type
        changed takes this run's type (:meth:`seed` casts the older files' values, or widens it)."""
        schemas = [_footer(p)[0] for p in self._data_files()]
        if not schemas:
            return schema
        try:
            old = pa.unify_schemas(list(dict.fromkeys(schemas)))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise PipelineError(
                f"the files of {self.layout.output} do not agree on their columns ({exc})"
            ) from exc
        fields = [schema.field(f.name) if f.name in schema.names else f for f in old]
        return pa.schema(fields + [f for f in schema if f.name not in old.names])

    def seed(self, schema: pa.Schema) -> tuple[Contents, int]:
        """Incremental runs: carry the published dataset and rejects over into the staging directories,
        so the commit publishes old and new rows together. A file with all of ``schema``'s columns is
        hard-linked; another one (written before a column was added, or with a column of another type)
        is rewritten with them, null or cast, so that readers that take their schema from one file
        (polars, DuckDB) see every column everywhere. Raises :class:`DoesNotFit` when an older value
        does not fit its column's new type. Returns the files carried over and how many were
        rewritten."""
        lay = self.layout
        rewritten = 0
        carried: dict[str, DataFile] = {}
        for src in self._data_files():
            rel = str(src.relative_to(lay.output))
            dst = self.data_staging / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            columns_of, rows = _footer(src)
            if columns_of.equals(schema):
                _link(src, dst)
            else:
                table = pq.read_table(src, partitioning=None)
                columns = [_column(table, f, src) for f in schema]
                pq.write_table(pa.Table.from_arrays(columns, schema=schema), dst, compression="zstd")
                rewritten += 1
            carried[rel] = DataFile(rel, rows, dst.stat().st_size)
        _link_tree(lay.rejects, self.meta_staging / "rejects")
        return Contents(carried), rewritten

    def carry_over(self, schema: pa.Schema) -> tuple[pa.Schema, Contents, int]:
        """Incremental runs: :meth:`seed` the published dataset under the schema of it and of this run.
        A column whose type changed takes the new type where every older value fits, else a type that
        holds both (the new rows are cast to it as they are written); none: an error. The schema, the
        files carried over, and how many were rewritten."""
        merged = self.dataset_schema(schema)
        while True:
            try:
                carried, rewritten = self.seed(merged)
                return merged, carried, rewritten
            except DoesNotFit as exc:
                wider = _wider(exc.old, exc.new)
                if wider is None or wider == merged.field(exc.column).type:
                    raise PipelineError(
                        f"{exc}; no type holds both. Rebuild the dataset with --full-refresh (it stops if "
                        "that would drop rows of inputs that are gone)"
                    ) from exc
                log.warning("incremental: %s: the column becomes %s", exc, wider)
                i = merged.get_field_index(exc.column)
                merged = merged.set(i, merged.field(i).with_type(wider))
                # start over: the files seeded so far have the narrower type
                shutil.rmtree(self.data_staging, ignore_errors=True)
                shutil.rmtree(self.meta_staging / "rejects", ignore_errors=True)
                self.data_staging.mkdir()

    def staged(self, carried: Contents, written: Iterable[WrittenFile]) -> Contents:
        """What the dataset holds once this run commits: the files carried over and those written
        (their sizes as staged); an error when one is gone already."""
        files = dict(carried.files)
        for f in written:
            try:
                size = (self.data_staging / f.path).stat().st_size
            except OSError as exc:
                raise PipelineError(
                    f"the staged file {self.data_staging / f.path} is gone ({exc}); nothing was committed"
                ) from exc
            files[f.path] = DataFile(f.path, f.rows, size)
        return Contents(files)

    def _data_files(self) -> list[Path]:
        out = self.layout.output
        return [out / rel for rel in sorted(sizes(out))]

    def commit(self, manifest: dict[str, Any], contents: Contents) -> dict[str, Any]:
        """Publish the staged dataset and record; returns the manifest as published.

        ``contents``: every file the staged dataset must hold. A signal during the renames is held back
        until they are done; the returned manifest then says which (``signal``)."""
        lay = self.layout
        problems = differences(contents, sizes(self.data_staging))
        if problems:
            raise PipelineError(
                f"the staged dataset {self.data_staging} is not what this run wrote ({'; '.join(problems)}): "
                "something removed or changed its files during the run; nothing was committed"
            )
        new_id = dir_id(self.data_staging)
        manifest = {**manifest, "dataset_id": new_id}
        write_json(self.meta_staging / "manifest.json", manifest)
        write_json(self.meta_staging / lay.dataset.name, contents.to_json(lay.output))
        _fsync_dir(self.meta_staging)
        retired = lay.retired(self.run_id)
        with deferred() as held:
            if lay.current.exists():
                os.rename(lay.current, retired)  # 1
            try:
                self._swap_data()  # 2
            except BaseException:
                if dir_id(lay.output) != new_id:
                    if retired.exists():
                        os.rename(retired, lay.current)  # undo 1: the previous dataset is still in place
                    raise
                log.warning("the dataset was exchanged before an error; completing the commit", exc_info=True)
            self.exchanged = True
            os.rename(self.meta_staging, lay.current)  # 3
            _fsync_dir(lay.meta)
            _fsync_dir(lay.output.parent)
        if held.signum is not None:
            manifest["signal"] = held.signum
        self.done = manifest
        # the previous dataset and record: what is left of them here, the next run removes
        if self.linger_s:
            time.sleep(self.linger_s)
        shutil.rmtree(self.data_staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
        return manifest

    def _swap_data(self) -> None:
        lay = self.layout
        if not lay.output.exists():
            os.rename(self.data_staging, lay.output)
            self.data_staging.mkdir()  # as an exchange leaves it: the staging path then holds "the old"
        elif not _exchange(self.data_staging, lay.output):
            # where renameat2 is missing: three renames, with a moment without a dataset in between
            old = lay.output.parent / f".{lay.output.name}.old-{self.run_id}"
            os.rename(lay.output, old)
            try:
                os.rename(self.data_staging, lay.output)
            except BaseException:
                os.rename(old, lay.output)
                raise
            os.rename(old, self.data_staging)

    def discard(self) -> None:
        """Remove the staging directories; the output and its record stay as they were. After the
        exchange (a commit that failed at its last step) nothing is removed: the next run completes it."""
        if self.exchanged:
            return
        shutil.rmtree(self.data_staging, ignore_errors=True)
        shutil.rmtree(self.meta_staging, ignore_errors=True)


def _wider(old: pa.DataType, new: pa.DataType) -> pa.DataType | None:
    """A type that holds the values of both (int16 and int8: int16), or None."""
    try:
        common = pa.unify_schemas(
            [pa.schema([("c", old)]), pa.schema([("c", new)])], promote_options="permissive"
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return common.field("c").type


def _column(table: pa.Table, field: pa.Field, path: Path) -> pa.ChunkedArray | pa.Array:
    """``field``'s column of ``table``: as it is, cast to the field's type, or all null when absent."""
    if field.name not in table.column_names:
        return pa.nulls(table.num_rows, field.type)
    column = table.column(field.name)
    if column.type == field.type:
        return column
    try:
        return column.cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DoesNotFit(field.name, column.type, field.type, path, exc) from exc


def _footer(path: Path) -> tuple[pa.Schema, int]:
    """The columns and rows of a file of the published dataset (one read of its footer); an error
    naming it when it is not Parquet."""
    try:
        meta = pq.read_metadata(path)
        return meta.schema.to_arrow_schema().remove_metadata(), meta.num_rows
    except (OSError, pa.ArrowInvalid) as exc:
        raise PipelineError(
            f"cannot read {path}, a file of the published dataset: {exc}; move it away (the next run then "
            "rebuilds the dataset from its inputs)"
        ) from exc


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder``; none when it does not exist."""
    try:
        return list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _link_tree(src: Path, dst: Path) -> int:
    """Hard-link (or copy, across filesystems) every file under ``src`` into ``dst``; files linked."""
    if not src.is_dir():
        return 0
    count = 0
    for path in src.rglob("*"):
        if path.is_dir():
            continue
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        _link(path, target)
        count += 1
    return count


def _link(src: Path, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (a copy across filesystems)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fsync_dir(path: Path) -> None:
    """Make the renames in ``path`` durable (a crash after commit must not bring the old state back)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
