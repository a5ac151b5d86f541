"""README.md and docs/*.md as a newcomer reads them: short, linked, and true.

Every fenced block is a command a test runs or declared not one; every link
and anchor leads somewhere; nothing cites a file the repository lacks; the
README's layout tree and architecture.md's package tree name what exists.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.docs import commands
from tests.support import ROOT

README = ROOT / "README.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
BRIEFS = ("API", "STACK", "FLASK-BEHAVIOUR")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PAGES = commands.pages()


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in listed.stdout.splitlines() if (ROOT / line).exists()]


def test_readme_is_at_most_200_lines() -> None:
    lines = README.read_text().splitlines()

    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_says_nothing_of_one_machine() -> None:
    text = README.read_text().lower()
    said = [
        phrase
        for phrase in ("this network", "this machine", "2-core", "here)", "uv cannot")
        if phrase in text
    ]

    assert not said, said


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_block_is_a_command_or_declared_not_one(page: Path) -> None:
    languages = {language for language, _ in commands.fences(page)}
    allowed = {commands.COMMANDS, *commands.NOT_COMMANDS}

    assert languages <= allowed, (
        f"{page_id(page)}: fences {sorted(languages - allowed)} are neither `sh` (run "
        f"by a test) nor one of tests/docs/commands.py's NOT_COMMANDS"
    )


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_a_page_with_commands_names_the_test_that_runs_them(page: Path) -> None:
    if not commands.commands(page):
        return
    runner = commands.RUNNERS.get(page_id(page))

    assert runner is not None, (
        f"{page_id(page)} has `sh` blocks and no runner: run them in a test and name "
        "it in tests/docs/commands.py's RUNNERS"
    )
    assert (ROOT / runner).exists(), runner


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_blocks_compile(page: Path) -> None:
    for language, text in commands.fences(page):
        if language == "python":
            compile(text, page_id(page), "exec")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to -."""
    text = commands.FENCE.sub("", page.read_text())
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_links_lead_to_files_and_headings_that_exist(page: Path) -> None:
    broken = []
    for target in LINK.findall(commands.FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        missing_anchor = anchor and linked.suffix == ".md"
        if not linked.exists() or (missing_anchor and anchor not in anchors(linked)):
            broken.append(target)

    assert not broken, f"{page_id(page)}: {broken}"


REPO_PATH = re.compile(
    r"`((?:service|tests|docs|deploy|bench|clients|examples|migrations|\.ci)/[^`\s]*)`"
)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_paths_the_pages_name_exist(page: Path) -> None:
    named = {
        match[1].split("::")[0].rstrip(".,:;")
        for match in REPO_PATH.finditer(page.read_text())
    }
    # `service/X/` and `tests/X/` stand for any folder.
    missing = sorted(
        path for path in named if "/X/" not in path and not list(ROOT.glob(path))
    )

    assert missing == [], f"{page_id(page)} names paths that do not exist: {missing}"


def test_nothing_cites_a_document_the_repository_lacks() -> None:
    # The briefs the service was written from were never part of the repository.
    names = re.compile(r"\b(" + "|".join(BRIEFS) + r")\.md\b")
    citing = [
        f"{name}: {match[0]}"
        for name in tracked_files()
        if name.endswith((".py", ".md", ".toml", ".cfg", ".yaml", ".yml", ".ts"))
        and not name.startswith("tests/parity/flask_original/")
        for match in names.finditer((ROOT / name).read_text(errors="replace"))
        if not (ROOT / match[0]).exists()
    ]

    assert not citing, citing


# `(docs/operations.md, "Keep-alive")` in a comment: the page and its heading.
CITATION = re.compile(r'\b(README\.md|README|docs/[\w.-]+\.md)[,:]? \(?"([^"]+)"')


def headings(page: Path) -> set[str]:
    text = commands.FENCE.sub("", page.read_text())
    return {h.strip() for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def test_cited_sections_exist() -> None:
    wrong = []
    for name in tracked_files():
        if name.startswith("tests/parity/flask_original/") or name.endswith(".lock"):
            continue
        text = (ROOT / name).read_text(errors="replace")
        for match in CITATION.finditer(text):
            page = ROOT / ("README.md" if match[1].startswith("README") else match[1])
            if not page.exists() or match[2] not in headings(page):
                wrong.append(f"{name}: {match[0]}")

    assert wrong == [], wrong


def layout_tree() -> list[str]:
    """The folders README.md's layout tree names, as paths."""
    found = re.search(
        r"^## Layout\n.*?^```text\n(.*?)^```$",
        README.read_text(),
        re.DOTALL | re.MULTILINE,
    )
    assert found is not None, "README.md has no layout tree"
    tree = found[1]
    folders: list[str] = []
    stack: list[str] = []
    for line in tree.splitlines():
        name = line.strip().split(" ", 1)[0]
        depth = (len(line) - len(line.lstrip())) // 2
        stack = [*stack[:depth], name.rstrip("/")]
        folders.append("/".join(stack))
    return folders


def test_readme_layout_names_every_folder_and_only_folders() -> None:
    named = layout_tree()
    folders = {
        str(Path(name).parent)
        for name in tracked_files()
        if not name.startswith("tests/parity/flask_original/")
    }
    # Every folder of the first two levels, and deploy/'s third.
    wanted = {
        folder
        for folder in folders | {str(Path(f).parent) for f in folders}
        if folder != "."
        and (folder.count("/") < 2 or folder.startswith("deploy/k8s/"))
        and "node_modules" not in folder
    }

    assert sorted(set(named) - {n for n in named if (ROOT / n).is_dir()}) == []
    assert sorted(wanted - set(named)) == []


def test_architecture_names_every_import_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = [each["name"] for each in config["tool"]["importlinter"]["contracts"]]
    text = " ".join(ARCHITECTURE.read_text().split())

    assert [name for name in contracts if name not in text] == []


def test_architecture_package_tree_names_every_module() -> None:
    text = ARCHITECTURE.read_text()
    modules = sorted(
        path.relative_to(ROOT / "service")
        for path in (ROOT / "service").rglob("*.py")
        if "__pycache__" not in path.parts
    )
    missing = [
        str(module)
        for module in modules
        if module.name != "__init__.py" or module.parent == Path(".")
        if not re.search(rf"(^|[\s,]){re.escape(module.name)}\b", text, re.MULTILINE)
    ]

    assert missing == [], (
        f"docs/architecture.md's package tree lacks {missing}: add a line for each"
    )


def test_readme_links_every_guide() -> None:
    linked = set(LINK.findall(README.read_text()))
    guides = sorted(f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md"))

    assert [guide for guide in guides if guide not in linked] == []
