"""The engine's compiled loops (pipeline/formats/kernels.py, pipeline/formats/compiled.py,
pipeline/formats/compiled_types.py): they run bounds-checked here, give what the numpy engine gives (and,
for the typing, what Python's own parsers give), and only load where a warm-up asks for them."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from bench.cli import FORMAT_SETTINGS
from pipeline.formats import compiled, compiled_types, engine, kernels, numbers
from pipeline.formats.compiled_types import NULL, TOO_BIG, UNREAD, VALUE
from pipeline.formats.spec import builtin, plan_for
from pipeline.formats.vector import parse_time_local, string_columns
from tests.conftest import ROOT, batch_rows, generated, reject_list


def test_the_tests_run_the_loops_with_bounds_checks() -> None:
    """A chunk without its final newline sends the line-end search past the array: with Numba's bounds
    checks on (tests/conftest.py) that is an IndexError, not a read of whatever memory follows."""
    t = compiled.split_tables(builtin("combined"))
    a = np.frombuffer(b"no newline at the end", dtype=np.uint8)
    out = [
        np.zeros((len(t.width), 2, 1), np.int64),
        np.zeros(1, np.int8),
        np.zeros(1, np.int64),
        np.zeros(1, np.int64),
    ]
    with pytest.raises(IndexError):
        kernels.split_lines(
            a,
            100,
            False,
            t.quick,
            t.lits,
            t.lit_lo,
            t.lit_hi,
            t.width,
            t.to_end,
            t.listy,
            t.seek,
            t.classes,
            *out,
        )


def test_split_refuses_a_chunk_that_does_not_end_a_line() -> None:
    with pytest.raises(ValueError, match="complete lines"):
        compiled.split(builtin("combined"), np.frombuffer(b"a\nb", dtype=np.uint8), 100)


@pytest.mark.parametrize("fmt", ["combined", "upstream", "json"])
def test_scan_gives_the_same_rows_with_and_without_the_loops(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The yardstick's lines (its malformed ones among them), CRLF ends, junk and an over-long line."""
    plan = plan_for(tomllib.loads("f = " + FORMAT_SETTINGS[fmt])["f"])
    data = generated(tmp_path, fmt) + b"\r\n".join([b"", b"junk line", b"\x00\x01", b"x" * 300, b""]) + b"\n"
    with_loops = engine.scan(plan, data, 1, 2000, 64)
    monkeypatch.setattr(compiled, "loaded", lambda: False)
    without = engine.scan(plan, data, 1, 2000, 64)
    assert compiled.KERNELS in sys.modules
    assert batch_rows(with_loops.build(None)) == batch_rows(without.build(None))
    assert reject_list(with_loops.rejects) == reject_list(without.rejects)


def test_importing_the_engine_does_not_import_numba() -> None:
    """A small run's processes never pay for Numba: only a warm-up imports the loops."""
    code = "import sys, pipeline.formats, pipeline.stages.parse; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- typing (pipeline/formats/compiled_types.py) ------------------------------------------------------


def _spans(values: list[bytes]) -> tuple[Any, Any, Any]:
    """``values`` one after another in one chunk, a byte apart (as a line's fields are): the chunk and
    each value's start and end."""
    data = b"|".join(values) + b"\n"
    sizes = np.array([len(v) for v in values], dtype=np.int64)
    lo = np.concatenate([[0], np.cumsum(sizes + 1)[:-1]]).astype(np.int64)
    return np.frombuffer(data, dtype=np.uint8), lo, lo + sizes


_CLF = re.compile(rb"\d\d/[A-Za-z]{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}")
TIMES = [
    b"01/Nov/2026:00:00:00 +0000",
    b"29/Feb/2024:23:59:59 +0000",  # a leap day
    b"29/Feb/2000:12:00:00 +0000",  # divisible by 400: a leap year
    b"29/Feb/1900:12:00:00 +0000",  # divisible by 100 only: not one
    b"29/Feb/2025:12:00:00 +0000",
    b"31/Apr/2026:12:00:00 +0000",
    b"31/Dec/2026:23:30:00 -1200",  # the next day in UTC
    b"01/Jan/2027:00:30:00 +1400",  # the day before in UTC
    b"01/Jan/2027:00:30:00 +2359",
    b"01/Jan/2027:00:30:00 -2359",
    b"01/Jan/2027:00:30:00 +2400",
    b"01/Jan/2027:00:30:00 +0060",
    b"01/Jan/2027:00:30:00 =0000",
    b"01/jAN/2027:00:30:00 +0000",  # month names in any case
    b"01/Jzn/2027:00:30:00 +0000",
    b"01/J\x00n/2027:00:30:00 +0000",
    b"00/Jan/2027:00:30:00 +0000",
    b"01/Jan/2027:24:00:00 +0000",
    b"01/Jan/2027:23:60:00 +0000",
    b"01/Jan/2027:23:59:60 +0000",
    b"01/Jan/0000:00:00:00 +0000",
    b"01/Jan/0001:00:00:00 +0000",  # the first day a date holds
    b"01/Jan/0001:00:00:00 +0001",  # before it in UTC
    b"31/Dec/9999:23:59:59 +0000",  # the last
    b"31/Dec/9999:23:59:59 -0001",  # after it in UTC
    b"1/Jan/2027:00:30:00 +0000",
    b"01/Jan/2027:00:30:00 +00000",
    b"01-Jan-2027:00:30:00 +0000",
    b"-",
    b"",
]


def _reference_time(text: bytes) -> tuple[int, int] | None:
    """Microseconds and UTC day of a CLF time by Python's datetime, None where it is no time."""
    if not _CLF.fullmatch(text):
        return None
    try:
        when = datetime.strptime(text.decode(), "%d/%b/%Y:%H:%M:%S %z").astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    us = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return us, us // 86_400_000_000


def test_time_local_reads_what_datetime_reads() -> None:
    a, lo, hi = _spans(TIMES)
    us, days, ok = compiled_types.time_local(a, lo, hi)
    got = [(int(u), int(d)) if good else None for u, d, good in zip(us, days, ok, strict=True)]
    assert got == [_reference_time(t) for t in TIMES]
    assert not us[~ok].any() and not days[~ok].any()
    want = parse_time_local(a, lo, hi)
    for mine, theirs in zip((us, days, ok), want, strict=True):
        assert np.array_equal(mine, theirs)


def test_status_is_three_digits() -> None:
    values = [b"200", b"404", b"099", b"2000", b"20", b"", b"-", b"2x0", b" 20"]
    a, lo, hi = _spans(values)
    codes, ok = compiled_types.status(a, lo, hi)
    assert ok.tolist() == [True, True, True, *[False] * 6]
    assert codes.tolist() == [200, 404, 99, *[0] * 6]


WHOLE = [
    (b"0", 0, VALUE),
    (b"9223372036854775807", 2**63 - 1, VALUE),
    (b"9223372036854775808", 0, TOO_BIG),
    (b"99999999999999999999", 0, TOO_BIG),
    (b"000000000000000000000000012", 12, VALUE),
    (b"12, 34", 46, VALUE),
    (b"1 : - : 2", 3, VALUE),
    (b"4611686018427387904, 4611686018427387904", 0, TOO_BIG),  # each fits, their total does not
    (b"4611686018427387903, 4611686018427387904", 2**63 - 1, VALUE),
    (b"99999999999999999999, x", 0, UNREAD),  # no number at all, however big its first item
    (b"- : -", 0, NULL),
    (b"-", 0, NULL),
    (b"", 0, UNREAD),
    (b"1.5", 0, UNREAD),
    (b"1,2", 0, UNREAD),
    (b"1, ", 0, UNREAD),
    (b" 1", 0, UNREAD),
]


def test_whole_numbers_at_the_limits_of_int64() -> None:
    a, lo, hi = _spans([v for v, _, _ in WHOLE])
    null = compiled_types.nulls(a, lo, hi, (), False)
    values, state = compiled_types.numbers(a, lo, hi, null, True, True)
    assert list(zip(values.tolist(), state.tolist(), strict=True)) == [(v, s) for _, v, s in WHOLE]


def test_whole_numbers_give_what_the_numpy_typing_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    a, lo, hi = _spans([v for v, _, _ in WHOLE])
    data = a.tobytes()
    null = np.array([v == b"-" for v, _, _ in WHOLE])
    (got,) = numbers.whole_numbers(a, data, [(lo, hi, null)])
    monkeypatch.setattr(compiled, "loaded", lambda: False)
    (want,) = numbers.whole_numbers(a, data, [(lo, hi, null)])
    for mine, theirs in zip(got, want, strict=True):
        assert np.array_equal(mine, theirs)
    assert got[2].tolist().count(numbers.TOO_BIG) == 3


def test_decimals_are_the_nearest_double() -> None:
    """Random decimals of up to 35 digits, many past a double's exact ones (a Caddy time has 17), and
    lists of them: the loop reads those whose digits make an integer below 2**63 to the bit Python's
    float gives, and leaves the rest to its caller."""
    rng = random.Random(5)
    values = []
    for _ in range(6000):
        whole, frac = str(rng.randrange(10 ** rng.randrange(1, 12))), rng.randrange(0, 24)
        values.append(whole + ("." + "".join(rng.choice("0123456789") for _ in range(frac)) if frac else ""))
    # halfway between two doubles, and a digit either side (ties go to the even one)
    for tie in (2**53 + 1, 2**53 + 3, 2**54 + 2, 2**54 + 6, 2**62 + 512, 2**62 + 1536):
        for near in (tie - 1, tie, tie + 1):
            word = str(near)
            values += [word, *(word[:-k] + "." + word[-k:] for k in range(1, min(len(word) - 1, 19)))]
    lists = [", ".join(values[i : i + 3]) for i in range(0, 300, 3)]
    texts = [v.encode() for v in [*values, *lists]]
    a, lo, hi = _spans(texts)
    got, state = compiled_types.numbers(a, lo, hi, np.zeros(len(texts), bool), False, True)
    read = state == VALUE
    assert set(state.tolist()) == {VALUE, UNREAD}
    for text, value, was_read in zip(texts, got.tolist(), read.tolist(), strict=True):
        digits = len(text.replace(b".", b"").lstrip(b"0"))
        if b"," not in text:
            assert was_read == (int(text.replace(b".", b"")) < 2**63 and len(text.partition(b".")[2]) <= 22)
        if was_read:
            want = 0.0
            for item in text.split(b", "):
                want += float(item)
            assert value == want, (text, digits)


@pytest.mark.parametrize(
    ("text", "state"),
    [(b"1e3", UNREAD), (b"1.", UNREAD), (b".5", UNREAD), (b"inf", UNREAD), (b"-, -", NULL), (b"", UNREAD)],
)
def test_decimals_leave_other_forms_to_the_caller(text: bytes, state: int) -> None:
    a, lo, hi = _spans([text])
    _, got = compiled_types.numbers(a, lo, hi, np.zeros(1, bool), False, True)
    assert got.tolist() == [state]


def test_nulls_are_dashes_spellings_and_in_json_empty_values() -> None:
    values = [b"-", b"--", b"", b"-1", b"none", b"nonE", b"x"]
    a, lo, hi = _spans(values)
    assert compiled_types.nulls(a, lo, hi, (), False).tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert compiled_types.nulls(a, lo, hi, (b"-1", b"none"), True).tolist() == [1, 0, 1, 1, 1, 0, 0]


def test_nulls_at_gives_each_field_what_nulls_gives() -> None:
    """Several fields at once, each with its own spellings (none, one, several) and its own ``empty``,
    in any order of the fields; a field outside the spans is refused."""
    values = [b"-", b"--", b"", b"-1", b"none", b"nonE", b"x", b"0"]
    a, lo, hi = _spans(values * 3)
    spans = np.stack([lo, hi]).reshape(2, 3, len(values)).transpose(1, 0, 2).copy()  # (fields, 2, lines)
    wanted = ((2, (b"-1", b"none"), True), (0, (), False), (1, (b"0",), False), (0, (b"x", b"-1"), True))
    got = compiled_types.nulls_at(a, spans, wanted)
    for row, (k, spellings, empty) in zip(got, wanted, strict=True):
        assert row.tolist() == compiled_types.nulls(a, spans[k, 0], spans[k, 1], spellings, empty).tolist()
    assert got[0].tolist() == [1, 0, 1, 1, 1, 0, 0, 0]
    with pytest.raises(ValueError, match="fields"):
        compiled_types.nulls_at(a, spans, ((3, (), False),))


def test_string_columns_give_what_the_numpy_columns_give() -> None:
    """Any order of the lines, nulls (which hold no bytes) and empty strings."""
    values = [b"GET", b"", b"/a?b", b"-", b"caf\xc3\xa9", b"x" * 300, b"", b"z"]
    a, lo, hi = _spans(values)
    lo, hi = (
        lo.reshape(4, 2).T.copy(),
        hi.reshape(4, 2).T.copy(),
    )  # (fields, lines), line by line in the chunk
    valid = [np.array([True, True, False, True]), None]
    for take in (np.arange(4), np.array([3, 0, 2]), np.zeros(0, dtype=np.int64)):
        got = compiled_types.string_columns(a, lo, hi, take, valid)
        want = string_columns(pa.py_buffer(a), lo, hi, take, valid)
        assert [c.to_pylist() for c in got] == [c.to_pylist() for c in want]
        for column in got:
            column.validate(full=True)


def test_string_columns_refuse_spans_outside_the_chunk() -> None:
    a, lo, hi = _spans([b"abc"])
    with pytest.raises(IndexError):
        compiled_types.string_columns(a, lo[None, :], hi[None, :] + 2, np.zeros(1, np.int64), [None])
    with pytest.raises(ValueError, match="outside the chunk"):
        compiled_types.check_spans(a, np.array([[[0], [len(a) + 1]]]))


def test_request_lines_split_at_two_spaces_and_the_first_question_mark() -> None:
    values = [b"GET /a?b?c HTTP/1.1", b"GET / HTTP/1.1", b"GET  / HTTP/1.1", b"GET /a b HTTP/1.1", b"-", b""]
    a, lo, hi = _spans(values)
    dash = compiled_types.nulls(a, lo, hi, (), False)
    cut, split, has_q = compiled_types.request(a, lo, hi, dash)
    assert split.tolist() == [True, True, False, False, False, False]
    assert has_q.tolist() == [True, False, False, False, False, False]
    text = a.tobytes()
    m_hi, t_lo, path_hi, query_lo, t_hi, p_lo = cut[:, 0]
    assert [text[lo[0] : m_hi], text[t_lo:path_hi], text[query_lo:t_hi], text[p_lo : hi[0]]] == [
        b"GET",
        b"/a",
        b"b?c",
        b"HTTP/1.1",
    ]
    assert (cut[:, 2:] == lo[2:]).all()


def test_the_engine_types_with_the_loops_where_they_are_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparisons above and the fuzz property (tests/fuzz_formats.py, ``typing``) hold only if the
    engine does call the loops."""
    calls: list[str] = []

    def spy(name: str) -> Any:
        real = getattr(compiled_types, name)

        def call(*args: Any) -> Any:
            calls.append(name)
            return real(*args)

        return call

    for name in ("time_local", "status", "numbers", "request", "string_columns", "nulls_at"):
        monkeypatch.setattr(compiled_types, name, spy(name))
    plan = plan_for(tomllib.loads("f = " + FORMAT_SETTINGS["upstream"])["f"])
    line = (
        b'1.2.3.4 - - [01/Nov/2026:00:00:00 +0000] "GET /a?b HTTP/1.1" 200 12 "-" "curl/8" '
        b'rt=0.5 uct="0.1, 0.2" uht="-" urt="1"\n'
    )
    rows = engine.scan(plan, line * 3, 1, 2000, 64)
    batch = rows.build(None)
    assert set(calls) == {"time_local", "status", "numbers", "request", "string_columns", "nulls_at"}
    assert batch.column("upstream_connect_time").to_pylist() == [0.1 + 0.2] * 3
