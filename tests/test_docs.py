"""Every fenced code block in README.md and docs/*.md runs as written (the rules: docs/extending.md, "Code blocks
in the docs"). A page's blocks run in order in one fresh folder, so a block may use what an earlier one made.

- bash/sh: run by `bash -e -o pipefail` with `hydranet` and `python` on PATH (shims for this checkout's src/);
  console: its `$ ` lines are run the same way, the rest is output.
- python: run in a subprocess with this checkout's src/ on the path.
- yaml: validated by `hydranet.config` (a file as an experiment, a fragment as overrides of the defaults).
- text, json: output and listings, shown only.
- A block whose first line is a comment naming a file (`# shapes.yaml`, `# make_images.py`) is saved under that
  name; a saved Python file runs where a later block runs or imports it (checked), not on its own.
- `<!-- no-run: REASON -->` on the line before a fence: never run here (a server, several machines, an install);
  its `hydranet …` command lines are still parsed, so a stale option or a bad value is caught.
- `<!-- slow: REASON -->`: run only by the slow suite (`make test-slow`); the default suite skips it and goes on.
- `<!-- after: data.md -->` anywhere in a page: that page's blocks run first in the slow suite (this page's slow
  blocks use their files; a block that is not slow must not need them).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from hydranet.cli import app
from hydranet.config import load_config

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN, CHECK, SHOW = {"bash", "sh", "console", "python"}, {"yaml"}, {"text", "json"}
FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!--\s*(no-run|slow)\s*(?::\s*(.*?))?\s*-->\s*$")
AFTER = re.compile(r"^<!--\s*after:\s*(\S+\.md)\s*-->\s*$", re.M)
SAVED_AS = re.compile(r"^#\s*([\w./-]+\.(?:py|yaml|sh|csv))\b")
BLOCK_TIMEOUT = 600


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None = None  # "no-run" | "slow" | None
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def saved_as(self) -> str | None:
        match = SAVED_AS.match(self.text)
        return match.group(1) if match else None


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, with the marker on the line before each fence."""
    lines = page.read_text().split("\n")
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = MARKER.match(lines[i - 1]) if i else None
        found.append(Block(page, i + 1, fence.group(1), "\n".join(lines[i + 1:end]) + "\n",
                           marker and marker.group(1), (marker and marker.group(2)) or ""))
        i = end + 1
    return found


ALL = [block for page in PAGES for block in blocks(page)]


def shims(folder: Path) -> dict[str, str]:
    """The environment of a page's blocks: `hydranet` (as the console script) and `python` on PATH, this checkout's
    src/ on PYTHONPATH (the subprocesses cannot see pytest's sys.path)."""
    folder.mkdir()
    (folder / "hydranet").write_text(f"#!{sys.executable}\nfrom hydranet.cli import main\nmain()\n")
    (folder / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for shim in folder.iterdir():
        shim.chmod(0o755)
    path = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": path}


def workspace(tmp_path: Path) -> Path:
    """A fresh folder in which `../shared/data`, `benchmarks/` and `examples/` resolve as from the repo root."""
    work = tmp_path / "work"
    work.mkdir()
    if (REPO.parent / "shared").exists():
        (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    for name in ("benchmarks", "examples"):
        (work / name).symlink_to(REPO / name)
    return work


def run_block(block: Block, work: Path, env: dict[str, str]) -> None:
    """Run or check one block in `work`; a failure names the page and line and shows the block's output."""
    if block.saved_as:
        (work / block.saved_as).parent.mkdir(parents=True, exist_ok=True)
        (work / block.saved_as).write_text(block.text)
    if block.lang == "yaml":
        check_yaml(block, work, env)
        return
    if block.lang == "python":
        if block.saved_as:
            return  # a later block runs or imports it (test_every_saved_python_file_is_used)
        script = work / f".block-{block.line}.py"
        script.write_text(block.text)
        command = [sys.executable, str(script)]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", shell_text(block)]
    run_command(block, command, work, env)


def run_command(block: Block, command: list[str], work: Path, env: dict[str, str]) -> None:
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    assert result.returncode == 0, (f"{block.where} ({block.lang}) exited {result.returncode}:\n{block.text}\n"
                                    f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}")


def shell_text(block: Block) -> str:
    """A bash block as is; a console block's `$ ` command lines only."""
    if block.lang != "console":
        return block.text
    return "\n".join(line[2:] for line in block.text.splitlines() if line.startswith("$ "))


def check_yaml(block: Block, work: Path, env: dict[str, str]) -> None:
    """A saved YAML file is a whole experiment; any other YAML block is a fragment, checked on top of the defaults."""
    data = yaml.safe_load(block.text)
    assert isinstance(data, dict), f"{block.where}: a YAML block should be a mapping of config sections"
    if data.get("plugins"):  # its plugin modules sit in the page's folder: import them there, not in pytest
        with_work = {**env, "PYTHONPATH": os.pathsep.join([str(work), env["PYTHONPATH"]])}
        run_command(block, ["hydranet", "config", block.saved_as], work, with_work)
        return
    cwd = Path.cwd()
    os.chdir(work)  # relative paths in it resolve as in the page's folder
    try:
        load_config(block.saved_as if block.saved_as else data)
    finally:
        os.chdir(cwd)


def prerequisites(page: Path) -> list[Path]:
    """The pages whose files this page uses (`<!-- after: data.md -->`), theirs first."""
    named = [page.parent / name for name in AFTER.findall(page.read_text())]
    return [before for page_before in named for before in [*prerequisites(page_before), page_before]]


def run_page(page: Path, tmp_path: Path, slow: bool) -> None:
    """Every runnable block of a page in order in one folder; the slow ones only when `slow` (a block that needs
    what a slow one made is marked slow too)."""
    earlier = [b for before in prerequisites(page) for b in blocks(before)] if slow else []  # slow: see the marker
    page_blocks = earlier + blocks(page)
    page_blocks = [b for b in page_blocks if b.lang in RUN | CHECK and b.marker != "no-run"]
    page_blocks = [b for b in page_blocks if slow or b.marker != "slow"]
    work = workspace(tmp_path)
    env = shims(tmp_path / "bin")
    for block in page_blocks:
        run_block(block, work, env)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_blocks_run(page, tmp_path):
    run_page(page, tmp_path, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if any(b.marker == "slow" for b in blocks(p))], ids=lambda p: p.name)
def test_page_blocks_run_with_the_slow_ones(page, tmp_path):
    run_page(page, tmp_path, slow=True)


def test_every_block_names_a_known_language():
    unknown = [f"{b.where} ```{b.lang}" for b in ALL if b.lang not in RUN | CHECK | SHOW]
    assert not unknown, f"fences need a language ({', '.join(sorted(RUN | CHECK | SHOW))}): {unknown}"


def test_every_marker_gives_its_reason_and_sits_on_a_runnable_block():
    bad = [b.where for b in ALL if b.marker and (not b.reason or b.lang not in RUN)]
    assert not bad, f"`<!-- no-run: REASON -->` / `<!-- slow: REASON -->` need a reason and a bash/python block: {bad}"


def test_every_benchmark_block_is_marked():
    """Benchmarks are sized for minutes to hours: one in the default suite would hold CI up for as long."""
    unmarked = [b.where for b in ALL if b.lang in RUN and not b.marker and re.search(r"\bbenchmarks/\w+\.py", b.text)]
    assert not unmarked, f"blocks that run a benchmark need <!-- slow: … --> or <!-- no-run: … -->: {unmarked}"


def test_every_saved_python_file_is_used_by_a_later_block():
    """A saved file does not run on its own: a later block of its page must run (`python x.py`) or import it
    (`import x`, or an experiment's `plugins: [x]`)."""
    unused = []
    for page in PAGES:
        page_blocks = blocks(page)
        for i, block in enumerate(page_blocks):
            if block.lang == "python" and block.saved_as:
                name = Path(block.saved_as)
                used = re.compile(rf"python\S* \S*{re.escape(name.name)}|import {name.stem}\b|from {name.stem} import"
                                  rf"|plugins: \[.*\b{name.stem}\b")
                if not any(used.search(later.text) for later in page_blocks[i + 1:]):
                    unused.append(f"{block.where} {block.saved_as}")
    assert not unused, f"saved Python files that no later block runs or imports: {unused}"


def hydranet_commands(block: Block) -> list[list[str]]:
    """The `hydranet …` command lines of a shell block as argument lists (continuations joined, comments,
    environment assignments and anything after a pipe or redirection dropped)."""
    commands = []
    for line in shell_text(block).replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and re.match(r"^\w+=", words[0]):
            words.pop(0)
        if words and words[0] == "hydranet":
            end = next((i for i, w in enumerate(words) if w in {"|", "||", "&&", ";", "&", ">", "2>&1"}), len(words))
            commands.append(words[1:end])
    return commands


def parse_only(args: list[str]) -> None:
    """Parse a command line as `hydranet` would (options, their types, arguments) without running it."""
    command = get_command(app)
    ctx = command.make_context("hydranet", list(args))
    while hasattr(command, "resolve_command") and (rest := [*ctx._protected_args, *ctx.args]):
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)


@pytest.mark.parametrize("block", [b for b in ALL if b.marker == "no-run" and b.lang != "python"], ids=lambda b: b.where)
def test_blocks_that_do_not_run_still_parse(block):
    for args in hydranet_commands(block):
        parse_only(args)
