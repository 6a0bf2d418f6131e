"""The config as written: the command line's --config and --set found as the real parser finds them."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup

from pipeline import defaults
from pipeline.cli import app
from pipeline.config_source import (
    ConfigError,
    EarlyStart,
    apply_overrides,
    compiled_for,
    config_options,
    early_start,
    input_bytes,
)


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


def test_early_start_reads_the_pool_the_setting_and_the_inputs_as_the_config_gives_them(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[run]\ninputs = ["logs", "s3://bucket/x"]\n'
        '[[run.sources]]\ninputs = ["more/*.log"]\nformat = "combined"\n'
        '[parse]\ncompiled = "off"\nexecutor = "thread"\n'
    )
    early = early_start(["run", "-c", str(cfg)])
    assert early is not None and early.compiled == "off" and early.pool == ("thread", "forkserver")
    assert early.inputs == [str(tmp_path / "logs"), "s3://bucket/x", str(tmp_path / "more/*.log")]
    assert early_start(
        ["run", "-c", str(cfg), "--set", "parse.compiled=on", "-i", "a.log", "--input=b"]
    ) == EarlyStart(("thread", "forkserver"), "on", ["a.log", "b"])
    assert early_start(["run", "-c", str(tmp_path / "missing.toml"), "-i", "a"]) == EarlyStart(
        None, "auto", ["a"]
    )
    assert early_start(["report", "x"]) is None and early_start(["run", "--help"]) is None


def test_input_bytes_counts_files_directories_and_globs_until_enough(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.log").write_bytes(b"x" * 10)
    (tmp_path / "d" / "sub" / "b.log").write_bytes(b"x" * 20)
    (tmp_path / "c.log").write_bytes(b"x" * 5)
    assert input_bytes([str(tmp_path / "d")], 1000) == 30
    assert input_bytes([str(tmp_path / "*.log"), str(tmp_path / "d" / "**" / "b.log")], 1000) == 25
    assert input_bytes([str(tmp_path / "d"), str(tmp_path / "c.log")], 12) >= 12  # stops once enough
    assert input_bytes([str(tmp_path / "nothing")], 1000) == 0
    assert input_bytes(["https://example.org/a.log"], 1000) == 1000  # remote: counted as large


@pytest.mark.parametrize(
    ("setting", "size", "expected"),
    [
        ("on", 0, True),
        ("off", 1 << 40, False),
        ("auto", defaults.COMPILED_MIN_BYTES - 1, False),
        ("auto", defaults.COMPILED_MIN_BYTES, True),
    ],
)
def test_compiled_for(setting: str, size: int, expected: bool) -> None:
    assert compiled_for(setting, size) is expected
