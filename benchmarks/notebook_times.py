"""Time every notebook (or the ones named) as the README's test command runs them, against the course's bars.

    python benchmarks/notebook_times.py [student/NN_x.ipynb ...]      # default: every student/ version

Executes each notebook in a fresh kernel with nbclient (the same way nbval does) and reports, per
notebook: wall-clock seconds, the kernel's CPU seconds (user + system, children included) and its
peak resident memory (sampled every 0.2 s with psutil). Bars of issue 17: each notebook within
90 s (none over 180 s), at most 3 GB, the whole test command within 15 minutes. A script, not a
test: a shared machine is noisy, so it reports and never fails on time. Run it on an idle machine.
"""

import glob
import sys
import threading
import time

import nbformat
import psutil
from nbclient import NotebookClient

AIM_S, BAR_S, MEMORY_BAR_GB = 90.0, 180.0, 3.0


class _Sampler(threading.Thread):
    """Peak RSS and CPU seconds of every process below this one (the kernel and anything it starts)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.cpu, self.stop = 0, {}, threading.Event()

    def run(self):
        me = psutil.Process()
        while not self.stop.is_set():
            for child in me.children(recursive=True):
                try:
                    self.peak = max(self.peak, child.memory_info().rss)
                    t = child.cpu_times()
                    self.cpu[child.pid] = t.user + t.system + t.children_user + t.children_system
                except psutil.Error:
                    pass
            time.sleep(0.2)


def run(path):
    nb = nbformat.read(path, as_version=4)
    sampler = _Sampler()
    sampler.start()
    start, error = time.perf_counter(), ""
    try:
        folder = path.rsplit("/", 1)[0] if "/" in path else "."
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
    except Exception as exc:  # report and go on with the next notebook
        error = type(exc).__name__
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    return wall, sum(sampler.cpu.values()), sampler.peak / 2**30, error


def main(paths):
    paths = paths or sorted(glob.glob("student/*.ipynb"))
    total = 0.0
    print(f"load average before: {psutil.getloadavg()}")
    print(f"{'wall s':>8} {'cpu s':>8} {'peak GB':>8}  notebook")
    for path in paths:
        wall, cpu, peak, error = run(path)
        total += wall
        flag = " over the 180 s bar" if wall > BAR_S else (" over the 90 s aim" if wall > AIM_S else "")
        flag += f" over {MEMORY_BAR_GB} GB" if peak > MEMORY_BAR_GB else ""
        print(f"{wall:8.1f} {cpu:8.1f} {peak:8.2f}  {path}{flag}{'  ERROR ' + error if error else ''}", flush=True)
    print(f"{total:8.1f} {'':8} {'':8}  all notebooks ({total / 60:.1f} min)")
    print(f"load average after: {psutil.getloadavg()}")


if __name__ == "__main__":
    main(sys.argv[1:])
