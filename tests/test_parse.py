"""Parse stage: what a worker returns for a chunk, whatever executor runs it (``tests/test_executors.py``
covers the executors)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.stages.parse import ParseTask, from_ipc, parse_chunk, parse_data
from pipeline.stages.read import Chunk
from tests.conftest import SAMPLE, chunks_of


@pytest.fixture(scope="module")
def chunks() -> list[Chunk]:
    return chunks_of(SAMPLE / "access-000.log")


def test_batch_that_does_not_fit_its_slot_comes_back_through_the_pipe(chunks: list[Chunk]) -> None:
    from pipeline.stages.parse import _ipc_into

    result = parse_chunk(ParseTask(chunks[0]))
    batches = [from_ipc(p.ipc) for p in result.parts]
    assert _ipc_into(batches, memoryview(bytearray(100))) is None  # too small: the caller falls back
    target = bytearray(sum(p.size for p in result.parts) + 1024)
    sizes = _ipc_into(batches, memoryview(target))
    assert sizes == [p.size for p in result.parts]
    assert from_ipc(bytes(target[: sizes[0]])).equals(batches[0])


def test_parse_data_writes_streams_into_a_buffer_or_returns_them(chunks: list[Chunk]) -> None:
    # the transports' entry: the chunk's bytes apart from the task, the streams into their own buffer
    plain = parse_chunk(ParseTask(chunks[0]))
    emptied = ParseTask(replace(chunks[0], data=b""))
    target = bytearray(sum(p.size for p in plain.parts) + 1024)
    into = parse_data(emptied, memoryview(chunks[0].data), into=memoryview(target))
    assert [p.ipc for p in into.parts] == [b""] * len(plain.parts)
    assert into.in_bytes == plain.in_bytes and into.rows == plain.rows
    first = plain.parts[0]
    assert from_ipc(bytes(target[: first.size])).equals(from_ipc(first.ipc))
    too_small = parse_data(emptied, chunks[0].data, into=memoryview(bytearray(100)))
    assert [p.ipc for p in too_small.parts] == [p.ipc for p in plain.parts]  # they came back instead


def test_blank_lines_rejects_take_their_place_in_line_order() -> None:
    good = SAMPLE.joinpath("access-000.log").read_bytes().split(b"\n")[0] + b"\n"
    data = good + b"\n" + b"x\n" + b"\r\n" + good + b"\n"
    result = parse_chunk(ParseTask(Chunk(0, "f", 0, 10, data, 6)))
    rejects = from_ipc(result.rejects)
    assert rejects.column("line").to_pylist() == [11, 12, 13, 15]
    assert rejects.column("reason").to_pylist() == ["empty line", "no match", "empty line", "empty line"]
    assert rejects.column("raw").to_pylist() == [b"", b"x", b"", b""]
    assert rejects.column("raw_bytes").to_pylist() == [0, 1, 0, 0]
    assert result.reject_counts == {"empty line": 3, "no match": 1}
    assert result.rows == 2
