"""What the workspace tests check, as functions that also run on a synthetic tree."""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCALES = ("smoke", "cpu", "paper")


def project_dirs(root: Path = ROOT) -> list[Path]:
    return sorted(path.parent for path in (root / "projects").glob("*/pyproject.toml"))


def read_manifest(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())


def layout_problems(project: Path) -> list[str]:
    """Everything a project folder lacks of the layout in DESIGN.md."""
    name = project.name
    problems = []
    required = [
        "pyproject.toml",
        "README.md",
        f"src/{name}/__init__.py",
        f"src/{name}/cli.py",
        "tests",
        *(f"configs/{scale}.yaml" for scale in SCALES),
    ]
    problems += [
        f"{name}: missing {relative}" for relative in required if not (project / relative).exists()
    ]
    if (project / "pyproject.toml").exists():
        manifest = read_manifest(project)
        scripts = manifest.get("project", {}).get("scripts", {})
        if scripts.get(name, "").split(":")[0] != f"{name}.cli":
            problems.append(
                f'{name}: pyproject.toml must declare the script `{name} = "{name}.cli:main"`'
            )
        dependencies = manifest.get("project", {}).get("dependencies", [])
        if not any(dep.split()[0].split(">")[0].split("=")[0] == "shared" for dep in dependencies):
            problems.append(f"{name}: pyproject.toml must depend on `shared`")
    return problems


@dataclass(frozen=True)
class ImportEdge:
    file: Path
    line: int
    module: str


def imported_top_level_modules(source_root: Path) -> list[ImportEdge]:
    """Every absolute import under ``source_root``, as the top-level module name it reaches."""
    edges = []
    for file in sorted(source_root.rglob("*.py")):
        tree = ast.parse(file.read_text(), filename=str(file))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges += [
                    ImportEdge(file, node.lineno, alias.name.split(".")[0]) for alias in node.names
                ]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                edges.append(ImportEdge(file, node.lineno, node.module.split(".")[0]))
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                edges.append(ImportEdge(file, node.lineno, node.args[0].value.split(".")[0]))
    return edges


def forbidden_imports(source_root: Path, forbidden: set[str]) -> list[str]:
    return [
        f"{edge.file}:{edge.line} imports {edge.module}"
        for edge in imported_top_level_modules(source_root)
        if edge.module in forbidden
    ]
