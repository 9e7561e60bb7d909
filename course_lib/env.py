"""The one call at the top of every notebook: :func:`setup`.

It makes a run repeatable (seeds and TensorFlow op determinism), keeps notebook
outputs readable (quiet TensorFlow logs, one matplotlib style), checks that the
installed libraries are recent enough, and picks the *profile*: ``"cpu"`` where no
GPU is visible (a laptop, CI) and ``"gpu"`` otherwise. Notebooks size their runs
from the profile in one cell tagged ``parameters``. There is no CI-only code path:
CI runs the ``cpu`` profile, exactly as a student without a GPU does.

Used by: every notebook (first code cell).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import warnings
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np

#: Minimum versions the course is written for: (import name, distribution, minimum).
MIN_VERSIONS = [
    ("tensorflow", ("tensorflow", "tensorflow-cpu", "tensorflow-macos"), "2.16"),
    ("keras", ("keras",), "3.3"),
    ("numpy", ("numpy",), "1.26"),
    ("sklearn", ("scikit-learn",), "1.3"),
    ("skimage", ("scikit-image",), "0.22"),
    ("matplotlib", ("matplotlib",), "3.7"),
]

PROFILES = ("cpu", "gpu")

INSTALL_HINT = (
    "Install the course's requirements with `python -m pip install -r requirements.txt` "
    "from the repository root (in Colab, run the notebook's first cell)."
)


@dataclass
class Env:
    """What :func:`setup` found and set. ``profile`` is ``"cpu"`` or ``"gpu"``."""

    profile: str
    seed: int
    gpus: list = field(default_factory=list)
    versions: dict = field(default_factory=dict)

    def pick(self, cpu, gpu):
        """Return ``cpu`` or ``gpu`` according to the profile (used in ``parameters`` cells)."""
        return cpu if self.profile == "cpu" else gpu

    def __str__(self):
        v = ", ".join(f"{k} {val}" for k, val in self.versions.items())
        gpu = f"{len(self.gpus)} GPU(s)" if self.gpus else "no GPU"
        return f"profile={self.profile!r} ({gpu}), seed={self.seed}; {v}"


def _version_tuple(text: str) -> tuple:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@contextlib.contextmanager
def _quiet_fd2():
    """Send C-level stderr to /dev/null for a moment (TensorFlow's CUDA-stub notices at import).

    Python exceptions are unaffected: they are printed after the block, by Python.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (some embedded kernels): nothing to silence
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def check_versions(requirements=MIN_VERSIONS) -> dict:
    """Return ``{name: version}``; raise ImportError naming what to install if one is missing or old."""
    found, problems = {}, []
    for module, dists, minimum in requirements:
        version = None
        for dist in dists:
            try:
                version = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        if version is None:
            problems.append(f"{dists[0]} is not installed (need >= {minimum})")
        elif _version_tuple(version) < _version_tuple(minimum):
            problems.append(f"{dists[0]} {version} is too old (need >= {minimum})")
        else:
            found[module] = version
    if problems:
        raise ImportError("course_lib cannot start: " + "; ".join(problems) + ". " + INSTALL_HINT)
    return found


def set_seeds(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; optionally turn on TF op determinism."""
    import keras
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)  # seeds python, numpy and the backend
    if deterministic:
        try:
            tf.config.experimental.enable_op_determinism()
        except AttributeError:  # very old TF: nothing to enable
            pass


def quiet_logs() -> None:
    """Silence TensorFlow's Python-side logging and the absl / Keras chatter."""
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    warnings.filterwarnings("ignore", message=".*`input_shape`/`input_dim` argument.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="tensorflow")


def matplotlib_defaults() -> None:
    """One figure style for the course: readable sizes, no top/right spines, 'viridis'."""
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.figsize": (7.0, 4.0),
            "figure.dpi": 90,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "image.cmap": "viridis",
            "legend.frameon": False,
        }
    )


def setup(seed: int = 0, profile: str | None = None, deterministic: bool = True, verbose: bool = True) -> Env:
    """Prepare a notebook run and return an :class:`Env` (profile, seed, versions).

    Args:
        seed: one seed for Python, NumPy, TensorFlow and Keras.
        profile: ``None`` picks ``"gpu"`` if TensorFlow sees a GPU, else ``"cpu"``;
            pass ``"cpu"`` to run the small laptop version on a GPU machine.
        deterministic: enable TensorFlow op determinism (same numbers on every run).
        verbose: print one line saying what was set.
    """
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES} or None (auto), got {profile!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    versions = check_versions()
    with _quiet_fd2():
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    quiet_logs()
    matplotlib_defaults()
    set_seeds(int(seed), deterministic=deterministic)
    chosen = profile or ("gpu" if gpus else "cpu")
    env = Env(profile=chosen, seed=int(seed), gpus=[g.name for g in gpus], versions=versions)
    if verbose:
        print(f"course_lib.setup: {env}")
    return env
