"""Log formats. A format turns one line-aligned chunk of bytes into an Arrow batch plus rejects.

The config names a format (``run.format``): a built-in name (``combined``, ``common``,
``vhost_combined``, ``main``, ``upstream_time``; other servers' ``alb``, ``elb``, ``s3``, ``haproxy``,
``envoy``, ``traefik``, ``upstreaminfo``; JSON access logs ``caddy``, ``traefik_json``;
W3C logs ``w3c`` (``iis``) and ``cloudfront``), the server's
own format string (``{nginx = "<log_format>"}`` or ``{apache = "<LogFormat>"}``), or JSON lines in any
key order (``{jsonl = {column = "key", ...}}``). ``"auto"`` is resolved per input file by the runner
(:func:`choose`).

Every format is a :class:`~pipeline.formats.base.Format` of one *family*
(:class:`~pipeline.formats.base.Family`), and :data:`FAMILIES` is the registry: a new family is its own
module and one entry here. The families:

- :class:`~pipeline.formats.engine.Plans`: built-in names and format strings, compiled into a
  :class:`~pipeline.formats.spec.FormatPlan` (``spec.py``) that the vectorised engine (``engine.py``)
  runs over whole chunks, its per-byte loops compiled (``kernels.py``) where a run loads them.
- :class:`~pipeline.formats.servers.Servers`: the built-in formats of other servers (load balancers,
  proxies, S3), each from its documented fields as templates compiled into plans for the same engine
  (``servers.py``).
- :class:`~pipeline.formats.w3c.W3c`: W3C extended logs whose ``#Fields:`` header names the columns:
  IIS's (``w3c``, also named ``iis``) and CloudFront's (``w3c.py``).
- :class:`~pipeline.formats.jsonl.Jsonl`: JSON lines, read by Arrow's JSON reader (``jsonl.py``) with a
  key map of the config or of a built-in JSON access log (``json_servers.py``).

What crosses the process boundary is the format's :data:`FormatKey`: each worker compiles it once
(:func:`get_format`) and keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import pyarrow as pa

from pipeline.formats.base import (
    Family,
    Format,
    FormatKey,
    FormatResult,
    Reason,
    RejectRows,
    parquet_options,
)
from pipeline.formats.engine import Plans
from pipeline.formats.jsonl import Jsonl
from pipeline.formats.servers import Servers
from pipeline.formats.spec import BUILTINS, FormatSpecError
from pipeline.formats.w3c import W3c

# The registry, in order of preference: ``auto`` takes a later family's guess only when it reads more
# lines. The first family also answers the settings no family claims (its error names what it reads).
FAMILIES: tuple[Family, ...] = (Plans(), Servers(), W3c(), Jsonl())

__all__ = [
    "BUILTINS",
    "FAMILIES",
    "Format",
    "FormatKey",
    "FormatResult",
    "FormatSpecError",
    "Reason",
    "RejectRows",
    "builtin_names",
    "choose",
    "compile_setting",
    "conform",
    "detect",
    "get_format",
    "key_of",
    "names_markdown",
    "parquet_options",
    "union_schema",
]


_DIALECT_DOCS = {
    "nginx": ("nginx", "https://nginx.org/en/docs/http/ngx_http_log_module.html#log_format"),
    "apache": ("Apache httpd", "https://httpd.apache.org/docs/current/mod/mod_log_config.html#formats"),
}


def names_markdown() -> str:
    """The README's table of the built-in formats: each name, whose logs, and where their fields are
    documented (the details are in docs/formats.md)."""
    from pipeline.formats.json_servers import JSON_SERVERS
    from pipeline.formats.servers import SERVERS
    from pipeline.formats.w3c import ALIASES, DIALECTS

    rows = []
    for dialect, (server, url) in _DIALECT_DOCS.items():
        names = ", ".join(f"`{n}`" for n, (d, _) in BUILTINS.items() if d == dialect)
        rows.append((names, server, url))
    for table in (SERVERS, DIALECTS, JSON_SERVERS):
        for name, entry in table.items():
            names = ", ".join(f"`{n}`" for n in (name, *(a for a, to in ALIASES.items() if to == name)))
            rows.append((names, entry.title, entry.url))
    out = ["| `run.format` | logs of | fields documented at |", "| --- | --- | --- |"]
    return "\n".join([*out, *(f"| {n} | {t} | <{u}> |" for n, t, u in rows)]) + "\n"


def _family(setting: str | Mapping[str, Any]) -> Family:
    """The family that reads a setting, or a key: by its built-in name, or by its table."""
    for family in FAMILIES:
        if (
            setting in family.names or setting in family.aliases
            if isinstance(setting, str)
            else any(t in setting for t in family.tables)
        ):
            return family
    return FAMILIES[0]


def builtin_names() -> list[str]:
    """Every built-in format's name (and other name), of every family, sorted."""
    return sorted(name for family in FAMILIES for name in (*family.names, *family.aliases))


def key_of(setting: str | Mapping[str, Any]) -> FormatKey:
    """The :data:`FormatKey` of a ``run.format`` setting (validated by compiling it); raises
    FormatSpecError naming what is wrong."""
    if isinstance(setting, str) and setting not in builtin_names():
        raise FormatSpecError(
            repr(setting),
            f"not a built-in format; built-in formats: {', '.join(builtin_names())}, or the server's own "
            "format string as {nginx = '...'} or {apache = '...'}",
        )
    key = _family(setting).key(setting)
    get_format(key)
    return key


def compile_setting(setting: str | Mapping[str, Any]) -> Format:
    """The compiled format of a ``run.format`` setting; raises FormatSpecError naming what is wrong."""
    return get_format(key_of(setting))


@lru_cache(maxsize=32)
def get_format(key: FormatKey) -> Format:
    """The compiled format of ``key`` (compiled once per process)."""
    return _family(key if isinstance(key, str) else {key[0]: key[1]}).load(key)


def detect(lines: Sequence[bytes]) -> list[tuple[str, int]]:
    """The built-in formats ranked by how many of ``lines`` each parses into rows, best first."""
    data = b"".join(line.rstrip(b"\r\n").replace(b"\n", b" ") + b"\n" for line in lines)
    names = [name for family in FAMILIES for name in family.names]
    scores = [(name, get_format(name).parse(data, 1).batch.num_rows) for name in names]
    return sorted(scores, key=lambda s: -s[1])


def choose(lines: Sequence[bytes]) -> tuple[FormatKey, int] | None:
    """``format = "auto"``: the format that reads most of ``lines`` (a built-in, or a family's guess,
    such as JSON lines with the mapping :func:`pipeline.formats.jsonl.suggest` proposes), and how many
    it reads; None when none reads any."""
    best: tuple[FormatKey, int] = detect(lines)[0] if lines else ("combined", 0)
    for family in FAMILIES:
        guessed = family.guess(lines) if lines else None
        if guessed is not None and guessed[1] > best[1]:
            best = guessed
    return best if best[1] else None


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
