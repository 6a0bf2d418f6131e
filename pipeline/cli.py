"""The ``logpipe`` command line (typer only; the work is in :mod:`pipeline.commands`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline import __version__, commands
from pipeline.config_source import CONFIG_OPTION, SET_OPTION

app = typer.Typer(
    help="logpipe: web-server access logs to clean, hive-partitioned Parquet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The options `run` and `profile` share (--config and --set named where `run`'s early start reads them).
ConfigFile = Annotated[Path | None, typer.Option(*CONFIG_OPTION, help="TOML config file (see configs/).")]
Inputs = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", help="File, directory, glob or URL; repeatable; replaces run.inputs."),
]
Sets = Annotated[
    list[str] | None, typer.Option(SET_OPTION, help="Override a config key: section.key=value; repeatable.")
]


@app.command()
def run(
    config: ConfigFile = None,
    inputs: Inputs = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output directory; replaces run.output.")
    ] = None,
    sets: Sets = None,
    since: Annotated[
        str | None, typer.Option(help="Keep rows from this time on (ISO date or time; replaces run.since).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Keep rows before this time (ISO date or time; replaces run.until).")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing on success; one line per problem.")
    ] = False,
    full_refresh: Annotated[
        bool,
        typer.Option("--full-refresh", help="With run.incremental: ignore the state, rebuild everything."),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write the HTML run report to this file; replaces run.report."),
    ] = None,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="Let a rebuild of an incremental dataset publish fewer rows than it held (inputs gone).",
        ),
    ] = False,
) -> None:
    """Run the pipeline. Exit codes: 0 ok, 1 failed, 2 usage/config error, 3 some inputs failed,
    4 output locked by another run, 5 no input, 6 format mismatch, 7 output refused (not logpipe's),
    8 a rebuild would drop rows, 130/143 interrupted."""
    raise typer.Exit(
        commands.run(config, inputs, output, sets, quiet, full_refresh, since, until, report, allow_shrink)
    )


@app.command()
def compact(
    output: Annotated[str, typer.Argument(help="The output directory (the dataset) to compact.")],
    config: ConfigFile = None,
    sets: Sets = None,
    min_files: Annotated[
        int, typer.Option("--min-files", min=2, help="Compact a date partition with this many small files.")
    ] = 2,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing on success; one line per problem.")
    ] = False,
) -> None:
    """Merge each date partition's small files into a few large ones, committed as a run commits
    (the config gives run.meta_dir and the [write] sizes). Exit codes: 0 ok (also nothing to compact),
    1 failed, 2 usage/config error, 4 locked by a run, 7 refused (not logpipe's), 130/143 interrupted."""
    raise typer.Exit(commands.compact(output, config, sets, min_files, quiet))


@app.command("report")
def report(
    path: Annotated[
        Path,
        typer.Argument(
            help="A dataset (the output directory): the report of its dates; or a run record "
            "(OUTPUT.meta, OUTPUT.meta/current, its manifest.json, OUTPUT.meta/last-run.json): that "
            "run's report.",
        ),
    ],
    to: Annotated[Path, typer.Option("--to", help="The HTML file to write.")] = Path("report.html"),
    since: Annotated[
        str | None, typer.Option(help="A dataset's report: from this date on (YYYY-MM-DD, included).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="A dataset's report: up to this date (YYYY-MM-DD, included).")
    ] = None,
) -> None:
    """Draw the report of a dataset's dates (all, or --since/--until) from its Parquet files, or of an
    earlier run from its record. Exit codes: 0 ok, 1 cannot read or write, 2 bad dates."""
    raise typer.Exit(commands.report(path, to, since, until))


@app.command()
def profile(
    config: ConfigFile = None,
    inputs: Inputs = None,
    sets: Sets = None,
    budget: Annotated[str, typer.Option(help="Time to spend, e.g. 30s or 2m.")] = "30s",
    write: Annotated[
        Path | None, typer.Option("--write", help="Save the recommended config to this TOML file.")
    ] = None,
) -> None:
    """Run bounded samples of the input with a few settings per stage; print what bounds each stage,
    the evidence, and the recommended settings. The configured output is never touched."""
    raise typer.Exit(commands.profile(config, inputs, sets, budget, write))


@app.command("validate-config")
def validate_config(path: Annotated[Path, typer.Argument(help="TOML config file.")]) -> None:
    """Check a config file; print it with every default and "auto" resolved."""
    raise typer.Exit(commands.validate_config(path))


@app.command()
def detect(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Log files (plain or compressed), directories, globs or URLs, as run inputs."),
    ],
) -> None:
    """Name the built-in format that parses most of each file's first lines, with its format string;
    several files: a line each, then the config that reads them."""
    raise typer.Exit(commands.detect(inputs))


@app.command()
def sample(
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write.")] = Path(
        "data/generated"
    ),
    files: Annotated[int, typer.Option(min=1, help="Number of files.")] = 8,
    lines: Annotated[int, typer.Option(min=0, help="Lines per file.")] = 125_000,
    compression: Annotated[
        str, typer.Option(help="none, gzip, bz2, xz, zstd, or mixed (cycle through them).")
    ] = "none",
    bad: Annotated[float, typer.Option(min=0.0, max=0.5, help="Fraction of malformed lines.")] = 0.001,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 7,
) -> None:
    """Write a deterministic synthetic access-log set."""
    from pipeline.synthetic import generate  # pyarrow: not needed by the other commands' start-up

    try:
        paths = generate(output, files, lines, compression, bad, seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--compression") from exc
    typer.echo(f"wrote {len(paths)} files, {files * lines:,} lines, to {output}")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"logpipe {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """logpipe: web-server access logs to clean, hive-partitioned Parquet."""
