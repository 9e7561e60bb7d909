"""Grading a class safely (issue 18): each submission sealed off, scores decided outside
the student's code, every submission accounted for.

One graded run (module fixture ``run``) grades the fixture submissions of
make_submissions.py together with the hostile and careless ones of hostile.py (one or
more per fault kind of the issue), under small limits, three at a time; the tests below
read that run. Each attacker must get at most what its real answers earn, each honest
student in the same run its own score. The NumPy-only fixture assignment keeps a
submission to about two seconds.
"""

import base64
import csv
import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from course_lib import grading, sandbox

FIXTURES = Path(__file__).parent / "fixtures" / "grading"
MASTER = FIXTURES / "grading_fixture.ipynb"
SUBMISSIONS = FIXTURES / "submissions"
sys.path.insert(0, str(FIXTURES))
import hostile  # noqa: E402
from make_submissions import EXPECTED, RIGHT, SKIPPED, filled, insert_after  # noqa: E402

SEALED, WHY = sandbox.available()
needs_sandbox = pytest.mark.skipif(not SEALED, reason=f"no sandbox here ({WHY}); apt-get install bubblewrap")

# Small limits, so that the endless, flooding and hungry submissions cost seconds.
# (3 CPU seconds: a fixture submission needs about one; the busy loop of h_cpu reaches them
# well within the 25 s of wall time even on a loaded machine.)
LIMITS = sandbox.Limits(cell_timeout=4, timeout=25, memory=1 * sandbox.GiB, cpu=3, processes=200,
                        output=1 * sandbox.MiB)
JOBS = 3
SECRET = "LMS-TOKEN-7f3c9a1e-do-not-leak"
HIDDEN_TEXT = ["test_standardize_values", "test_iou_half", "[-2.0, 2.0]", "1 / 3) <", "(1, 0, 3, 1)"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(folder: Path) -> dict:
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = Path(root) / f
            out[str(p.relative_to(folder))] = "link" if p.is_symlink() else sha(p)
    return out


@pytest.fixture(scope="module")
def fixture_dist(tmp_path_factory):
    return grading.assign(MASTER, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def server():
    """A TCP server of the test's on every address of this machine; it records who connects."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen()
    srv.settimeout(0.2)
    reached, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, peer = srv.accept()
            except OSError:
                continue
            reached.append(peer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    hosts = ["127.0.0.1"] + sorted({a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                                    if a.family == socket.AF_INET and not a.address.startswith("127.")})
    yield hosts, srv.getsockname()[1], reached
    stop.set()
    thread.join()
    srv.close()


@pytest.fixture(scope="module")
def run(fixture_dist, tmp_path_factory, server):
    """Grade every fixture and hostile submission once; what the tests below look at."""
    if not SEALED:
        pytest.skip(f"no sandbox here ({WHY}); apt-get install bubblewrap")
    root = tmp_path_factory.mktemp("class")
    folder = root / "submissions"
    shutil.copytree(SUBMISSIONS, folder)
    secret_file = root / "instructor" / "lms_token.txt"
    secret_file.parent.mkdir()
    secret_file.write_text(SECRET)
    hosts, port, reached = server
    expected = {s: (points, words) for s, (points, words) in EXPECTED.items()}
    expected.update(hostile.build(folder, fixture_dist.student, master=fixture_dist.autograder_notebook,
                                  secret_file=secret_file, server=(hosts, port)))
    before = {"zip": sha(fixture_dist.autograder), "folder": tree_hashes(folder), "secret": sha(secret_file)}
    out = root / "grades"
    old = os.environ.get("LMS_TOKEN")
    os.environ["LMS_TOKEN"] = SECRET  # the instructor's environment
    start = time.monotonic()
    try:
        grades = grading.grade_folder(folder, fixture_dist.autograder, out, jobs=JOBS, limits=LIMITS)
    finally:
        if old is None:
            del os.environ["LMS_TOKEN"]
        else:
            os.environ["LMS_TOKEN"] = old
    elapsed = time.monotonic() - start
    csv_text = (out / "grades.csv").read_text(encoding="utf-8")
    return dict(grades=grades, by=({g.student: g for g in grades}), out=out, folder=folder, expected=expected,
                before=before, dist=fixture_dist, secret_file=secret_file, elapsed=elapsed, reached=reached,
                csv_text=csv_text)


# ----------------------------------------------------------------- the rows


def test_every_submission_gets_one_row(run):
    by, expected = run["by"], run["expected"]
    assert sorted(by) == sorted(expected) == sorted([*EXPECTED, *hostile.KINDS])
    assert len(run["grades"]) == len(by)  # one row per student


@pytest.mark.parametrize("student", [*EXPECTED, *hostile.KINDS])
def test_row(run, student):
    """Each fixture and hostile submission (hostile.KINDS: the fault kind of issue 18 it
    stands for) gets the points of its real answers, and the reason says why."""
    points, words = run["expected"][student]
    g = run["by"][student]
    assert g.points == points, (student, g.points, g.reason)
    for word in words:
        assert word in g.reason, (student, word, g.reason)


def test_honest_students_keep_their_scores(run):
    by = run["by"]
    assert by["full_marks"].total == 6 and by["full_marks"].reason == "" and by["full_marks"].complete
    assert by["edited_tests"].total == 3 and by["crash"].total == 5
    assert by["untouched"].total == 0 and by["untouched"].errors_before_first_exercise == 0
    assert by["crash"].errors_before_first_exercise == 0  # its error comes after exercise 1
    for student in ("h_conda_kernel", "h_tagged_cells", "h_zipped", "h_drafts", "h_alice", "José"):
        assert by[student].total == 6, (student, by[student].reason)


def test_scores_never_above_the_maximum(run):
    for g in run["grades"]:
        assert all(0 <= g.points[q] <= g.possible[q] for q in g.possible), (g.student, g.points)
    assert "3000" not in run["csv_text"]


def test_grading_finishes_within_the_limits(run):
    grades = run["grades"]
    assert all(g.seconds <= LIMITS.timeout + 15 for g in grades), [(g.student, g.seconds) for g in grades]
    # each slot of the pool grades its share one after another, each within the limit
    assert run["elapsed"] <= -(-len(grades) // JOBS) * (LIMITS.timeout + 15)


def test_skipped_files_are_listed_not_graded(run):
    with open(run["out"] / "skipped.csv", newline="", encoding="utf-8") as f:
        skipped = {row["path"]: row["why"] for row in csv.DictReader(f)}
    assert skipped == {**SKIPPED, **hostile.SKIPPED}


def test_grades_csv_and_feedback_files(run):
    out = run["out"]
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["student", "q1_standardize", "q2_threshold", "q3_iou", "total", "possible",
                             "reason", "file"]
    assert len(rows) == len(run["expected"])
    by = run["by"]
    for row in rows:
        student = row["student"][1:] if row["student"][:2] in ("'=", "'+", "'@") else row["student"]
        assert float(row["total"]) == by[student].total and row["possible"] == "6"
    assert {r["student"]: r["file"] for r in rows}["h_zipped"] == "h_zipped.zip:h_zipped/h_zipped.ipynb"
    feedback = (out / "feedback" / "edited_tests.md").read_text()
    assert "Total: 3 / 6 points" in feedback and "1 hidden test(s) failed" in feedback
    assert len(list((out / "feedback").iterdir())) == len(rows)


def test_csv_cells_are_never_formulas(run):
    cells = [c for row in csv.reader(io.StringIO(run["csv_text"])) for c in row]
    assert """'=HYPERLINK("evil","click")""" in cells and "'@h_at" in cells and "'+h_link_master" in cells
    assert not any(c[:1] in "=+-@" for c in cells if c)


# ----------------------------------------------------------------- what the sandbox protects


def test_grader_files_and_classmates_are_untouched(run):
    before = run["before"]
    assert sha(run["dist"].autograder) == before["zip"]  # h_zip_tamper
    assert tree_hashes(run["folder"]) == before["folder"]  # h_delete_classmates
    assert sha(run["secret_file"]) == before["secret"]
    assert sorted(p.name for p in run["out"].iterdir()) == ["feedback", "grades.csv", "skipped.csv"]


def test_nothing_secret_or_hidden_reaches_the_feedback(run):
    out = run["out"]
    texts = {p.name: p.read_text(encoding="utf-8") for p in (out / "feedback").iterdir()}
    texts["grades.csv"] = run["csv_text"]
    for name, text in texts.items():
        assert SECRET not in text, name
        for hidden in HIDDEN_TEXT:
            assert hidden not in text, (name, hidden)
    leak = texts["h_leak_hidden.md"]
    assert leak.count("1 hidden test(s) failed") == 2  # counted for q1 and q3, never shown
    assert "AssertionError" in leak  # its public failure is shown: only what its own code saw


def test_no_process_outlives_its_grading(run):
    deadline = time.monotonic() + 10
    while True:
        left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
                if hostile.MARKER in " ".join(p.info["cmdline"] or [])]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert left == []
    time.sleep(4)  # h_csv_later meant to rewrite grades.csv 3 s after its start
    assert (run["out"] / "grades.csv").read_text(encoding="utf-8") == run["csv_text"]


def test_network_is_unreachable(run):
    assert run["reached"] == []
    assert run["by"]["h_network"].total == 6


# ----------------------------------------------------------------- the run as a whole


@needs_sandbox
def test_killing_grade_keeps_the_rows_done_so_far(fixture_dist, tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    shutil.copy(SUBMISSIONS / "full_marks.ipynb", folder / "a_first.ipynb")
    nb = insert_after(filled(fixture_dist.student, RIGHT), "iou", f"""
import subprocess, sys, time
subprocess.Popen([sys.executable, '-c', 'import time  # {hostile.MARKER}-killed\\ntime.sleep(600)'],
                 start_new_session=True)
time.sleep(600)
""")
    import nbformat

    nbformat.write(nb, str(folder / "z_slow.ipynb"))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "course_lib.grading", "grade", str(folder), "--autograder",
                             str(fixture_dist.autograder), "--out", str(out), "--cell-timeout", "300"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    rows = []
    marker = f"{hostile.MARKER}-killed"

    def slow_started():
        return any(marker in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))

    while time.monotonic() < deadline and not (len(rows) >= 2 and slow_started()):
        time.sleep(0.3)
        if (out / "grades.csv").exists():
            rows = list(csv.reader(io.StringIO((out / "grades.csv").read_text())))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = list(csv.reader(io.StringIO((out / "grades.csv").read_text())))
    assert rows[0][0] == "student" and [r[0] for r in rows[1:]] == ["a_first"] and rows[1][4] == "6"
    deadline = time.monotonic() + 10
    while slow_started() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not slow_started()  # the sandbox died with the grader


def test_one_crash_never_costs_the_others_their_rows(fixture_dist, tmp_path, monkeypatch):
    folder = tmp_path / "subs"
    folder.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(SUBMISSIONS / "untouched.ipynb", folder / f"{name}.ipynb")
    possible = grading.exercise_points(fixture_dist.autograder)

    def fake(label, autograder, *, student, **kwargs):
        if student == "b":
            raise RuntimeError("a bug of the grader's")
        return grading.Grade(student, dict(possible), possible)

    monkeypatch.setattr(grading, "grade_submission", fake)
    grades = grading.grade_folder(folder, fixture_dist.autograder, tmp_path / "out", unsafe=True)
    assert [(g.student, g.total) for g in grades] == [("a", 6), ("b", 0), ("c", 6)]
    assert "internal error (RuntimeError" in grades[1].reason
    rows = list(csv.DictReader(open(tmp_path / "out" / "grades.csv")))
    assert [r["student"] for r in rows] == ["a", "b", "c"]


def test_roster_gives_every_student_a_row(fixture_dist, tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    os.symlink(MASTER, folder / "s2.ipynb")  # refused: no sandbox run needed for this test
    (folder / "s9").mkdir()
    roster = tmp_path / "roster.txt"
    roster.write_text("# day 5\ns1\ns2\n\ns3\n", encoding="utf-8")
    assert grading.read_roster(roster) == ["s1", "s2", "s3"]
    grades = grading.grade_folder(folder, fixture_dist.autograder, tmp_path / "out", roster=roster, unsafe=True)
    assert [(g.student, g.reason) for g in grades] == [
        ("s1", "no submission"),
        ("s2", "refused: a symbolic link (links are never followed)"),
        ("s3", "no submission"),
        ("s9", "the folder is empty: nothing handed in; not on the roster"),
    ]


def test_collect_submissions_rules(tmp_path):
    (tmp_path / "alice.ipynb").write_text("{}")
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "01_anything.ipynb").write_text("{}")
    (tmp_path / ".DS_Store").write_text("")
    (tmp_path / "notes.pdf").write_text("")
    subs, skipped = grading.collect_submissions(tmp_path)
    assert [(s.student, s.file) for s in subs] == [("alice", "alice.ipynb"), ("bob", "bob/01_anything.ipynb")]
    assert skipped == [(".DS_Store", "system file, not a submission"), ("notes.pdf", "not a notebook")]


def test_grading_input_errors(tmp_path, fixture_dist, monkeypatch):
    with pytest.raises(ValueError, match="not a folder"):
        grading.collect_submissions(tmp_path / "missing")
    with pytest.raises(ValueError, match="no submissions"):
        grading.collect_submissions(tmp_path)
    with pytest.raises(ValueError, match="no autograder"):
        grading.resolve_autograder("99_missing", dist=tmp_path)
    assert grading.resolve_autograder("grading_fixture", dist=fixture_dist.autograder.parent.parent) == fixture_dist.autograder
    with pytest.raises(ValueError, match="jobs must be"):
        grading.grade_folder(SUBMISSIONS, fixture_dist.autograder, tmp_path, jobs=0)
    with pytest.raises(ValueError, match="not a notebook file"):
        grading.master_notebooks([tmp_path / "x.txt"])
    with pytest.raises(ValueError, match="not an autograder zip"):
        grading.load_autograder(MASTER)


def test_grade_refuses_without_a_sandbox_unless_unsafe(fixture_dist, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "available", lambda: (False, "bubblewrap is not installed"))
    with pytest.raises(ValueError, match="no sandbox: bubblewrap is not installed.*--unsafe"):
        grading.grade_folder(SUBMISSIONS, fixture_dist.autograder, tmp_path / "out")
    code = grading.main(["grade", str(SUBMISSIONS), "--autograder", str(fixture_dist.autograder),
                         "--out", str(tmp_path / "out")])
    assert code == 2 and "--unsafe" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unsafe_mode_grades_trusted_notebooks(fixture_dist, tmp_path):
    # Without the sandbox (--unsafe): the same scoring outside the student's process, a
    # loopback-only network guard, and prlimit where it is installed. Not a sandbox.
    limits = sandbox.Limits(cell_timeout=10, timeout=60)
    full = grading.grade_submission(SUBMISSIONS / "network.ipynb", fixture_dist.autograder, limits=limits,
                                    unsafe=True)
    assert full.total == 6 and full.reason == "" and full.complete


def test_network_guard_of_unsafe_mode_allows_loopback_only(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(sandbox.NETWORK_GUARD)
    probe = (
        "import socket\n"
        "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n"
        "socket.create_connection(srv.getsockname(), timeout=5).close()\n"
        "for target in [('10.255.255.1', 80), ('93.184.215.14', 443)]:\n"
        "    try:\n"
        "        socket.create_connection(target, timeout=5)\n"
        "    except OSError as e:\n"
        "        assert 'disabled while grading' in str(e), e\n"
        "    else:\n"
        "        raise SystemExit('connected to ' + str(target))\n"
        "print('guard ok')\n"
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "guard ok" in run.stdout, run.stdout + run.stderr


# ----------------------------------------------------------------- plain data across the wall


def test_plain_data_round_trips_and_nothing_else():
    import pandas as pd

    grader, box = sandbox._Codec("grader"), sandbox._Codec("sandbox")
    values = [None, True, 3, 2.5, float("inf"), "x", [1, (2, 3)], {"a": 1}, {0: 1.5, (1, 2): "k"}, {1, 2},
              1 + 2j, b"\0raw", np.arange(6.0).reshape(2, 3), np.float32(1.5), np.int64(7), np.array("s")]
    for v in values:
        back = grader.decode(box.encode(v))
        assert type(back) is type(v) and (np.array_equal(back, v) if isinstance(v, np.ndarray) else back == v), v
    assert isinstance(grader.decode(box.encode(np.int64(3))), np.int64)  # not a Python int
    table = pd.DataFrame({"lr": [0.1, 0.01], "acc": [0.7, 0.9]}, index=[7, 3])
    assert grader.decode(box.encode(table)).equals(table)

    class Liar(np.ndarray):
        def __eq__(self, other):
            return True

    back = grader.decode(box.encode(np.zeros(2).view(Liar)))
    assert type(back) is np.ndarray and not (back == 1).any()

    class Yes:
        def __eq__(self, other):
            return True

    with pytest.raises(sandbox.NotPlainData):
        box.encode(Yes())
    with pytest.raises(sandbox.NotPlainData):
        box.encode(np.array([Yes()], dtype=object))
    # what a forged reply could hold: a pickled object array, an unknown tag, a Keras input
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    for forged in [{"__ndarray__": base64.b64encode(buf.getvalue()).decode()}, {"__pickle__": "x"},
                   {"__keras_input__": {"shape": [None, 2]}}, {"__builtins__": 1}, [{"a": {"__set__": 1}}]]:
        with pytest.raises((sandbox.NotPlainData, ValueError)):
            grader.decode(forged)
    deep = 0
    for _ in range(200):
        deep = [deep]
    with pytest.raises(sandbox.NotPlainData):
        grader.decode(deep)


def test_a_keras_graph_crosses_as_config_and_weights():
    # notebook 03's residual_unit takes a Keras tensor and returns one: the graph crosses as
    # the config of Keras' own layers and their weights, and is rebuilt on the test's input
    import keras

    def residual_unit(x, filters, stride=1):
        y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = keras.layers.BatchNormalization()(y)
        return keras.layers.ReLU()(keras.layers.Add()([x, keras.ops.multiply(y, 0.5)]))

    grader, box = sandbox._Codec("grader"), sandbox._Codec("sandbox")
    inp = keras.Input((4, 4, 3))
    args = box.decode(grader.encode([inp, 3]))  # into the sandbox: a fresh keras.Input
    reply = {"value": box.encode(residual_unit(*args)), "keras": sandbox._keras_graph_out(box)}
    sandbox._keras_graph_in(grader, reply["keras"])
    out = grader.decode(reply["value"])
    model = keras.Model(inp, out)
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer", "Conv2D", "BatchNormalization", "Add", "ReLU"]
    assert model.count_params() == keras.Model(inp, residual_unit(inp, 3)).count_params()
    box = sandbox._Codec("sandbox")  # a Lambda layer (Python code) never comes back
    x = box.decode({"__keras_input__": {"shape": [None, 2], "dtype": "float32", "index": 0}})
    box.encode(keras.layers.Lambda(lambda t: t * 2)(x))
    with pytest.raises(sandbox.NotPlainData, match="Lambda"):
        sandbox._keras_graph_in(sandbox._Codec("grader"), sandbox._keras_graph_out(box))


# ----------------------------------------------------------------- Otter's format


@pytest.mark.parametrize("header", ["", "points = 4\n", "points = [1, 3]\n", "points = 5\nall_or_nothing = True\n"])
def test_test_files_are_read_as_otter_reads_them(fixture_dist, header):
    # grade reads the zip's test files without importing Otter (seconds); same names and points
    from otter.test_files.exception_test import ExceptionTestFile

    sources = [__import__("zipfile").ZipFile(fixture_dist.autograder).read(f"tests/{q}.py").decode()
               for q in ("q1_standardize", "q2_threshold", "q3_iou")]
    sources.append('from otter.test_files import test_case\nname = "q9"\n' + header +
                   "@test_case(hidden=True)\ndef a(x):\n    pass\n\n@test_case()\ndef b(y):\n    pass\n")
    for source in sources:
        ours, otters = grading.read_test_file(source), ExceptionTestFile.from_string(source)
        assert ours.name == otters.name and ours.possible == otters.possible
        assert ours.all_or_nothing == otters.all_or_nothing
        assert [(t.name, t.points, t.hidden) for t in ours.test_cases] == \
            [(t.name, t.points, t.hidden) for t in otters.test_cases]



def test_autograder_zip_passes_otters_own_grading(fixture_dist):
    # The zip stays Otter's: Otter's own runner (what Gradescope runs) gives the master full
    # marks with it. A class too big for one machine can be graded on Gradescope with it.
    names = set(__import__("zipfile").ZipFile(fixture_dist.autograder).namelist())
    assert {"run_autograder", "run_otter.py", "setup.sh", "otter_config.json", "tests/q1_standardize.py"} <= names
    from otter.api import grade_submission

    results = grade_submission(str(fixture_dist.autograder_notebook), str(fixture_dist.autograder), quiet=True)
    assert (results.total, results.possible) == (6, 6), results.summary()


def test_python_under_tmp_stays_visible_after_the_private_tmp(monkeypatch):
    """A fresh clone's virtual environment may live under /tmp (CI runners, newcomer checks): its bind
    must come after the sandbox's empty /tmp, or the sandbox cannot find Python at all."""
    venv = Path("/tmp/some-clone/.venv")
    monkeypatch.setattr(sandbox, "shared_paths", lambda: [venv, Path("/opt/python")])
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # the plain bwrap command line, without root's staging
    argv = sandbox._bwrap_argv(sandbox.Limits(), "bwrap")
    tmpfs_tmp = next(i for i in range(len(argv) - 1) if argv[i] == "--tmpfs" and argv[i + 1] == "/tmp")
    binds = [i for i in range(len(argv) - 2) if argv[i] == "--ro-bind" and argv[i + 2] == str(venv)]
    assert binds and all(i > tmpfs_tmp for i in binds), "the venv under /tmp must be bound after --tmpfs /tmp"
