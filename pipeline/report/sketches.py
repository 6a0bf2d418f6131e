"""Small mergeable summaries for the report's panels: a latency histogram and capped counters.

* :class:`Latency`: request times in a log-bucketed histogram (the DDSketch layout: Masson, Rim and Lee,
  "DDSketch: a fast and fully-mergeable quantile sketch with relative-error guarantees", VLDB 2019).
  Bucket ``i`` holds the values in ``(GAMMA**(i-1), GAMMA**i]`` with ``GAMMA = (1 + ALPHA) / (1 - ALPHA)``;
  a quantile is read as ``2 * GAMMA**i / (GAMMA + 1)``, within :data:`ALPHA` (1 %) of the value at that
  rank, relative. Values below :data:`MIN_S` (1 µs) are counted in a zero bucket and read as 0; values
  above :data:`MAX_S` in the top bucket (read as the exact maximum). The buckets are one dense array of
  :data:`N_BUCKETS` counts whatever the input, merged by addition: exact in any merge order. The count,
  minimum, maximum and sum are exact (the sum in whole microseconds).
* :class:`Capped`: exact counts of at most :data:`CAP` distinct values (HTTP methods, protocols: short
  lists whose values are still untrusted bytes); the values beyond are counted together as ``other``.
  Which values get their own entry once there are more than ``CAP`` depends on the order of the
  partials; the counts of the values kept, ``other`` and the total never are wrong.

Worker and main halves as in :mod:`pipeline.report.panels`: the worker reduces a chunk with numpy
(no Python loop per row), the main process merges.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

ALPHA: Final = 0.01
GAMMA: Final = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA: Final = math.log(GAMMA)
MIN_S: Final = 1e-6
MAX_S: Final = 1e6
# Bucket 0 is the zero bucket (values below MIN_S); bucket k >= 1 is index k + _OFFSET - 1 of the ladder.
_OFFSET: Final = math.ceil(math.log(MIN_S) / _LOG_GAMMA)
N_BUCKETS: Final = math.ceil(math.log(MAX_S) / _LOG_GAMMA) - _OFFSET + 2
QUANTILES: Final = (0.5, 0.9, 0.99)
CAP: Final = 64
CAP_BYTES: Final = 64  # of a capped counter's value (a method or protocol is a short token)
OTHER: Final = "other"


def bucket_of(seconds: F64) -> I64:
    """Each (finite, non-negative) value's bucket."""
    with np.errstate(divide="ignore"):
        i = np.ceil(np.log(np.maximum(seconds, MIN_S)) / _LOG_GAMMA).astype(np.int64) - _OFFSET + 1
    i = np.clip(i, 1, N_BUCKETS - 1)
    i[seconds < MIN_S] = 0
    return i


def bucket_value(i: int) -> float:
    """The value a bucket is read as: within ALPHA of every value in it, relative."""
    if i == 0:
        return 0.0
    return 2.0 * GAMMA ** (i + _OFFSET - 1) / (GAMMA + 1.0)


def latency_partial(seconds: F64) -> tuple[dict[str, Any], I64, I64]:
    """A chunk's valid request times (finite, >= 0) as scalars and sparse buckets (index, count)."""
    if not len(seconds):
        return {"n": 0}, np.zeros(0, np.int64), np.zeros(0, np.int64)
    per = np.bincount(bucket_of(seconds), minlength=N_BUCKETS)
    at = np.flatnonzero(per)
    scalars = {
        "n": len(seconds),
        "min": float(seconds.min()),
        "max": float(seconds.max()),
        "sum_us": int(np.rint(seconds * 1e6).astype(np.int64).sum()),
    }
    return scalars, at.astype(np.int64), per[at].astype(np.int64)


class Latency:
    """The run's request times: exact count, min, max, mean; quantiles within :data:`ALPHA`."""

    def __init__(self) -> None:
        self.counts: I64 = np.zeros(N_BUCKETS, np.int64)
        self.n = self.sum_us = self.invalid = 0
        self.min, self.max = math.inf, -math.inf

    def add(self, s: dict[str, Any], idx: I64, counts: I64) -> None:
        self.invalid += int(s.get("invalid", 0))
        if not s.get("n"):
            return
        self.n += int(s["n"])
        self.sum_us += int(s["sum_us"])
        self.min, self.max = min(self.min, float(s["min"])), max(self.max, float(s["max"]))
        np.add.at(self.counts, idx, counts)

    def quantile(self, q: float) -> float:
        """The nearest-rank quantile, the value of rank ``ceil(q * n)`` (1-based, ascending; as SQL's
        ``quantile_disc``), within ALPHA relative."""
        rank = max(math.ceil(q * self.n) - 1, 0)
        i = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        return min(max(bucket_value(i), self.min), self.max)

    def to_dict(self) -> dict[str, Any]:
        if not self.n:
            return {"count": 0, "invalid": self.invalid, "relative_error": ALPHA}
        return {
            "count": self.n,
            "invalid": self.invalid,
            "min": self.min,
            "max": self.max,
            "mean": self.sum_us / self.n / 1e6,
            "quantiles": {f"p{round(q * 100)}": self.quantile(q) for q in QUANTILES},
            "relative_error": ALPHA,
        }


def capped_keep(counts: I64) -> tuple[I64, int]:
    """Which of a chunk's distinct values to send (the CAP most frequent with hits) and the hits of the
    rest, sent as ``other``."""
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    return order[:CAP].astype(np.int64), int(counts[order[CAP:]].sum())


class Capped:
    """Exact counts of at most :data:`CAP` distinct values, the rest counted as ``other``."""

    def __init__(self) -> None:
        self.counts: dict[bytes, int] = {}
        self.other = 0

    def add(self, values: list[bytes], counts: list[int], other: int) -> None:
        self.other += other
        for value, n in zip(values, counts, strict=True):
            if value in self.counts or len(self.counts) < CAP:
                self.counts[value] = self.counts.get(value, 0) + n
            else:
                self.other += n

    def to_list(self) -> list[list[Any]]:
        """``[value, hits]`` by hits descending, then value; ``other`` last when there is any."""
        rows: list[list[Any]] = [
            [v.decode("utf-8", "replace"), n]
            for v, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        return rows + ([[OTHER, self.other]] if self.other else [])
