"""The report of any date range of a stored dataset, drawn from its Parquet files without the logs.

``logpipe report OUTPUT --since DATE --until DATE`` and an incremental run's own report
(``run.report_days``) merge, per date of the range in the dataset's ``date=YYYY-MM-DD`` partitions, the
date's summary (:mod:`pipeline.report.date_summaries`) where one covers its files, and read the files no
summary covers: a row group at a time, only the columns the panels need, every batch through the same
two halves as a run's chunks, :func:`pipeline.report.panels.summarize` and
:class:`~pipeline.report.panels.Panels`. The date's panels are then kept as its summary (one date at a
time, budget :data:`~pipeline.report.date_summaries.DATE_BUDGET`) and merged into the range's
(:mod:`pipeline.report.panel_state`). So the history report is the report one run over the same rows
would draw (the exact counts equal, the sketches merged from the same buckets), whatever files
incremental runs appended and compaction merged, while no date outgrows its summary's budget.

Memory, whatever the range: at most ``2 * threads`` tasks' results waiting (a row group's partials, or a
date's summary) and a row group (``write.row_group_rows`` rows of the needed columns) per thread being
read, one date's panels, plus the range's panels' own bound (their ``budget``).
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
from pipeline.report.date_summaries import DATE_BUDGET, SUMMARIES, Covered, DateSummaries, covered
from pipeline.report.panel_state import dump, merge
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
    kept: DateSummaries | None = None,
) -> dict[str, Any]:
    """The panels of the dates of ``files`` in ``span``, read from ``output``, with ``covers``: the range
    asked, the first and last dates with data and how many there are (none: the panels are empty), and
    how many of them ``kept`` summaries served whole or in part."""
    kept = kept or DateSummaries(None)
    days = sorted(d for d in files if span.covers(d))
    panels = Panels(budget=budget)
    whole = part = 0
    day = Panels(budget=DATE_BUDGET)
    for task, results in _ordered(_work, _tasks(output, files, days, kept), threads):
        if task.state is not None and task.last:  # the date's summary covers all its files
            merge(panels, task.state)
            whole += 1
            continue
        if task.state is not None:
            merge(day, task.state)
            part += 1
        for one in results:
            day.add(one)
        if task.last:
            state = dump(day)
            kept.put(task.day, task.covers, state)
            merge(panels, state)
            day = Panels(budget=DATE_BUDGET)
    kept.sweep(files, span.covers)
    out = panels.to_dict()
    out["covers"] = {
        **span.to_dict(),
        "first": _iso(days[0]) if days else None,
        "last": _iso(days[-1]) if days else None,
        "dates": len(days),
        "files": sum(len(files[d]) for d in days),
        "dates_summarized": whole,
        "dates_added_to": part,
    }
    return out


@dataclass(frozen=True)
class _Task:
    """Of a date: its kept summary (``state``) and/or a row group of one of its files to read (``path``,
    ``group``); ``last``: the date's last task, ``covers``: the date's files then."""

    day: date
    covers: frozenset[Covered]
    last: bool
    state: bytes | None = None
    path: Path | None = None
    group: int = 0


def _tasks(
    output: Path, files: dict[date, list[str]], days: list[date], kept: DateSummaries
) -> Iterator[_Task]:
    """Per date: its summary where one covers some of its files as they are, then the row groups of the
    files it does not cover."""
    for day in days:
        now = frozenset(_guard(output / rel, partial(covered, output, rel)) for rel in files[day])
        summary = kept.get(day)
        state, todo = None, sorted(now)
        if summary is not None and summary.covers <= now:
            state, todo = summary.state, sorted(now - summary.covers)
        groups = [(output / rel, g) for rel, _, _ in todo for g in range(_row_group_count(output / rel))]
        if state is not None:
            yield _Task(day, now, not groups, state=state)
        for i, (path, group) in enumerate(groups):
            yield _Task(day, now, i == len(groups) - 1, path=path, group=group)


def _work(task: _Task) -> tuple[_Task, list[bytes]]:
    return task, [] if task.path is None else _row_group_partials((task.path, task.group))


_R = TypeVar("_R")


def _ordered(fn: Callable[[_T], _R], tasks: Iterator[_T], threads: int) -> Iterator[_R]:
    """``map(fn, tasks)`` on ``threads`` threads, in order, with at most ``2 * threads`` results in flight
    (``Executor.map`` would submit every task at once and hold every result the caller has not taken)."""
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending: deque[Future[_R]] = deque()
        for task in tasks:
            pending.append(pool.submit(fn, task))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _row_group_count(path: Path) -> int:
    return _guard(path, lambda: int(pq.ParquetFile(path).num_row_groups))


def _row_group_partials(task: tuple[Path, int]) -> list[bytes]:
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
    """The dict :func:`pipeline.report.html.render` draws for a date range of the dataset ``output``
    (its files' summaries kept in ``OUTPUT.meta`` where that record exists)."""
    files = dataset_files(output)
    panels = history_panels(output, files, span, budget, kept=DateSummaries.beside(output))
    return {
        "history": {"output": str(output), "dates_in_dataset": len(files), **panels["covers"]},
        "rows": panels["rows"],
        "panels": panels,
        "notes": {},
    }


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def window_panels(
    root: Path, names: Iterable[str] | None, days: int, budget: int, kept: DateSummaries | None = None
) -> dict[str, Any]:
    """An incremental run's panels: the last ``days`` days of the dataset at ``root`` (its files
    ``names``, relative paths; None: those on disk), ending at its newest date."""
    files = dataset_files(root, names)
    panels = history_panels(root, files, window(files, days), budget, kept=kept)
    panels["covers"]["window_days"] = days
    return panels


def run_window(
    root: Path, names: Iterable[str] | None, days: int, budget: int, meta: Path
) -> dict[str, Any] | None:
    """:func:`window_panels` for a run's report, with the date summaries of its record ``meta``; None
    (the report keeps the run's own lines, said in the log) where the dataset cannot be read for it."""
    try:
        return window_panels(root, names, days, budget, DateSummaries(meta / SUMMARIES))
    except HistoryError as exc:
        log.warning("report: the panels cover only this run's lines: %s", exc)
        return None
