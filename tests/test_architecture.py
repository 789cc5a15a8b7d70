"""The folders are the architecture, and these keep it so: the import layers
(``[tool.importlinter]`` in pyproject.toml), where private Dagster names may be imported,
which parts may name a vendor, how long a mechanism unit may grow, and that the docs name
only paths that exist."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"
MECHANISM = PIPELINES / "lib"
SOURCES_DIR = PIPELINES / "defs" / "sources"
SOURCES = sorted(p.name for p in SOURCES_DIR.iterdir() if (p / "__init__.py").exists())
# The vendors' names as code and prose write them.
VENDOR_WORDS = re.compile(
    r"\b(" + "|".join([*SOURCES, "udesk", "huawei", "alibaba", "aliyun", "tencent"]) + r")", re.IGNORECASE
)
# About 150 lines: a reader holds a unit whole.
MAX_UNIT_LINES = 150
DOCS = [
    "README.md",
    "ARCHITECTURE.md",
    "SECURITY.md",
    "bench/README.md",
    "simulator/README.md",
    "pipelines/deploy/README.md",
    *(f"pipelines/defs/sources/{source}/README.md" for source in SOURCES),
]


def _python_files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_import_layers_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_private_dagster_names_are_imported_only_by_the_deployment() -> None:
    deploy = PIPELINES / "deploy"
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _python_files(PIPELINES, ROOT / "models", ROOT / "simulator")
        if deploy not in path.parents
        for name in _imports(path)
        if name.startswith("dagster._") or re.match(r"dagster_\w+\._", name)
    ]
    assert offenders == []


@pytest.mark.parametrize("part", ["lib", "demo"])
def test_the_mechanism_and_the_demo_name_no_vendor(part: str) -> None:
    named = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _python_files(PIPELINES / part)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if VENDOR_WORDS.search(line)
    ]
    assert named == []


def _units(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]


def test_no_mechanism_unit_is_longer_than_a_reader_holds() -> None:
    long = [(name, n) for path in _python_files(MECHANISM) for name, n in _units(path) if n > MAX_UNIT_LINES]
    assert long == []


# `pipelines/lib/http/client.py`, `tests/`, `sql/migrations/versions/0011_mart.py`, `pipelines/defs/sources/<vendor>/`
_PATH = re.compile(r"`((?:pipelines|models|sql|tests|bench|simulator|\.ci)(?:/[\w.<>*-]+)*/?)`")


def _named_paths(doc: str) -> set[str]:
    return set(_PATH.findall((ROOT / doc).read_text(encoding="utf-8")))


def _expand(path: str) -> list[str]:
    for placeholder in ("<vendor>", "<source>"):
        if placeholder in path:
            return [p for source in SOURCES for p in _expand(path.replace(placeholder, source))]
    return [path]


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_a_doc_names_exists(doc: str) -> None:
    named = _named_paths(doc)
    assert named, f"{doc} names no path: the pattern is broken"
    missing = sorted(
        p
        for path in named
        for p in _expand(path)
        if not any(ROOT.glob(p.rstrip("/"))) and not (ROOT / p).exists()
    )
    assert missing == [], f"{doc} names paths that do not exist"


def test_every_source_folder_has_its_readme() -> None:
    assert SOURCES == ["crm", "isales", "pushlog", "trtc"]
    for source in SOURCES:
        assert (SOURCES_DIR / source / "README.md").is_file(), source


def test_no_docstring_points_outside_the_repository() -> None:
    outside = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _python_files(
            PIPELINES, ROOT / "models", ROOT / "simulator", ROOT / "tests", ROOT / "bench"
        )
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\b(DESIGN|VENDORS|EXAMPLES)\.md\b|\.\./shared/", line)
    ]
    assert outside == []
