"""Log formats. A format turns one line-aligned chunk of bytes into an Arrow batch plus rejects.

The config names a format (``run.format``): a built-in name (``combined``, ``common``,
``vhost_combined``, ``main``, ``upstream_time``) or the server's own format string,
``{nginx = "<log_format>"}`` or ``{apache = "<LogFormat>"}``. Either way it is compiled into a
:class:`~pipeline.formats.spec.FormatPlan` (``pipeline/formats/spec.py``) that the vectorised engine
(``pipeline/formats/engine.py``) runs over whole chunks. ``combined`` keeps its hand-tuned parser
(``pipeline/formats/combined.py``), which gives the same rows (a test checks it) a little faster.
JSON lines in any key order, ``{jsonl = {column = "key", ...}}``, have a reader of their own
(``pipeline/formats/jsonl.py``). ``"auto"`` is resolved per input file by the runner (:func:`detect`).

What crosses the process boundary is the format's :data:`FormatKey` (a name, or the dialect and the
string; for jsonl the mapping as JSON text): each worker compiles it once and keeps it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import pyarrow as pa

from pipeline import defaults
from pipeline.formats import combined, engine, jsonl
from pipeline.formats.base import FormatResult, Reason, RejectRows
from pipeline.formats.jsonl import JsonPlan
from pipeline.formats.spec import BUILTINS, FormatPlan, FormatSpecError, builtin, plan_for

# A built-in name, or (dialect, format string or jsonl mapping as JSON): hashable and picklable.
FormatKey = str | tuple[str, str]

__all__ = [
    "BUILTINS",
    "Format",
    "FormatKey",
    "FormatResult",
    "FormatSpecError",
    "Reason",
    "RejectRows",
    "conform",
    "detect",
    "get_format",
    "key_of",
    "parquet_options",
    "union_schema",
]

# Columns that repeat a lot (worth a Parquet dictionary) unless named here, and the integer columns that
# mostly grow or stay small (delta encoding packs them; see combined.PARQUET_OPTIONS for the figures).
_UNIQUE_STRINGS = frozenset(
    {"ip", "path", "query", "uri", "request_uri", "args", "query_string", "request_id", "req_id"}
    | {"http_x_forwarded_for", "upstream_addr", "remote_addr", "server_addr"}
)
_STATISTICS = ("ts", "status", "bytes")


def compile_setting(setting: str | Mapping[str, Any]) -> FormatPlan | JsonPlan:
    """The plan of a ``run.format`` setting: a built-in name, ``{nginx = ...}``, ``{apache = ...}`` or
    ``{jsonl = {column = "key", ...}}``; raises FormatSpecError naming what is wrong."""
    if isinstance(setting, Mapping) and "jsonl" in setting:
        if len(setting) != 1 or not isinstance(setting["jsonl"], Mapping):
            raise FormatSpecError("jsonl", "give {jsonl = {column = 'key', ...}} and nothing else")
        return JsonPlan.compile(setting["jsonl"])
    return plan_for(setting)


def key_of(setting: str | Mapping[str, Any]) -> FormatKey:
    """The :data:`FormatKey` of a ``run.format`` setting (validated by compiling it)."""
    compile_setting(setting)
    if isinstance(setting, str):
        return setting
    ((dialect, text),) = setting.items()
    return (dialect, json.dumps(dict(text)) if dialect == "jsonl" else text)


def detect(lines: Sequence[bytes]) -> list[tuple[str, int]]:
    """The built-in formats ranked by how many of ``lines`` each parses into rows, best first."""
    data = b"".join(line.rstrip(b"\r\n").replace(b"\n", b" ") + b"\n" for line in lines)
    scores = [(name, get_format(name).parse(data, 1).batch.num_rows) for name in BUILTINS]
    return sorted(scores, key=lambda s: -s[1])


def choose(lines: Sequence[bytes]) -> tuple[FormatKey, int] | None:
    """``format = "auto"``: the format that reads most of ``lines`` (a built-in, or JSON lines with the
    mapping :func:`pipeline.formats.jsonl.suggest` proposes), and how many it reads; None when none
    reads any."""
    from pipeline.formats.jsonl import suggest

    name, rows = detect(lines)[0] if lines else ("combined", 0)
    suggested = suggest(list(lines)) if lines else None
    if suggested is not None and suggested[0] > rows:
        objects, mapping = suggested
        return key_of({"jsonl": mapping}), objects
    return (name, rows) if rows else None


@dataclass(frozen=True)
class Format:
    """A compiled format: its schema, its Parquet settings and its parser."""

    key: FormatKey
    plan: FormatPlan | JsonPlan

    @property
    def name(self) -> str:
        """How messages name it: the built-in's name, quoted, or the dialect's format string."""
        return repr(self.key) if isinstance(self.key, str) else f"(the {self.key[0]} format string)"

    @cached_property
    def tuned(self) -> bool:
        """Whether this is the combined format, which has a parser of its own."""
        ref = builtin("combined")
        if not isinstance(self.plan, FormatPlan):
            return False
        return (self.plan.literals, self.plan.fields, self.plan.escape) == (
            ref.literals,
            ref.fields,
            ref.escape,
        )

    @cached_property
    def schema(self) -> pa.Schema:
        return combined.SCHEMA if self.tuned else self.plan.schema()

    @cached_property
    def parquet_options(self) -> dict[str, Any]:
        return combined.PARQUET_OPTIONS if self.tuned else parquet_options(self.schema)

    def parse(
        self,
        data: bytes | memoryview,
        first_line: int,
        max_line_bytes: int = defaults.MAX_LINE_BYTES,
        reject_bytes: int = defaults.REJECT_BYTES,
    ) -> FormatResult:
        """Parse a chunk of complete lines (see :func:`pipeline.formats.combined.parse`)."""
        if self.tuned:
            return combined.parse(data, first_line, max_line_bytes, reject_bytes)
        if isinstance(self.plan, JsonPlan):
            return jsonl.parse(self.plan, data, first_line, max_line_bytes, reject_bytes)
        return engine.parse(self.plan, data, first_line, max_line_bytes, reject_bytes)


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """Per-column Parquet settings for any schema (see combined.PARQUET_OPTIONS for why)."""
    names = schema.names
    strings = [f.name for f in schema if pa.types.is_string(f.type) and f.name not in _UNIQUE_STRINGS]
    small = [f.name for f in schema if f.name in ("status", "is_bot", "server_port")]
    # a column is either dictionary- or delta-encoded: Parquet rejects an encoding for a dictionary
    # column (a server has a few ports, so server_port keeps its dictionary)
    deltas = [f.name for f in schema if (f.name == "ts" or pa.types.is_int64(f.type)) and f.name not in small]
    return {
        "use_dictionary": strings + small,
        "write_statistics": [n for n in _STATISTICS if n in names],
        "column_encoding": dict.fromkeys(deltas, "DELTA_BINARY_PACKED"),
    }


@lru_cache(maxsize=16)
def union_schema(keys: tuple[FormatKey, ...]) -> pa.Schema:
    """The columns of several formats in one output: the first format's, then each new one in the order
    met. A column that two formats type differently is an error naming both."""
    fields: dict[str, tuple[pa.Field, FormatKey]] = {}
    for key in keys:
        for f in get_format(key).schema:
            seen = fields.get(f.name)
            if seen is None:
                fields[f.name] = (f, key)
            elif not seen[0].type.equals(f.type):
                raise FormatSpecError(
                    str(key),
                    f"column {f.name!r} is {f.type} here but {seen[0].type} in the format {seen[1]!r}: "
                    "the sources of one run must agree on the type of a column they share",
                )
    return pa.schema([f for f, _ in fields.values()])


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema``'s columns: the ones it lacks are all null (another source's columns),
    and one of another type is cast (a dataset that widened a column's type keeps it for new rows)."""
    columns = []
    for f in schema:
        if f.name not in batch.schema.names:
            columns.append(pa.nulls(batch.num_rows, f.type))
            continue
        column = batch.column(f.name)
        columns.append(column if column.type == f.type else column.cast(f.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


@lru_cache(maxsize=32)
def get_format(key: FormatKey) -> Format:
    """The compiled format of ``key`` (compiled once per process)."""
    if isinstance(key, str):
        return Format(key, plan_for(key))
    dialect, text = key
    return Format(key, compile_setting({dialect: json.loads(text) if dialect == "jsonl" else text}))
