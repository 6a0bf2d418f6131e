"""The key tables of ``docs/configuration.md``, generated from the config model (:mod:`pipeline.config`).

``python -m pipeline.config_docs`` prints them; ``python -m pipeline.config_docs --write`` replaces them
in the page (everything after :data:`MARKER`; the text above it is written by hand). A test keeps the
page equal to what this module generates.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipeline import config
from pipeline.config import AUTO_WORKERS, GiB, KiB, MiB

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
MARKER = "<!-- generated from pipeline/config.py by `python -m pipeline.config_docs --write`: edit there -->"

# The settings whose values are checked by a function of pipeline.config: their type and allowed
# values in words.
_CHECKED = {
    config._size: ("byte size", 'an integer or a string such as `"8MiB"`, `"512 KiB"`, `"1GB"`'),
    config._workers: ('integer or `"auto"`', "a positive integer, or `auto` for"),
    config._format: (
        "string or table",
        "a built-in format's name, `auto` (chosen per file), `{nginx = '<log_format>'}`, "
        "`{apache = '<LogFormat>'}` or `{jsonl = {column = \"key\", ...}}`",
    ),
    config._when: (
        "date or time",
        "a TOML date or datetime, or an ISO string (`2026-11-01`, `2026-11-01T10:00:00+01:00`); "
        "no offset: UTC",
    ),
    config._transforms: (
        "list",
        'built-in names, `"package.module:function"`, or tables with `name` and options',
    ),
    config._address: ("string", "`[protocol://]host:port` (`tcp://10.0.0.5:8786`), or empty"),
}


def markdown() -> str:
    """One table per section: key, type, default, allowed values, meaning."""
    parts = []
    sections = [(name, field.annotation) for name, field in config.Config.model_fields.items()]
    sections.insert(1, ("run.sources", config.SourceSection))  # [[run.sources]]: after [run]
    for name, model in sections:
        assert isinstance(model, type) and issubclass(model, BaseModel)
        title = f"[[{name}]]" if name == "run.sources" else f"[{name}]"
        doc = (model.__doc__ or "").split(":", 1)[-1].strip()
        rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for key, field in model.model_fields.items():
            kind, allowed = _kind(field)
            if key == "workers":
                allowed += f" `{AUTO_WORKERS[name][0]}` (`cores`: the cores logpipe may use)"
            cells = [f"`{name}.{key}`", kind, _default(field), allowed, field.description or ""]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        parts.append(f"### `{title}`\n\n{doc[0].upper()}{doc[1:]}\n\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def _kind(field: FieldInfo) -> tuple[str, str]:
    """The type of a setting and its allowed values, in words."""
    for meta in field.metadata:
        if getattr(meta, "func", None) in _CHECKED:
            kind, allowed = _CHECKED[meta.func]
            return kind, _join(allowed, _bounds(field, sizes=kind == "byte size"))
    annotation: Any = field.annotation
    optional = False
    if isinstance(annotation, types.UnionType) and type(None) in typing.get_args(annotation):
        (annotation,) = (a for a in typing.get_args(annotation) if a is not type(None))
        optional = True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "string", ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    if annotation is bool:
        return "boolean", "`true`, `false`"
    if annotation in (int, float):
        kind = "integer" if annotation is int else "number"
        return kind, _join(_bounds(field), "or unset" if optional else "")
    if origin is list:
        (item,) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return "array of tables", f"tables of {', '.join(f'`{k}`' for k in item.model_fields)}"
        return "list of strings", "at least one" if any(isinstance(m, MinLen) for m in field.metadata) else ""
    if origin is dict:
        return "table", ""
    return "string", "not blank" if any(getattr(m, "pattern", None) for m in field.metadata) else ""


def _bounds(field: FieldInfo, sizes: bool = False) -> str:
    """``field``'s numeric bounds: "1 to 1024", "at least 1024", "more than 0 up to 3600"."""
    show = _size_text if sizes else str
    low = next((f"{show(m.ge)}" for m in field.metadata if isinstance(m, Ge)), None)
    above = next((f"more than {show(m.gt)}" for m in field.metadata if isinstance(m, Gt)), None)
    high = next((show(m.le) for m in field.metadata if isinstance(m, Le)), None)
    if low is not None and high is not None:
        return f"{low} to {high}"
    if above is not None:
        return f"{above}, up to {high}" if high is not None else above
    if low is not None:
        return f"at least {low}"
    return f"at most {high}" if high is not None else ""


def _join(*texts: str) -> str:
    return "; ".join(t for t in texts if t)


def _size_text(n: Any) -> str:
    """A byte count as the config may write it: ``4MiB``, ``64KiB``, ``0``."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _default(field: FieldInfo) -> str:
    """The default as TOML would write it (a byte size with its unit)."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if any(getattr(m, "func", None) is config._size for m in field.metadata):
        return f'`"{_size_text(value)}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def page(text: str) -> str:
    """``text`` (the page) with everything after :data:`MARKER` replaced by the generated tables."""
    head, found, _ = text.partition(MARKER)
    if not found:
        raise ValueError(f"{PAGE}: no line {MARKER!r} to put the tables after")
    return f"{head}{MARKER}\n\n{markdown()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help=f"rewrite the tables in {PAGE}")
    args = parser.parse_args(argv)
    if args.write:
        PAGE.write_text(page(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(markdown())  # noqa: T201 - the command's output


if __name__ == "__main__":
    main()
