"""Where a run's files live: the dataset, and beside it the run's record.

The output directory is the dataset and nothing else: ``date=YYYY-MM-DD/part-*.parquet``. Every reader
(pandas, polars, DuckDB, Spark) can point at it, or glob ``**/*.parquet`` under it, and get exactly the
rows. What a run records about itself lives in a metadata directory beside it (``run.meta_dir``, by
default ``OUTPUT.meta``)::

    out/laptop/                       the dataset: date=YYYY-MM-DD/part-<run>-w<k>-<seq>.parquet
    out/laptop.meta/
      current/                        published together with the dataset (see pipeline.output.record)
        manifest.json                 what the committed run did; names the dataset it describes
        rejects/part-<run>-w<k>.parquet
        state.json                    incremental runs: what has been read of each input
        report.json                   the run report's raw material (timeline, samples, panels)
        dataset.json                  what the whole dataset holds: every file, its rows and size
      last-run.json                   the latest run, whatever its outcome (failed, interrupted, ...)
      last-report.json                its report's raw material
      last-compaction.json            the latest compaction, whatever its outcome (pipeline.output.compact)
      summaries/date=YYYY-MM-DD.lps   the history report's summary of a date (pipeline.report.date_summaries)
      staging-<run>/, retired-<run>/  a commit in progress (removed, or completed, by the next run)
    out/.laptop.staging-<run>/        the dataset being written by a run (hidden sibling, same filesystem)
    out/.laptop.lock, .laptop.meta.lock   one run at a time per dataset and per record (pipeline.output.lock)

Paths are absolute with symbolic links resolved: a symlinked output is written behind the link (the
link stays a link), and two spellings of one directory share one lock. Every name logpipe creates
carries a run id (:data:`RUN_ID`), and only names that match these patterns exactly are ever removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
REJECTS = "rejects"
STATE = "state.json"
LAST_RUN = "last-run.json"
REPORT = "report.json"
LAST_REPORT = "last-report.json"
CURRENT = "current"
DATASET = "dataset.json"

# A run id: UTC start time and 6 random hex digits (pipeline.runner), e.g. 20261205T124206-3fa9c1.
RUN_ID = r"\d{8}T\d{6}-[0-9a-f]{6}"
# The dataset's own entries: a date partition, and a data file that a writer of some run created.
PARTITION = re.compile(r"date=\d{4}-\d{2}-\d{2}")
DATA_FILE = re.compile(rf"part-{RUN_ID}-w\d+-\d+\.parquet")
# A commit in progress in the record's directory.
META_WORK = re.compile(rf"(staging|retired)-{RUN_ID}")


@dataclass(frozen=True)
class Layout:
    """The paths of one output: the dataset directory and its metadata directory."""

    output: Path
    meta: Path

    @classmethod
    def of(cls, output: str | Path, meta_dir: str | Path | None = None) -> Layout:
        """The layout of ``output``; ``meta_dir`` empty or None means ``OUTPUT.meta`` beside it.

        Both are made absolute with symbolic links resolved (``.`` and ``..`` included). Raises
        :class:`ValueError` for an empty output path."""
        if not str(output).strip():
            raise ValueError("the output path is empty")
        out = real(output)
        if meta_dir:
            return cls(out, real(meta_dir))
        # "/" has no name to put ".meta" after; a run refuses that output anyway (pipeline.output.safety)
        return cls(out, out.with_name(out.name + ".meta") if out.name else out / "logpipe.meta")

    @property
    def current(self) -> Path:
        """The published record of the committed run."""
        return self.meta / CURRENT

    @property
    def manifest(self) -> Path:
        """The committed run's manifest."""
        return self.current / MANIFEST

    @property
    def rejects(self) -> Path:
        """The committed rejects (Parquet: file, line, reason, raw, raw_bytes)."""
        return self.current / REJECTS

    @property
    def state(self) -> Path:
        """Incremental state of the committed run."""
        return self.current / STATE

    @property
    def last_run(self) -> Path:
        """The manifest of the latest run, committed or not."""
        return self.meta / LAST_RUN

    @property
    def last_report(self) -> Path:
        """The report data of the latest run, committed or not."""
        return self.meta / LAST_REPORT

    @property
    def dataset(self) -> Path:
        """What the committed dataset holds (pipeline.output.dataset)."""
        return self.current / DATASET

    def data_staging(self, run_id: str) -> Path:
        """Where run ``run_id`` writes the dataset: a hidden sibling, on the same filesystem."""
        return self.output.parent / f".{self.output.name}.staging-{run_id}"

    def meta_staging(self, run_id: str) -> Path:
        """Where run ``run_id`` writes its record before the commit publishes it as ``current``."""
        return self.meta / f"staging-{run_id}"

    def retired(self, run_id: str) -> Path:
        """Where the commit of run ``run_id`` moves the previous record while it swaps the data."""
        return self.meta / f"retired-{run_id}"

    def data_work(self) -> re.Pattern[str]:
        """The names, beside the output, of the dataset directories that runs create while they work:
        ``.NAME.staging-RUN`` (and ``.NAME.old-RUN`` where ``renameat2`` is missing)."""
        return re.compile(rf"\.{re.escape(self.output.name)}\.(staging|old)-{RUN_ID}")


def real(path: str | Path) -> Path:
    """``path`` absolute, with ``~``, ``.``, ``..`` and symbolic links resolved (as far as it exists)."""
    return Path(path).expanduser().resolve()
