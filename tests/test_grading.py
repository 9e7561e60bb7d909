"""Tests of course_lib.grading: student versions and autograding with Otter-Grader.

The fixture master (tests/fixtures/grading/grading_fixture.ipynb, NumPy only) keeps these
tests fast; grading a folder of (misbehaving, hostile) submissions built from it is
tests/test_grading_sandbox.py. The real notebooks get the cheap checks here (format,
points, student version without solutions or hidden tests, the master's code up to the
first exercise);
grading every real master and student version in full, which also shows that the student
version runs up to its first exercise, is `python -m course_lib.grading selfcheck`
(minutes per notebook).
"""

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from course_lib import grading

FIXTURES = Path(__file__).parent / "fixtures" / "grading"
MASTER = FIXTURES / "grading_fixture.ipynb"
SUBMISSIONS = FIXTURES / "submissions"
NOTEBOOKS = sorted(grading.NOTEBOOKS_DIR.glob("[0-9]*.ipynb"))

CELL_TIMEOUT = 30  # seconds per cell for the selfcheck of the fixture: generous on a loaded machine


@pytest.fixture(scope="module")
def fixture_dist(tmp_path_factory):
    return grading.assign(MASTER, tmp_path_factory.mktemp("dist"))


def code_of(path):
    nb = nbformat.read(str(path), as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


# ----------------------------------------------------------------- the master's format


def test_fixture_master_exercises():
    exercises = grading.check_master(MASTER)
    assert [e.name for e in exercises] == ["q1_standardize", "q2_threshold", "q3_iou"]
    assert [e.points for e in exercises] == [3, 1, 2]
    assert [[t.hidden for t in e.tests] for e in exercises] == [[False, True], [False], [False, True]]
    assert "inter = iw * ih" in exercises[2].solution_lines
    assert exercises[1].solution_lines == ["threshold = 0.2 * x.max()"]


def test_solution_lines_reads_both_markers():
    code = "def f(x):\n    # BEGIN SOLUTION\n    y = 2 * x\n    # a comment\n    # END SOLUTION\n    return y\nz = 3  # SOLUTION\n"
    assert grading.solution_lines(code) == ["y = 2 * x", "z = 3"]


def _edited_master(tmp_path, edit):
    nb = nbformat.read(str(MASTER), as_version=4)
    edit(nb)
    path = tmp_path / "edited.ipynb"
    nbformat.write(nb, str(path))
    return path


def _drop_last_question(nb):
    begin = max(i for i, c in enumerate(nb.cells) if c.source.startswith("# BEGIN QUESTION"))
    end = max(i for i, c in enumerate(nb.cells) if c.source.startswith("# END QUESTION"))
    del nb.cells[begin:end + 1]


def _cells(nb, text):
    return [c for c in nb.cells if text in c.source]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda nb: setattr(nb, "cells", nb.cells[1:]), "ASSIGNMENT CONFIG"),
        (lambda nb: _drop_last_question(nb), "2 exercise(s) found, at least 3"),
        (lambda nb: _cells(nb, "name: q1_standardize")[0].update(source="# BEGIN QUESTION\nname: q1_standardize\npoints: 4"),
         "add up to 3 but the question is worth 4"),
        (lambda nb: _cells(nb, "name: q2_threshold")[0].update(source="# BEGIN QUESTION\nname: q2_threshold\npoints: 1.5"),
         "positive whole number"),
        (lambda nb: _cells(nb, "name: q3_iou")[0].update(source="# BEGIN QUESTION\nname: q9_iou\npoints: 2"),
         "must be named 'q3_"),
        (lambda nb: _cells(nb, "def test_threshold")[0].update(
            source='""" # BEGIN TEST CONFIG\nhidden: true\n""" # END TEST CONFIG\n' + _cells(nb, "def test_threshold")[0].source),
         "every test is hidden"),
        (lambda nb: _cells(nb, "# SOLUTION")[0].update(source="threshold = 0.2 * x.max()"), "no solution lines"),
    ],
    ids=["no-config", "two-exercises", "points-mismatch", "fractional-points", "misnamed", "all-hidden", "no-solution"],
)
def test_check_master_rejects_bad_format(tmp_path, edit, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        grading.check_master(_edited_master(tmp_path, edit))


def test_check_master_rejects_a_non_notebook(tmp_path):
    bad = tmp_path / "notes.ipynb"
    bad.write_text("not json")
    with pytest.raises(ValueError, match="not a Jupyter notebook"):
        grading.check_master(bad)
    with pytest.raises(ValueError, match="no such notebook"):
        grading.check_master(tmp_path / "missing.ipynb")


def test_cli_check_exit_codes(tmp_path, capsys):
    assert grading.main(["check", str(MASTER)]) == 0
    assert "3 exercises, 6 points, 2 hidden tests" in capsys.readouterr().out
    bad = _edited_master(tmp_path, lambda nb: _cells(nb, "# SOLUTION")[0].update(source="threshold = 1"))
    assert grading.main(["check", str(bad)]) == 1
    assert grading.main(["check", str(tmp_path / "nope.txt")]) == 2


# ----------------------------------------------------------------- the student version


def test_student_version_has_no_solutions_and_no_hidden_tests(fixture_dist):
    student_code = code_of(fixture_dist.student)
    solutions = [line for e in grading.parse_exercises(MASTER) for line in e.solution_lines]
    assert len(solutions) == 7
    for line in solutions:
        assert line not in student_code, f"solution line leaked: {line}"
    assert "# BEGIN SOLUTION" not in student_code and "# SOLUTION" not in student_code
    assert grading.leaked_lines(MASTER, fixture_dist.student) == []
    text = fixture_dist.student.read_text()
    assert "test_standardize_values" not in text and "test_iou_half" not in text  # hidden
    assert "test_standardize_shape" in text and "test_iou_identical" in text  # public, for grader.check
    checks = re.findall(r'^grader\.check\("(q\w+)"\)', student_code, re.M)
    assert checks == ["q1_standardize", "q2_threshold", "q3_iou"]
    readme = (fixture_dist.student.parent / "README.md").read_text()
    assert "pip install -r requirements.txt" in readme and "Otter-Grader" in readme and "grading_fixture.ipynb" in readme
    assert "reference implementation" in readme  # what happens to an exercise left as ...


def test_leak_detector_finds_a_leak(fixture_dist):
    # The master itself as a "student version": every solution line leaks.
    assert "inter = iw * ih" in grading.leaked_lines(MASTER, fixture_dist.autograder_notebook)
    assert grading.hidden_tests_in(MASTER, MASTER) == ["test_standardize_values", "test_iou_half"]


def _execute(path, workdir, upto=None):
    """Execute a notebook's code cells [0, upto) in ``workdir``; return the executed cells."""
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    cells = nb.cells if upto is None else nb.cells[:upto]
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    with client.setup_kernel():
        for i, cell in enumerate(cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, i)
    return cells


def test_student_can_check_answers_in_a_renamed_copy(tmp_path):
    # A student's filled-in copy, renamed: grader.check runs the public tests and passes.
    copy = tmp_path / "s1234567.ipynb"
    shutil.copy(SUBMISSIONS / "full_marks.ipynb", copy)
    cells = _execute(copy, tmp_path)
    checks = [c for c in cells if c.source.startswith("grader.check(")]
    assert len(checks) == 3
    for c in checks:
        assert not any(o.get("output_type") == "error" for o in c.outputs), c.outputs
        shown = json.dumps([o.get("data", {}).get("text/plain", "") for o in c.outputs])
        assert "passed" in shown, shown


# ----------------------------------------------------------------- grading
# Grading a folder (the sandbox, the hostile submissions, the CSV) is tests/test_grading_sandbox.py.


# ----------------------------------------------------------------- the real notebooks


def _first_answer_cell(nb):
    """Index of the first exercise's answer cell: the code cell before the first check."""
    first_check = next(i for i, c in enumerate(nb.cells) if c.source.startswith("grader.check("))
    return max(i for i in range(first_check) if nb.cells[i].cell_type == "code")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_real_notebook_exercises(notebook):
    exercises = grading.check_master(notebook)  # >= 3, q1_..., whole points, a public test each
    assert len(exercises) >= grading.MIN_EXERCISES
    assert all(e.points > 0 and any(not t.hidden for t in e.tests) for e in exercises if not e.manual)
    # a written exercise (manual: true) has no tests and a model answer in markdown
    assert all(not e.tests and any(text.strip() for text in e.written_solution) for e in exercises if e.manual)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_real_student_version(notebook, tmp_path):
    done = grading.assign(notebook, tmp_path / "dist")
    assert grading.leaked_lines(notebook, done.student) == []
    assert grading.hidden_tests_in(notebook, done.student) == []
    # Up to its first exercise the student version runs exactly the master's code, after
    # the init cell that sets up grader.check. (The committed copy in student/ is executed
    # whole, unanswered, by the README test command; tests/test_publish.py checks it equals
    # this generation.)
    student = nbformat.read(str(done.student), as_version=4)
    master = nbformat.read(str(notebook), as_version=4)
    first_question = next(i for i, c in enumerate(master.cells) if c.source.startswith("# BEGIN QUESTION"))
    before_master = [c.source for c in master.cells[:first_question] if c.cell_type == "code"]
    before_student = [c.source for c in student.cells[: _first_answer_cell(student)] if c.cell_type == "code"]
    assert "otter.Notebook(" in before_student[0] and "PUBLIC_TESTS" in before_student[0]
    assert before_student[1:] == before_master


def test_selfcheck_flags_a_master_whose_solution_fails(tmp_path, capsys):
    # (The passing case is the CI run of selfcheck on the real notebooks; the fixture's
    # master and untouched student version are graded in the folder test above.)
    wrong = _edited_master(tmp_path, lambda nb: _cells(nb, "# SOLUTION")[0].update(
        source="threshold = 0.3 * x.max()  # SOLUTION"))
    code = grading.main(["selfcheck", str(wrong), "--cell-timeout", str(CELL_TIMEOUT)])
    table = capsys.readouterr().out
    assert code == 1, table
    row = next(line for line in table.splitlines() if line.startswith("edited")).split()
    assert row[1:5] == ["3", "6", "5", "0"], row  # exercises, points, master, student
    assert row[7] == "NO" and "master not full marks" in " ".join(row), row
