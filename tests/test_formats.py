"""The format interface (``pipeline.formats.base``) and its registry: settings and keys reach their
family, every family's parse ends with the same finishing steps, and a new family needs only its own
class and a place in the registry."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from pipeline import formats
from pipeline.formats import BUILTINS, FormatSpecError, get_format, key_of
from pipeline.formats.base import Family, Format, FormatKey, Reason, RejectRows, Rows, finish
from pipeline.formats.engine import PlanFormat
from pipeline.formats.jsonl import JsonFormat
from pipeline.formats.vector import line_bounds

SETTINGS: list[tuple[Any, type[Format]]] = [
    ("combined", PlanFormat),
    ("main", PlanFormat),
    ({"nginx": '$remote_addr [$time_local] "$request" $status'}, PlanFormat),
    ({"apache": '%h %l %u %t "%r" %>s %b'}, PlanFormat),
    ({"nginx": BUILTINS["combined"][1]}, PlanFormat),
    ({"jsonl": {"ts": "time", "ip": "addr"}}, JsonFormat),
]


@pytest.mark.parametrize(("setting", "kind"), SETTINGS)
def test_each_setting_reaches_its_family_and_its_key_compiles_to_the_same_format(
    setting: Any, kind: type[Format]
) -> None:
    key = key_of(setting)
    fmt = get_format(key)
    assert type(fmt) is kind
    assert fmt.key == key
    assert fmt.parse(b"", 1).batch.schema == fmt.schema
    assert fmt.parse(b"", 1).batch.num_rows == 0


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("nope", "not a built-in format"),
        ({"caddy": "x"}, "exactly one of 'nginx' or 'apache'"),
        ({"jsonl": "time"}, "give {jsonl = {column = 'key', ...}} and nothing else"),
        ({"jsonl": {"ip": "addr"}}, "map the column 'ts'"),
    ],
)
def test_a_setting_no_family_reads_is_an_error_naming_what_is_wrong(setting: Any, message: str) -> None:
    with pytest.raises(FormatSpecError, match=message.replace("{", r"\{").replace("(", r"\(")):
        key_of(setting)


def _rows(days: list[int], rejects: RejectRows) -> tuple[Rows, list[Any]]:
    asked: list[Any] = []
    batch = pa.RecordBatch.from_pydict({"day": days})

    def build(order: Any) -> pa.RecordBatch:
        asked.append(order)
        return batch if order is None else batch.take(pa.array(order))

    lines = np.arange(len(days), dtype=np.int64) * 2
    return Rows(np.array(days, dtype=np.int64), lines, rejects, build), asked


def test_finish_groups_rows_by_date_in_line_order_and_sorts_the_rejects() -> None:
    rejects = RejectRows()
    for line, reason in ((9, Reason.NO_MATCH), (3, Reason.BAD_TIMESTAMP), (5, Reason.NO_MATCH)):
        rejects.add(line, reason, str(line).encode() * 3, 2)
    rows, asked = _rows([20000, 20001, 20000, 20001, 20000], rejects)
    result = finish(rows)
    assert result.batch.column("day").to_pylist() == [20000] * 3 + [20001] * 2
    assert result.rows.tolist() == [0, 4, 8, 2, 6]  # stable: line order within a date
    assert result.partitions == [("2024-10-04", 0, 3), ("2024-10-05", 3, 2)]
    found = result.rejects
    assert (found.lines, found.raw, found.raw_len) == ([3, 5, 9], [b"33", b"55", b"99"], [3, 3, 3])
    assert found.reasons == [str(Reason.BAD_TIMESTAMP), str(Reason.NO_MATCH), str(Reason.NO_MATCH)]
    assert len(asked) == 1


def test_rejects_in_line_order_stay_as_they_are() -> None:
    rejects = RejectRows()
    for line in (2, 4, 4, 7):
        rejects.add(line, Reason.NO_MATCH, str(line).encode(), 10)
    rejects.sort()
    assert (rejects.lines, rejects.raw) == ([2, 4, 4, 7], [b"2", b"4", b"4", b"7"])


def test_finish_asks_for_no_order_when_the_rows_already_are_in_date_order() -> None:
    rows, asked = _rows([1, 1, 2], RejectRows())
    result = finish(rows)
    assert asked == [None]
    assert result.partitions == [("1970-01-02", 0, 2), ("1970-01-03", 2, 1)]


@dataclass(frozen=True)
class _Epochs(Format):
    """A toy family's format: a line is epoch seconds; lines starting with '#' are headers."""

    key: FormatKey

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([("ts", pa.timestamp("us", tz="UTC"))])

    def scan(self, data: bytes | memoryview, first_line: int, max_line_bytes: int, reject_bytes: int) -> Rows:
        a = np.frombuffer(data, dtype=np.uint8)
        starts, ends, _, _ = line_bounds(a)
        lines = [bytes(data[s:e]) for s, e in zip(starts, ends, strict=True)]
        rejects, kept, seconds = RejectRows(), [], []
        for i, line in enumerate(lines):
            if line.startswith(b"#"):
                continue
            if line.isdigit():
                kept.append(i)
                seconds.append(int(line))
            else:
                rejects.add(first_line + i, Reason.NO_MATCH, line, reject_bytes)
        us = np.array(seconds, dtype=np.int64) * 1_000_000
        skipped = len(lines) - len(kept) - len(rejects)

        def build(order: Any) -> pa.RecordBatch:
            values = us if order is None else us[order]
            return pa.RecordBatch.from_arrays(
                [pa.array(values, pa.timestamp("us", tz="UTC"))], schema=self.schema
            )

        return Rows(us // 86_400_000_000, np.array(kept, dtype=np.int64), rejects, build, skipped=skipped)


class _EpochFamily(Family):
    tables = ("epochs",)

    def key(self, setting: str | Mapping[str, Any]) -> FormatKey:
        assert not isinstance(setting, str)
        return ("epochs", json.dumps(setting["epochs"]))

    def load(self, key: FormatKey) -> Format:
        return _Epochs(key)


def test_a_family_needs_only_its_format_and_a_place_in_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "FAMILIES", (*formats.FAMILIES, _EpochFamily()))
    get_format.cache_clear()
    try:
        fmt = get_format(key_of({"epochs": {}}))
        result = fmt.parse(b"#Fields: epoch\n172800\nx\n86400\n#Fields: epoch\n172801\n", 1)
    finally:
        get_format.cache_clear()
    assert result.rows.tolist() == [3, 1, 5]
    assert [p[0] for p in result.partitions] == ["1970-01-02", "1970-01-03"]
    assert result.rejects.lines == [3]
    assert result.skipped == 2  # the headers: neither rows nor rejects
    assert fmt.name == "(the epochs format string)"
