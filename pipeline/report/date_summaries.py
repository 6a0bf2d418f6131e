"""Each date's panels, kept beside the run's record, so that a history report reads each row once.

A data file is never changed once written: a run or a compaction that replaces rows writes new files
under new names (each name carries its run id, :data:`pipeline.output.layout.DATA_FILE`) and removes
the old ones. So the panels of a date partition's files (:func:`pipeline.report.panel_state.dump`) stay
true for as long as those files exist. The history report (:mod:`pipeline.report.history`) keeps one
summary per date, naming the files it covers::

    OUTPUT.meta/summaries/date=YYYY-MM-DD.lps

and, for a date of the range: uses the summary as it is where the date still holds exactly those files;
merges into it the files added since (an incremental run's new file) where every file it covers is
still there, unchanged (same size and modification time); and reads the date's files again otherwise
(a full refresh replaced some). A compaction moves a summary that covers every file it merged to the
merged files (:meth:`DateSummaries.carry_over`): the same rows. A summary is written to a temporary name
and renamed, so a reader sees a whole one or none; two reports that race each keep a true summary of the
files they saw. The summaries are a convenience: one that cannot be read or written is logged and the
files are read instead. A summary whose date has no files left is removed by the next report over that
date, once older than :data:`GRACE_S` (a run summarizes the files it is about to commit, not yet in the
dataset). Only names of this module's own patterns are ever removed.

Size: a date's summary keeps at most :data:`DATE_BUDGET` bytes of top-list entries (beyond, a
Misra-Gries cut whose ``delta`` the report shows), sketches of fixed size for the rest, and is stored
zstd-compressed (BENCHMARKS.md, "A date range of the history", has the sizes and the times).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

import pyarrow as pa

from pipeline.output.layout import Layout

log = logging.getLogger(__name__)

SUMMARIES: Final = "summaries"
# Bytes of top-list entries a date's summary keeps; more distinct values are cut (their delta reported).
DATE_BUDGET: Final = 4 << 20
# Summaries of dates without files are removed once this old (a run summarizes its files just before
# it commits them).
GRACE_S: Final = 3600
# Bump when panel_state's layout or summarize's counts change: older summaries are then not used.
VERSION: Final = 1
_MAGIC: Final = b"LPSD"
# magic, version, budget, the length of the JSON list of files covered, the state's size uncompressed
_HEAD: Final = struct.Struct("<4sHqqq")
_ENTRY: Final = re.compile(r"date=(\d{4}-\d{2}-\d{2})\.lps")
_TMP: Final = re.compile(r"\.tmp-\d+-date=\d{4}-\d{2}-\d{2}\.lps")

# A data file as a summary covers it: its path in the dataset, size and modification time (ns).
Covered = tuple[str, int, int]


@dataclass(frozen=True)
class Kept:
    """A date's summary: the files it covers, and its state (:func:`pipeline.report.panel_state.dump`)."""

    covers: frozenset[Covered]
    state: bytes


class DateSummaries:
    """The date summaries of one dataset, under ``root`` (None: none kept, every file is read)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    @classmethod
    def beside(cls, output: Path) -> DateSummaries:
        """The summaries in the record beside the dataset ``output`` (``OUTPUT.meta``); none where there
        is no such record (a dataset without one, or whose record is elsewhere: ``run.meta_dir``)."""
        meta = Layout.of(output).meta
        return cls(meta / SUMMARIES if meta.is_dir() else None)

    def get(self, day: date) -> Kept | None:
        """The summary kept for ``day``, or None (none, or unreadable: logged)."""
        if self.root is None:
            return None
        path = self.root / f"date={day.isoformat()}.lps"
        try:
            blob = path.read_bytes()
            magic, version, budget, n, raw = _HEAD.unpack_from(blob)
            if (magic, version, budget) != (_MAGIC, VERSION, DATE_BUDGET):
                return None
            listed = json.loads(blob[_HEAD.size : _HEAD.size + n])
            state = pa.decompress(blob[_HEAD.size + n :], raw, codec="zstd", asbytes=True)
            return Kept(frozenset((str(r), int(s), int(m)) for r, s, m in listed), state)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, struct.error) as exc:  # ArrowInvalid is a ValueError
            log.info("history: the summary %s is unreadable, its date's files are read: %s", path, exc)
            return None

    def put(self, day: date, covers: Iterable[Covered], state: bytes) -> None:
        """Keep ``state`` as the summary of ``day``'s files ``covers``; a failure is logged, not raised."""
        if self.root is None:
            return
        path = self.root / f"date={day.isoformat()}.lps"
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        listed = json.dumps(sorted(covers)).encode()
        try:
            head = _HEAD.pack(_MAGIC, VERSION, DATE_BUDGET, len(listed), len(state))
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(head + listed + pa.compress(state, codec="zstd", asbytes=True))
            os.replace(tmp, path)
        except OSError as exc:
            log.info("history: cannot keep the summary of %s in %s: %s", day, self.root, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()

    def carry_over(self, output: Path, day: date, replaced: Iterable[str], by: Iterable[str]) -> bool:
        """After a compaction wrote the rows of ``day``'s files ``replaced`` into the files ``by`` of
        ``output`` (the same rows): the date's summary, where it covers every replaced file, covers the
        new files in their place, so the compaction does not make the next report read the date again.
        Whether it did."""
        kept, gone = self.get(day), set(replaced)
        if kept is None or not gone <= {rel for rel, _, _ in kept.covers}:
            return False
        try:
            new = [covered(output, rel) for rel in by]
        except OSError:
            return False
        self.put(day, [c for c in kept.covers if c[0] not in gone] + new, kept.state)
        return True

    def sweep(self, dates: Iterable[date], within: Callable[[date], bool]) -> int:
        """Remove the summaries of the dates ``within`` the range read that are not ``dates`` (no files
        left), and temporary files of a crashed writer, once older than GRACE_S; how many were removed."""
        if self.root is None:
            return 0
        have = set(dates)
        removed, old = 0, time.time() - GRACE_S
        try:
            entries = list(os.scandir(self.root))
        except OSError:  # none kept yet, or not a folder: nothing of ours to remove
            return 0
        for entry in entries:
            m = _ENTRY.fullmatch(entry.name)
            gone = m is not None and within(d := date.fromisoformat(m.group(1))) and d not in have
            if (gone or _TMP.fullmatch(entry.name)) and _mtime(entry) < old:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
        return removed


def covered(output: Path, rel: str) -> Covered:
    """The data file ``rel`` of ``output`` as a summary covers it (FileNotFoundError: it is gone)."""
    st = (output / rel).stat()
    return rel, st.st_size, st.st_mtime_ns


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return float("inf")
