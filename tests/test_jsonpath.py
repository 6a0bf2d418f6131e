"""Nested key paths in ``jsonl`` key maps: the syntax, its config errors, and the values of generated
nested lines compared with a plain-Python walk written here, through Arrow's columns and line by line."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.formats import get_format, key_of
from pipeline.formats import jsonl as jsonl_module
from pipeline.formats.jsonpath import PathError, parse
from pipeline.formats.spec import FormatSpecError
from tests.conftest import batch_rows, reject_list


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("a", ("a",)),
        ("request.remote_ip", ("request", "remote_ip")),
        ('request.headers["User-Agent"][0]', ("request", "headers", "User-Agent", 0)),
        ("request.headers.User-Agent[0]", ("request", "headers", "User-Agent", 0)),
        ('["http.method"]', ("http.method",)),
        ('a["b.c"]["d[0]"][12].e', ("a", "b.c", "d[0]", 12, "e")),
        ('["say \\"hi\\""].x', ('say "hi"', "x")),
        ("@timestamp", ("@timestamp",)),
        ("caf\u00e9 key.x y", ("caf\u00e9 key", "x y")),
    ],
)
def test_paths_parse_into_their_steps(text: str, steps: tuple[Any, ...]) -> None:
    assert parse(text).steps == steps


@pytest.mark.parametrize(
    "text", ["", "a..b", "a.", ".a", "[0]", "a[", "a[x]", "a[-1]", 'a["b"', 'a["b"x', "a]b", 'a"b', "a[0]b"]
)
def test_a_bad_path_is_a_config_error_naming_the_column(text: str) -> None:
    with pytest.raises(PathError):
        parse(text)
    if not text:
        return  # an empty key: refused as any empty key is
    with pytest.raises(FormatSpecError, match=r"column 'agent': key .*") as info:
        key_of({"jsonl": {"ts": "t", "agent": text}})
    assert repr(text) in str(info.value)


def _parse(mapping: dict[str, str], lines: list[bytes]) -> tuple[list[dict[str, Any]], list[int]]:
    result = get_format(key_of({"jsonl": mapping})).parse(b"".join(line + b"\n" for line in lines), 1)
    return batch_rows(result.batch), [line - 1 for line, _ in reject_list(result.rejects)]


def test_steps_that_find_nothing_are_null_and_never_a_reject() -> None:
    mapping = {
        "ts": "t",
        "deep": "a.b.c.d",
        "first": "a.list[0]",
        "third": "a.list[2]",
        "through": "a.s.x",
        "index_of_object": "a.b[0]",
    }
    lines = [
        b'{"t":1,"a":{"b":{"c":{"d":"deep"}},"list":["x","y"],"s":"text"}}',
        b'{"t":2,"a":{"b":{"c":null},"list":[],"s":{"x":"inner"}}}',
        b'{"t":3,"a":"not an object"}',
        b'{"t":4}',
    ]
    rows, rejected = _parse(mapping, lines)
    assert rejected == []
    got = [{k: r[k] for k in mapping if k != "ts"} for r in rows]
    assert got == [
        {"deep": "deep", "first": "x", "third": None, "through": None, "index_of_object": None},
        {"deep": None, "first": None, "third": None, "through": "inner", "index_of_object": None},
        dict.fromkeys(("deep", "first", "third", "through", "index_of_object")),
        dict.fromkeys(("deep", "first", "third", "through", "index_of_object")),
    ]


def test_a_top_level_dotted_key_wins_where_it_has_a_value() -> None:
    mapping = {
        "ts": "t",
        "method": "http.method",
        "nested": '["http"]["method"]',
        "literal": '["http.method"]',
    }
    lines = [
        b'{"t":1,"http.method":"GET","http":{"method":"PUT"}}',
        b'{"t":2,"http":{"method":"POST"}}',
        b'{"t":3,"http.method":null,"http":{"method":"HEAD"}}',
    ]
    rows, _ = _parse(mapping, lines)
    assert [(r["method"], r["nested"], r["literal"]) for r in rows] == [
        ("GET", "PUT", "GET"),
        ("POST", "POST", None),
        ("HEAD", "HEAD", None),
    ]


# --- generated nested lines against a plain-Python walk --------------------------------------------------

_KEYS = ["a", "b", "User-Agent", "x.y", "k[0]", 'q"uote', "caf\u00e9", "sp ace"]
_PLAIN = re.compile(r'[^.\[\]"]+')
_leaves = st.one_of(
    st.sampled_from(["v", "", "-", "caf\u00e9", "a.b", "[x]"]),
    st.integers(-5, 10**12),
    st.booleans(),
    st.none(),
)
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)
_steps = st.lists(st.one_of(st.sampled_from(_KEYS), st.integers(0, 2)), min_size=1, max_size=4).filter(
    lambda s: isinstance(s[0], str)
)


def _path_text(steps: list[Any]) -> str:
    out = ""
    for i, step in enumerate(steps):
        if isinstance(step, int):
            out += f"[{step}]"
        elif _PLAIN.fullmatch(step):
            out += ("." if i else "") + step
        else:
            out += "[" + json.dumps(step) + "]"
    return out


def _walk(record: dict[str, Any], text: str, steps: list[Any]) -> Any:
    """The reference: a dotted path without brackets whose text is a top-level key reads that key."""
    if len(steps) > 1 and "[" not in text and record.get(text) is not None:
        return record[text]
    value: Any = record
    for step in steps:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and step < len(value) else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
    return value


def _column(value: Any) -> str | None:
    """A string column's value, as the module documents it."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or value in ("", "-"):
        return None
    return str(value)


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(st.dictionaries(st.sampled_from(_KEYS), _values, max_size=5), min_size=1, max_size=8),
    paths=st.lists(_steps, min_size=1, max_size=5),
    slow=st.booleans(),
)
def test_generated_nested_lines_read_as_a_plain_walk_reads_them(
    records: list[dict[str, Any]], paths: list[list[Any]], slow: bool
) -> None:
    texts = [_path_text(p) for p in paths]
    mapping = {"ts": "t", **{f"c{i}": t for i, t in enumerate(texts)}}
    lines = [json.dumps({"t": 1_700_000_000 + i, **r}).encode() for i, r in enumerate(records)]
    if slow:  # a malformed object among them: the chunk is read line by line
        lines.append(b'{"t": 1, "a": }')
    rows, rejected = _parse(mapping, lines)
    assert rejected == ([len(records)] if slow else [])
    for row, record in zip(rows, records, strict=True):
        for i, (text, steps) in enumerate(zip(texts, paths, strict=True)):
            assert row[f"c{i}"] == _column(_walk(record, text, steps)), (text, record)


def test_nested_values_are_read_in_arrow_without_a_line_by_line_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> Any:
        raise AssertionError("read line by line")

    monkeypatch.setattr(jsonl_module, "_read_each", refuse)
    mapping = {"ts": "t", "ua": 'r.h["User-Agent"][0]', "ip": "r.ip", "n": "r.n"}
    lines = [
        b'{"t":1,"r":{"ip":"1.2.3.4","h":{"User-Agent":["curl/8"],"Accept":["*/*"]},"n":5}}',
        b'{"t":2,"r":{"ip":"::1","h":{"X-Other":["a","b"]}}}',
        b'{"t":3,"r":{"h":{"User-Agent":[]},"n":7}}',
        b'{"t":4}',
    ]
    rows, rejected = _parse(mapping, lines)
    assert rejected == []
    assert [(r["ua"], r["ip"], r["n"]) for r in rows] == [
        ("curl/8", "1.2.3.4", "5"),
        (None, "::1", None),
        (None, None, "7"),
        (None, None, None),
    ]


# One shape of nested objects and lists of strings, its lines leaving keys out and lists of any length:
# lines that Arrow's reader reads, so every value comes from its struct and list columns.
_shapes = st.recursive(
    st.just("str"),
    lambda inner: st.one_of(
        st.tuples(st.just("list"), inner),
        st.dictionaries(st.sampled_from(_KEYS), inner, min_size=1, max_size=3),
    ),
    max_leaves=8,
)


@st.composite
def _instance(draw: st.DrawFn, shape: Any) -> Any:
    if shape == "str":
        return draw(st.sampled_from(["v", "", "-", "caf\u00e9", "a.b", "w"]))
    if isinstance(shape, tuple):
        return [draw(_instance(shape[1])) for _ in range(draw(st.integers(0, 3)))]
    return {k: draw(_instance(v)) for k, v in shape.items() if draw(st.integers(0, 3))}


@settings(max_examples=150, deadline=None)
@given(shape=st.dictionaries(st.sampled_from(_KEYS), _shapes, min_size=1, max_size=4), data=st.data())
def test_generated_lines_of_one_shape_read_in_arrow_as_a_plain_walk_reads_them(
    shape: dict[str, Any], data: st.DataObject
) -> None:
    records = [data.draw(_instance(shape)) for _ in range(data.draw(st.integers(1, 8)))]
    paths = [data.draw(_path_into(shape)) for _ in range(data.draw(st.integers(1, 5)))]
    texts = [_path_text(p) for p in paths]
    mapping = {"ts": "t", **{f"c{i}": t for i, t in enumerate(texts)}}
    lines = [json.dumps({"t": 1_700_000_000 + i, **r}).encode() for i, r in enumerate(records)]
    # a path to an object or a list (kept as JSON text) is the one thing read line by line
    whole = any(
        isinstance(_walk(r, t, p), dict | list) for r in records for t, p in zip(texts, paths, strict=True)
    )
    with pytest.MonkeyPatch.context() as patch:
        if not whole:
            patch.setattr(jsonl_module, "_read_each", _refuse)
        rows, rejected = _parse(mapping, lines)
    assert rejected == []
    for row, record in zip(rows, records, strict=True):
        for i, (text, steps) in enumerate(zip(texts, paths, strict=True)):
            assert row[f"c{i}"] == _column(_walk(record, text, steps)), (text, record)


@st.composite
def _path_into(draw: st.DrawFn, shape: Any) -> list[Any]:
    """A path along ``shape`` (now and then a step it does not have), to a string or further."""
    steps: list[Any] = []
    while True:
        if isinstance(shape, dict):
            key = draw(st.sampled_from([*shape, *shape, draw(st.sampled_from(_KEYS))]))
            steps.append(key)
            shape = shape.get(key, "str")
        elif isinstance(shape, tuple):
            steps.append(draw(st.integers(0, 2)))
            shape = shape[1]
        if shape == "str" or not draw(st.integers(0, 4)):
            return steps


def _refuse(*args: Any) -> Any:
    raise AssertionError("read line by line")


def test_a_list_that_starts_with_null_inside_an_object_is_read() -> None:
    """Arrow's reader makes an invalid array of it (its use crashed): such a chunk is read line by line."""
    rows, rejected = _parse({"ts": "t", "second": "a.b[1]", "a": "a"}, [b'{"t":1,"a":{"b":[null,1]}}'])
    assert rejected == [] and [(r["second"], r["a"]) for r in rows] == [("1", '{"b": [null, 1]}')]


@pytest.mark.parametrize("stops", [1, 3, 40])
def test_lines_that_stop_arrow_are_the_only_ones_read_line_by_line(stops: int) -> None:
    """A malformed object, a key whose type changes: Arrow reads the lines around each such line, up to
    a few of them; the values are those of a chunk read wholly line by line."""
    mapping = {"ts": "t", "ua": 'r.h["User-Agent"][0]', "n": "r.n"}
    good = [
        f'{{"t":{1_700_000_000 + i},"r":{{"h":{{"User-Agent":["a{i}"]}},"n":{i}}}}}'.encode()
        for i in range(200)
    ]
    lines = list(good)
    for k in range(stops):  # every 5th line from line 3: a malformed object or a value of another type
        lines.insert(3 + 5 * k, b'{"t": 1, "r": }' if k % 2 else b'{"t":1700000000,"r":{"h":"text","n":"x"}}')
    seen: list[int] = []
    original = jsonl_module._read_each

    def counting(*args: Any) -> Any:
        seen.append(len(args[3]))
        return original(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonl_module, "_read_each", counting)
        rows, rejected = _parse(mapping, lines)
    with pytest.MonkeyPatch.context() as patch:  # the whole chunk line by line: the reference
        patch.setattr(jsonl_module, "_arrow", _unreadable)
        want_rows, want_rejected = _parse(mapping, lines)
    assert (rows, rejected) == (want_rows, want_rejected)
    assert rejected == [3 + 5 * k for k in range(stops) if k % 2]
    if stops <= jsonl_module._STOPS:
        assert sum(seen) == stops  # each stopping line alone
    else:
        assert sum(seen) < len(lines)  # after a few stops the rest, line by line


def _unreadable(*args: Any) -> Any:
    raise ValueError("Arrow's reader stops, at no line it names")
