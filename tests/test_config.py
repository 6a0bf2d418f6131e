"""Config validation: every bad key is named with what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from pipeline.config import (
    Config,
    ConfigError,
    ParseSection,
    ReadSection,
    RunSection,
    SourceSection,
    WriteSection,
    load_config,
    validate,
)
from pipeline.config_docs import PAGE, markdown, page
from pipeline.config_source import parse_override

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["laptop", "server", "cron"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(ROOT / "configs" / f"{name}.toml").resolved()
    assert min(cfg.read.workers, cfg.parse.workers, cfg.write.workers) >= 1


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"parse": {"workers": 0}}, "parse.workers: must be a positive integer or 'auto'"),
        ({"read": {"workers": -3}}, "read.workers: must be a positive integer or 'auto'"),
        ({"write": {"workers": "many"}}, "write.workers: must be a positive integer or 'auto'"),
        ({"read": {"chunk_bytes": "12 parsecs"}}, "read.chunk_bytes: a byte size such as"),
        ({"read": {"chunk_bytes": 10}}, "read.chunk_bytes: Input should be greater than or equal to 65536"),
        ({"read": {"queue_depth": 0}}, "read.queue_depth: Input should be greater than or equal to 1"),
        (
            {"parse": {"executor": "gpu"}},
            "parse.executor: Input should be 'process', 'thread', 'inline' or 'dask'",
        ),
        ({"parse": {"start_method": "fork"}}, "parse.start_method: Input should be 'forkserver' or 'spawn'"),
        ({"write": {"compression": "lzo"}}, "write.compression: Input should be 'zstd'"),
        (
            {"run": {"format": "json"}},
            "run.format: 'json' format: not a built-in format; built-in formats: alb, ",
        ),
        ({"run": {"format": {"apache": "%h %Z %t"}}}, "run.format: apache format %Z at position 3: unknown"),
        ({"read": {"chunk_size": 1}}, "read.chunk_size: unknown key; allowed keys here: chunk_bytes,"),
        ({"reader": {}}, "reader: unknown key; allowed keys here: parse, read, run, write"),
        ({"run": {"inputs": "a.log"}}, "run.inputs: Input should be a valid list"),
    ],
)
def test_invalid_values_name_key_and_allowed_values(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(data)
    assert fragment in str(info.value)


def test_sizes_with_units() -> None:
    cfg = validate({"read": {"chunk_bytes": "8MiB", "max_line_bytes": "64 KiB"}})
    assert cfg.read.chunk_bytes == 8 * 1024 * 1024
    assert cfg.read.max_line_bytes == 64 * 1024


def test_auto_workers_resolve_to_numbers() -> None:
    cfg = validate({"parse": {"workers": "auto"}, "read": {"workers": 3}}).resolved()
    assert isinstance(cfg.parse.workers, int)
    assert cfg.read.workers == 3


def test_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[run]\ninputs = ["x"]\n[parse]\nworkers = 1\n')
    cfg = load_config(path, ["parse.workers=4", "run.output=/tmp/o", 'read.chunk_bytes="1MiB"'])
    assert (cfg.parse.workers, cfg.run.output, cfg.read.chunk_bytes) == (4, "/tmp/o", 1 << 20)
    assert parse_override("write.compression=snappy") == (["write", "compression"], "snappy")
    with pytest.raises(ConfigError, match=r"parse\.workers"):
        load_config(path, ["parse.workers=0"])
    with pytest.raises(ConfigError, match=r"expected section\.key=value"):
        load_config(path, ["parse.workers"])


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[read\nworkers=")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_the_configuration_page_is_the_model() -> None:
    # regenerate with: python -m pipeline.config_docs --write
    text = PAGE.read_text(encoding="utf-8")
    assert page(text) == text


def test_every_key_is_documented() -> None:
    for section in (RunSection, SourceSection, ReadSection, ParseSection, WriteSection):
        for key, field in section.model_fields.items():
            assert field.description, f"{section.__name__}.{key} has no description"
    table = markdown()
    for name, field in Config.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key in model.model_fields:
            assert f"| `{name}.{key}` |" in table
