"""Arrays built from buffers equal what ``pa.array`` builds from the same values."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from pipeline.arrays import binary_array, int64_array, repeat_string


@given(st.lists(st.binary(max_size=20), max_size=30))
def test_binary_array(values: list[bytes]) -> None:
    built = binary_array(values)
    built.validate(full=True)
    assert built.equals(pa.array(values, pa.binary()))


@given(st.lists(st.text(max_size=10), max_size=30))
def test_string_array(values: list[str]) -> None:
    built = binary_array([v.encode() for v in values], pa.string())
    built.validate(full=True)
    assert built.equals(pa.array(values, pa.string()))


def test_int64_array_from_list_and_numpy() -> None:
    assert int64_array([3, -1, 2**40]).equals(pa.array([3, -1, 2**40], pa.int64()))
    assert int64_array(np.arange(5, dtype=np.int32)).equals(pa.array(range(5), pa.int64()))
    assert int64_array([]).equals(pa.array([], pa.int64()))


def test_repeat_string() -> None:
    assert repeat_string("data/a é.log", 3).equals(pa.array(["data/a é.log"] * 3))
    assert repeat_string("x", 0).equals(pa.array([], pa.string()))
