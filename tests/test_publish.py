"""The paths a self-learner and an instructor take: Colab badges, the install cell, the
committed student versions, and re-pointing the course at a fork (course_lib.publish)."""

import re
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import nbformat
import pytest

from course_lib import grading, publish

ROOT = Path(__file__).resolve().parents[1]
MASTERS = grading.master_notebooks()
STUDENTS = sorted((ROOT / "student").glob("[0-9]*.ipynb"))
COLAB = re.compile(r"https://colab\.research\.google\.com/github/([^/\s)]+/[^/\s)]+)/blob/main/([^)\s]+)")


def _install_cell(path):
    nb = nbformat.read(str(path), as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Colab only"))


# ----------------------------------------------------------------- student versions


def test_every_master_has_a_committed_student_version():
    assert [p.name for p in STUDENTS] == [p.name for p in MASTERS]


def test_committed_student_versions_equal_a_fresh_generation():
    # `publish.stale` regenerates every student version with grading.assign (Otter Assign)
    # and compares it with the committed file, byte for byte; also the install cells.
    problems = publish.stale()
    assert not problems, "\n".join(problems)


def test_stale_student_version_gets_a_one_line_error_saying_what_to_do(tmp_path, monkeypatch):
    master = MASTERS[5]
    student = tmp_path / "student"
    student.mkdir()
    edited = nbformat.read(str(ROOT / "student" / master.name), as_version=4)
    edited.cells[3].source += "\n# an edit by hand"
    nbformat.write(edited, str(student / master.name))
    monkeypatch.setattr(publish, "STUDENT_DIR", student)
    problems = publish.stale([master])
    assert problems == [
        f"student/{master.name} is out of date with notebooks/{master.name}; "
        "run `python -m course_lib.publish` and commit the result"
    ]


# ----------------------------------------------------------------- badges and kernels


def test_every_notebook_has_a_python3_kernelspec():
    for path in MASTERS + STUDENTS:
        spec = nbformat.read(str(path), as_version=4).metadata.get("kernelspec", {})
        assert spec.get("name") == "python3" and spec.get("language") == "python", path.name


def test_every_badge_points_at_an_existing_notebook_of_the_repository():
    repo = publish.repository()
    texts = {"README.md": (ROOT / "README.md").read_text()}
    texts.update({str(p.relative_to(ROOT)): p.read_text() for p in MASTERS + STUDENTS})
    found = 0
    for where, text in texts.items():
        for owner_name, path in COLAB.findall(text):
            found += 1
            assert owner_name == repo, f"{where}: a badge points at {owner_name}, the repository is {repo}"
            assert (ROOT / path).is_file(), f"{where}: a badge points at {path}, which does not exist"
    assert found >= 3 * len(MASTERS)  # README: student + solutions; each master and student version: one


def test_readme_links_the_student_version_first_then_the_solutions():
    rows = [l for l in (ROOT / "README.md").read_text().splitlines() if re.match(r"\| [0-9+] \| \[", l)]
    assert len(rows) == len(MASTERS)
    for row, master in zip(rows, MASTERS):
        links = [m.group(0) for m in re.finditer(r"(student|notebooks)/\d\d_\w+\.ipynb", row)]
        assert links and all(l.endswith(master.name) for l in links), row
        first_notebooks = next(i for i, l in enumerate(links) if l.startswith("notebooks/"))
        assert first_notebooks >= 2 and all(l.startswith("student/") for l in links[:first_notebooks]), row


def test_each_notebook_badge_opens_the_student_version():
    repo = publish.repository()
    for path in MASTERS + STUDENTS:
        targets = [p for _, p in COLAB.findall(path.read_text())]
        assert targets == [f"student/{path.name}"], (path, targets)
        assert f"course-lib @ git+https://github.com/{repo}" in _install_cell(path)


# ----------------------------------------------------------------- the Colab install cell


@pytest.mark.parametrize("in_colab", [False, True])
def test_install_cell_installs_course_lib_only_when_google_colab_is_importable(in_colab, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a[0]))
    monkeypatch.setitem(sys.modules, "course_lib", None)  # as in a fresh Colab runtime: not installed
    if in_colab:
        google = types.ModuleType("google")
        google.__path__ = []
        monkeypatch.setitem(sys.modules, "google", google)
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.setitem(sys.modules, "google.colab", None)  # import fails, as outside Colab
    for path in (MASTERS[0], STUDENTS[0]):
        calls.clear()
        exec(compile(_install_cell(path), str(path), "exec"), {})
        if in_colab:
            assert len(calls) == 1 and calls[0][1:4] == ["-m", "pip", "install"]
            assert calls[0][-1] == f"course-lib @ git+https://github.com/{publish.repository()}"
        else:
            assert calls == []


def test_colab_install_mechanism_from_a_git_url_in_a_fresh_venv(tmp_path):
    # The install cell runs `pip install "course-lib @ git+https://github.com/OWNER/NAME"`.
    # Same mechanism, offline: a git+file URL of a clone, into a fresh virtual environment
    # that sees this environment's packages (TensorFlow etc.) but not its course_lib.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    url = f"course-lib @ git+file://localhost{clone.as_posix()}"  # pip < 24 wants a host in file URLs
    pip = subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", url],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    run = subprocess.run([py, "-c", "import course_lib; print(course_lib.__file__); print(course_lib.setup().profile)"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    where, profile = lines[0], lines[-1]
    assert Path(where).is_relative_to(venv), f"course_lib was imported from {where}, not from the fresh venv"
    assert profile in ("cpu", "gpu")


# ----------------------------------------------------------------- forks


@pytest.mark.parametrize("bad", ["", "course", "https://gitlab.com/me/course", "me/course/extra", "-me/course", "me/ course"])
def test_fork_refuses_what_is_not_a_github_owner_name(bad, tmp_path):
    with pytest.raises(ValueError, match=r"^expected a GitHub repository as OWNER/NAME \(for example"):
        publish.check_repository(bad)
    assert publish.main([f"--fork={bad}"]) == 2


@pytest.mark.parametrize("text", ["me/course", "https://github.com/me/course", "https://github.com/me/course.git", "github.com/me/course/"])
def test_fork_accepts_owner_name_and_github_urls(text):
    assert publish.check_repository(text) == "me/course"


def test_one_command_repoints_every_badge_and_install_cell_to_a_fork(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    old = publish.repository()
    run = subprocess.run([sys.executable, "-m", "course_lib.publish", "--fork", "https://github.com/my-school/keras-course"],
                         cwd=clone, capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(clone)})
    assert run.returncode == 0, run.stderr
    assert publish.repository(clone / "pyproject.toml") == "my-school/keras-course"
    published = [clone / "README.md", *sorted((clone / "notebooks").glob("*.ipynb")), *sorted((clone / "student").glob("*.ipynb"))]
    for path in published:
        text = path.read_text()
        assert old not in text, f"{path.name} still points at {old}"
    for path in published[1:]:
        assert "course-lib @ git+https://github.com/my-school/keras-course" in _install_cell(path)
        assert f"github/my-school/keras-course/blob/main/student/{path.name}" in path.read_text()


def test_a_students_answers_in_student_do_not_break_the_check(tmp_path):
    # A student answers an exercise in their clone's student/ (the working copy): the drift
    # check compares the committed student version, so the test command still passes.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    answered = clone / "student" / STUDENTS[0].name
    nb = nbformat.read(str(answered), as_version=4)
    nb.cells[-1].source += "\n# my answer"
    nbformat.write(nb, str(answered))
    check = [sys.executable, "-m", "course_lib.publish", "--check", STUDENTS[0].name]
    env = {**__import__("os").environ, "PYTHONPATH": str(clone)}
    run = subprocess.run(check, cwd=clone, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
