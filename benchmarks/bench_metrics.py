"""Time course_lib.metrics' curves against scikit-learn's, in the same run.

    python benchmarks/bench_metrics.py

Prints the best of five CPU times (process time, so the load of other processes
matters less) for ``roc_curve`` and ``average_precision`` on 10 thousand and 1 million
scores with ties, and the ratio ours / scikit-learn (below 1: ours is faster).
"""

import time

import numpy as np
from sklearn import metrics as sk

from course_lib import metrics as m


def best_time(fn, *args, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn(*args)
        times.append(time.process_time() - start)
    return min(times)


def main():
    rng = np.random.default_rng(0)
    for n in (10_000, 1_000_000):
        y = rng.integers(0, 2, n)
        s = np.round(rng.normal(size=n) + y, 3)  # rounding makes ties
        for name, ours, ref in (("roc_curve", m.roc_curve, sk.roc_curve),
                                ("average_precision", m.average_precision, sk.average_precision_score)):
            t_ours, t_ref = best_time(ours, y, s), best_time(ref, y, s)
            print(f"n={n:>9,} {name:18s} ours {t_ours * 1e3:8.2f} ms  scikit-learn {t_ref * 1e3:8.2f} ms  "
                  f"ratio {t_ours / t_ref:.2f}")


if __name__ == "__main__":
    main()
