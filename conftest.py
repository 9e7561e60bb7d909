"""Repository-wide pytest hooks: a table of seconds per notebook, and the executed notebooks.

nbval turns each notebook cell into a test item; this adds up setup, call and
teardown time per notebook file (kernel start-up included) and prints one table,
with the 3-minute budget of the course marked. It also keeps each student version
that ran to the end, with its outputs, for the website (course_lib.website), and
runs tests/test_website.py last, after the notebooks it shows.
"""

import collections
import json
import os

import pytest

NOTEBOOK_BUDGET_S = 180.0
_seconds = collections.OrderedDict()


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _seconds[path] = _seconds.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not _seconds:
        return
    tr = terminalreporter
    tr.section("seconds per notebook")
    for path, sec in _seconds.items():
        flag = "" if sec <= NOTEBOOK_BUDGET_S else f"   over the {NOTEBOOK_BUDGET_S:.0f} s budget"
        tr.write_line(f"{sec:8.1f}  {path}{flag}")
    tr.write_line(f"{sum(_seconds.values()):8.1f}  total")
    out = os.path.join(os.path.dirname(__file__), ".ci", "timings.json")
    try:
        with open(out, "w") as f:
            json.dump(_seconds, f, indent=1)
    except OSError:
        pass


# ------------------------------------------------------------------------------------------------
# The course website (course_lib.website) shows each notebook as this run executed it, so that
# building the site never executes a notebook a second time: every student version that nbval ran
# to the end without an error is kept, with its outputs, in the website's cache.

_executed = {}


def _record_cell(item, report):
    cell = getattr(item, "cell", None)
    if cell is None or not hasattr(item, "test_outputs") or not str(item.fspath).endswith(".ipynb"):
        return
    record = _executed.setdefault(str(item.fspath), {"nb": item.parent.nb, "ok": True, "ran": 0})
    if not report.passed or item.test_outputs is None:
        record["ok"] = False
        return
    record["ran"] += 1
    cell.execution_count = record["ran"]
    outputs = []
    for out in item.test_outputs:
        out = dict(out)
        if out.get("output_type") == "execute_result":
            out["execution_count"] = record["ran"]
        outputs.append(out)
    cell.outputs = outputs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call" and str(item.fspath).endswith(".ipynb"):
        _record_cell(item, outcome.get_result())


def pytest_runtest_teardown(item, nextitem):
    path = str(item.fspath)
    if not path.endswith(".ipynb") or (nextitem is not None and str(nextitem.fspath) == path):
        return
    record = _executed.pop(path, None)
    code_cells = sum(c.cell_type == "code" for c in record["nb"].cells) if record else -1
    if record and record["ok"] and record["ran"] == code_cells and os.path.basename(os.path.dirname(path)) == "student":
        try:
            import nbformat

            from course_lib import website

            website.store_executed(path, nbformat.from_dict(record["nb"]))
        except Exception as err:  # the site can still execute the notebook itself
            print(f"\nconftest: could not keep the executed {path} for the website: {err}")


INLINE = "module://matplotlib_inline.backend_inline"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """A notebook's kernel draws its figures inline, as in Jupyter and Colab.

    The kernel starts in the setup of the notebook's first cell and inherits this process's
    environment, where tests/conftest.py (and CI) set MPLBACKEND=Agg for the unit tests; with
    Agg a notebook's figures are never drawn, so neither a test nor the website would see them.
    """
    if not str(item.fspath).endswith(".ipynb"):
        yield
        return
    before = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = before


def pytest_collection_modifyitems(session, config, items):
    """The website test goes last, after the notebooks it shows have run."""
    items.sort(key=lambda it: os.path.basename(str(it.fspath)) == "test_website.py")
