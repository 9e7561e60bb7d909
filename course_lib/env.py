"""The one call at the top of every notebook: :func:`setup`.

It makes a run repeatable (seeds; TensorFlow op determinism where it is safe, see
below), keeps notebook outputs readable (quiet TensorFlow logs, one matplotlib
style), checks that the installed libraries are recent enough, and picks the
*profile*: ``"cpu"`` where no GPU is visible (a laptop, CI) and ``"gpu"`` otherwise
(the environment variable ``COURSE_LIB_PROFILE=cpu|gpu`` overrides the automatic
choice). Notebooks size their runs from the profile in one cell tagged
``parameters``. There is no CI-only code path: CI runs the ``cpu`` profile, exactly
as a student without a GPU does.

Two decisions are made here and nowhere else (each in a small function that is
unit-tested without a GPU):

* :func:`choose_determinism`: TensorFlow op determinism is on by default on a CPU and
  off by default on a GPU, because some ops (``tf.image.adjust_contrast``, some
  scatter and pooling gradients) have no deterministic GPU kernel and would raise
  under it. ``setup(deterministic=True)`` forces it on anyway.
* :func:`choose_strategy`: with two or more GPUs, training is mirrored across them
  with ``tf.distribute.MirroredStrategy``, installed as the default strategy, so
  notebook cells build and fit models without a ``with strategy.scope():``.

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
    ("keras", ("keras",), "3.8"),
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
    deterministic: bool = True
    #: The tf.distribute strategy in force: ``tf.distribute.get_strategy()`` at setup time.
    strategy: object = None
    #: Replicas a batch is split over (1 without MirroredStrategy).
    replicas: int = 1

    def pick(self, cpu, gpu):
        """Return ``cpu`` or ``gpu`` according to the profile (used in ``parameters`` cells)."""
        return cpu if self.profile == "cpu" else gpu

    def __str__(self):
        v = ", ".join(f"{k} {val}" for k, val in self.versions.items())
        gpu = f"{len(self.gpus)} GPU(s)" if self.gpus else "no GPU"
        extra = "" if self.deterministic else ", op determinism off"
        if self.replicas > 1:
            extra += f", {type(self.strategy).__name__} over {self.replicas} devices"
        return f"profile={self.profile!r} ({gpu}), seed={self.seed}{extra}; {v}"


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
    """Seed Python, NumPy, TensorFlow and Keras; turn TF op determinism on or off."""
    import keras
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)  # seeds python, numpy and the backend
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:  # undo an earlier setup(deterministic=True) in the same process
        from tensorflow.python.framework import config as _tf_config

        if hasattr(_tf_config, "disable_op_determinism"):
            _tf_config.disable_op_determinism()


#: The one-line note printed when setup() leaves op determinism off on a GPU.
DETERMINISM_NOTE = (
    "course_lib.setup: TensorFlow op determinism is off on this GPU (some ops, e.g. "
    "tf.image.adjust_contrast, have no deterministic GPU kernel); runs may differ in the "
    "last digits. Pass setup(deterministic=True) to force it."
)


def choose_determinism(deterministic: bool | None, n_gpus: int) -> tuple:
    """Decide TensorFlow op determinism: return ``(on, note)``.

    ``deterministic=None`` (the default of :func:`setup`) means on without a GPU and
    off with one, with ``note`` the one line to print (:data:`DETERMINISM_NOTE`);
    ``True`` or ``False`` is obeyed as given, with no note.
    """
    if deterministic is not None and not isinstance(deterministic, bool):
        raise ValueError(f"deterministic must be True, False or None (auto); got {deterministic!r}.")
    if deterministic is not None:
        return deterministic, None
    if n_gpus > 0:
        return False, DETERMINISM_NOTE
    return True, None


def choose_strategy(devices) -> str:
    """Decide how to train: ``"mirrored"`` across ``devices`` when there are two or more, else ``"default"``."""
    return "mirrored" if len(devices) >= 2 else "default"


def install_strategy(devices):
    """Install the strategy :func:`choose_strategy` picks as TensorFlow's default and return it.

    With two or more ``devices`` (names such as ``"/gpu:0"``), a
    ``tf.distribute.MirroredStrategy`` over them is set with
    ``tf.distribute.experimental_set_strategy``: every model built and fitted after
    this call is mirrored, with no ``with strategy.scope():`` in the notebook. Batch
    sizes stay global (split over the replicas). Otherwise the default strategy is restored.
    """
    import tensorflow as tf

    tf.distribute.experimental_set_strategy(None)
    if choose_strategy(devices) == "mirrored":
        tf.distribute.experimental_set_strategy(tf.distribute.MirroredStrategy(devices=list(devices)))
    return tf.distribute.get_strategy()


#: Environment variable that forces the profile (``cpu`` or ``gpu``) when ``setup(profile=None)``.
PROFILE_VARIABLE = "COURSE_LIB_PROFILE"


def choose_profile(profile: str | None, n_gpus: int, environ=os.environ) -> str:
    """The profile: ``profile`` if given, else ``$COURSE_LIB_PROFILE`` if set, else ``"gpu"`` with a GPU."""
    if profile is None:
        profile = environ.get(PROFILE_VARIABLE) or None
        where = f"${PROFILE_VARIABLE}"
    else:
        where = "profile"
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"{where} must be one of {PROFILES} or None (auto), got {profile!r}")
    return profile or ("gpu" if n_gpus else "cpu")


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
    # Keras 3.15 warns on every fit(tf.data.Dataset) that its own default shuffle=True is ignored;
    # the course's datasets shuffle themselves, so the warning is noise on every training cell.
    warnings.filterwarnings("ignore", message=r".*shuffle=True.* was passed, but will be ignored.*")


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


def setup(
    seed: int = 0,
    profile: str | None = None,
    deterministic: bool | None = None,
    verbose: bool = True,
    devices=None,
) -> Env:
    """Prepare a notebook run and return an :class:`Env` (profile, seed, versions, strategy).

    Args:
        seed: one seed for Python, NumPy, TensorFlow and Keras.
        profile: ``None`` reads ``$COURSE_LIB_PROFILE`` (``cpu`` or ``gpu``) if set, else
            picks ``"gpu"`` if TensorFlow sees a GPU and ``"cpu"`` otherwise; pass ``"cpu"``
            to run the small laptop version on a GPU machine.
        deterministic: TensorFlow op determinism (same numbers on every run). ``None``
            (default): on without a GPU; off with a GPU, with a one-line note, because
            some ops (e.g. ``tf.image.adjust_contrast``) have no deterministic GPU kernel
            and would raise. ``True`` forces it on, ``False`` off. See :func:`choose_determinism`.
        verbose: print one line saying what was set.
        devices: the devices to train on; ``None`` means the visible GPUs. With two or
            more, a ``tf.distribute.MirroredStrategy`` over them becomes the default
            strategy (``env.strategy``, ``env.replicas``); see :func:`install_strategy`.
    """
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES} or None (auto), got {profile!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    choose_determinism(deterministic, 0)  # validates the argument before anything is set
    versions = check_versions()
    with _quiet_fd2():
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    chosen = choose_profile(profile, len(gpus))
    determinism, note = choose_determinism(deterministic, len(gpus))
    quiet_logs()
    matplotlib_defaults()
    set_seeds(int(seed), deterministic=determinism)
    if devices is None:
        devices = [f"/gpu:{i}" for i in range(len(gpus))]
    strategy = install_strategy(devices)
    env = Env(profile=chosen, seed=int(seed), gpus=[g.name for g in gpus], versions=versions,
              deterministic=determinism, strategy=strategy, replicas=int(strategy.num_replicas_in_sync))
    if verbose:
        print(f"course_lib.setup: {env}")
        if note:
            print(note)
    return env
