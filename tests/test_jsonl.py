"""JSON lines whose keys come in any order ([run.format] jsonl = {column = "key"}): the same rows as the
nginx template, whatever the key order; a bad line is a reject, never the end of the file."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.formats import get_format, key_of
from tests.conftest import JSON_FORMAT, generated, manifest, run_cli

MAPPING = {
    "ts": "time_local",
    "ip": "remote_addr",
    "user": "remote_user",
    "request": "request",
    "status": "status",
    "bytes": "body_bytes_sent",
    "request_time": "request_time",
    "referrer": "http_referrer",
    "user_agent": "http_user_agent",
}
COLUMNS = ["ts", "ip", "user", "method", "path", "query", "protocol", "status", "bytes", "request_time"]


def parse(setting: dict[str, object], data: bytes) -> tuple[pa.Table, list[int], list[str]]:
    result = get_format(key_of(setting)).parse(data, 1)
    return pa.Table.from_batches([result.batch]), result.rejects.lines, result.rejects.reasons


def canonical(table: pa.Table) -> pa.Table:
    table = table.select([*COLUMNS, "referrer", "user_agent"])
    return table.sort_by([(c, "ascending") for c in COLUMNS])


def test_any_key_order_gives_the_rows_of_the_nginx_template(tmp_path: Path) -> None:
    data = generated(tmp_path, "json", lines=2000, bad=0)
    template, _, _ = parse({"nginx": JSON_FORMAT}, data)
    rng = random.Random(3)
    shuffled = []
    for line in data.splitlines():
        record = json.loads(line)
        keys = list(record)
        rng.shuffle(keys)
        if rng.random() < 0.5:  # numbers quoted or not
            record["status"] = int(record["status"])
        shuffled.append(json.dumps({k: record[k] for k in keys}).encode())
    table, rejects, _ = parse({"jsonl": MAPPING}, b"\n".join(shuffled) + b"\n")
    assert rejects == []
    assert canonical(table).equals(canonical(template))
    assert table.schema.field("request_time").type == pa.float64()
    assert table.schema.field("status").type == pa.int16()


def test_a_bad_line_is_a_reject_not_the_end_of_the_file() -> None:
    good = (
        b'{"time_local":"01/Nov/2026:10:00:00 +0000","remote_addr":"10.0.0.1",'
        b'"request":"GET / HTTP/1.1","status":200}'
    )
    lines = [
        good,
        b'{"time_local": "01/Nov/2026:10:00:00 +0000", "remote_addr": ',
        good,
        b"[1, 2]",
        b"",
        good,
    ]
    table, rejects, reasons = parse({"jsonl": MAPPING}, b"\n".join(lines) + b"\n")
    assert table.num_rows == 3
    assert rejects == [2, 4, 5] and reasons == ["no match", "no match", "empty line"]


@pytest.mark.parametrize(
    ("value", "column", "expected"),
    [
        ('"-"', "user", None),
        ('""', "user", None),
        ("null", "user", None),
        ('"a\\u0000b"', "user", "a\x00b"),
        ('"caf\\u00e9"', "user", "caf\u00e9"),
        ("0.25", "request_time", 0.25),
        ('"0.1, 0.2"', "request_time", pytest.approx(0.3)),
        ("12345678901234567890123", "bytes", "reject"),
        ('{"nested": 1}', "user", '{"nested": 1}'),
        ('""', "user_agent", ""),
        ("null", "user_agent", None),
    ],
)
def test_values_as_documented(value: str, column: str, expected: object) -> None:
    keys = {"user": "remote_user", "request_time": "request_time", "bytes": "body_bytes_sent"}
    key = keys.get(column, "http_user_agent")
    line = (
        '{"time_local":"01/Nov/2026:10:00:00 +0000","remote_addr":"10.0.0.1","request":"GET / HTTP/1.1",'
        f'"status":200,"{key}":{value}}}'
    ).encode()
    table, rejects, reasons = parse({"jsonl": MAPPING}, line + b"\n")
    if expected == "reject":  # beyond int64 (Arrow's reader makes it a float first: "no match")
        assert rejects == [1] and reasons[0] in ("out-of-range number", "no match")
        return
    assert rejects == []
    assert table.column(column).to_pylist() == [expected]


def test_duplicate_keys_take_the_last_and_the_time_may_be_iso_or_epoch() -> None:
    lines = [
        b'{"time_local":"2026-11-01T10:00:00+01:00","remote_addr":"10.0.0.1","remote_addr":"10.0.0.2"}',
        b'{"time_local":1793527200.5,"remote_addr":"10.0.0.3"}',
        b'{"time_local":"yesterday","remote_addr":"10.0.0.4"}',
    ]
    table, rejects, reasons = parse(
        {"jsonl": {"ts": "time_local", "ip": "remote_addr"}}, b"\n".join(lines) + b"\n"
    )
    rows = table.to_pylist()
    assert [r["ip"] for r in rows] == ["10.0.0.2", "10.0.0.3"]
    assert [r["ts"].isoformat() for r in rows] == [
        "2026-11-01T09:00:00+00:00",
        "2026-11-01T10:00:00.500000+00:00",
    ]
    assert rejects == [3] and reasons == ["bad timestamp"]


def test_a_mapping_without_ts_is_a_config_error() -> None:
    from pipeline.config import ConfigError, validate

    with pytest.raises(ConfigError, match="map the column 'ts'"):
        validate({"run": {"format": {"jsonl": {"ip": "remote_addr"}}}})


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(st.one_of(st.binary(max_size=80), st.just(b'{"time_local":1793527200}')), max_size=15))
def test_arbitrary_bytes_never_raise_and_every_line_is_accounted(lines: list[bytes]) -> None:
    data = b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines)
    result = get_format(key_of({"jsonl": MAPPING})).parse(data, 1)
    assert result.batch.num_rows + len(result.rejects) == len(lines)


def test_any_iso_8601_time_is_read_whatever_arrow_makes_of_it() -> None:
    lines = [
        b'{"t":"2026-11-01T10:00:00+01:00","ip":"a"}',
        b'{"t":"2026-11-01T12:00:00.250Z","ip":"c"}',
        b'{"t":"2026-11-01 12:00:01","ip":"d"}',
        b'{"ip":"no time"}',
    ]
    table, rejects, reasons = parse({"jsonl": {"ts": "t", "ip": "ip"}}, b"\n".join(lines) + b"\n")
    assert [r["ts"].isoformat() for r in table.to_pylist()] == [
        "2026-11-01T09:00:00+00:00",
        "2026-11-01T12:00:00.250000+00:00",
        "2026-11-01T12:00:01+00:00",
    ]
    assert rejects == [4] and reasons == ["missing time"]


def test_a_missing_time_and_a_key_no_line_has_are_named(tmp_path: Path) -> None:
    lines = [
        {"time": f"2026-11-01T10:00:{k:02d}+00:00", "addr": f"10.0.0.{k}", "status": 200} for k in range(30)
    ]
    lines += [{"addr": "10.0.0.99", "status": 500}, {"time": "yesterday", "addr": "10.0.0.98", "status": 500}]
    log = tmp_path / "app.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "out"
    mapping = '{ts = "time", ip = "addr", status = "status", user_agent = "agent"}'
    proc = run_cli("run", "-i", str(log), "-o", str(out), "--set", f"run.format={{jsonl = {mapping}}}")
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert m["reject_reasons"] == {"missing time": 1, "bad timestamp": 1}
    assert re.search(r"no line of \S*app\.jsonl has a value for the key 'agent'", proc.stderr), proc.stderr
    assert "'addr'" not in proc.stderr and "'time'" not in proc.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1793527200.5", "2026-11-01T10:00:00.500000+00:00"),  # seconds
        ("1793527200500", "2026-11-01T10:00:00.500000+00:00"),  # milliseconds (JavaScript's Date.now())
        ("1793527200500.25", "2026-11-01T10:00:00.500250+00:00"),  # Caddy's unix_milli_float
        ('"1793527200500250"', "2026-11-01T10:00:00.500250+00:00"),  # microseconds
        ("1793527200500250999", "2026-11-01T10:00:00.500251+00:00"),  # nanoseconds (Caddy's unix_nano)
        ("253402300799", "9999-12-31T23:59:59+00:00"),  # the last second that seconds can say
        ("253402300800", "1978-01-11T21:31:40.800000+00:00"),  # past it: milliseconds
    ],
)
def test_an_epoch_time_too_large_for_seconds_is_a_smaller_unit(value: str, expected: str) -> None:
    table, rejects, _ = parse({"jsonl": {"ts": "t"}}, b'{"t":' + value.encode() + b"}\n")
    assert rejects == [] and [t.isoformat() for t in table.column("ts").to_pylist()] == [expected]
