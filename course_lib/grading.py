"""Student versions and autograding of the course notebooks, with Otter-Grader.

The notebooks in ``notebooks/`` are the instructor masters: every exercise's solution
and tests sit in them in Otter-Grader's notebook format (CONTRIBUTING.md, "Exercises").
Otter's ``otter assign`` strips solutions and hidden tests and builds the autograder zip
(Otter's format, so Gradescope can run it too); this module is the glue around it, one
command per job::

    python -m course_lib.grading check     [NOTEBOOK ...]   # exercise format and points (seconds)
    python -m course_lib.grading assign    [NOTEBOOK ...]   # dist/student/*.ipynb, dist/autograder/*.zip
    python -m course_lib.grading grade SUBMISSIONS --autograder 01_image_classification_basics [--roster FILE]
    python -m course_lib.grading selfcheck [NOTEBOOK ...]   # masters get full marks, student versions zero

Without NOTEBOOK arguments a command takes every ``notebooks/[0-9]*.ipynb``.

Grading a class. Each submission runs sealed off in a sandbox (:mod:`course_lib.sandbox`:
bubblewrap, prlimit) that sees neither the tests, the autograder, the other submissions,
the instructor's files and environment, nor the network, under memory, CPU, process,
output and time limits. The scores are decided here, outside the student's process: the
tests of the autograder zip run in the grader, and each call they make to a student's
function sends the test's inputs into the sandbox and gets the result back as plain
data (numbers, strings, arrays; never a pickle). Public tests run before hidden ones and
the feedback names the failed public tests and only counts the failed hidden ones. Every
file of the submissions folder is accounted for: a row per student (per roster student
with ``--roster``), skipped files listed in ``skipped.csv``. Without a working sandbox
``grade`` refuses unless given ``--unsafe``.

Used by the instructors (README, "For instructors"), by ``tests/test_grading.py`` and by CI.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import csv
import dataclasses
import errno
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nbformat
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
MIN_EXERCISES = 3

# What the glue sets in every notebook's ASSIGNMENT CONFIG, whatever the master says.
FORCED_CONFIG = {
    "init_cell": True,
    "run_tests": False,
    "strip_solutions_from_all_cells": True,
    "tests": {"files": False, "ok_format": False},
}

STUDENT_INIT_CELL = '''\
# Checking your answers: grader.check("q1_...") runs an exercise's public tests with
# Otter-Grader. Install it once: python -m pip install "otter-grader=={otter_major}.*"
# (in Colab this cell installs it). The public tests below are written to a temporary
# folder, so the check works whatever you name this notebook, and in Colab.
import importlib.util, pathlib, subprocess, sys, tempfile
if importlib.util.find_spec("otter") is None and importlib.util.find_spec("google") is not None \
        and importlib.util.find_spec("google.colab") is not None:  # in Colab only
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "otter-grader=={otter_major}.*"], check=True)
PUBLIC_TESTS = {tests}
_tests_dir = pathlib.Path(tempfile.mkdtemp(prefix="public-tests-"))
for _name, _code in PUBLIC_TESTS.items():
    (_tests_dir / f"{{_name}}.py").write_text(_code, encoding="utf-8")
if importlib.util.find_spec("otter") is not None:
    import otter
    grader = otter.Notebook(tests_dir=str(_tests_dir))
else:
    class _NoGrader:
        def check(self, name):
            print(f"Cannot check {{name}}: install Otter-Grader first "
                  '(python -m pip install "otter-grader=={otter_major}.*"), then restart the kernel.')
    grader = _NoGrader()
    print("Otter-Grader is not installed: the notebook runs, but grader.check() cannot check answers.")
'''

STUDENT_README = """\
# Student notebooks

One notebook per day of the course. Each has exercises: a cell with `...` where your
code goes, followed by a `grader.check("q1_...")` cell that runs the exercise's public
tests, so you can check your work as you go. Your instructor grades with more (hidden)
tests, so passing the public ones is necessary, not sufficient.

## Set up (once)

    python -m pip install -r requirements.txt        # the course, with the answer checker (Otter-Grader)

In Colab the first code cells of each notebook install both for you.

## Exercises you have not answered yet

Each exercise is a function with `...` where your code goes. Until you write it, the
cells after the exercise use course_lib's reference implementation instead and say so
in one printed line, so the rest of the lab still runs. Your answer is what is graded.

## Hand in

Run the whole notebook (Kernel > Restart & Run All), save it, and hand in the `.ipynb`
file, named as your instructor asks (usually your student id, e.g. `s1234567.ipynb`).
Do not delete or rename the `grader.check` cells; do not add cells that never finish.

Notebooks: {notebooks}
"""


# --------------------------------------------------------------------------- parsing


@dataclasses.dataclass
class TestInfo:
    """One exception-based test of an exercise: its function name, points, visibility."""

    name: str
    points: float | None
    hidden: bool


@dataclasses.dataclass
class Exercise:
    """One Otter question of a master notebook: name, points, tests, solution lines."""

    name: str
    points: float | None
    tests: list[TestInfo]
    solution_lines: list[str]
    manual: bool = False  # a written answer graded by a person (``manual: true``)
    written_solution: list[str] = dataclasses.field(default_factory=list)  # its model answer (markdown)


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _raw_directive(cell) -> str | None:
    """The first line of a raw Otter delimiter cell (e.g. '# BEGIN QUESTION'), else None."""
    if cell.get("cell_type") != "raw":
        return None
    lines = _source(cell).strip().splitlines()
    if lines and lines[0].strip().startswith("#"):
        return lines[0].strip().lstrip("#").strip().upper()
    return None


def _raw_config(cell) -> dict:
    """The YAML below the first line of a raw delimiter cell ({} when there is none)."""
    body = "\n".join(_source(cell).strip().splitlines()[1:])
    cfg = yaml.safe_load(body) if body.strip() else {}
    return cfg if isinstance(cfg, dict) else {}


_TEST_CONFIG = re.compile(r'"""\s*#\s*BEGIN TEST CONFIG(.*?)"""\s*#\s*END TEST CONFIG', re.S)
_TEST_DEF = re.compile(r"^def\s+(test_\w+)\s*\(", re.M)


def solution_lines(code: str) -> list[str]:
    """The solution lines of one code cell, stripped: those between ``# BEGIN SOLUTION``
    and ``# END SOLUTION`` comment lines, and the code part of lines ending in ``# SOLUTION``
    (Otter Assign's in-cell markers, CONTRIBUTING.md)."""
    found, inside = [], False
    for line in code.splitlines():
        stripped = line.strip()
        if re.match(r"#\s*BEGIN SOLUTION", stripped):
            inside = True
        elif re.match(r"#\s*END SOLUTION", stripped):
            inside = False
        elif inside:
            if stripped and not stripped.startswith("#"):
                found.append(stripped)
        elif re.search(r"#\s?SOLUTION\s*$", stripped):
            code_part = re.sub(r"#\s?SOLUTION\s*$", "", stripped).strip()
            if code_part:
                found.append(code_part)
    return found


def read_notebook(path) -> nbformat.NotebookNode:
    """Read a notebook file; a clear ValueError when it is missing or not a notebook."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such notebook file; give the path of an .ipynb file.")
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several types for non-notebooks
        raise ValueError(f"{path}: not a Jupyter notebook ({type(exc).__name__}: {exc}).") from None


def parse_exercises(path) -> list[Exercise]:
    """The exercises (Otter questions) of a master notebook, in notebook order.

    Reads the raw delimiter cells (``# BEGIN QUESTION`` ... ``# END QUESTION``), each
    test cell's config docstring and ``def test_...`` name, and the solution lines of the
    question's code cells. Raises ValueError when the notebook has no ASSIGNMENT CONFIG or
    its delimiters are unbalanced.
    """
    nb = read_notebook(path)
    if not nb.cells or _raw_directive(nb.cells[0]) != "ASSIGNMENT CONFIG":
        raise ValueError(
            f"{path}: the first cell must be the raw '# ASSIGNMENT CONFIG' cell "
            "(CONTRIBUTING.md, 'Notebooks', item 1)."
        )
    exercises, current, in_tests, in_solution = [], None, False, False
    for i, cell in enumerate(nb.cells[1:], start=1):
        directive = _raw_directive(cell)
        if directive == "BEGIN QUESTION":
            if current is not None:
                raise ValueError(f"{path}, cell {i}: BEGIN QUESTION inside question {current.name!r}.")
            cfg = _raw_config(cell)
            if "name" not in cfg:
                raise ValueError(f"{path}, cell {i}: BEGIN QUESTION without a 'name:' line.")
            current = Exercise(str(cfg["name"]), cfg.get("points"), [], [], manual=bool(cfg.get("manual", False)))
        elif directive == "END QUESTION":
            if current is None:
                raise ValueError(f"{path}, cell {i}: END QUESTION without BEGIN QUESTION.")
            exercises.append(current)
            current = None
        elif directive == "BEGIN TESTS":
            in_tests = True
        elif directive == "END TESTS":
            in_tests = False
        elif directive == "BEGIN SOLUTION":
            in_solution = True
        elif directive == "END SOLUTION":
            in_solution = False
        elif cell.cell_type == "markdown" and current is not None and in_solution:
            current.written_solution.append(_source(cell))
        elif cell.cell_type == "code" and current is not None:
            code = _source(cell)
            if in_tests:
                m_cfg, m_def = _TEST_CONFIG.search(code), _TEST_DEF.search(code)
                cfg = (yaml.safe_load(m_cfg.group(1)) or {}) if m_cfg else {}
                name = m_def.group(1) if m_def else f"test {len(current.tests) + 1}"
                current.tests.append(TestInfo(name, cfg.get("points"), bool(cfg.get("hidden", False))))
            else:
                current.solution_lines += solution_lines(code)
    if current is not None:
        raise ValueError(f"{path}: question {current.name!r} has no END QUESTION cell.")
    return exercises


def check_master(path) -> list[Exercise]:
    """Check a master notebook's exercises against the course rules; return them.

    Rules (CONTRIBUTING.md): at least three autograded exercises named ``q1_...``,
    ``q2_...`` in order, each worth a positive whole number of points, each with a
    solution and at least one public test; when tests give points they add up to the
    question's points. A written exercise (``manual: true``, graded by a person) has no
    tests; it needs a model answer in markdown between raw ``# BEGIN SOLUTION`` and
    ``# END SOLUTION`` cells. Raises ValueError naming the notebook, the exercise and the fix.
    """
    exercises = parse_exercises(path)
    autograded = [ex for ex in exercises if not ex.manual]
    if len(autograded) < MIN_EXERCISES:
        raise ValueError(
            f"{path}: {len(autograded)} exercise(s) found, at least {MIN_EXERCISES} are required "
            "(autograded ones; written, manual ones come on top; CONTRIBUTING.md, 'Exercises')."
        )
    for k, ex in enumerate(exercises, start=1):
        where = f"{path}, exercise {ex.name!r}"
        if not ex.name.startswith(f"q{k}_"):
            raise ValueError(f"{where}: exercise {k} must be named 'q{k}_...' (notebook order).")
        if not isinstance(ex.points, int) or isinstance(ex.points, bool) or ex.points <= 0:
            raise ValueError(f"{where}: 'points:' must be a positive whole number, got {ex.points!r}.")
        if ex.manual:
            if ex.tests:
                raise ValueError(f"{where}: a written (manual: true) exercise is graded by a person; remove its tests.")
            if not any(text.strip() for text in ex.written_solution):
                raise ValueError(
                    f"{where}: a written exercise needs a model answer: a markdown cell between raw "
                    "'# BEGIN SOLUTION' and '# END SOLUTION' cells."
                )
            continue
        if not ex.tests:
            raise ValueError(f"{where}: no test cells between BEGIN TESTS and END TESTS.")
        if all(t.hidden for t in ex.tests):
            raise ValueError(f"{where}: every test is hidden; keep one public test so students can check.")
        if not ex.solution_lines:
            raise ValueError(
                f"{where}: no solution lines (mark them with '# BEGIN SOLUTION' / '# END SOLUTION' "
                "comment lines or end a line with '# SOLUTION')."
            )
        given = [t.points for t in ex.tests if t.points is not None]
        if given and (len(given) == len(ex.tests) and sum(given) != ex.points or sum(given) > ex.points):
            raise ValueError(
                f"{where}: the tests' points add up to {sum(given)} but the question is worth "
                f"{ex.points}; make them agree or drop the tests' 'points:' lines."
            )
    return exercises


def leaked_lines(master_path, student_path) -> list[str]:
    """Solution lines of the master that appear in the student version's code cells.

    A line that also occurs in the master outside every solution (e.g. ``return out``)
    is not a leak. Returns the leaked lines (empty when the student version is clean).
    """
    master = read_notebook(master_path)
    solutions, other = set(), set()
    for cell in master.cells:
        if cell.cell_type != "code":
            continue
        sol = solution_lines(_source(cell))
        solutions.update(sol)
        other.update(line.strip() for line in _source(cell).splitlines() if line.strip() not in sol)
    student_code = {
        line.strip()
        for cell in read_notebook(student_path).cells
        if cell.cell_type == "code"
        for line in _source(cell).splitlines()
    }
    return sorted((solutions - other) & student_code)


def leaked_written_answers(master_path, student_path) -> list[str]:
    """Names of the master's written (manual) exercises whose model answer is in the student file."""
    student_md = [_source(c).strip() for c in read_notebook(student_path).cells if c.cell_type == "markdown"]
    return [
        ex.name
        for ex in parse_exercises(master_path)
        if ex.manual and any(text.strip() and text.strip() in student_md for text in ex.written_solution)
    ]


def hidden_tests_in(master_path, student_path) -> list[str]:
    """Names of the master's hidden test functions found anywhere in the student file."""
    text = Path(student_path).read_text(encoding="utf-8")
    return [
        t.name
        for ex in parse_exercises(master_path)
        for t in ex.tests
        if t.hidden and re.search(rf"\b{re.escape(t.name)}\b", text)
    ]


# --------------------------------------------------------------------------- assign


def master_notebooks(paths=None) -> list[Path]:
    """The master notebooks to work on: ``paths`` (files), or every notebooks/[0-9]*.ipynb."""
    if not paths:
        found = sorted(NOTEBOOKS_DIR.glob("[0-9]*.ipynb"))
        if not found:
            raise ValueError(f"no notebooks found in {NOTEBOOKS_DIR}; give notebook paths.")
        return found
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_file() and (NOTEBOOKS_DIR / p).is_file():
            p = NOTEBOOKS_DIR / p
        if not p.is_file() and (NOTEBOOKS_DIR / f"{p}.ipynb").is_file():
            p = NOTEBOOKS_DIR / f"{p}.ipynb"
        if not p.is_file() or p.suffix != ".ipynb":
            raise ValueError(f"{p}: not a notebook file; give a path like notebooks/01_....ipynb.")
        out.append(p)
    return out


def _otter_major() -> str:
    import otter

    return otter.__version__.split(".")[0]


def _prepare_master(master: Path, workdir: Path) -> Path:
    """Copy a master into ``workdir`` with the glue's config keys and a kernelspec set."""
    nb = read_notebook(master)
    cfg = _raw_config(nb.cells[0])
    cfg.update(FORCED_CONFIG)
    cfg["name"] = master.stem
    nb.cells[0].source = "# ASSIGNMENT CONFIG\n" + yaml.safe_dump(cfg, sort_keys=False)
    nb.metadata.setdefault(
        "kernelspec", {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    )
    out = workdir / master.name
    nbformat.write(nb, str(out))
    return out


def _replace_init_cell(notebook: Path, public_tests: dict) -> None:
    """Swap Otter's init cell for one that carries the public tests and says how to
    install Otter (it reads no file, so renamed copies and Colab work too)."""
    import pprint

    nb = read_notebook(notebook)
    for cell in nb.cells[:3]:
        if cell.cell_type == "code" and "otter.Notebook(" in _source(cell):
            tests = pprint.pformat(public_tests, width=100, sort_dicts=False)
            cell.source = STUDENT_INIT_CELL.format(otter_major=_otter_major(), tests=tests)
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
            break
    else:
        raise RuntimeError(f"{notebook}: Otter's init cell not found; was init_cell switched off?")
    nbformat.write(nb, str(notebook))


@dataclasses.dataclass
class Assigned:
    """Where ``assign`` put one notebook's student version and autograder."""

    master: Path
    student: Path
    autograder: Path
    autograder_notebook: Path


def assign(master, out_dir="dist") -> Assigned:
    """Generate one master's student version and autograder zip with Otter Assign.

    Writes ``out_dir/student/<stem>.ipynb`` (solutions replaced by ``...``, hidden tests
    removed, public tests kept for ``grader.check``), ``out_dir/autograder/<stem>.zip`` (what
    ``grade`` needs) and ``out_dir/autograder/<stem>.ipynb`` (the master as a student would
    hand it in: used by ``selfcheck``). Checks the master first (:func:`check_master`) and
    the result after: raises RuntimeError if a solution line or a hidden test leaked.
    """
    from otter.assign import main as otter_assign

    master = Path(master).resolve()
    check_master(master)
    out_dir = Path(out_dir).resolve()
    (out_dir / "student").mkdir(parents=True, exist_ok=True)
    (out_dir / "autograder").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="otter-assign-") as tmp:
        tmp = Path(tmp)
        prepared = _prepare_master(master, tmp)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            otter_assign(str(prepared), str(tmp / "result"), no_pdfs=True, no_run_tests=True)
        zips = sorted((tmp / "result" / "autograder").glob("*-autograder_*.zip"))
        if len(zips) != 1:
            raise RuntimeError(f"{master.name}: Otter Assign made {len(zips)} autograder zips, expected 1.")
        done = Assigned(
            master,
            out_dir / "student" / master.name,
            out_dir / "autograder" / f"{master.stem}.zip",
            out_dir / "autograder" / master.name,
        )
        shutil.copyfile(tmp / "result" / "student" / master.name, done.student)
        shutil.copyfile(zips[0], done.autograder)
        shutil.copyfile(tmp / "result" / "autograder" / master.name, done.autograder_notebook)
    public_tests = dict(read_notebook(done.student).metadata["otter"]["tests"])
    _replace_init_cell(done.student, public_tests)
    _replace_init_cell(done.autograder_notebook, public_tests)
    leaked = leaked_lines(master, done.student) + leaked_written_answers(master, done.student)
    hidden = hidden_tests_in(master, done.student)
    if leaked or hidden:
        done.student.unlink()
        raise RuntimeError(f"{master.name}: student version leaks solution lines {leaked} / hidden tests {hidden}.")
    names = sorted(p.name for p in (out_dir / "student").glob("*.ipynb"))
    (out_dir / "student" / "README.md").write_text(
        STUDENT_README.format(otter_major=_otter_major(), notebooks=", ".join(names)), encoding="utf-8"
    )
    return done


# --------------------------------------------------------------------------- grade

MAX_NOTEBOOK_BYTES = 50 * 1024**2  # a handed-in notebook (or zip member) larger than this is refused
JUNK = {"__macosx", ".ds_store", "thumbs.db", "desktop.ini", ".ipynb_checkpoints", "__pycache__"}


class TestCase:
    """One test of an Otter exception-based test file: what ``@test_case(...)`` makes.

    The autograder's test files import it as ``otter.test_files.test_case``; reading
    them here does not import Otter (seconds), with Otter's rules for names and points.
    """

    def __init__(self, name=None, points=None, hidden=False, success_message=None, failure_message=None):
        self.name, self.points, self.hidden = name, points, bool(hidden)
        self.success_message, self.failure_message = success_message, failure_message
        self.test_func = lambda: None

    def __call__(self, test_func):
        self.test_func = test_func
        return self

    def call_func(self, env) -> None:
        """Call the test with the notebook's values of its arguments (``env``: everything)."""
        import inspect

        args = inspect.signature(self.test_func).parameters
        self.test_func(**{a: env if a == "env" else env.get(a, None) for a in args})


@dataclasses.dataclass
class TestFile:
    """One question's test file: its name, tests (points resolved) and scoring rule."""

    name: str
    test_cases: list
    all_or_nothing: bool = False

    @property
    def possible(self) -> float:
        return sum(tc.points for tc in self.test_cases)


def _resolve_points(total, cases) -> None:
    """Otter's rules (otter.test_files.abstract_test.TestFile.resolve_test_file_points)."""
    if isinstance(total, list):
        if len(total) != len(cases):
            raise ValueError("points specified in a test file differ in number from its test cases")
        for tc, p in zip(cases, total):
            tc.points = p
        total = None
    elif total is not None and not isinstance(total, (int, float)):
        raise TypeError(f"a test file's points have an invalid type: {type(total)}")
    given = [tc.points for tc in cases]
    if any(p is not None and type(p) not in (int, float) for p in given):
        raise TypeError("a test case's points must be a number")
    pre = sum(p for p in given if p is not None)
    unset = sum(p is None for p in given)
    if total is not None:
        if pre > total:
            raise ValueError("more points in the test cases than the test file allows")
        rest = (total - pre) / unset if unset else 0.0
    elif pre == 0 and all(p in (0, None) for p in given):
        rest = 1 / unset if unset else 0.0
    else:
        rest = 0.0
    for tc in cases:
        if tc.points is None:
            tc.points = rest


def read_test_file(source: str, path: str = "<test>") -> TestFile:
    """An Otter exception-based test file (the instructor's code, run here in the grader)."""
    import builtins
    import types

    shim = types.ModuleType("otter.test_files")
    shim.test_case = TestCase

    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name in ("otter.test_files", "otter.test_files.exception_test"):
            return shim
        return builtins.__import__(name, globals, locals, fromlist, level)

    env = {"__builtins__": {**vars(builtins), "__import__": _import}, "__name__": f"tests.{Path(path).stem}"}
    exec(compile(source, path, "exec"), env)
    if "name" not in env:
        raise ValueError(f"test file {path} does not define 'name'")
    cases = []
    for value in list(env.values()):
        if isinstance(value, TestCase):
            if value.name is None:
                value.name = f"{env['name']} - {len(cases) + 1}"
            cases.append(value)
    _resolve_points(env.get("points"), cases)
    return TestFile(str(env["name"]), cases, bool(env.get("all_or_nothing", False)))


@dataclasses.dataclass
class Autograder:
    """An autograder zip, read once per run: its assignment name and Otter test files.

    The test files are the instructor's code: they run in the grader, never in a sandbox.
    """

    path: Path
    assignment: str | None
    tests: list  # TestFile, in question order

    @property
    def possible(self) -> dict[str, float]:
        return {tf.name: tf.possible for tf in self.tests}


def load_autograder(autograder_zip) -> Autograder:
    """Read an autograder zip made by :func:`assign` (Otter's format)."""
    path = Path(autograder_zip)
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if re.fullmatch(r"tests/[^/]+\.py", n)]
            tests = [read_test_file(zf.read(n).decode("utf-8"), n) for n in names]
            config = json.loads(zf.read("otter_config.json")) if "otter_config.json" in zf.namelist() else {}
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not an autograder zip ({type(exc).__name__}: {exc}).") from None
    if not tests:
        raise ValueError(f"{path}: no tests/*.py in it; make it with 'python -m course_lib.grading assign'.")
    order = lambda tf: (int(m.group(1)) if (m := re.match(r"q(\d+)_", tf.name)) else 10**6, tf.name)  # noqa: E731
    return Autograder(path, config.get("assignment_name"), sorted(tests, key=order))


def exercise_points(autograder_zip) -> dict[str, float]:
    """{exercise name: points possible}, in order, read from an autograder zip's tests."""
    return load_autograder(autograder_zip).possible


@dataclasses.dataclass
class Grade:
    """One submission's grade: points per exercise, total, and why points are missing."""

    student: str
    points: dict[str, float]
    possible: dict[str, float]
    reason: str = ""
    failures: dict[str, list] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    complete: bool = False  # the notebook ran to its end and every test ran
    cpu_seconds: float = 0.0  # CPU time of the notebook's Python, as it reported at its end
    errors_before_first_exercise: int = 0  # cells that failed before the first answer cell
    file: str = ""  # what was graded, relative to the submissions folder

    @property
    def total(self) -> float:
        return sum(self.points.values())


class _NotebookEnvironment(dict):
    """The notebook's global names as Otter's tests ask for them (``env.get(name)``): each
    value is fetched from the sandbox as plain data, each function is a stand-in that
    sends its arguments there."""

    def __init__(self, box):
        super().__init__()
        self._box = box

    def get(self, name, default=None):
        value = self._box.get(name)
        return default if value is None else value

    def __getitem__(self, name):
        value = self._box.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name):
        return self._box.get(name) is not None


def _message(exc: BaseException) -> str:
    """A failed public test's message, on one line: the exception's first and last lines."""
    lines = [line.strip() for line in f"{type(exc).__name__}: {exc}".strip().splitlines() if line.strip()]
    lines = lines if len(lines) <= 3 else [lines[0], "...", *lines[-2:]]
    return " | ".join(lines)[:400]


def _run_tests(box, autograder: Autograder, sandbox) -> dict[str, list[tuple]]:
    """Run every test in the grader against the sandboxed notebook: {question: [(test
    case, passed, message)]}. All public tests run before any hidden one, so nothing a
    hidden test sends into the sandbox can reach a public test's message (the feedback)."""
    env = _NotebookEnvironment(box)
    results = {tf.name: [None] * len(tf.test_cases) for tf in autograder.tests}
    for hidden in (False, True):
        for tf in autograder.tests:
            for i, tc in enumerate(tf.test_cases):
                if bool(tc.hidden) != hidden:
                    continue
                try:
                    tc.call_func(env)
                    results[tf.name][i] = (tc, True, "")
                except sandbox.Stopped as exc:
                    results[tf.name][i] = (tc, False, f"not run: {exc}")
                except Exception as exc:  # the test failed: any exception, as in Otter
                    results[tf.name][i] = (tc, False, _message(exc))
    return results


def _score(tf, results) -> float:
    possible = tf.possible
    passed = sum(tc.points for tc, ok, _ in results if ok)
    if tf.all_or_nothing:
        passed = possible if all(ok for _, ok, _ in results) else 0
    return min(max(float(passed), 0.0), float(possible))  # never below zero, never above the maximum


def _open_regular(path: Path):
    """A regular file opened for reading; symbolic links are refused, never followed."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("refused: a symbolic link (links are never followed)") from None
        raise ValueError(f"cannot read it ({exc.strerror})") from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise ValueError("refused: not a regular file")
    return f


def _read_regular(path: Path, limit: int = MAX_NOTEBOOK_BYTES) -> bytes:
    """A regular file's bytes, refusing symbolic links and files larger than ``limit``."""
    with _open_regular(path) as f:
        if os.fstat(f.fileno()).st_size > limit:
            raise ValueError(f"refused: larger than {limit // 1024**2} MB")
        return f.read(limit + 1)[:limit]


def _parse_notebook(data: bytes):
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
        return nb
    except Exception as exc:  # nbformat raises several types for non-notebooks
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(f"not a notebook: {type(exc).__name__}: {first[:200]}") from None


def grade_submission(submission, autograder_zip, *, student=None, cell_timeout=300, timeout=1800,
                     limits=None, unsafe=False, data: bytes | None = None) -> Grade:
    """Grade one submitted notebook: run it in a sandbox, run the tests in this process.

    ``submission`` is the file (or a label when ``data`` holds its bytes), ``autograder_zip``
    a zip or a loaded :class:`Autograder`. The notebook runs sealed off
    (:mod:`course_lib.sandbox`; ``unsafe=True`` only for notebooks you trust); the tests
    call its functions there with their inputs and compare the plain data that comes back
    here. Never raises for a bad submission: a file that is not a notebook, a notebook that
    crashes, loops past the limits, exits or kills its own process gets zero for what could
    not be checked and a ``reason``.
    """
    from . import sandbox

    autograder = autograder_zip if isinstance(autograder_zip, Autograder) else load_autograder(autograder_zip)
    possible = autograder.possible
    limits = limits or sandbox.Limits(cell_timeout=cell_timeout, timeout=timeout)
    label = str(submission)
    grade = Grade(student or Path(label).stem, {q: 0 for q in possible}, possible, file=Path(label).name)
    start = time.monotonic()
    try:
        nb = _parse_notebook(data if data is not None else _read_regular(Path(submission)))
    except ValueError as exc:
        grade.reason = str(exc)
        return grade
    wanted, got = autograder.assignment, (nb.metadata.get("otter") or {}).get("assignment_name")
    if wanted and got and str(got) != wanted:
        grade.reason = f"wrong assignment: this notebook is for {str(got)[:60]!r}, the autograder for {wanted!r}"
        return grade
    # Every code cell runs, whatever its tags (otter_ignore, skip-execution) and kernelspec:
    # the notebook always runs in the course's own Python.
    cells = [_source(c) for c in nb.cells if c.get("cell_type") == "code"]
    checks = [i for i, c in enumerate(cells) if c.startswith("grader.check(")]
    first_answer = max(checks[0] - 1, 0) if checks else 0  # the code cell before the first check
    notes, statuses, results = [], None, None
    try:
        with sandbox.Sandbox(limits, unsafe=unsafe) as box:
            try:
                statuses = box.run(cells)
                results = _run_tests(box, autograder, sandbox)
            except sandbox.Stopped:
                pass
            stopped = box.stopped
        grade.cpu_seconds = box.cpu_seconds
    except RuntimeError as exc:  # the sandbox did not start: the grader's problem, not the student's
        grade.reason = f"not graded: {exc}"
        grade.seconds = time.monotonic() - start
        return grade
    grade.seconds = time.monotonic() - start
    if stopped:
        notes.append(stopped)
    if statuses is not None:
        grade.errors_before_first_exercise = sum(s != "ok" for s in statuses[:first_answer])
        counts = {s: statuses.count(s) for s in set(statuses)}
        for status, text in [
            ("timeout", f"interrupted at the {limits.cell_timeout:g} s cell limit"),
            ("memory", f"hit the memory limit ({sandbox._size(limits.memory)})"),
            ("processes", f"hit the process limit ({limits.processes})"),
            ("file size", f"hit the file size limit ({sandbox._size(limits.file_size)})"),
            ("error", "raised an error"),
        ]:
            if counts.get(status):
                notes.append(f"{counts[status]} cell(s) {text}")
    for tf in autograder.tests:
        res = (results or {}).get(tf.name)
        if not res or any(r is None for r in res):
            continue
        grade.points[tf.name] = _score(tf, res)
        grade.failures[tf.name] = [{"hidden": bool(tc.hidden), "message": "" if tc.hidden else msg}
                                   for tc, ok, msg in res if not ok]
    grade.complete = statuses is not None and results is not None and not stopped
    grade.reason = "; ".join(notes)
    return grade


# ----------------------------------------------------------------- which file is whose


@dataclasses.dataclass
class Submission:
    """What one student handed in: the notebook to grade, or why there is none."""

    student: str
    file: str = ""  # the graded notebook, relative to the folder ('bob/final.ipynb', 'carol.zip:carol.ipynb')
    load: object = None  # () -> bytes of that notebook
    refused: str = ""  # why nothing is graded ('no submission', 'refused: a symbolic link ...')
    warnings: list = dataclasses.field(default_factory=list)


def _nfc(name: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFC", name)


def _is_junk(name: str) -> bool:
    low = name.lower()
    return low in JUNK or low.startswith("._") or low.startswith("~$")


def _student_name(name: str, warnings: list) -> str:
    stripped = name.lstrip(".")
    if stripped != name and stripped:
        warnings.append(f"the name {name!r} starts with '.': graded as {stripped!r}")
    return stripped or name


def _zip_candidates(path: Path, label: str):
    """(label, mtime, load, refusal) of each notebook in a zip, and the names of other files."""
    found, others = [], []
    try:
        zf = zipfile.ZipFile(_open_regular(path))
        members = zf.infolist()
    except (ValueError, zipfile.BadZipFile, OSError) as exc:
        reason = str(exc) if str(exc).startswith("refused") else f"refused: not a valid zip file ({exc})"
        return [(label, 0.0, None, reason)], others
    for m in members:
        parts = [p for p in m.filename.replace("\\", "/").split("/") if p]
        if m.is_dir() or not parts or any(_is_junk(p) or p.startswith(".") for p in parts):
            continue
        where = f"{label}:{'/'.join(parts)}"
        if not parts[-1].lower().endswith(".ipynb"):
            others.append(where)
            continue
        mtime = time.mktime(m.date_time + (0, 0, -1)) if m.date_time[0] >= 1980 else 0.0
        if m.flag_bits & 0x1:
            found.append((where, mtime, None, "refused: an encrypted zip"))
        elif m.file_size > MAX_NOTEBOOK_BYTES:
            found.append((where, mtime, None, f"refused: larger than {MAX_NOTEBOOK_BYTES // 1024**2} MB"))
        else:
            found.append((where, mtime, lambda m=m, zf=zf: zf.open(m).read(MAX_NOTEBOOK_BYTES + 1)[:MAX_NOTEBOOK_BYTES],
                          ""))
    return found, others


def _folder_candidates(folder: Path, base: Path):
    """Notebooks (and zipped ones) anywhere in a student's folder, symlinks refused."""
    found, others = [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        name = entry.name
        label = str(Path(entry.path).relative_to(base))
        if _is_junk(name):
            continue
        if entry.is_symlink():
            if name.lower().endswith(".ipynb") or name.lower().endswith(".zip"):
                found.append((label, 0.0, None, "refused: a symbolic link (links are never followed)"))
            else:
                others.append(label + " (a symbolic link)")
        elif entry.is_dir(follow_symlinks=False):
            f, o = _folder_candidates(Path(entry.path), base)
            found += f
            others += o
        elif name.lower().endswith(".ipynb"):
            found.append((label, entry.stat(follow_symlinks=False).st_mtime,
                          lambda p=Path(entry.path): _read_regular(p), ""))
        elif name.lower().endswith(".zip"):
            f, o = _zip_candidates(Path(entry.path), label)
            found += f
            others += o
        else:
            others.append(label)
    return found, others


def read_roster(path) -> list[str]:
    """Student IDs, one a line (blank lines and lines starting with '#' ignored), NFC."""
    out = []
    for line in Path(path).read_text(encoding="utf-8-sig").splitlines():
        line = _nfc(line.strip())
        if line and not line.startswith("#") and line not in out:
            out.append(line)
    if not out:
        raise ValueError(f"{path}: the roster is empty (one student ID a line).")
    return out


def collect_submissions(folder, roster=None) -> tuple[list[Submission], list[tuple[str, str]]]:
    """Who handed in what: ([one Submission per student], [(path, why it is skipped)]).

    A notebook ``<student>.ipynb``, a zip ``<student>.zip`` or a folder ``<student>/`` (the
    notebooks in it, in zips in it too) belongs to that student; names are Unicode NFC, a
    leading '.' is dropped with a warning. When a student handed in more than one notebook
    the newest (modification time; for a zip member, its date in the zip) is graded and
    the row says which were not. Symbolic links are refused, never followed. Other files
    and ``__MACOSX/``, ``.DS_Store`` and the like are skipped and listed. With ``roster``
    (a list of IDs), every roster student gets a row ('no submission' where missing) and a
    student not on it is flagged.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder; give the folder holding the submitted notebooks.")
    candidates: dict[str, list] = {}
    others: dict[str, list] = {}
    warnings: dict[str, list] = {}
    skipped = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        name = entry.name  # as on disk; the student's name is its NFC form
        if _is_junk(name):
            skipped.append((name, "system file, not a submission"))
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        stem = _nfc(name if is_dir else (name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name))
        low = name.lower()
        if not (is_dir or entry.is_symlink() or low.endswith(".ipynb") or low.endswith(".zip")):
            skipped.append((name, "not a notebook" if entry.is_file(follow_symlinks=False) else "not a regular file"))
            others.setdefault(_student_name(stem, []), []).append(name)
            continue
        w = []
        student = _student_name(stem, w)
        warnings.setdefault(student, []).extend(w)
        cands = candidates.setdefault(student, [])
        if entry.is_symlink():
            cands.append((name, 0.0, None, "refused: a symbolic link (links are never followed)"))
        elif is_dir:
            f, o = _folder_candidates(Path(entry.path), folder)
            if not f and not o:
                cands.append((name + "/", 0.0, None, "the folder is empty: nothing handed in"))
            elif not f:
                cands.append((name + "/", 0.0, None, "no notebook in the folder"))
            cands += f
            others.setdefault(student, []).extend(o)
        elif low.endswith(".zip"):
            f, o = _zip_candidates(Path(entry.path), name)
            if not f:
                cands.append((name, 0.0, None, "refused: the zip holds no notebook"))
            cands += f
            others.setdefault(student, []).extend(o)
        else:
            cands.append((name, entry.stat(follow_symlinks=False).st_mtime,
                          lambda p=Path(entry.path): _read_regular(p), ""))
    subs = {}
    for student, cands in candidates.items():
        sub = Submission(student, warnings=list(warnings.get(student, [])))
        usable = [c for c in cands if c[2] is not None]
        if usable:
            label, _, load, _ = max(usable, key=lambda c: (c[1], c[0]))
            sub.file, sub.load = label, load
            rest = [c for c in cands if c[0] != label]
            if rest:
                def why(c, label=label):
                    notes = [c[3]] if c[3] else []
                    if _nfc(c[0]) == _nfc(label):
                        notes.append("the same name in another Unicode form")
                    return c[0] + (f" ({'; '.join(notes)})" if notes else "")

                sub.warnings.append(f"{len(rest) + 1} notebooks handed in: graded {label} (the newest); "
                                    "not graded: " + ", ".join(why(c) for c in rest))
        else:
            sub.file = cands[0][0]
            sub.refused = "; ".join(dict.fromkeys(c[3] for c in cands))
        if others.get(student):
            sub.warnings.append("also handed in, not graded: " + ", ".join(others[student]))
        subs[student] = sub
    if roster is None:
        out = [subs[s] for s in sorted(subs)]
        if not out and not skipped:
            raise ValueError(f"{folder}: no submissions in it (expected <student>.ipynb files).")
        return out, skipped
    out = []
    for student in roster:
        out.append(subs.pop(student, None) or Submission(student, refused="no submission"))
    for student in sorted(subs):
        subs[student].warnings.append("not on the roster")
        out.append(subs[student])
    return out, skipped


def resolve_autograder(autograder, dist="dist") -> Path:
    """An autograder zip from a path, or from a notebook name looked up in ``dist/autograder``."""
    p = Path(autograder)
    if p.suffix == ".zip" and p.is_file():
        return p
    candidate = Path(dist) / "autograder" / f"{Path(autograder).stem}.zip"
    if candidate.is_file():
        return candidate
    raise ValueError(
        f"no autograder {autograder!r}: give a zip file or a notebook name after running "
        f"'python -m course_lib.grading assign' (looked for {candidate})."
    )


def _feedback(grade: Grade) -> str:
    lines = [f"# Feedback for {grade.student}", "",
             f"Total: {grade.total:g} / {sum(grade.possible.values()):g} points", ""]
    if grade.reason:
        lines += [f"Note: {grade.reason}", ""]
    for q, pts in grade.possible.items():
        lines.append(f"- {q}: {grade.points[q]:g} / {pts:g}")
        fails = grade.failures.get(q, [])
        for f in fails:
            if not f["hidden"] and f["message"]:
                lines.append("    " + f["message"])
        hidden = sum(f["hidden"] for f in fails)
        if hidden:
            lines.append(f"    {hidden} hidden test(s) failed.")
    return "\n".join(lines) + "\n"


def _csv_cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with = + - @ (or a tab or
    carriage return) would be run as a formula, so it gets a leading apostrophe."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _write_atomically(path: Path, text: str) -> None:
    """Write ``path`` so that a reader (or a crash) sees the old file or the new one, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _csv_text(rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    for row in rows:
        w.writerow([_csv_cell(v) for v in row])
    return buf.getvalue()


def _feedback_names(students: list[str]) -> dict[str, str]:
    """A safe, distinct file name for each student's feedback."""
    out, used = {}, set()
    for s in students:
        base = re.sub(r"[^\w.-]+", "_", s).strip("._") or "student"
        name, k = base, 1
        while name.lower() in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name.lower())
        out[s] = name + ".md"
    return out


def grade_folder(folder, autograder_zip, out_dir, *, cell_timeout=300, timeout=1800, jobs=1, roster=None,
                 unsafe=False, limits=None, on_grade=None) -> list[Grade]:
    """Grade every submission in ``folder``; write ``grades.csv``, ``feedback/<student>.md``
    and ``skipped.csv`` into ``out_dir``.

    CSV columns: student, one per exercise (points), total, possible, reason, file. The CSV
    is rewritten (atomically) after every graded submission, so stopping the run keeps the
    rows done so far; one submission's failure is its own row's reason. Refuses to run
    without a working sandbox unless ``unsafe`` (notebooks you trust only). ``roster``: a
    roster file or a list of IDs. ``on_grade(grade)`` is called as each one finishes.
    """
    from . import sandbox

    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs must be a whole number >= 1, got {jobs!r}.")
    autograder = load_autograder(autograder_zip)
    if isinstance(roster, (str, Path)):
        roster = read_roster(roster)
    subs, skipped = collect_submissions(folder, roster)
    out_dir = Path(out_dir)
    limits = limits or sandbox.Limits(cell_timeout=cell_timeout, timeout=timeout)
    limits.check()
    if not unsafe:
        ok, why = sandbox.available()
        if not ok:
            raise ValueError(
                f"no sandbox: {why}. Grading runs every submission sealed off with bubblewrap "
                "(docs/instructors.md); install it, or pass --unsafe (unsafe=True) to grade "
                "submissions you trust without one.")
        sandbox.check_private([folder, autograder.path, out_dir, NOTEBOOKS_DIR])
    (out_dir / "feedback").mkdir(parents=True, exist_ok=True)
    possible = autograder.possible
    header = ["student", *possible, "total", "possible", "reason", "file"]
    names = _feedback_names([s.student for s in subs])
    grades: list[Grade | None] = [None] * len(subs)

    def one(sub: Submission) -> Grade:
        if sub.refused:
            grade = Grade(sub.student, {q: 0 for q in possible}, possible, reason=sub.refused, file=sub.file)
        else:
            try:
                grade = grade_submission(sub.file, autograder, student=sub.student, limits=limits,
                                         unsafe=unsafe, data=sub.load())
            except ValueError as exc:  # unreadable file
                grade = Grade(sub.student, {q: 0 for q in possible}, possible, reason=str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug of ours must not cost the others their rows
                grade = Grade(sub.student, {q: 0 for q in possible}, possible,
                              reason=f"not graded: internal error ({type(exc).__name__}: {str(exc)[:200]})")
        grade.file = sub.file
        grade.reason = "; ".join(r for r in [grade.reason, *sub.warnings] if r)
        return grade

    def write_csv() -> None:
        rows = [header] + [
            [g.student, *(f"{g.points[q]:g}" for q in possible), f"{g.total:g}",
             f"{sum(possible.values()):g}", g.reason, g.file]
            for g in grades if g is not None]
        _write_atomically(out_dir / "grades.csv", _csv_text(rows))

    _write_atomically(out_dir / "skipped.csv", _csv_text([["path", "why"], *skipped]))
    write_csv()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one, sub): i for i, sub in enumerate(subs)}
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            grades[i] = future.result()
            _write_atomically(out_dir / "feedback" / names[subs[i].student], _feedback(grades[i]))
            write_csv()
            if on_grade is not None:
                on_grade(grades[i])
    return grades


# --------------------------------------------------------------------------- selfcheck


def selfcheck(notebooks=None, *, dist=None, cell_timeout=600, timeout=1800) -> tuple[list[dict], bool]:
    """Assign each master, grade it (must be full marks) and its untouched student version
    (must be zero on every exercise, without a grading failure, and run without an error
    up to its first exercise). Returns (rows, all_ok)."""
    from . import sandbox

    rows, ok = [], True
    sealed, why = sandbox.available()
    if not sealed:  # the masters and their student versions are the instructor's own notebooks
        print(f"selfcheck: no sandbox ({why}); grading the course's own notebooks without one", flush=True)
    with tempfile.TemporaryDirectory(prefix="selfcheck-") as tmp:
        out = Path(dist) if dist else Path(tmp)
        for master in master_notebooks(notebooks):
            start, cpu_start = time.monotonic(), _own_cpu()
            row = {"notebook": master.stem, "exercises": "", "points": "", "master": "", "student": "", "ok": False}
            sandbox_cpu = 0.0
            try:
                done = assign(master, out)
                autograder = load_autograder(done.autograder)
                full = grade_submission(done.autograder_notebook, autograder, student="master",
                                        cell_timeout=cell_timeout, timeout=timeout, unsafe=not sealed)
                blank = grade_submission(done.student, autograder, student="student",
                                         cell_timeout=cell_timeout, timeout=timeout, unsafe=not sealed)
                sandbox_cpu = full.cpu_seconds + blank.cpu_seconds
                possible = sum(full.possible.values())
                row.update(exercises=len(full.possible), points=f"{possible:g}",
                           master=f"{full.total:g}", student=f"{blank.total:g}")
                problems = []
                if any(full.points[q] != p for q, p in full.possible.items()):
                    problems.append(f"master not full marks ({full.reason or 'tests failed'})")
                if any(v != 0 for v in blank.points.values()):
                    problems.append("untouched student version scored points")
                if blank.errors_before_first_exercise:
                    problems.append(f"student version: {blank.errors_before_first_exercise} cell(s) "
                                    "failed before the first exercise")
                if not (full.complete and blank.complete):
                    problems.append(f"grading incomplete: master: {full.reason}; student: {blank.reason}")
                row["ok"] = not problems
                row["problem"] = "; ".join(problems)
            except (ValueError, RuntimeError) as exc:
                row["problem"] = str(exc)
            row["seconds"] = round(time.monotonic() - start, 1)
            row["cpu_s"] = round(_own_cpu() - cpu_start + sandbox_cpu, 1)
            ok &= row["ok"]
            rows.append(row)
            print(_table([row], header=len(rows) == 1), flush=True)
    return rows, ok


def _own_cpu() -> float:
    """User + system CPU seconds of this process and its finished children (0 where
    unsupported); the notebooks' own time in a sandbox is added from what they report."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _table(rows, header=True) -> str:
    cols = ["notebook", "exercises", "points", "master", "student", "seconds", "cpu_s", "ok", "problem"]
    widths = [32, 9, 6, 6, 7, 7, 7, 3, 0]
    lines = []
    if header:
        lines.append(" ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    for r in rows:
        vals = [str(r.get(c, "")) if c != "ok" else ("yes" if r["ok"] else "NO") for c in cols]
        lines.append(" ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    """Command line: check, assign, grade, selfcheck (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m course_lib.grading", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="check the exercise format and points of master notebooks")
    p.add_argument("notebooks", nargs="*")
    p = sub.add_parser("assign", help="student versions and autograder zips into dist/")
    p.add_argument("notebooks", nargs="*")
    p.add_argument("--out", default="dist")
    p = sub.add_parser("grade", help="grade a folder of submissions into a CSV and feedback files")
    p.add_argument("submissions")
    p.add_argument("--autograder", required=True, help="autograder zip, or a notebook name in DIST/autograder")
    p.add_argument("--dist", default="dist")
    p.add_argument("--out", default=None, help="default: DIST/grades/<notebook>")
    p.add_argument("--roster", default=None, help="file of student IDs, one a line: a row for each")
    p.add_argument("--cell-timeout", type=int, default=300, help="seconds per cell and per call of an answer")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per submission")
    p.add_argument("--memory", type=float, default=4, help="GiB of memory per process of a submission")
    p.add_argument("--cpu-time", type=int, default=None, help="CPU seconds per process (default: 2 x timeout)")
    p.add_argument("--processes", type=int, default=None,
                   help="processes and threads per submission (default: 256, or 4 per core if more)")
    p.add_argument("--max-output", type=float, default=10, help="MB a submission may print")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--unsafe", action="store_true",
                   help="grade without the sandbox (no bubblewrap): only for submissions you trust")
    p = sub.add_parser("selfcheck", help="masters get full marks, untouched student versions zero")
    p.add_argument("notebooks", nargs="*")
    p.add_argument("--cell-timeout", type=int, default=600)
    args = ap.parse_args(argv)

    try:
        if args.command == "check":
            bad = 0
            for nb in master_notebooks(args.notebooks):
                try:
                    exs = check_master(nb)
                    print(f"ok   {nb.name}: {len(exs)} exercises, {sum(e.points for e in exs)} points, "
                          f"{sum(t.hidden for e in exs for t in e.tests)} hidden tests")
                except ValueError as exc:
                    bad += 1
                    print(f"FAIL {exc}")
            return 1 if bad else 0
        if args.command == "assign":
            for nb in master_notebooks(args.notebooks):
                done = assign(nb, args.out)
                print(f"{nb.name}: {done.student}  {done.autograder}")
            return 0
        if args.command == "grade":
            zip_path = resolve_autograder(args.autograder, args.dist)
            out = Path(args.out or Path(args.dist) / "grades" / zip_path.stem)
            from .sandbox import MiB, GiB, Limits

            limits = Limits(cell_timeout=args.cell_timeout, timeout=args.timeout, memory=int(args.memory * GiB),
                            cpu=args.cpu_time, output=int(args.max_output * MiB))
            if args.processes is not None:
                limits.processes = args.processes
            if args.unsafe:
                print("grade --unsafe: no sandbox; each submission runs with your permissions", flush=True)

            def show(g):
                print(f"{g.student:24s} {g.total:6g} / {sum(g.possible.values()):g}  {g.seconds:6.1f} s  {g.reason}",
                      flush=True)

            grade_folder(args.submissions, zip_path, out, jobs=args.jobs, roster=args.roster,
                         unsafe=args.unsafe, limits=limits, on_grade=show)
            with open(out / "skipped.csv", newline="", encoding="utf-8") as f:
                for path, why in list(csv.reader(f))[1:]:
                    print(f"skipped: {path} ({why})")
            print(f"wrote {out / 'grades.csv'}, {out / 'skipped.csv'} and {out / 'feedback'}/")
            return 0
        if args.command == "selfcheck":
            _, ok = selfcheck(args.notebooks, cell_timeout=args.cell_timeout)
            print("selfcheck:", "all notebooks OK" if ok else "MISMATCH (see the table)")
            return 0 if ok else 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
