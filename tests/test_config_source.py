"""The config as written: the command line's --config and --set found as the real parser finds them."""

from __future__ import annotations

import pytest
import typer
from typer.core import TyperGroup

from pipeline.cli import app
from pipeline.config_source import ConfigError, apply_overrides, config_options


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--config", "configs/laptop.toml", "-o", "x"],
        ["-c", "a.toml", "--set", "parse.workers=3", "-c", "b.toml"],
        ["--config=configs/cron.toml", "--set=parse.executor='inline'", "-q"],
        ["--set", "--set", "-c", "x.toml", "-i", "a.log"],  # a value spelt like an option
    ],
)
def test_config_options_are_found_as_the_cli_finds_them(args: list[str]) -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    command = group.commands["run"]
    params = command.make_context("run", list(args)).params
    config = params["config"]
    assert config_options(args) == (None if config is None else str(config), params["sets"] or [])


def test_overrides_set_nested_keys_and_name_their_item() -> None:
    data: dict[str, object] = {"parse": {"workers": 2}}
    sets = apply_overrides(data, ["parse.executor=inline", "read.chunk_bytes='1MiB'"])
    assert data == {"parse": {"workers": 2, "executor": "inline"}, "read": {"chunk_bytes": "1MiB"}}
    assert sets == {"parse.executor": "parse.executor=inline", "read.chunk_bytes": "read.chunk_bytes='1MiB'"}
    with pytest.raises(ConfigError, match="'parse' is not a section"):
        apply_overrides({"parse": 3}, ["parse.workers=1"])
