"""The workspace holds together: layout, import boundaries, CLIs, and the lock."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from workspace import (
    ROOT,
    forbidden_imports,
    layout_problems,
    project_dirs,
    read_manifest,
)

PROJECTS = project_dirs()
PROJECT_NAMES = {project.name for project in PROJECTS}
BIN = Path(sys.executable).parent


def test_workspace_members_are_shared_and_every_project_folder():
    manifest = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert manifest["tool"]["uv"]["workspace"]["members"] == ["shared", "projects/*"]
    assert manifest["project"]["requires-python"] == ">=3.11"
    assert {"pytest", "pytest-xdist", "ruff"} <= {
        dep.split(">")[0].split("=")[0] for dep in manifest["dependency-groups"]["dev"]
    }


@pytest.mark.parametrize("project", PROJECTS, ids=lambda path: path.name)
def test_project_has_the_expected_layout(project):
    assert layout_problems(project) == []


def test_layout_check_reports_a_project_missing_its_cli(tmp_path):
    project = tmp_path / "projects" / "demo"
    (project / "src" / "demo").mkdir(parents=True)
    (project / "src" / "demo" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text('[project]\nname = "demo"\ndependencies = ["torch"]\n')
    problems = layout_problems(project)
    assert "demo: missing src/demo/cli.py" in problems
    assert "demo: missing configs/smoke.yaml" in problems
    assert "demo: pyproject.toml must depend on `shared`" in problems
    assert any("must declare the script" in problem for problem in problems)


@pytest.mark.parametrize("project", PROJECTS, ids=lambda path: path.name)
def test_project_imports_no_other_project(project):
    others = PROJECT_NAMES - {project.name}
    assert forbidden_imports(project, others) == []


@pytest.mark.parametrize("project", PROJECTS, ids=lambda path: path.name)
def test_project_manifest_depends_on_no_other_project(project):
    dependencies = read_manifest(project)["project"].get("dependencies", [])
    names = {
        dep.replace(">", " ").replace("=", " ").replace("[", " ").split()[0] for dep in dependencies
    }
    assert names & (PROJECT_NAMES - {project.name}) == set()


def test_shared_imports_no_project():
    assert forbidden_imports(ROOT / "shared", PROJECT_NAMES | {"projects"}) == []


def test_import_check_sees_plain_from_and_dynamic_imports(tmp_path):
    (tmp_path / "a.py").write_text(
        "import os\nimport tico.loss\nfrom mscn import model\n"
        "import importlib\nimportlib.import_module('vcr.cli')\nfrom . import local\n"
    )
    found = forbidden_imports(tmp_path, {"tico", "mscn", "vcr"})
    assert [entry.rsplit(" ", 1)[1] for entry in found] == ["tico", "mscn", "vcr"]


@pytest.mark.parametrize("command", ["shared", *sorted(PROJECT_NAMES)])
def test_every_cli_answers_help(command):
    executable = BIN / command
    assert executable.exists(), f"{command} is not installed; run `make setup`"
    result = subprocess.run(
        [str(executable), "--help"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def _uv() -> list[str]:
    configured = os.environ.get("UV")
    if configured:
        return shlex.split(configured)
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is not on PATH and $UV is not set; run the tests through `make test`")
    return [found]


def test_lock_matches_the_manifests():
    result = subprocess.run(
        [*_uv(), "lock", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
