"""Student versions and autograding of the course notebooks, with Otter-Grader.

The notebooks in ``notebooks/`` are the instructor masters: every exercise's solution
and tests sit in them in Otter-Grader's notebook format (CONTRIBUTING.md, "Exercises").
Otter does the real work -- ``otter assign`` strips solutions and hidden tests and builds
the autograder zip, ``otter run`` executes a submission and runs the tests. This module
is only the glue around it, one command per job::

    python -m course_lib.grading check     [NOTEBOOK ...]   # exercise format and points (seconds)
    python -m course_lib.grading assign    [NOTEBOOK ...]   # dist/student/*.ipynb, dist/autograder/*.zip
    python -m course_lib.grading grade SUBMISSIONS --autograder 01_image_classification_basics
    python -m course_lib.grading selfcheck [NOTEBOOK ...]   # masters get full marks, student versions zero

Without NOTEBOOK arguments a command takes every ``notebooks/[0-9]*.ipynb``.

Grading isolation. Each submission is graded in its own worker process (its own Jupyter
kernel), so a crash, an endless loop, ``sys.exit`` or a dead kernel only costs that
submission. Every cell has a time limit (the kernel is interrupted and the run goes on),
the whole submission has another (the process tree is killed). Network access is refused
by a ``sitecustomize`` module put first on the worker's and the kernel's ``PYTHONPATH``:
it lets sockets connect to loopback addresses only (the kernel talks to its client over
loopback) and refuses every other address with an ``OSError``. That stops accidental
downloads; it is not a sandbox against a hostile student (Python code can undo it). For
untrusted submissions run the whole command with no network at all, e.g.
``unshare -rn sh -c 'ip link set lo up && python -m course_lib.grading grade ...'``.

Used by the instructors (README, "For instructors"), by ``tests/test_grading.py`` and by CI.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import csv
import dataclasses
import json
import os
import re
import shutil
import subprocess
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

NETWORK_GUARD = '''\
"""Installed by course_lib.grading while grading: sockets may reach loopback only."""
import errno as _errno, ipaddress as _ip, socket as _socket

def _loopback(host):
    if host in (None, "", "localhost", "localhost.localdomain"):
        return True
    try:
        return _ip.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False

def _refuse(what):
    raise OSError(_errno.ENETUNREACH, f"network access is disabled while grading ({what})")

def _wrap(name):
    original = getattr(_socket.socket, name)
    def guarded(self, address, *args):
        target = args[-1] if name == "sendto" and args else address
        if self.family in (_socket.AF_INET, _socket.AF_INET6) and not _loopback(target[0]):
            _refuse(f"{name} {target[0]}")
        return original(self, address, *args)
    setattr(_socket.socket, name, guarded)

for _name in ("connect", "connect_ex", "sendto"):
    _wrap(_name)

_getaddrinfo = _socket.getaddrinfo
def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _loopback(host):
        _refuse(f"name lookup {host}")
    return _getaddrinfo(host, *args, **kwargs)
_socket.getaddrinfo = _guarded_getaddrinfo
'''


def exercise_points(autograder_zip) -> dict[str, float]:
    """{exercise name: points possible}, in order, read from an autograder zip's tests."""
    from otter.test_files.exception_test import ExceptionTestFile

    out = {}
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(autograder_zip) as zf:
        names = sorted(n for n in zf.namelist() if re.fullmatch(r"tests/[^/]+\.py", n))
        zf.extractall(tmp, members=names)
        for n in names:
            tf = ExceptionTestFile.from_file(os.path.join(tmp, n))
            out[tf.name] = tf.possible
    order = lambda name: (int(m.group(1)) if (m := re.match(r"q(\d+)_", name)) else 10**6, name)  # noqa: E731
    return {k: out[k] for k in sorted(out, key=order)}


def _worker(autograder_zip: str, submission: str, result_json: str, cell_timeout: int) -> None:
    """Grade one submission in this process (run by :func:`grade_submission` as a child)."""
    result = {"questions": {}, "error": None, "cell_errors": 0, "cell_timeouts": 0, "errors_before_first_exercise": 0}
    try:
        nb = read_notebook(submission)
        nbformat.validate(nb)
    except Exception as exc:  # not a notebook: no kernel, a row with the reason
        result["error"] = f"not a notebook: {str(exc).replace(str(submission), Path(submission).name).splitlines()[0][:300]}"
        Path(result_json).write_text(json.dumps(result))
        return
    import nbconvert.preprocessors as pre

    class LimitedExecutor(pre.ExecutePreprocessor):
        """Otter's executor with a per-cell limit: interrupt the kernel and carry on."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.timeout = cell_timeout
            self.interrupt_on_timeout = True

    pre.ExecutePreprocessor = LimitedExecutor  # otter.execute imports it at call time

    from otter.api import grade_submission as otter_grade

    with tempfile.TemporaryDirectory(prefix="submission-") as tmp:
        sub = Path(tmp) / (Path(submission).stem + ".ipynb")
        nbformat.write(nb, str(sub))
        try:
            res = otter_grade(str(sub), autograder_zip, quiet=True)
        except Exception as exc:
            last = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ""
            result["error"] = f"{type(exc).__name__}: {last}"
            if type(exc).__name__ == "DeadKernelError":
                result["error"] = ("the kernel died (the notebook called os._exit, crashed Python "
                                   "or ran out of memory), so nothing could be graded")
            Path(result_json).write_text(json.dumps(result))
            return
    if res.catastrophic_error is not None:
        result["error"] = f"grading failed: {str(res.catastrophic_error)[:300]}"
    for name, tf in res.results.items():
        failures = [
            {"hidden": bool(r.test_case.hidden), "message": "" if r.test_case.hidden else r.message}
            for r in tf.test_case_results
            if not r.passed
        ]
        result["questions"][name] = {"score": tf.score, "possible": tf.possible, "failures": failures}
    cells = res.notebook.cells if getattr(res, "notebook", None) else []
    checks = [i for i, c in enumerate(cells) if _source(c).startswith("grader.check(")]
    first_answer = max((i for i in range(checks[0]) if cells[i].cell_type == "code"), default=0) if checks else 0
    for i, cell in enumerate(cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                result["cell_errors"] += 1
                result["cell_timeouts"] += out.get("ename") == "KeyboardInterrupt"
                result["errors_before_first_exercise"] += i < first_answer
    Path(result_json).write_text(json.dumps(result))


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill a worker and everything it started (the kernel runs in its own session)."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for p in children + [proc]:
        with contextlib.suppress(Exception):
            p.kill()
    proc.wait()


@dataclasses.dataclass
class Grade:
    """One submission's grade: points per exercise, total, and why points are missing."""

    student: str
    points: dict[str, float]
    possible: dict[str, float]
    reason: str = ""
    failures: dict[str, list] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    complete: bool = False  # Otter ran the notebook and every test file
    errors_before_first_exercise: int = 0  # cells that failed before the first answer cell

    @property
    def total(self) -> float:
        return sum(self.points.values())


def grade_submission(submission, autograder_zip, *, student=None, cell_timeout=300, timeout=1800) -> Grade:
    """Grade one submitted file with Otter in a separate, network-guarded process.

    Never raises for a bad submission: a file that is not a notebook, a notebook that
    crashes, loops past ``timeout`` seconds in total, exits or kills its kernel gets
    zero for what could not be checked and a ``reason``. A cell running longer than
    ``cell_timeout`` seconds is interrupted and the run goes on.
    """
    submission, autograder_zip = Path(submission), Path(autograder_zip)
    possible = exercise_points(autograder_zip)
    grade = Grade(student or submission.stem, {q: 0 for q in possible}, possible)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        guard = Path(tmp) / "guard"
        guard.mkdir()
        (guard / "sitecustomize.py").write_text(NETWORK_GUARD)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(guard), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.setdefault("MPLBACKEND", "Agg")
        result_json = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "course_lib.grading", "_worker", str(autograder_zip.resolve()),
               str(submission.resolve()), str(result_json), "--cell-timeout", str(cell_timeout)]
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            grade.reason = f"stopped: grading took longer than the {timeout} s limit for one submission"
            grade.seconds = time.monotonic() - start
            return grade
        grade.seconds = time.monotonic() - start
        if not result_json.is_file():
            tail = " | ".join(line for line in (log or "").strip().splitlines()[-3:])
            grade.reason = f"grading crashed (exit code {proc.returncode}): {tail[-300:]}"
            return grade
        result = json.loads(result_json.read_text())
    notes = []
    if result["error"]:
        notes.append(result["error"])
    grade.complete = not result["error"] and set(result["questions"]) == set(possible)
    grade.errors_before_first_exercise = result["errors_before_first_exercise"]
    for q, r in result["questions"].items():
        if q in grade.points:
            grade.points[q] = r["score"]
            grade.failures[q] = r["failures"]
    if result["cell_timeouts"]:
        notes.append(f"{result['cell_timeouts']} cell(s) interrupted at the {cell_timeout} s cell limit")
    if result["cell_errors"] - result["cell_timeouts"] > 0:
        notes.append(f"{result['cell_errors'] - result['cell_timeouts']} cell(s) raised an error")
    grade.reason = "; ".join(notes)
    return grade


def submissions_in(folder) -> list[tuple[str, Path]]:
    """(student, file) pairs in a submissions folder.

    A file directly in the folder is one student's submission (student = file name
    without extension), whatever its type; a sub-folder is one student (the folder's
    name) and must hold one ``.ipynb`` (else its first file is graded, and fails).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder; give the folder holding the submitted notebooks.")
    out = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = sorted(entry.glob("*.ipynb")) or sorted(p for p in entry.iterdir() if p.is_file())
            if files:
                out.append((entry.name, files[0]))
        else:
            out.append((entry.stem, entry))
    if not out:
        raise ValueError(f"{folder}: no submissions in it (expected <student>.ipynb files).")
    return out


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
                msg = f["message"].strip().splitlines()
                lines.append("    " + " | ".join(m.strip() for m in msg[-3:])[:400])
        hidden = sum(f["hidden"] for f in fails)
        if hidden:
            lines.append(f"    {hidden} hidden test(s) failed.")
    return "\n".join(lines) + "\n"


def grade_folder(folder, autograder_zip, out_dir, *, cell_timeout=300, timeout=1800, jobs=1) -> list[Grade]:
    """Grade every submission in ``folder``; write ``grades.csv`` and ``feedback/<student>.md``.

    CSV columns: student, one per exercise (points), total, possible, reason.
    """
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs must be a whole number >= 1, got {jobs!r}.")
    autograder_zip = Path(autograder_zip)
    subs = submissions_in(folder)
    possible = exercise_points(autograder_zip)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(grade_submission, path, autograder_zip, student=student,
                               cell_timeout=cell_timeout, timeout=timeout) for student, path in subs]
        grades = [f.result() for f in futures]
    out_dir = Path(out_dir)
    (out_dir / "feedback").mkdir(parents=True, exist_ok=True)
    with open(out_dir / "grades.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", *possible, "total", "possible", "reason"])
        for g in grades:
            w.writerow([g.student, *(f"{g.points[q]:g}" for q in possible), f"{g.total:g}",
                        f"{sum(possible.values()):g}", g.reason])
    for g in grades:
        (out_dir / "feedback" / f"{g.student}.md").write_text(_feedback(g), encoding="utf-8")
    return grades


# --------------------------------------------------------------------------- selfcheck


def selfcheck(notebooks=None, *, dist=None, cell_timeout=600, timeout=1800) -> tuple[list[dict], bool]:
    """Assign each master, grade it (must be full marks) and its untouched student version
    (must be zero on every exercise, without a grading failure, and run without an error
    up to its first exercise). Returns (rows, all_ok)."""
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="selfcheck-") as tmp:
        out = Path(dist) if dist else Path(tmp)
        for master in master_notebooks(notebooks):
            start, cpu_start = time.monotonic(), _children_cpu()
            row = {"notebook": master.stem, "exercises": "", "points": "", "master": "", "student": "", "ok": False}
            try:
                done = assign(master, out)
                full = grade_submission(done.autograder_notebook, done.autograder, student="master",
                                        cell_timeout=cell_timeout, timeout=timeout)
                blank = grade_submission(done.student, done.autograder, student="student",
                                         cell_timeout=cell_timeout, timeout=timeout)
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
            row["cpu_s"] = round(_children_cpu() - cpu_start, 1)
            ok &= row["ok"]
            rows.append(row)
            print(_table([row], header=len(rows) == 1), flush=True)
    return rows, ok


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (0 where unsupported)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
    p.add_argument("--cell-timeout", type=int, default=300)
    p.add_argument("--timeout", type=int, default=1800, help="seconds per submission")
    p.add_argument("--jobs", type=int, default=1)
    p = sub.add_parser("selfcheck", help="masters get full marks, untouched student versions zero")
    p.add_argument("notebooks", nargs="*")
    p.add_argument("--cell-timeout", type=int, default=600)
    p = sub.add_parser("_worker")
    p.add_argument("autograder")
    p.add_argument("submission")
    p.add_argument("result_json")
    p.add_argument("--cell-timeout", type=int, default=300)
    args = ap.parse_args(argv)

    try:
        if args.command == "_worker":
            _worker(args.autograder, args.submission, args.result_json, args.cell_timeout)
            return 0
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
            grades = grade_folder(args.submissions, zip_path, out, cell_timeout=args.cell_timeout,
                                  timeout=args.timeout, jobs=args.jobs)
            for g in grades:
                print(f"{g.student:24s} {g.total:6g} / {sum(g.possible.values()):g}  {g.seconds:6.1f} s  {g.reason}")
            print(f"wrote {out / 'grades.csv'} and {out / 'feedback'}/")
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
