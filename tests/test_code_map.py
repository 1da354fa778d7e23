"""The code shows its design: every module of the migrations package is in its module map,
every command module of the library is where the README's code map says, no module passes
600 lines, and no import circle runs through the command line's modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import myfy_db

PACKAGE = Path(myfy_db.__file__).resolve().parent
ROOT = PACKAGE.parent.parent
LIMIT = 600


def test_the_migrations_module_map_lists_every_module() -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / "migrations" / "__init__.py").read_text()))
    assert doc is not None
    listed = set(re.findall(r":mod:`\.(\w+)`", doc))
    present = {
        p.stem if p.is_file() else p.name
        for p in (PACKAGE / "migrations").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and p.name != "__pycache__")
    }
    assert present - listed == set(), f"not in the module map: {sorted(present - listed)}"
    assert listed - present == set(), f"in the map but absent: {sorted(listed - present)}"


def test_the_readme_code_map_names_modules_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Code map", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"`(myfy_db/[\w/]+(?:\.py)?)`", section)
    assert len(paths) >= 10
    for path in paths:
        assert (PACKAGE.parent / path).exists(), f"README code map names {path}, which is absent"


def test_no_module_passes_the_limit() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > LIMIT
    }
    assert long == {}, f"modules over {LIMIT} lines: {long}"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("myfy_db"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("myfy_db"))
    return found


def test_no_import_circle_among_the_cli_modules() -> None:
    modules = {
        f"myfy_db.cli.{p.stem}": p for p in (PACKAGE / "cli").glob("*.py") if p.stem != "__init__"
    }
    graph = {name: _imports(path) & set(modules) for name, path in modules.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    circles = sorted(name for name in graph if reaches(name, name, {name}))
    assert circles == [], f"modules on an import circle: {circles}"


def test_the_library_never_imports_the_command_line() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts or path.name == "__main__.py":
            continue
        assert not {m for m in _imports(path) if m.startswith("myfy_db.cli")}, path
