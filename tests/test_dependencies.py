"""Every module that course_lib imports is declared in pyproject.toml.

A newcomer installs with the README's one command (``pip install -r requirements.txt``,
which installs ``course-lib`` and its extras); a module imported by course_lib but not
declared would work on a contributor's machine and fail on a student's. This reads every
``import`` in course_lib (top-level and inside functions) with ``ast`` and maps each
third-party module to its distribution with ``importlib.metadata.packages_distributions``.
"""

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli, declared for it in pyproject.toml
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# Imported only inside strings that course_lib writes into notebooks or worker files, or
# only where the code is running in Colab: not dependencies of the package itself.
NOT_DEPENDENCIES = {"google", "otter"}  # otter is checked below as a declared dependency anyway


def imported_modules(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def declared(groups=("dependencies",)):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    return {re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0].lower().replace("_", "-") for s in specs}


def conditional():
    """Names declared with an environment marker (``name>=1; python_version < '3.11'``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0].lower() for s in project["dependencies"] if ";" in s}


def test_every_module_course_lib_imports_is_declared():
    modules = set()
    for path in sorted((ROOT / "course_lib").glob("*.py")):
        modules |= imported_modules(path)
    third_party = {m for m in modules if m not in sys.stdlib_module_names and m != "course_lib"}
    dists = metadata.packages_distributions()
    runtime = declared()
    missing = []
    for module in sorted(third_party - NOT_DEPENDENCIES):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [])}
        if not names and module in conditional():
            continue  # declared for other Pythons only (e.g. tomli, before 3.11's tomllib)
        assert names, f"course_lib imports {module!r}, which is not installed at all"
        if not names & runtime:
            missing.append(f"{module} (from {sorted(names)})")
    assert not missing, f"imported by course_lib but not declared in pyproject.toml: {missing}"


def test_core_dependencies_cover_the_grading_client():
    # grader.check() runs in every notebook, so Otter-Grader is a core dependency, not an extra:
    # `pip install course-lib @ git+...` in Colab must bring it.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0].lower() for s in project["dependencies"]}
    assert {"otter-grader", "nbformat", "pyyaml", "psutil"} <= core


def test_requirements_install_every_extra():
    # The README's one set-up command must bring every extra the tests use.
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    line = next(l for l in (ROOT / "requirements.txt").read_text().splitlines() if l.startswith("-e ."))
    wanted = set(re.search(r"\[(.*)\]", line).group(1).split(","))
    assert wanted == set(extras), f"requirements.txt installs {sorted(wanted)}, pyproject defines {sorted(extras)}"
