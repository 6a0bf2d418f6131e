"""Types shared by every log format: the reject vocabulary and what a format returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa


class Reason(StrEnum):
    """Why a line was rejected. A fixed vocabulary so rejects can be counted and filtered."""

    EMPTY = "empty line"
    TOO_LONG = "line too long"
    INVALID_UTF8 = "invalid UTF-8"
    NUL_BYTE = "NUL byte"
    NO_MATCH = "no match"
    BAD_TIMESTAMP = "bad timestamp"
    MISSING_TIME = "missing time"  # JSON lines: the time's key is absent (or null)
    OUT_OF_RANGE = "out-of-range number"
    TRUNCATED = "truncated input"


@dataclass
class RejectRows:
    """Rejected lines of one chunk: absolute line numbers, reasons and the raw bytes (possibly cut)."""

    lines: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    raw_len: list[int] = field(default_factory=list)
    # Rejects without raw bytes (blank lines): the line numbers of each reason as one int64 array, so a
    # chunk of blank lines costs 8 bytes a line rather than a Python object per line. They take their
    # place in line order when the chunk's rejects become a batch (``pipeline.stages.parse.rejects_batch``).
    blank: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, line: int, reason: Reason | str, raw: bytes, limit: int, length: int | None = None) -> None:
        """Record one rejected line, keeping at most ``limit`` bytes of it (``length``: its full size).
        ``reason``: one of :class:`Reason`, or a transform's own words."""
        self.lines.append(line)
        self.reasons.append(str(reason))
        self.raw.append(raw[:limit])
        self.raw_len.append(len(raw) if length is None else length)

    def add_blank(self, lines: Any, reason: Reason | str) -> None:
        """Record the lines numbered ``lines`` (a numpy integer array), whose raw bytes are empty."""
        if len(lines):
            self.blank.append((str(reason), np.asarray(lines, dtype=np.int64)))

    def extend(self, other: RejectRows) -> None:
        """Append the rejects of ``other``."""
        self.lines += other.lines
        self.reasons += other.reasons
        self.raw += other.raw
        self.raw_len += other.raw_len
        self.blank += other.blank

    def __len__(self) -> int:
        return len(self.lines) + sum(len(lines) for _, lines in self.blank)

    def counts(self) -> dict[str, int]:
        """Number of rejects per reason."""
        out: dict[str, int] = {}
        for r in self.reasons:
            out[r] = out.get(r, 0) + 1
        for r, lines in self.blank:
            out[r] = out.get(r, 0) + len(lines)
        return out


@dataclass
class FormatResult:
    """A parsed chunk: rows sorted by UTC date, where each date's rows start, and the rejects."""

    batch: pa.RecordBatch
    partitions: list[tuple[str, int, int]]  # (YYYY-MM-DD, offset, length) into ``batch``
    rejects: RejectRows
    rows: Any = None  # each row's line, counted from 0 in the chunk (numpy int64); None: not known
    absent: tuple[str, ...] = ()  # JSON lines: mapped keys that no line of the chunk has a value for
