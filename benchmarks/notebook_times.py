"""Time every notebook (or the ones named) as CI runs them, against the course budget.

    python benchmarks/notebook_times.py [notebooks/NN_x.ipynb ...]

Executes each notebook in a fresh kernel with nbclient (the same way nbval does),
measures wall-clock seconds and the kernel's CPU seconds (user + sys), and prints a
table with the 3-minute budget per notebook and the 25-minute budget for the whole
test command. The ratio column is wall time / budget. A script, not a test: this
machine is shared and noisy, so it reports and never fails on time.
"""

import glob
import resource
import sys
import time

import nbformat
from nbclient import NotebookClient

BUDGET_S = 180.0
TOTAL_BUDGET_S = 25 * 60.0


def run(path):
    nb = nbformat.read(path, as_version=4)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    error = ""
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": "notebooks"}}).execute()
    except Exception as exc:  # report and go on with the next notebook
        error = type(exc).__name__
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, error


def main(paths):
    paths = paths or sorted(glob.glob("notebooks/*.ipynb"))
    rows, total = [], 0.0
    print(f"{'wall s':>8} {'cpu s':>8} {'wall/budget':>11}  notebook")
    for path in paths:
        wall, cpu, error = run(path)
        total += wall
        print(f"{wall:8.1f} {cpu:8.1f} {wall / BUDGET_S:11.2f}  {path}{'  ERROR ' + error if error else ''}", flush=True)
        rows.append((path, wall, cpu, error))
    print(f"{total:8.1f} {'':8} {total / TOTAL_BUDGET_S:11.2f}  all notebooks (budget {TOTAL_BUDGET_S / 60:.0f} min)")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
