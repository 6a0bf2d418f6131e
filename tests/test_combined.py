"""The built-in combined format: against the serial reference, per reject class, fast vs slow path."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.formats import compiled, engine, get_format
from pipeline.formats.base import FormatResult, Reason
from pipeline.synthetic import BAD_LINES, ODD_LINES
from tests.conftest import read_lines, reference_parse, reject_list


def parse_lines(lines: list[bytes], **kw: int) -> FormatResult:
    return get_format("combined").parse(b"".join(x + b"\n" for x in lines), 1, **kw)


def rows_of(result: FormatResult) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = pa.Table.from_batches([result.batch]).to_pylist()
    return rows


def canonical(rows: list[dict[str, object]]) -> list[str]:
    # repr: None sorts beside strings; isoformat: the same instant whatever the tzinfo object
    def value(v: object) -> object:
        return v.isoformat() if isinstance(v, datetime) else v

    return sorted(repr(tuple(value(v) for v in r.values())) for r in rows)


def test_sample_matches_serial_reference(sample_dir: Path) -> None:
    for path in sorted(sample_dir.iterdir()):
        lines = read_lines(path)
        result = parse_lines(lines)
        expected, rejected = reference_parse(lines)
        assert len(result.rejects) == rejected, path
        assert result.batch.num_rows + len(result.rejects) == len(lines)
        assert canonical(rows_of(result)) == canonical(expected), path


def test_chunking_does_not_change_rows(sample_dir: Path) -> None:
    lines = read_lines(sample_dir / "access-000.log")
    whole = parse_lines(lines)
    parts = [parse_lines(lines[i : i + 97]) for i in range(0, len(lines), 97)]
    assert canonical(rows_of(whole)) == canonical([r for p in parts for r in rows_of(p)])
    assert sum(len(p.rejects) for p in parts) == len(whole.rejects)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", Reason.EMPTY),
        (b"garbage", Reason.NO_MATCH),
        (b'1.2.3.4 - - [99/Foo/2026:99:99:99 +0000] "GET / HTTP/1.1" 200 12 "-" "-"', Reason.BAD_TIMESTAMP),
        (b'1.2.3.4 - - [29/Feb/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 12 "-" "-"', Reason.BAD_TIMESTAMP),
        (b'1.2.3.4 - - [01/Nov/2026:10:60:00 +0000] "GET / HTTP/1.1" 200 12 "-" "-"', Reason.BAD_TIMESTAMP),
        (b'1.2.3.4 - - [01/Nov/2026:10:00:00 +2400] "GET / HTTP/1.1" 200 12 "-" "-"', Reason.BAD_TIMESTAMP),
        (b'1.2.3.4 - - [1/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 12 "-" "-"', Reason.BAD_TIMESTAMP),
        (b'1.2.3.4 - - [01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 2000 12 "-" "-"', Reason.NO_MATCH),
        # the time is read by its width: a bracket inside it is a bad time, not a line of another shape
        (b'1.2.3.4 - - [01/Nov]2026:10:00:00 +0000] "GET / HTTP/1.1" 200 12 "-" "-"', Reason.BAD_TIMESTAMP),
        (b'1.2.3.4 - - [01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1x "-" "-"', Reason.NO_MATCH),
        (b'1.2.3.4 - - [01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 12 "-" "-" extra', Reason.NO_MATCH),
        (b'1.2.3.4 - - [01/Nov/2026:10:00:00 +0000] "GET /\xc3 HTTP/1.1" 200 1 "-" "-"', Reason.INVALID_UTF8),
        (b'1.2.3.4 - - [01/Nov/2026:10:00:00 +0000] "GET /\x00 HTTP/1.1" 200 1 "-" "-"', Reason.NUL_BYTE),
        (
            b'1.2.3.4 - - [01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 9223372036854775808 "-" "-"',
            Reason.OUT_OF_RANGE,
        ),
    ],
)
def test_reject_reasons(line: bytes, reason: Reason) -> None:
    result = parse_lines([line])
    assert result.batch.num_rows == 0
    assert reject_list(result.rejects) == [(1, reason.value)]


def test_every_sample_bad_line_is_rejected_and_every_odd_line_accepted() -> None:
    result = parse_lines(list(BAD_LINES))
    assert result.batch.num_rows == 0
    assert sorted({reason for _, reason in reject_list(result.rejects)}) == sorted(
        {"empty line", "no match", "bad timestamp", "invalid UTF-8", "NUL byte", "out-of-range number"}
    )
    odd = parse_lines(list(ODD_LINES))
    assert odd.batch.num_rows == len(ODD_LINES)


def test_valid_variants() -> None:
    lines = [
        b'2001:db8::1 - - [01/Nov/2026:10:00:00 +0000] "GET /x HTTP/2.0" 200 5 "-" "curl/8"',
        b'10.0.0.1 - - [01/Nov/2026:10:00:00 +0000] "GET /y HTTP/1.1" 200 5 "-" "say \\"hi\\""',
        b'10.0.0.2 - - [01/Nov/2026:10:00:00 -0800] "-" 400 0 "-" "-"',
        b'10.0.0.3 - alice [01/Nov/2026:10:00:00 +0000] "GET /a?b=1?c HTTP/1.1" 304 - "https://r/" "Bot"\r',
        b'10.0.0.4 - - [01/Nov/2026:10:00:00 +0000] "GET /caf\xc3\xa9? HTTP/1.1" 200 5 "-" "x"',
    ]
    rows = rows_of(parse_lines(lines))
    assert len(rows) == 5
    by_ip = {r["ip"]: r for r in rows}
    assert by_ip["2001:db8::1"]["is_bot"] is True
    assert by_ip["10.0.0.1"]["user_agent"] == 'say \\"hi\\"'
    dash = by_ip["10.0.0.2"]
    assert (dash["method"], dash["path"], dash["query"], dash["protocol"]) == (None, None, None, None)
    assert str(dash["ts"]) == "2026-11-01 18:00:00+00:00"
    crlf = by_ip["10.0.0.3"]
    assert (crlf["user"], crlf["path"], crlf["query"], crlf["bytes"], crlf["is_bot"]) == (
        "alice",
        "/a",
        "b=1?c",
        None,
        True,
    )
    assert crlf["user_agent"] == "Bot"
    assert (by_ip["10.0.0.4"]["path"], by_ip["10.0.0.4"]["query"]) == ("/café", "")


def test_timestamps_offsets_and_partitions() -> None:
    lines = [
        b'1.1.1.1 - - [31/Dec/2026:23:30:00 -0100] "GET / HTTP/1.1" 200 1 "-" "-"',
        b'1.1.1.1 - - [01/Jan/2027:00:30:00 +0100] "GET / HTTP/1.1" 200 1 "-" "-"',
        b'1.1.1.1 - - [29/Feb/2024:12:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"',
        b'1.1.1.1 - - [01/nov/2026:12:00:00 +1345] "GET / HTTP/1.1" 200 1 "-" "-"',
    ]
    result = parse_lines(lines)
    assert [p[0] for p in result.partitions] == ["2024-02-29", "2026-10-31", "2026-12-31", "2027-01-01"]
    ts = [str(t) for t in result.batch.column("ts").to_pylist()]
    assert ts == [
        "2024-02-29 12:00:00+00:00",
        "2026-10-31 22:15:00+00:00",
        "2026-12-31 23:30:00+00:00",
        "2027-01-01 00:30:00+00:00",
    ]
    dates = []
    for date, offset, length in result.partitions:
        dates += [date] * length
        assert offset == len(dates) - length
    assert len(dates) == result.batch.num_rows


def test_too_long_lines() -> None:
    ok = b'1.1.1.1 - - [01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"'
    result = parse_lines([ok, ok + b"x" * 200, ok], max_line_bytes=100)
    assert result.batch.num_rows == 2
    assert result.rejects.reasons == ["line too long"]
    assert result.rejects.lines == [2]


def test_fast_path_agrees_with_slow_path(sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = read_lines(sample_dir / "access-001.log.gz")
    fast = parse_lines(lines)
    # no fast candidates: every line goes through the ground-truth regex
    monkeypatch.setattr(compiled, "loaded", lambda: False)
    monkeypatch.setattr(engine, "fast_candidates", lambda a, s, e, c: np.zeros(len(s), dtype=bool))
    slow = parse_lines(lines)
    assert canonical(rows_of(fast)) == canonical(rows_of(slow))
    assert fast.rejects.reasons == slow.rejects.reasons


VALID = b'1.2.3.4 - - [01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 12 "-" "-"'


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=120).map(lambda b: b.replace(b"\n", b"")), max_size=20))
def test_any_bytes_every_line_is_row_or_reject(lines: list[bytes]) -> None:
    result = parse_lines([*lines, VALID])
    assert result.batch.num_rows + len(result.rejects) == len(lines) + 1
    assert result.batch.num_rows >= 1
    assert sorted(result.rejects.lines) == result.rejects.lines


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID) - 1), st.sampled_from(list(b' "[]-\\:/0a\xff\x00\r\t?'))),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_lines_agree_with_reference(edits: list[tuple[int, int]]) -> None:
    line = bytearray(VALID)
    for pos, byte in edits:
        line[pos] = byte
    lines = [bytes(line), VALID]
    result = parse_lines(lines)
    expected, rejected = reference_parse(lines)
    assert len(result.rejects) == rejected
    assert canonical(rows_of(result)) == canonical(expected)
