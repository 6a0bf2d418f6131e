"""JSON lines whose keys come in any order ([run.format] jsonl = {column = "key"}): the same rows as the
nginx template, whatever the key order; a bad line is a reject, never the end of the file."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.cli import JSONL_MAPPING
from pipeline.formats import get_format, key_of
from tests.conftest import JSON_FORMAT, generated, manifest, run_cli

MAPPING = JSONL_MAPPING
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
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    # a file that has the key, small enough to share a parse task with the first: the warning is per file
    (logs / "web.jsonl").write_text(json.dumps(lines[0] | {"agent": "curl/8"}) + "\n")
    out = tmp_path / "out"
    mapping = '{ts = "time", ip = "addr", status = "status", user_agent = "agent"}'
    proc = run_cli("run", "-i", str(logs), "-o", str(out), "--set", f"run.format={{jsonl = {mapping}}}")
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert m["reject_reasons"] == {"missing time": 1, "bad timestamp": 1}
    assert m["stages"]["parse"]["items_in"] == 1  # one task: the two files packed
    assert re.search(r"no line of \S*app\.jsonl has a value for the key 'agent'", proc.stderr), proc.stderr
    assert "web.jsonl" not in proc.stderr
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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026/11/01 10:00:00", "2026-11-01T10:00:00+00:00"),  # Go's wall time: UTC, the shortest
        ("2026/11/01 10:00:00.25", "2026-11-01T10:00:00.250000+00:00"),
        ("2026-11-01T10:00:00+0100", "2026-11-01T09:00:00+00:00"),  # an offset without its colon
        ("2026-11-01T10:00:00.5-0130", "2026-11-01T11:30:00.500000+00:00"),
    ],
)
def test_go_wall_times_and_offsets_without_a_colon_are_read(value: str, expected: str) -> None:
    lines = b"".join(b'{"t":"%s"}\n' % v.encode() for v in [value, "01/Nov/2026:10:00:00 +0000"])
    table, rejects, _ = parse({"jsonl": {"ts": "t"}}, lines)
    assert rejects == [] and table.column("ts")[0].as_py().isoformat() == expected


# --- the template read (pipeline.formats.jsonl_template) against Arrow's read of the same chunk -------

NGINX_LINE = (
    '{{"time_local":"0{d}/Nov/2026:10:00:0{s} +0100","remote_addr":"10.0.0.{s}","remote_user":"",'
    '"request":"GET /p/{s}?q={d} HTTP/1.1","status":"{st}","body_bytes_sent":"{s}12",'
    '"request_time":"0.{s}05","http_referrer":"","http_user_agent":"curl/8.{s}"}}'
)
CADDY_MAPPING = {"ts": "ts", "status": "status", "bytes": "size", "request_time": "duration", "host": "host"}
CADDY_LINE = (
    '{{"level":"info","ts":1773526872.{s}5,"host":"h{s}","status":{st},"size":1{s}0,"duration":0.00{s}}}'
)


def nginx_lines(n: int) -> list[str]:
    return [NGINX_LINE.format(d=1 + i % 3, s=i % 10, st=200 + i % 5) for i in range(n)]


def caddy_lines(n: int) -> list[str]:
    return [CADDY_LINE.format(s=i % 10, st=200 + i % 5) for i in range(n)]


def both_reads(
    mapping: dict[str, str], lines: list[str] | list[bytes], max_line: int = 1 << 16
) -> tuple[Any, Any, bool]:
    """The chunk's result with the template read and with Arrow's alone, and whether the template read
    it (in part or whole)."""
    data = b"".join((x.encode() if isinstance(x, str) else x) + b"\n" for x in lines)
    return quick_and_arrow(mapping, data, "template", max_line)


def quick_and_arrow(
    mapping: dict[str, str], data: bytes, read: str, max_line: int = 1 << 16
) -> tuple[Any, Any, bool]:
    """The chunk's result with one quick read (``read``: "template" or "nested", the other off) and with
    Arrow's alone, and whether that read took the chunk (in part or whole)."""
    from pipeline.formats import jsonl, jsonl_nested, jsonl_template
    from pipeline.formats.base import finish

    spied, other = (jsonl_template, jsonl_nested) if read == "template" else (jsonl_nested, jsonl_template)
    plan = jsonl.JsonPlan.compile(mapping)
    quick_read, took = spied.read, []

    def spy(*args: Any) -> Any:
        took.append(quick_read(*args))
        return took[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(other, "read", lambda *args: None)
        patch.setattr(spied, "read", spy)
        quick = finish(jsonl.scan(plan, data, 1, max_line, 4096))
        patch.setattr(spied, "read", lambda *args: None)
        arrow = finish(jsonl.scan(plan, data, 1, max_line, 4096))
    return quick, arrow, any(t is not None for t in took)


def assert_same(quick: Any, arrow: Any) -> None:
    from pipeline.stages.parse import rejects_batch

    assert quick.batch.schema == arrow.batch.schema
    assert quick.batch.to_pylist() == arrow.batch.to_pylist()
    assert rejects_batch(quick.rejects).to_pylist() == rejects_batch(arrow.rejects).to_pylist()
    assert list(quick.rows) == list(arrow.rows)
    assert quick.absent == arrow.absent


@pytest.mark.parametrize("compiled_split", [True, False])
def test_one_writers_lines_are_read_by_the_template(compiled_split: bool) -> None:
    from pipeline.formats import compiled

    with pytest.MonkeyPatch.context() as patch:
        if not compiled_split:
            patch.setattr(compiled, "loaded", lambda: False)
        for mapping, lines in ((MAPPING, nginx_lines(50)), (CADDY_MAPPING, caddy_lines(50))):
            quick, arrow, took = both_reads(mapping, lines)
            assert took
            assert_same(quick, arrow)
            assert quick.batch.num_rows == 50


def test_numbers_are_typed_as_arrow_types_the_whole_column() -> None:
    # a fraction anywhere makes Arrow's column float64, whose text of 12.0 is "12"; -0 is "0"
    lines = [
        f'{{"t":"2026-03-14T10:00:0{i}Z","v":{v},"w":{w}}}' for i, (v, w) in enumerate([(12, 0), (12.0, -0)])
    ]
    quick, arrow, took = both_reads({"ts": "t", "host": "v", "bytes": "w"}, lines)
    assert took
    assert_same(quick, arrow)
    assert [r["host"] for r in quick.batch.to_pylist()] == ["12", "12"]


def test_iso_times_in_a_string_column_are_what_arrow_makes_of_them() -> None:
    # Arrow makes a column of ISO times a timestamp (then epoch seconds as text); one other value keeps
    # the whole column text
    for days in (["2026-03-14", "2026-03-15"], ["2026-03-14", "soon"], ["2026-03-14", "2026-13-45"]):
        lines = [f'{{"t":"14/Mar/2026:10:00:00 +0000","d":"{d}"}}' for d in days]
        quick, arrow, took = both_reads({"ts": "t", "when": "d"}, lines)
        assert took
        assert_same(quick, arrow)


def test_iso_times_with_a_fraction_keep_a_string_column_as_arrow_does() -> None:
    # Arrow's reader types ISO times as timestamps in seconds, which take no fraction: one value with
    # a dot after the seconds keeps the whole column strings, which the template then reads as text
    for times in (
        ["2026-03-14T10:00:00Z", "2026-03-14T10:00:01.5Z"],
        ["2026-03-14T10:00:00.123456789Z", "2026-03-14T10:00:01.000000000Z"],
        ["2026-03-14 10:00:00.5", "2026-03-14T10:00:01+01:00"],
        ["2026-03-14T10:00:00.Z", "2026-03-14T10:00:00Z"],
        ["2026-03-14T10:00:00Z", "2026-03-14T10:00:01Z"],
    ):
        lines = [f'{{"t":"14/Mar/2026:10:00:00 +0000","d":"{d}"}}' for d in times]
        quick, arrow, took = both_reads({"ts": "t", "when": "d"}, lines)
        assert took
        assert_same(quick, arrow)


@pytest.mark.parametrize("loaded", [True, False])
def test_a_templates_text_column_is_the_spans_text(loaded: bool) -> None:
    import numpy as np

    from pipeline.formats import compiled, jsonl_template

    data = b'{"a":"xy","b":""}\n{"a":"","b":"z w"}\n'
    spans = np.array([[6, 24], [8, 24]], dtype=np.int64)  # the values of "a": xy, then nothing
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled, "loaded", lambda: loaded)
        assert jsonl_template.text_column(data, spans).to_pylist() == ["xy", ""]
        with pytest.raises((ValueError, IndexError)):  # a span past the chunk: refused, not read
            jsonl_template.text_column(data, np.array([[6], [len(data) + 3]], dtype=np.int64))


def test_which_keys_could_be_iso_times_is_told_key_by_key() -> None:
    import numpy as np

    from pipeline.formats import jsonl_template

    keys = [
        ["2026-03-14", "2026-03-14T10:00:00Z"],  # could all be times: read again by Arrow
        ["2026-03-14", "soon"],
        ["2026-03-14T10:00:00.5Z", "2026-03-14T10:00:00Z"],  # a fraction: no timestamp in seconds
        ["2026-03-14 10:00:00+01:00", "2026-03-14T10:00Z"],
        ["x", "2026-03-14"],
    ]
    values = [v for row in zip(*keys, strict=True) for v in row]  # line by line, key by key
    data = "".join(f'"{v}",' for v in values).encode()
    hi = np.cumsum([len(v) + 3 for v in values]) - 2
    lo = hi - [len(v) for v in values]
    shaped = (len(keys[0]), len(keys))
    got = jsonl_template._maybe_times(
        np.frombuffer(data, dtype=np.uint8), lo.reshape(shaped).T, hi.reshape(shaped).T
    )
    assert got.tolist() == [True, False, False, True, False]


_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]+)?")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([b"-0", b"0", b"-", b".5", b"5.", b"01", b"-01", b"1.0", b"-0.0", b"", b"1-2"]),
            st.sampled_from([b"true", b"false", b"null", b"tru", b"nul", b"falsey", b"True"]),
            st.binary(max_size=22).filter(lambda b: b"\n" not in b),
            st.from_regex(rb"\A-?[0-9]{1,20}(\.[0-9]{0,3})?\Z"),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_bare_values_are_checked_on_the_bytes_as_the_patterns_say(values: list[bytes]) -> None:
    import numpy as np

    from pipeline.formats import jsonl_template

    data = b"".join(v + b"," for v in values)
    a = np.frombuffer(data, dtype=np.uint8)
    hi = np.cumsum([len(v) + 1 for v in values]) - 1
    lo = hi - [len(v) for v in values]
    spans = np.stack([np.stack([lo, hi]), np.stack([lo, hi]), np.stack([lo, hi])]).astype(np.int64)
    good, plain = jsonl_template.tokens(a, spans, [0, 1, 2], ["number", "bool", "null"])
    numbers = [_NUMBER.fullmatch(v) is not None for v in values]
    assert good[0].tolist() == numbers
    assert plain[0].tolist() == [
        m and b"." not in v and v != b"-0" for m, v in zip(numbers, values, strict=True)
    ]
    assert good[1].tolist() == [v in (b"true", b"false") for v in values]
    assert good[2].tolist() == [v == b"null" for v in values]


@pytest.mark.parametrize(
    "odd",
    [
        '{"level":"info","ts":1773526872.5,"host":"a\\"b","status":200,"size":1,"duration":0.1}',  # an escape
        '{"ts":1773526872.5,"level":"info","host":"h","status":200,"size":1,"duration":0.1}',  # key order
        '{"level":"info","ts":1773526872.5,"status":200,"size":1,"duration":0.1}',  # a key missing
        '{"level":"info","ts":1773526872.5,"host":"h","status":200,"size":1,"duration":0.1,"x":7}',  # extra
        '{"level":"info", "ts":1773526872.5,"host":"h","status":200,"size":1,"duration":0.1}',  # a space
        '{"level":"info","ts":1773526872.5,"host":"caf\u00e9","status":200,"size":1,"duration":0.1}',  # UTF-8
        '{"level":"info","ts":1773526872.5,"host":null,"status":200,"size":1,"duration":1e-3}',  # null, 1e-3
    ],
)
def test_a_line_the_template_does_not_take_is_read_by_arrow(odd: str) -> None:
    lines = caddy_lines(20)
    lines[7] = odd
    quick, arrow, took = both_reads(CADDY_MAPPING, lines)
    assert took
    assert_same(quick, arrow)
    assert quick.batch.num_rows == 20


@pytest.mark.parametrize(
    "odd",
    [
        # Arrow stops at the key whose type changes and reads that line by json.loads: 12.0 is "12.0"
        '{"level":7,"ts":1773526872.5,"host":"h","status":200,"size":1,"duration":12.0}',
        # (in another key order) the other line's host an ISO date, the template's lines' a name or a
        # date: text in the whole column
        '{"ts":1773526872.5,"level":"info","host":"2026-03-14","status":200,"size":1,"duration":0.1}',
        # its size a fraction: the whole column float64
        '{"ts":1773526872.5,"level":"info","host":"h","status":200,"size":1.5,"duration":0.1}',
        '{"level":"info","ts":1773526872.5,"host":"h" "status":200,"size":1,"duration":0.1}',  # malformed
        '{"level":"info","ts":1773526872.5,"host":{"a":1},"status":200,"size":1,"duration":0.1}',  # nested
        '{"level":"info","ts":1773526872.5,"host":"h","status":200,"size":1,"duration":0.1,"x":[1]}',
    ],
)
def test_a_line_that_arrow_reads_otherwise_with_the_others_sends_the_chunk_to_arrow(odd: str) -> None:
    lines = [line.replace('duration":0.00', 'duration":12.0') for line in caddy_lines(20)]
    lines[0] = lines[0].replace('"host":"h0"', '"host":"2026-03-13"')
    lines[7] = odd
    quick, arrow, took = both_reads(CADDY_MAPPING, lines)
    assert not took
    assert_same(quick, arrow)


def test_crlf_long_and_junk_lines_among_the_template_lines() -> None:
    lines: list[str | bytes] = [*nginx_lines(12)]
    lines[2] = lines[2].encode() + b"\r"  # type: ignore[union-attr]
    lines[4] = "x" * 300
    lines[5] = b"\x00\x01 junk"
    lines[6] = ""
    lines[8] = lines[8] + " " * 200  # type: ignore[operator]
    quick, arrow, took = both_reads(MAPPING, lines, max_line=400)  # type: ignore[arg-type]
    assert took
    assert_same(quick, arrow)


def test_a_nested_path_or_a_key_no_line_has() -> None:
    quick, arrow, took = both_reads({**CADDY_MAPPING, "user": "request.user"}, caddy_lines(5))
    assert not took  # a nested path: Arrow's read
    assert_same(quick, arrow)
    quick, arrow, took = both_reads({**CADDY_MAPPING, "user": "usr"}, caddy_lines(5))
    assert took
    assert_same(quick, arrow)
    assert quick.absent == ("usr",)


def test_a_lone_surrogate_in_a_mapped_value_is_a_reject() -> None:
    lines = [*caddy_lines(3), '{"level":"info","ts":1773526872.5,"host":"\\ud800","status":200,"size":1}']
    quick, arrow, _ = both_reads(CADDY_MAPPING, lines)
    assert_same(quick, arrow)
    assert quick.batch.num_rows == 3
    assert quick.rejects.reasons == ["no match"]


@pytest.mark.parametrize(
    ("line", "keys", "shapes"),
    [
        ('{"a":"x","b":1.5,"c":true,"d":null}', ("a", "b", "c", "d"), ("string", "number", "bool", "null")),
        ('{ "a" : "x" , "b": -1 }', ("a", "b"), ("string", "number")),
        ('{"a":"x","a":"y"}', None, None),  # a key twice
        ('{"a":"x\\"y"}', None, None),  # an escape
        ('{"a":{"b":1}}', None, None),  # nested
        ('{"a":[1]}', None, None),
        ('{"a":"x"} ', None, None),
        ("{}", None, None),
        ('{"a":"x",}', None, None),
    ],
)
def test_the_template_of_a_line(
    line: str, keys: tuple[str, ...] | None, shapes: tuple[str, ...] | None
) -> None:
    from pipeline.formats.jsonl_template import infer

    template = infer(line.encode())
    assert (template and template.keys, template and template.shapes) == (keys, shapes)
    if template is not None:  # the literals and the values make the line again
        assert b"".join(template.plan.literals).startswith(b"{")


def test_two_columns_of_one_key_and_keys_in_another_order_than_the_lines() -> None:
    lines = [
        '{"t":"14/Mar/2026:10:00:00 +0000","a":"","b":"x"}',
        '{"t":"14/Mar/2026:10:00:00 +0000","a":"yy","b":""}',
    ]
    for mapping in ({"ts": "t", "host": "a", "referrer": "a"}, {"ts": "t", "host": "b", "referrer": "a"}):
        quick, arrow, took = both_reads(mapping, lines)
        assert took
        assert_same(quick, arrow)


def _part_reference(value: str | None, part: str) -> str | None:
    """An entry's part of a value, by Python's ``re`` and ``str`` (the documented meaning of each)."""
    if value is None:
        return None
    if part == "path":
        return value.split("?", 1)[0]
    if part == "query":
        return value.split("?", 1)[1] if "?" in value else None
    m = re.fullmatch(r"(?:\[([^\]]*)\]|([^:\[\]]*)):([0-9]+)", value)
    if part == "host":
        return value if m is None else (m.group(1) or "") + (m.group(2) or "")
    return m.group(3) if m else (value if re.fullmatch(r"[0-9]+", value) else None)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(["10.0.0.1", "10.0.0.1:80", "[::1]:443", "[::1]", "8080", "", "a:b", "/p?q=1?x"]),
            st.text(alphabet="0123456789a:[].?/=", max_size=12),
        ),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(["host", "port", "path", "query"]),
)
def test_an_entrys_part_is_what_its_reference_says(values: list[str | None], part: str) -> None:
    from pipeline.formats import jsonl

    got = jsonl._part(pa.array(values, pa.string()), part)
    assert got.type == pa.string()
    assert got.to_pylist() == [_part_reference(v, part) for v in values]


# --- the compiled read of nested key paths (pipeline.formats.jsonl_nested) ---------------------------------

NESTED_MAPPING = {"ts": "t", "host": "o.b", "user_agent": 'o.h["User-Agent"][0]', "bytes": "o.n"}


def nested_reads(mapping: dict[str, str], records: list[Any]) -> tuple[Any, Any, bool]:
    """The chunk of ``records`` (JSON lines; a str is a line as it is) with the compiled read and with
    Arrow's alone, and whether the compiled read took the chunk."""
    data = b"".join((r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in records)
    return quick_and_arrow(mapping, data, "nested")


def nested_record(b: Any, n: Any = 5, agent: Any = "curl/8") -> dict[str, Any]:
    headers = {"Accept": ["*/*"], "User-Agent": [agent]} if agent is not None else {}
    return {"t": "14/Mar/2026:23:21:12 +0100", "o": {"n": n, "b": b, "h": headers}, "level": "info"}


def test_nested_paths_are_read_by_the_compiled_read_as_arrow_reads_them() -> None:
    records = [nested_record(f"h{i}", i, f"agent {i}") for i in range(6)]
    records[2]["o"]["h"] = {"User-Agent": ["x", "y"], "Accept": ["a"]}  # another order, another list
    records[3]["o"]["h"] = {}  # no agent: null
    records[4]["o"]["b"] = None
    quick, arrow, took = nested_reads(NESTED_MAPPING, records)
    assert took
    assert_same(quick, arrow)
    rows = quick.batch.to_pylist()
    assert [r["host"] for r in rows] == ["h0", "h1", "h2", "h3", None, "h5"]
    assert [r["user_agent"] for r in rows] == ["agent 0", "agent 1", "x", None, "agent 4", "agent 5"]
    assert [r["bytes"] for r in rows] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("odd", "why"),
    [
        (nested_record(7), "a key whose value changes kind: Arrow reads in parts, types the times apart"),
        ('{"t": "14/Mar/2026:23:21:12 +0100", "o": {"b": "x", "b": "y"}}', "a key twice"),
        # the keys before the second "n" are the line before's: still found twice
        ('{"t": "14/Mar/2026:23:21:12 +0100", "o": {"n": 5, "b": "x", "n": 6}}', "a key twice, later"),
        (nested_record({"x": 1}), "an object where the value is"),
        (nested_record("x", 1e300), "a number with an exponent"),
        ('{"t": "14/Mar/2026:23:21:12 +0100", "o": {"n": -0, "b": "x"}}', "-0, which Arrow makes 0"),
        ('{"t": "14/Mar/2026:23:21:12 +0100", "o.b": "top"}', "a dotted path's key at the top"),
        ('{"t": "14/Mar/2026:23:21:12 +0100", "o": {"b": "x", "l": [null, 1]}}', "a list of null first"),
        ('{"t": "14/Mar/2026:23:21:12 +0100", "o": {"b": "x",}}', "malformed"),
    ],
)
def test_a_chunk_the_compiled_read_does_not_take_is_arrows(odd: Any, why: str) -> None:
    records = [nested_record("2026-03-14T22:21:12Z"), odd, nested_record("2026-03-14T22:21:13Z")]
    quick, arrow, took = nested_reads(NESTED_MAPPING, records)
    assert not took, why
    assert_same(quick, arrow)


def test_a_wanted_string_with_an_escape_is_decoded() -> None:
    records = [
        nested_record(b, agent=a)
        for b, a in (("caf\u00e9", 'say "hi"'), ("a\\b", "x/y"), ("plain", "\u263a"))
    ]
    lines = [json.dumps(r) for r in records]
    lines[2] = lines[2].replace("\\u263a", "\u263a")  # raw UTF-8 beside the escapes
    lines.append(json.dumps(nested_record("a&b")).replace("&", "\\u0026"))  # Go's HTML-safe escape
    quick, arrow, took = nested_reads(NESTED_MAPPING, lines)
    assert took
    assert_same(quick, arrow)
    assert quick.batch.column("host").to_pylist() == ["caf\u00e9", "a\\b", "plain", "a&b"]
    assert quick.batch.column("user_agent").to_pylist() == ['say "hi"', "x/y", "\u263a", "curl/8"]


def test_iso_times_in_a_list_leave_the_chunk_to_arrow() -> None:
    # the first elements are all times, a later one is not: Arrow types the elements as strings
    records = [nested_record("x", agent=a) for a in ("2026-03-14T22:21:12Z", "2026-03-14T22:21:13Z")]
    records[1]["o"]["h"]["User-Agent"].append("not a time")
    quick, arrow, took = nested_reads(NESTED_MAPPING, records)
    assert not took
    assert_same(quick, arrow)
    assert quick.batch.column("user_agent").to_pylist() == ["2026-03-14T22:21:12Z", "2026-03-14T22:21:13Z"]


def test_top_level_keys_in_any_order_are_read_by_the_compiled_read() -> None:
    # no template takes these lines (another key order each, a key added): the compiled read does
    records: list[Any] = [
        {"t": "14/Mar/2026:23:21:12 +0100", "host": "a", "n": 1},
        {"n": 2, "host": "b", "t": "14/Mar/2026:23:21:13 +0100", "extra": [1, 2]},
        {"host": "c", "t": "14/Mar/2026:23:21:14 +0100"},
    ]
    quick, arrow, took = nested_reads({"ts": "t", "host": "host", "bytes": "n"}, records)
    assert took
    assert_same(quick, arrow)
    assert quick.batch.column("bytes").to_pylist() == [1, 2, None]


def test_decimals_the_loops_leave_are_read_whatever_the_order_of_their_keys() -> None:
    # two duration columns whose keys come in the other order in the lines, with values the compiled
    # number loop leaves to the numpy code (an exponent): their spans are not in order through the chunk
    mapping = {"ts": "t", "request_time": "b", "upstream_response_time": "a"}
    lines = [f'{{"t": "14/Mar/2026:23:21:1{i} +0100", "a": "{i}e-3", "b": "2.5e-{i}"}}' for i in range(1, 4)]
    quick, arrow, took = nested_reads(mapping, lines)
    assert took
    assert_same(quick, arrow)
    assert quick.batch.column("upstream_response_time").to_pylist() == [0.001, 0.002, 0.003]
    assert quick.batch.column("request_time").to_pylist() == [0.25, 0.025, 0.0025]
