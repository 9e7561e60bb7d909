"""Repository-wide pytest hooks: a table of seconds per notebook at the end of the run.

nbval turns each notebook cell into a test item; this adds up setup, call and
teardown time per notebook file (kernel start-up included) and prints one table,
with the 3-minute budget of the course marked.
"""

import collections
import json
import os

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
