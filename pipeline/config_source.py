"""Where the configuration comes from: the TOML file and the ``--config`` and ``--set`` options.

Read here without validation and without importing anything heavy, so that ``logpipe run`` can tell
from its command line whether its parse workers come from a fork server, and start that server,
before typer, pydantic and the config's models are imported (:mod:`pipeline.__main__`): the server's
boot is the longest path to the first parsed chunk. :mod:`pipeline.config` validates what is read
here; :mod:`pipeline.cli` declares its options with the names below.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Final

from pipeline import defaults

CONFIG_OPTION: Final = ("--config", "-c")
SET_OPTION: Final = "--set"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""


def read_file(path: str | Path) -> dict[str, Any]:
    """The TOML table of the config file ``path``, not validated yet."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is read as a TOML value, or taken as a plain string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. parse.workers=4")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, str]:
    """Set each ``--set`` item's key in ``data``, in place; returns the dotted keys set, each with its
    item (so that an error can name the item it comes from)."""
    sets: dict[str, str] = {}
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
        sets[".".join(keys)] = item
    return sets


def parse_pool(argv: list[str]) -> tuple[str, str] | None:
    """``(parse.executor, parse.start_method)`` as the command line ``argv`` (without the program
    name) configures them, when it is a ``logpipe run``; None for another command, ``--help``, or a
    config that cannot be read (the real load reports it)."""
    if argv[:1] != ["run"] or any(a in ("--help", "-h") for a in argv):
        return None
    config, overrides = config_options(argv[1:])
    try:
        data = read_file(config) if config else {}
        apply_overrides(data, overrides)
    except ConfigError:
        return None
    parse = data.get("parse", {})
    if not isinstance(parse, dict):
        return None
    return parse.get("executor", defaults.EXECUTOR), parse.get("start_method", defaults.START_METHOD)


def config_options(args: list[str]) -> tuple[str | None, list[str]]:
    """The config file and the ``--set`` items that the arguments ``args`` of ``logpipe run`` give,
    found as typer's parser finds them (``--name value`` or ``--name=value``; the last ``--config``
    counts) without importing typer: a test checks that both find the same."""
    files = _values(args, CONFIG_OPTION)
    return (files[-1] if files else None), _values(args, (SET_OPTION,))


def _values(args: list[str], names: tuple[str, ...]) -> list[str]:
    """Every value given to the options ``names`` (``--name value`` or ``--name=value``).

    A value of another option that is spelt like one of ``names`` (``--input --set``) is misread: the
    guess is then wrong, which costs the early start, never the run its settings."""
    values = []
    i = 0
    while i < len(args):
        if args[i] in names and i + 1 < len(args):
            values.append(args[i + 1])
            i += 1  # the value, even one that starts with a dash, is not an option
        elif args[i].startswith(tuple(f"{n}=" for n in names)):
            values.append(args[i].partition("=")[2])
        i += 1
    return values
