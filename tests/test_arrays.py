"""Arrays built from buffers equal what ``pa.array`` builds from the same values, and the checked
constructor refuses buffers that would make an array read out of bounds or shift values."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.arrays import (
    ArrayBuffersError,
    binary_array,
    dictionary_array,
    from_buffers,
    int64_array,
    repeat_string,
    string_buffers,
    string_columns_from_buffers,
    string_from_buffers,
)


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


# --- the checked constructor -----------------------------------------------------------------------------


def _offsets(*values: int) -> pa.Buffer:
    return pa.py_buffer(np.array(values, dtype=np.int32))


@pytest.mark.parametrize(
    ("type_", "length", "buffers", "message"),
    [
        (pa.string(), 2, [None, _offsets(0, 3, 2), pa.py_buffer(b"abc")], "negative length"),
        (pa.string(), 2, [None, _offsets(-1, 1, 2), pa.py_buffer(b"abc")], "outside"),
        (pa.string(), 2, [None, _offsets(0, 1, 4), pa.py_buffer(b"abc")], "outside"),
        (pa.binary(), 3, [None, _offsets(0, 1, 2), pa.py_buffer(b"abc")], "offsets buffer"),
        (pa.string(), 9, [pa.py_buffer(b"\xff"), _offsets(*range(10)), pa.py_buffer(b"x" * 9)], "bitmap"),
        (pa.int64(), 2, [None, pa.py_buffer(bytes(15))], "needs 16 bytes"),
        (pa.bool_(), 9, [None, pa.py_buffer(bytes(1))], "needs 2 bytes"),
        (pa.int16(), -1, [None, pa.py_buffer(bytes(2))], "negative length"),
    ],
)
def test_from_buffers_refuses_what_would_overrun_or_shift(
    type_: pa.DataType, length: int, buffers: list[pa.Buffer | None], message: str
) -> None:
    with pytest.raises(ArrayBuffersError, match=message):
        from_buffers(type_, length, buffers)


@given(st.lists(st.binary(max_size=8), max_size=20), st.data())
def test_from_buffers_takes_every_valid_string_array(values: list[bytes], data: st.DataObject) -> None:
    valid = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values))), dtype=bool
    )
    built = binary_array(values, valid=valid)
    built.validate(full=True)
    assert built.to_pylist() == [v if ok else None for v, ok in zip(values, valid, strict=True)]
    window = string_from_buffers(1, np.array([0, 0], dtype=np.int32), b"")
    assert window.to_pylist() == [""]


@pytest.mark.parametrize("loops", [False, True])
def test_a_bad_array_in_a_chunk_is_an_error_naming_its_file_and_lines(
    monkeypatch: pytest.MonkeyPatch, loops: bool
) -> None:
    """Spans that would make a bad array fail the chunk with its file and lines, never crash: the checked
    constructor refuses the numpy columns, the compiled copy (pipeline/formats/kernels.py) the spans."""
    from pipeline.errors import StageError
    from pipeline.executors.inline import InlineExecutor
    from pipeline.formats import compiled, compiled_types, vector
    from pipeline.stages.parse import ParseTask
    from pipeline.stages.read import Chunk

    real: Any = compiled_types.string_columns if loops else vector.string_columns

    def backwards(buf: Any, lo: Any, hi: Any, take: Any, valid: list[Any]) -> list[pa.Array]:
        return real(buf, hi, lo, take, valid)  # type: ignore[no-any-return]  # every span end before its start

    monkeypatch.setattr(compiled, "loaded", lambda: loops)
    if loops:
        monkeypatch.setattr(compiled_types, "string_columns", backwards)
    else:
        monkeypatch.setattr("pipeline.formats.engine.string_columns", backwards)
    line = b'1.2.3.4 - - [14/Mar/2026:23:21:12 +0100] "GET / HTTP/1.1" 200 5 "-" "curl/8"\n'
    chunk = Chunk(file_id=0, path="logs/access.log", seq=3, first_line=41, data=line * 3, n_lines=3)
    future = InlineExecutor().submit(ParseTask(chunk))
    error = "IndexError" if loops else "ArrayBuffersError"
    with pytest.raises(StageError, match=rf"file logs/access.log, chunk lines 41-43\] {error}") as err:
        future.result()
    assert isinstance(err.value.__cause__, IndexError if loops else ArrayBuffersError)


@given(st.lists(st.lists(st.text(max_size=4).map(str.encode), min_size=3, max_size=3), max_size=4), st.data())
def test_string_columns_sharing_their_buffers_are_the_columns_one_by_one(
    columns: list[list[bytes]], data: st.DataObject
) -> None:
    """Columns of three rows that share one data and one offsets buffer (each a window of the offsets)
    are what each window builds on its own, nulls included."""
    rows = 3
    values = [v for column in columns for v in column]
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    bitmaps = [
        data.draw(st.sampled_from([None, pa.py_buffer(b"\x05"), pa.py_buffer(b"\x00")])) for _ in columns
    ]
    built = string_columns_from_buffers(len(columns), rows, offsets, pa.py_buffer(b"".join(values)), bitmaps)
    for f, column in enumerate(built):
        column.validate(full=True)
        one = string_from_buffers(rows, offsets[f * rows :], b"".join(values), bitmaps[f])
        assert column.to_pylist() == one.to_pylist()


@pytest.mark.parametrize(
    ("offsets", "data", "bitmaps", "message"),
    [
        ((0, 1, 2, 1, 3), b"abc", [None, None], "negative length"),  # a decrease where a column starts
        ((0, 1, 2, 3, 2), b"abc", [None, None], "negative length"),  # in the last column's last row
        ((0, 1, 2, 3, 4), b"abc", [None, None], "outside"),
        ((-1, 1, 2, 3, 3), b"abc", [None, None], "outside"),
        ((0, 1, 2, 3), b"abc", [None, None], "offsets buffer"),
        ((0, 1, 2, 3, 3), b"abc", [None, pa.py_buffer(b"")], "bitmap"),
        ((0, 1, 2, 3, 3), b"abc", [None], "validity"),
    ],
)
def test_string_columns_sharing_their_buffers_refuse_what_would_overrun_or_shift(
    offsets: tuple[int, ...], data: bytes, bitmaps: list[pa.Buffer | None], message: str
) -> None:
    with pytest.raises(ArrayBuffersError, match=message):
        string_columns_from_buffers(2, 2, np.array(offsets, dtype=np.int32), pa.py_buffer(data), bitmaps)


def test_a_dictionary_array_checks_its_indices() -> None:
    values = dictionary_array(["a", "b"], np.array([1, 0, 1], dtype=np.int32))
    assert values.to_pylist() == ["b", "a", "b"] and values.type == pa.dictionary(pa.int32(), pa.string())
    for bad in ([2], [-1]):
        with pytest.raises(ArrayBuffersError):
            dictionary_array(["a", "b"], np.array(bad, dtype=np.int32))


@given(st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=12), st.integers(0, 12))
def test_a_string_arrays_buffers_are_read_from_its_offset(values: list[str | None], start: int) -> None:
    array = pa.array(values, pa.string()).slice(start)
    _, offsets, text = string_buffers(array)
    kept = [v for v in values[start:] if v is not None]
    assert offsets[0] == 0 and bytes(text) == "".join(kept).encode()
    assert [bytes(text[lo:hi]).decode() for lo, hi in itertools.pairwise(offsets)] == [
        v or "" for v in values[start:]
    ]


# what Arrow lets through unless validated in full: offsets that go back
@pytest.mark.parametrize("offsets", [(0, 2, 1), (0, 3, 0)])
def test_string_buffers_refuse_offsets_that_go_back(offsets: tuple[int, ...]) -> None:
    bad = pa.Array.from_buffers(
        pa.string(), 2, [None, pa.py_buffer(np.array(offsets, dtype=np.int32)), pa.py_buffer(b"abc")]
    )
    with pytest.raises(ArrayBuffersError):
        string_buffers(bad)
