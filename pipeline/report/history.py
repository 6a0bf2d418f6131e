"""The report of any date range of a stored dataset, drawn from its Parquet files without the logs.

``logpipe report OUTPUT --since DATE --until DATE`` and an incremental run's own report
(``run.report_days``) read the data files of the dataset's ``date=YYYY-MM-DD`` partitions in the range, a
row group at a time and only the columns the panels need, and put every batch through the same two
halves as a run: :func:`pipeline.report.panels.summarize` and :class:`~pipeline.report.panels.Panels`. So
the history report is the report one run over the same rows would draw (the exact counts equal, the
sketches merged from the same buckets), whatever files incremental runs appended and compaction merged.

Why a scan and not per-date summaries kept in the record (BENCHMARKS.md, "A date range of the history"):
summaries that give the same panels as a run are each date's distinct values, larger than the data on
the yardstick's logs and still not fast to merge; smaller ones must cut the lists per date. The scan needs
nothing written by the runs: it is true of whatever the dataset holds (incremental appends, full
refreshes, compaction, datasets older than the report), with no second copy of the data to keep in step.
Its time grows with the rows of the range.

Memory, whatever the range: at most ``2 * threads`` row groups' partials waiting for the merge and a row
group (``write.row_group_rows`` rows of the needed columns) per thread being read, plus the panels' own
bound (their ``budget``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.output.dataset import sizes
from pipeline.output.layout import DATA_FILE, PARTITION
from pipeline.report.panels import ALIASES, DEFAULT_BUDGET, NEEDS, Panels, summarize

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Rows per batch summarized: a few MiB of the needed columns, as a run's chunk.
BATCH_ROWS: Final = 65536
# Row groups read at once: Parquet decoding and most of summarize release the GIL.
THREADS: Final = 2
# Every column a panel reads, under each of its names.
COLUMNS: Final = frozenset(
    name for needs in NEEDS.values() for column in needs for name in ALIASES.get(column, (column,))
)


class HistoryError(PipelineError):
    """The dataset cannot be read for a history report."""


@dataclass(frozen=True)
class DateRange:
    """Dates from ``since`` to ``until``, both included; None: open on that side."""

    since: date | None = None
    until: date | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError(f"--since {self.since} is after --until {self.until}")

    def covers(self, day: date) -> bool:
        return (self.since is None or day >= self.since) and (self.until is None or day <= self.until)

    def to_dict(self) -> dict[str, str | None]:
        return {"since": _iso(self.since), "until": _iso(self.until)}


def parse_date(option: str, text: str | None) -> date | None:
    """A ``YYYY-MM-DD`` date from the command line (None stays None); ValueError naming the option."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"{option} {text!r}: a date such as 2026-11-01 (partitions are whole days)") from exc


def window(dates: Iterable[date], days: int) -> DateRange:
    """The last ``days`` calendar days ending at the newest of ``dates`` (all of them when there are none)."""
    newest = max(dates, default=None)
    if newest is None:
        return DateRange()
    return DateRange(newest - timedelta(days=days - 1), newest)


def dataset_files(output: Path, names: Iterable[str] | None = None) -> dict[date, list[str]]:
    """The data files of a dataset by date: ``names`` (paths relative to ``output``) or, when None, every
    data file in its partitions on disk. Files logpipe did not write are left out."""
    found: dict[date, list[str]] = {}
    for rel in sorted(sizes(output) if names is None else names):
        partition, _, name = rel.partition("/")
        if PARTITION.fullmatch(partition) and DATA_FILE.fullmatch(name):
            day = date.fromisoformat(partition.removeprefix("date="))
            found.setdefault(day, []).append(rel)
    return found


def history_panels(
    output: Path,
    files: dict[date, list[str]],
    span: DateRange,
    budget: int = DEFAULT_BUDGET,
    threads: int = THREADS,
) -> dict[str, Any]:
    """The panels of the dates of ``files`` in ``span``, read from ``output``, with ``covers``: the range
    asked, the first and last dates with data and how many there are (none: the panels are empty)."""
    days = sorted(d for d in files if span.covers(d))
    paths = [output / rel for d in days for rel in files[d]]
    panels = Panels(budget=budget)
    for partials in _ordered(_row_group_partials, _row_groups(paths), threads):
        for one in partials:
            panels.add(one)
    out = panels.to_dict()
    out["covers"] = {
        **span.to_dict(),
        "first": _iso(days[0]) if days else None,
        "last": _iso(days[-1]) if days else None,
        "dates": len(days),
        "files": len(paths),
    }
    return out


_Task = tuple[Path, int]


def _ordered(
    fn: Callable[[_Task], list[bytes]], tasks: Iterator[_Task], threads: int
) -> Iterator[list[bytes]]:
    """``map(fn, tasks)`` on ``threads`` threads, in order, with at most ``2 * threads`` results in flight
    (``Executor.map`` would submit every task at once and hold every result the caller has not taken)."""
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending: deque[Future[list[bytes]]] = deque()
        for task in tasks:
            pending.append(pool.submit(fn, task))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _row_groups(paths: Iterable[Path]) -> Iterator[_Task]:
    for path in paths:
        groups = _guard(path, partial(_num_row_groups, path))
        yield from ((path, i) for i in range(groups))


def _num_row_groups(path: Path) -> int:
    return int(pq.ParquetFile(path).num_row_groups)


def _row_group_partials(task: _Task) -> list[bytes]:
    """The partials of one row group (of the needed columns), :data:`BATCH_ROWS` rows at a time: a row
    group's rows are bounded by the writer's config (``write.row_group_rows``), not by the input."""
    path, index = task

    def read() -> list[bytes]:
        parquet = pq.ParquetFile(path)
        columns = [name for name in parquet.schema_arrow.names if name in COLUMNS]
        table = parquet.read_row_group(index, columns=columns, use_threads=False)
        return [summarize(batch) for batch in table.to_batches(max_chunksize=BATCH_ROWS)]

    return _guard(path, read)


def _guard(path: Path, read: Callable[[], _T]) -> _T:
    """``read()``, its errors as a :class:`HistoryError` naming the file."""
    try:
        return read()
    except FileNotFoundError as exc:
        raise HistoryError(
            f"{path} is gone: a run or a compaction replaced it while the report read the dataset; "
            "draw the report again"
        ) from exc
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise HistoryError(f"cannot read the dataset file {path}: {exc}") from exc


def history_data(output: Path, span: DateRange, budget: int = DEFAULT_BUDGET) -> dict[str, Any]:
    """The dict :func:`pipeline.report.html.render` draws for a date range of the dataset ``output``."""
    files = dataset_files(output)
    panels = history_panels(output, files, span, budget)
    return {
        "history": {"output": str(output), "dates_in_dataset": len(files), **panels["covers"]},
        "rows": panels["rows"],
        "panels": panels,
        "notes": {},
    }


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def window_panels(root: Path, names: Iterable[str] | None, days: int, budget: int) -> dict[str, Any]:
    """An incremental run's panels: the last ``days`` days of the dataset at ``root`` (its files
    ``names``, relative paths; None: those on disk), ending at its newest date."""
    files = dataset_files(root, names)
    panels = history_panels(root, files, window(files, days), budget)
    panels["covers"]["window_days"] = days
    return panels


def run_window(root: Path, names: Iterable[str] | None, days: int, budget: int) -> dict[str, Any] | None:
    """:func:`window_panels` for a run's report; None (the report keeps the run's own lines, said in
    the log) where the dataset cannot be read for it."""
    try:
        return window_panels(root, names, days, budget)
    except HistoryError as exc:
        log.warning("report: the panels cover only this run's lines: %s", exc)
        return None
