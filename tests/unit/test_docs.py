"""The documentation holds: every relative link in README.md and docs/ resolves, every command in the README's
quick start and command table answers ``--help``, and no page narrates the project's own development history."""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.history_check import history_words

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = [README, REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without fenced blocks and inline code, where a bracket or a path is not a link."""
    return CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("//")]


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def broken_links(page: Path) -> list[str]:
    bad = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file or folder")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with anchor #{anchor} in {_rel(dest)}")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "there.md").write_text("# A heading, with `code`\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-heading-with-code) [gone](missing.md) [bad anchor](there.md#nope)\n"
                    "[web](https://example.org) `[not a link](nowhere.md)`\n```\n[nor](this.md)\n```\n")
    assert broken_links(page) == ["missing.md: no such file or folder",
                                  f"there.md#nope: no heading with anchor #nope in {tmp_path / 'there.md'}"]


def section(text: str, title: str) -> str:
    """The body of the level-2 section ``## title`` (up to the next level-2 heading)."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def quick_start_commands(text: str) -> list[str]:
    """Command lines of the quick start's first code block (its own set-up, not the subsections)."""
    body = section(text, "Quick start").split("\n### ")[0]
    block = re.search(r"^```\w*\n(.*?)^```", body, re.S | re.M)
    assert block, "the quick start has no code block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def table_commands(text: str) -> list[str]:
    """Every code span in the 'command' column of the table in '## Commands'."""
    rows = [line for line in section(text, "Commands").splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    col = header.index("command")
    commands = []
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        spans = re.findall(r"`([^`]+)`", cells[col])
        assert spans, f"no command in row: {row}"
        commands += spans
    return commands


def console_scripts() -> dict[str, str]:
    """``nexa-plan`` → ``megatron_nexa.cli.plan``, read from setup.py's entry points."""
    tree = ast.parse((REPO / "setup.py").read_text())
    scripts = next(ast.literal_eval(kw.value)["console_scripts"] for node in ast.walk(tree)
                   if isinstance(node, ast.Call) for kw in node.keywords if kw.arg == "entry_points")
    return {name.strip(): target.split(":")[0].strip() for name, target in (s.split("=") for s in scripts)}


def help_argv(command: str) -> list[str] | None:
    """The process that answers ``--help`` for a documented command; None for make targets."""
    words = command.split()
    if words[0] == "make":
        return None
    scripts = console_scripts()
    if words[0] in scripts:
        return [sys.executable, "-m", scripts[words[0]], "--help"]
    script = next((w for w in words if w.endswith(".py")), None)
    if words[0] in ("python", "python3", "deepspeed", "torchrun") and script:
        assert (REPO / script).is_file(), f"{command}: {script} does not exist"
        return [sys.executable, script, "--help"]
    raise AssertionError(f"{command!r}: not a console script, a Python script or a make target; "
                         "list it outside the quick start and command table, or teach this test to run its --help")


def documented_commands() -> list[str]:
    text = README.read_text()
    return list(dict.fromkeys(quick_start_commands(text) + table_commands(text)))


def test_the_readme_documents_the_set_up_and_every_console_script():
    commands = documented_commands()
    assert {"make demo", "make test"} <= set(commands)
    named = {c.split()[0] for c in commands}
    assert set(console_scripts()) <= named, "a console script is missing from the README's command table"


def _help_cases():
    cases = {}
    for command in documented_commands():
        argv = help_argv(command)
        if argv is not None:
            cases.setdefault(" ".join(argv[1:]), argv)
    return sorted(cases.items())


@pytest.mark.parametrize("argv", [argv for _, argv in _help_cases()], ids=[key for key, _ in _help_cases()])
def test_every_documented_command_answers_help(argv):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               DS_ACCELERATOR=os.environ.get("DS_ACCELERATOR", "cpu"), PYTHONWARNINGS="ignore")
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(argv[1:])} exited {done.returncode}:\n{done.stderr[-2000:]}"
    assert "usage:" in done.stdout


# The product describes what it is and why, never the chronology of its own making (tests/history_check.py).
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_development_history_in_the_docs(page):
    assert history_words(page.read_text()) == []


def test_the_history_check_catches_narrative():
    text = ("Measured in session 13, as the previous run showed; folder 2026-11-27-h100-session17; see "
            "RESULTS.md §20. Earlier we tried it. Measured on 2026-11-27 (a date is fine).")
    assert history_words(text) == ["session 13", "session17", "previous run", "Earlier we", "RESULTS.md §"]
