"""Log formats. A format turns one line-aligned chunk of bytes into an Arrow batch plus rejects.

Each format module exposes ``SCHEMA`` (the output schema, without the ``date`` partition
column), ``PARQUET_OPTIONS`` (per-column Parquet settings for the writer) and
``parse(data, first_line, max_line_bytes, reject_bytes) -> FormatResult``.
Formats are looked up by name from the config (``format = "combined"``) so the stages never
import a format directly.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from pipeline.formats import combined
from pipeline.formats.base import FormatResult, Reason, RejectRows

FORMATS: dict[str, ModuleType] = {"combined": combined}

__all__ = ["FORMATS", "FormatResult", "Reason", "RejectRows", "get_format"]


def get_format(name: str) -> Callable[[bytes | memoryview, int, int, int], FormatResult]:
    """Return the parse function of the format called ``name``."""
    try:
        module = FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; allowed: {', '.join(sorted(FORMATS))}") from None
    parse: Callable[[bytes | memoryview, int, int, int], FormatResult] = module.parse
    return parse
