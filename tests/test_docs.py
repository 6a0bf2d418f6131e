"""The docs stay equal to the code: every relative link and anchor resolves, and the reference tables
(built-in formats, built-in transforms, exit codes, the command line) say what the code does."""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import pytest
import typer.core
import typer.main

from pipeline.cli import app
from pipeline.errors import ExitCode
from pipeline.formats import names_markdown
from pipeline.formats.json_servers import json_servers_markdown
from pipeline.formats.servers import servers_markdown
from pipeline.formats.spec import BUILTINS as BUILTIN_FORMATS
from pipeline.formats.w3c import w3c_markdown
from pipeline.transforms import BUILTINS as BUILTIN_TRANSFORMS
from pipeline.transforms import load

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 250


LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
HEADING = re.compile(r"^(#{1,6})\s+(?P<title>.+?)\s*#*\s*$")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a ``#`` in a TOML or shell block is no heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(page.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match["title"])
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    """Every link and image target outside code (a link's text may run over a line break)."""
    prose = INLINE_CODE.sub("", "\n".join(prose_lines(page.read_text())))
    return [match["target"] for match in LINK.finditer(prose)]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {os.path.relpath(dest, page.parent)}")
        elif anchor and dest.suffix != ".md":
            broken.append(f"{target}: an anchor into a file that is not one of our markdown pages")
    return broken


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_link_check_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading, with commas\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n```toml\n# not a heading\n```\n\n"
        "[ok](other.md) [ok](other.md#a-code-heading-with-commas) [ok](#title) `[skipped](nowhere.md)`\n"
        "[gone](missing.md) [bad anchor](other.md#nope) [not a heading](#not-a-heading) [a link over\n"
        "two lines](gone.md)\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#nope: no heading #nope in other.md",
        "#not-a-heading: no heading #not-a-heading in page.md",
        "gone.md: no such file",
    ]


def test_the_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, "the README is the tour: move the details into docs/"


def table_rows(page: Path, header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table whose header row starts with ``header``."""
    lines = page.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def test_the_built_in_formats_table_is_the_code() -> None:
    rows = table_rows(DOCS / "formats.md", "| name | dialect | format string |")
    expected = [[f"`{name}`", dialect, f"`{fmt}`"] for name, (dialect, fmt) in BUILTIN_FORMATS.items()]
    assert sorted(rows) == sorted(expected)


def test_the_server_formats_section_is_the_code() -> None:
    assert servers_markdown() in (DOCS / "formats.md").read_text()
    assert names_markdown() in (ROOT / "README.md").read_text()  # the README's table of the names


def test_the_w3c_formats_section_is_the_code() -> None:
    assert w3c_markdown() in (DOCS / "formats.md").read_text()


def test_the_json_formats_section_is_the_code() -> None:
    assert json_servers_markdown() in (DOCS / "formats.md").read_text()


def test_the_built_in_transforms_table_is_the_code() -> None:
    rows = {row[0].strip("`"): row[1] for row in table_rows(DOCS / "transforms.md", "| name | options |")}
    assert sorted(rows) == sorted(BUILTIN_TRANSFORMS)
    for name, options in rows.items():
        params = list(inspect.signature(load(name)).parameters.values())[1:]  # after the table
        for param in params:
            if param.default in (inspect.Parameter.empty, None):
                assert f"`{param.name}`" in options, (name, param.name)
            else:
                assert f"`{param.name} = {json.dumps(param.default)}`" in options, (name, param.name)
        assert len(re.findall(r"`(\w+)[` ]", options)) == len(params), f"{name}: an option the code lacks"


def test_the_exit_codes_table_is_the_code() -> None:
    rows = table_rows(DOCS / "operations.md", "| code | meaning |")
    documented = sorted(int(code) for row in rows for code in row[0].split(" / "))
    assert documented == sorted(int(code) for code in ExitCode)


def test_the_command_line_synopsis_is_the_cli() -> None:
    text = (DOCS / "operations.md").read_text()
    synopsis = text.split("## Command line", 1)[1].split("\n\n")[1]
    usage: dict[str, str] = {}
    name = ""
    for line in synopsis.splitlines():
        if line.strip().startswith("logpipe "):
            name = line.split()[1]
            usage[name] = line
        else:
            usage[name] += line
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    assert sorted(usage) == sorted(group.commands)
    for name, command in group.commands.items():
        options = {opt for param in command.params for opt in param.opts if opt.startswith("--")}
        assert options == set(re.findall(r"--[a-z-]+", usage[name])), name


def test_the_module_map_names_every_module() -> None:
    # a module the map does not name is one a newcomer cannot find; a name it keeps after a module
    # moved sends them nowhere
    page = (DOCS / "development.md").read_text()
    table = page[page.index("## Module map") :]
    table = table[: table.index("\n## ", 1)]
    named = set(re.findall(r"`(pipeline/[\w/]+\.py|pipeline/[\w]+/)`", table))
    short = {m for m in re.findall(r"`([\w]+\.py)`", table)}
    missing = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if (path.name == "__init__.py" and path.parent.name == "pipeline") or path.name == "__main__.py":
            continue
        folder = rel.rsplit("/", 1)[0] + "/"
        if rel not in named and not (folder in named and (path.name in short or path.name == "__init__.py")):
            missing.append(rel)
    assert not missing, f"docs/development.md's module map does not name {missing}"
    for name in named:
        assert (ROOT / name).exists(), f"the module map names {name}, which does not exist"
