"""Where the configuration comes from: the TOML file and the ``--config`` and ``--set`` options.

Read here without validation and without importing anything heavy, so that ``logpipe run`` can tell
from its command line whether its parse workers come from a fork server, and start that server,
before typer, pydantic and the config's models are imported (:mod:`pipeline.__main__`): the server's
boot is the longest path to the first parsed chunk. :mod:`pipeline.config` validates what is read
here; :mod:`pipeline.cli` declares its options with the names below.
"""

from __future__ import annotations

import glob
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pipeline import defaults

CONFIG_OPTION: Final = ("--config", "-c")
SET_OPTION: Final = "--set"
INPUT_OPTION: Final = ("--input", "-i")


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


@dataclass(frozen=True)
class EarlyStart:
    """What the early start needs of a ``logpipe run`` command line, read before the config is loaded:
    the parse pool (``parse.executor``, ``parse.start_method``; None where the config cannot be read),
    ``parse.compiled`` and the inputs (``--input`` values, else ``run.inputs`` and the inputs of
    ``[[run.sources]]``, relative to the config file). The real load reports any error."""

    pool: tuple[str, str] | None
    compiled: str
    inputs: list[str]


def early_start(argv: list[str]) -> EarlyStart | None:
    """:class:`EarlyStart` of the command line ``argv`` (without the program name), the config file read
    once; None for another command than ``run``, or ``--help``."""
    if argv[:1] != ["run"] or any(a in ("--help", "-h") for a in argv):
        return None
    config, overrides = config_options(argv[1:])
    given = _values(argv[1:], INPUT_OPTION)
    try:
        data = read_file(config) if config else {}
        apply_overrides(data, overrides)
    except ConfigError:
        return EarlyStart(None, defaults.COMPILED, given)
    parse, run = data.get("parse", {}), data.get("run", {})
    if not isinstance(parse, dict):
        return EarlyStart(None, defaults.COMPILED, given)
    pool = parse.get("executor", defaults.EXECUTOR), parse.get("start_method", defaults.START_METHOD)
    setting = str(parse.get("compiled", defaults.COMPILED))
    if given or not isinstance(run, dict):
        return EarlyStart(pool, setting, given)
    found = list(run.get("inputs") or [])
    for source in run.get("sources") or []:
        found += source.get("inputs") or [] if isinstance(source, dict) else []
    base = Path(config).parent if config else Path()
    return EarlyStart(
        pool, setting, [p if "://" in p else str(base / p) for p in found if isinstance(p, str)]
    )


def compiled_for(setting: str, input_bytes: int) -> bool:
    """Whether a run of ``input_bytes`` loads the engine's compiled loops under ``parse.compiled``."""
    return setting == "on" or (setting == "auto" and input_bytes >= defaults.COMPILED_MIN_BYTES)


def input_bytes(paths: list[str], enough: int) -> int:
    """The bytes of the local files that ``paths`` name (files, directories, globs), counted until
    ``enough``; a URL counts as ``enough`` (remote inputs are the large ones, and listing them here
    would cost requests). A guess for the early start: a path it cannot read counts nothing."""
    total = 0
    for path in paths:
        if "://" in path:
            return enough
        for found in glob.iglob(path, recursive=True) if glob.has_magic(path) else [path]:
            for root, _, files in os.walk(found) if os.path.isdir(found) else [("", [], [found])]:
                for name in files:
                    try:
                        total += os.stat(os.path.join(root, name)).st_size
                    except OSError:
                        continue
                    if total >= enough:
                        return total
    return total


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
