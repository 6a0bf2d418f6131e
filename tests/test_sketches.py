"""pipeline.report.sketches: the latency histogram's error bound and merges, the capped counter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.report.sketches import (
    ALPHA,
    CAP,
    MAX_S,
    MIN_S,
    N_BUCKETS,
    Capped,
    Latency,
    bucket_of,
    bucket_value,
    capped_keep,
    latency_partial,
)


def test_every_value_is_within_alpha_of_its_bucket_value() -> None:
    rng = np.random.default_rng(1)
    seconds = np.concatenate([np.exp(rng.uniform(math.log(MIN_S), math.log(MAX_S), 100_000)), [MIN_S, MAX_S]])
    read = np.array([bucket_value(i) for i in bucket_of(seconds).tolist()])
    assert np.all(np.abs(read - seconds) <= ALPHA * seconds * (1 + 1e-9))
    idx = bucket_of(np.array([0.0, MIN_S / 2, 1e12]))
    assert idx.tolist() == [0, 0, N_BUCKETS - 1] and bucket_value(0) == 0.0


def latency_of(parts: list[np.ndarray]) -> Latency:
    lat = Latency()
    for part in parts:
        s, idx, n = latency_partial(part)
        lat.add(s, idx, n)
    return lat


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_nearest_rank_quantiles_and_merges(n: int) -> None:
    rng = np.random.default_rng(n)
    seconds = rng.lognormal(-3, 2, n)
    whole = latency_of([seconds])
    split = latency_of(np.array_split(seconds[::-1], 5))
    assert whole.to_dict() == split.to_dict()  # merged in another order and cut: the same
    exact = np.sort(seconds)
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        want = exact[max(math.ceil(q * n) - 1, 0)]
        assert abs(whole.quantile(q) - want) <= ALPHA * want
    assert whole.to_dict()["count"] == n and Latency().to_dict()["count"] == 0


def test_capped_keeps_cap_values_and_counts_the_rest_as_other() -> None:
    counts = np.array([5, 0, *range(1, CAP + 10)], np.int64)
    keep, other = capped_keep(counts)
    assert (
        len(keep) == CAP and 1 not in keep.tolist() and other == sum(range(1, 10)) + 5
    )  # the 5 is not in the top 64
    c = Capped()
    c.add([b"a", b"b"], [3, 1], 0)
    c.add([f"v{i}".encode() for i in range(CAP)], [1] * CAP, 2)
    rows = c.to_list()
    assert rows[0] == ["a", 3] and rows[-1] == ["other", 2 + 2] and len(rows) == CAP + 1
    assert sum(n for _, n in rows) == 3 + 1 + CAP + 2
