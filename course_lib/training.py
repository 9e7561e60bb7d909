"""Training, tuning and transfer learning: the helpers of Day 4 (notebook 04).

The module is organised in sections, each a few short functions a student can read:

1. Optimizers: :func:`make_optimizer` (plain SGD, momentum, Nesterov, Adam, AdamW).
2. Training loop: :func:`course_callbacks` and :func:`train` (``model.fit`` with early
   stopping, a best-model checkpoint, a CSV log and optional TensorBoard), and
   :func:`plot_runs` to put several runs on one plot (one run: ``course_lib.viz.plot_history``).
3. Learning-rate schedules: :class:`StepDecay`, :class:`WarmupCosine`, :func:`plot_schedule`.
4. Regularization: :func:`smooth_labels` (label smoothing), :func:`mixup_batch` and
   :func:`mixup` (mixup as a tf.data transform). Dropout and weight decay are Keras'
   own ``Dropout`` layer and the optimizers' ``weight_decay`` (see :func:`make_optimizer`).
5. Diagnosing a run: :func:`diagnose_fit` (under- or overfitting, read from the curves).
6. Hyperparameter search: :func:`grid_configs`, :func:`random_configs`, :func:`search`,
   which picks by a *validation* score and has no way to receive test data.
7. Transfer learning: :func:`imagenet_mobilenet_v2` (also the whole ImageNet classifier
   that notebooks 07-09 explain on real photos, with :func:`imagenet_class_name`),
   :func:`backbone_from_classifier`, :func:`transfer_classifier`, :func:`unfreeze_top`.

Semi-supervised learning (notebook 10) has its own module, :mod:`course_lib.semi_supervised`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from .validation import check_positive_int, class_ids  # noqa: F401  (class_ids: re-exported, notebooks use training.class_ids)

# =========================================================================== 1. optimizers

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")


def _check_learning_rate(learning_rate):
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule) or callable(learning_rate):
        return learning_rate
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.floating, np.integer)) \
            or not learning_rate > 0:
        raise ValueError(
            f"learning_rate must be a positive number or a LearningRateSchedule; got {learning_rate!r}."
        )
    return float(learning_rate)


def make_optimizer(name: str, learning_rate=1e-3, momentum: float = 0.9, weight_decay: float | None = None):
    """Return a Keras optimizer by its course name.

    * ``"sgd"``: plain gradient descent, :math:`w \\leftarrow w - \\eta g`.
    * ``"momentum"``: heavy ball (Polyak 1964; Sutskever et al. 2013),
      :math:`v \\leftarrow \\mu v - \\eta g,\\; w \\leftarrow w + v`.
    * ``"nesterov"``: the same with Nesterov's look-ahead gradient.
    * ``"adam"``: Adam (Kingma & Ba 2015, Algorithm 1).
    * ``"adamw"``: Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    ``learning_rate`` is a number or a schedule (section 3). ``weight_decay``, when
    given, is *decoupled* weight decay, :math:`w \\leftarrow w - \\eta\\lambda w` at each
    step, which every Keras optimizer supports; for ``"adamw"`` it defaults to 0.004
    (Keras' default). Used in notebook 04.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}.")
    lr = _check_learning_rate(learning_rate)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1); got {momentum!r}.")
    if weight_decay is not None and not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0 (or None for none); got {weight_decay!r}.")
    wd = {} if weight_decay is None else {"weight_decay": float(weight_decay)}
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.0, **wd)
    if name in ("momentum", "nesterov"):
        return keras.optimizers.SGD(lr, momentum=momentum, nesterov=name == "nesterov", **wd)
    if name == "adam":
        return keras.optimizers.Adam(lr, **wd)
    return keras.optimizers.AdamW(lr, **({"weight_decay": 0.004} | wd))


# ======================================================================== 2. training loop


def _check_monitor(monitor: str) -> str:
    if not isinstance(monitor, str) or not monitor.startswith("val_"):
        raise ValueError(
            f"monitor must be a validation metric such as 'val_loss' or 'val_accuracy'; got {monitor!r}. "
            "Choices made during training (early stopping, the best checkpoint, hyperparameters) must use "
            "validation data: training scores reward overfitting and test scores must stay unseen."
        )
    return monitor


def _mode(monitor: str) -> str:
    return "min" if "loss" in monitor or "error" in monitor else "max"


def course_callbacks(checkpoint: str | None = None, log: str | None = None, tensorboard: str | None = None,
                     monitor: str = "val_loss", patience: int | None = 5):
    """The course's standard callbacks, as a list for ``model.fit``.

    * ``EarlyStopping`` on ``monitor`` with ``patience`` epochs, restoring the best
      weights at the end (skip it with ``patience=None``);
    * ``ModelCheckpoint`` writing the best model so far to ``checkpoint`` (a ``.keras`` file);
    * ``CSVLogger`` appending one row per epoch to ``log`` (a ``.csv`` file);
    * ``TensorBoard`` logs in the folder ``tensorboard`` (view with ``tensorboard --logdir``).

    ``monitor`` must be a validation metric (``val_...``). Used by :func:`train` (notebook 04).
    """
    monitor = _check_monitor(monitor)
    mode = _mode(monitor)
    cbs = []
    if patience is not None:
        patience = check_positive_int(patience, "patience")
        cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                                 restore_best_weights=True))
    if checkpoint is not None:
        if not str(checkpoint).endswith(".keras"):
            raise ValueError(f"checkpoint must be a path ending in '.keras' (Keras 3's model format); got {checkpoint!r}.")
        cbs.append(keras.callbacks.ModelCheckpoint(str(checkpoint), monitor=monitor, mode=mode, save_best_only=True))
    if log is not None:
        if not str(log).endswith(".csv"):
            raise ValueError(f"log must be a path ending in '.csv'; got {log!r}.")
        cbs.append(keras.callbacks.CSVLogger(str(log)))
    if tensorboard is not None:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise ValueError("tensorboard logging needs the tensorboard package: `python -m pip install tensorboard`, "
                             "or leave tensorboard=None (the CSV log has the same numbers).")
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard)))
    return cbs


def _default_verbose():
    """2 (one line per epoch) in notebooks, scripts and CI; a progress bar only in an interactive terminal."""
    return "auto" if sys.stdout is not None and sys.stdout.isatty() else 2


def _as_fit_data(data, name):
    """``(x, y)`` tuple or a tf.data.Dataset / other Keras input -> (x, y, is_tuple)."""
    if data is None:
        raise ValueError(f"{name} is required: pass (images, labels) or a tf.data.Dataset of (images, labels) batches.")
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"{name} must be (images, labels) or a tf.data.Dataset; got a sequence of length {len(data)}.")
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"{name}: images ({len(x)}) and labels ({len(y)}) must have the same length.")
        return data, True
    if isinstance(data, tf.data.Dataset):
        return data, False
    raise ValueError(f"{name} must be (images, labels) or a tf.data.Dataset; got {type(data).__name__}.")


def _check_compiled(model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model; got {type(model).__name__}.")
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise ValueError("the model is not compiled: call model.compile(optimizer, loss, metrics) first.")


def train(model, train_data, val_data, epochs: int, batch_size: int = 64, checkpoint: str | None = None,
          log: str | None = None, tensorboard: str | None = None, monitor: str = "val_loss",
          patience: int | None = 5, callbacks=(), verbose=None, **fit_kwargs):
    """Fit a compiled ``model`` with validation data and the course's callbacks; return the History.

    ``train_data`` and ``val_data`` are ``(images, labels)`` tuples (batched here with
    ``batch_size``, training data shuffled) or tf.data Datasets of batches. Validation
    data is required: it drives early stopping and the best checkpoint (see
    :func:`course_callbacks` for ``checkpoint``, ``log``, ``tensorboard``, ``monitor``,
    ``patience``). ``callbacks`` are added to the course's. ``verbose=None`` prints one
    line per epoch (``verbose=2``) except in an interactive terminal. Extra keyword
    arguments go to ``model.fit``. Used in notebooks 04, 05, 10, 11.
    """
    _check_compiled(model)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    train_data, train_is_tuple = _as_fit_data(train_data, "train_data")
    val_data, _ = _as_fit_data(val_data, "val_data")
    cbs = course_callbacks(checkpoint, log, tensorboard, monitor=monitor, patience=patience) + list(callbacks)
    kwargs = dict(epochs=epochs, validation_data=tuple(val_data) if isinstance(val_data, list) else val_data,
                  callbacks=cbs, verbose=_default_verbose() if verbose is None else verbose)
    if train_is_tuple:
        x, y = train_data
        kwargs.update(batch_size=batch_size, shuffle=True)
        return model.fit(x, y, **kwargs, **fit_kwargs)
    return model.fit(train_data, **kwargs, **fit_kwargs)


def plot_runs(histories: dict, metric: str = "loss", title: str | None = None, ylim=None):
    """Plot several runs on one axis: validation curves solid, training curves dashed, one colour per run.

    ``histories`` maps a run's name to its ``keras.callbacks.History`` (or its ``.history``
    dict). One run's loss and metrics side by side: ``course_lib.viz.plot_history``.
    Used in notebook 04 (optimizers, regularization).
    """
    import matplotlib.pyplot as plt

    if not isinstance(histories, dict) or not histories:
        raise ValueError("histories must be a non-empty dict {run name: History}.")
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for i, (name, history) in enumerate(histories.items()):
        hist = getattr(history, "history", history)
        if metric not in hist:
            raise ValueError(f"run {name!r} has no {metric!r}; available: {sorted(hist)}.")
        epochs = np.arange(1, len(hist[metric]) + 1)
        colour = f"C{i % 10}"
        ax.plot(epochs, hist[metric], "--", color=colour, alpha=0.7, label=f"{name} (training)")
        if f"val_{metric}" in hist:
            ax.plot(epochs, hist[f"val_{metric}"], "-", color=colour, label=f"{name} (validation)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title or f"{metric}: training (dashed) and validation (solid)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


# ================================================================ 3. learning-rate schedules


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Number of optimizer steps in one epoch: ceil(n_examples / batch_size)."""
    return math.ceil(check_positive_int(n_examples, "n_examples") / check_positive_int(batch_size, "batch_size"))


@keras.saving.register_keras_serializable(package="course_lib")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Step decay: :math:`\\eta_t = \\eta_0 \\, \\gamma^{\\lfloor t / s \\rfloor}`.

    The learning rate is multiplied by ``drop`` (:math:`\\gamma`, e.g. 0.1) every
    ``step_size`` optimizer steps :math:`s`: the schedule ResNet was trained with (He et
    al. 2016: divide by 10 when the error plateaus). Used in notebook 04.
    """

    def __init__(self, initial_learning_rate: float, step_size: int, drop: float = 0.1):
        super().__init__()
        self.initial_learning_rate = float(_check_learning_rate(initial_learning_rate))
        self.step_size = check_positive_int(step_size, "step_size")
        if not 0.0 < drop <= 1.0:
            raise ValueError(f"drop must be in (0, 1], the factor applied at each step; got {drop!r}.")
        self.drop = float(drop)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        return self.initial_learning_rate * keras.ops.power(self.drop, keras.ops.floor(step / self.step_size))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "step_size": self.step_size, "drop": self.drop}


@keras.saving.register_keras_serializable(package="course_lib")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak_learning_rate``, then cosine decay to ``final_learning_rate``.

    For :math:`t < w` (``warmup_steps``): :math:`\\eta_t = \\eta_{max}\\, t / w` (Goyal et al.
    2017, "gradual warm-up"). Afterwards, with :math:`T` = ``total_steps`` - :math:`w` and
    :math:`\\tau = \\min(t - w, T)`:
    :math:`\\eta_t = \\eta_{min} + \\tfrac12 (\\eta_{max} - \\eta_{min})(1 + \\cos(\\pi \\tau / T))`
    (SGDR without restarts, Loshchilov & Hutter 2017, eq. 5). ``warmup_steps=0`` gives
    plain cosine decay. Used in notebook 04.
    """

    def __init__(self, peak_learning_rate: float, total_steps: int, warmup_steps: int = 0,
                 final_learning_rate: float = 0.0):
        super().__init__()
        self.peak_learning_rate = float(_check_learning_rate(peak_learning_rate))
        self.total_steps = check_positive_int(total_steps, "total_steps")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)) \
                or not 0 <= warmup_steps < total_steps:
            raise ValueError(f"warmup_steps must be an integer in [0, total_steps={total_steps}); got {warmup_steps!r}.")
        if not 0.0 <= final_learning_rate <= self.peak_learning_rate:
            raise ValueError(
                f"final_learning_rate must be in [0, peak_learning_rate={self.peak_learning_rate}]; got {final_learning_rate!r}."
            )
        self.warmup_steps = int(warmup_steps)
        self.final_learning_rate = float(final_learning_rate)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        peak, low, w = self.peak_learning_rate, self.final_learning_rate, float(self.warmup_steps)
        warm = peak * step / max(w, 1.0)
        tau = keras.ops.minimum(step - w, float(self.total_steps - self.warmup_steps))
        cosine = low + 0.5 * (peak - low) * (1.0 + keras.ops.cos(math.pi * tau / (self.total_steps - w)))
        return keras.ops.where(step < w, warm, cosine)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "final_learning_rate": self.final_learning_rate}


def schedule_values(schedule, steps: int) -> np.ndarray:
    """The learning rate of ``schedule`` (a LearningRateSchedule or callable) at steps 0 .. steps-1."""
    steps = check_positive_int(steps, "steps")
    if not callable(schedule):
        raise ValueError(f"schedule must be a LearningRateSchedule or a callable step -> rate; got {schedule!r}.")
    return np.array([float(schedule(s)) for s in range(steps)], dtype=np.float64)


def plot_schedule(schedules, steps: int, steps_per_epoch: int | None = None, title: str = "learning-rate schedules"):
    """Plot one schedule or a dict ``{name: schedule}`` over ``steps`` optimizer steps.

    With ``steps_per_epoch`` the x axis is in epochs. Used in notebook 04.
    """
    import matplotlib.pyplot as plt

    if not isinstance(schedules, dict):
        schedules = {"schedule": schedules}
    if not schedules:
        raise ValueError("schedules is empty: nothing to plot.")
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    scale = 1.0 if steps_per_epoch is None else 1.0 / check_positive_int(steps_per_epoch, "steps_per_epoch")
    for name, schedule in schedules.items():
        ax.plot(np.arange(steps) * scale, schedule_values(schedule, steps), label=name)
    ax.set_xlabel("step" if steps_per_epoch is None else "epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


# ========================================================================= 4. regularization

SMOOTHING = ("uniform", "others")


def smooth_labels(labels, num_classes: int, epsilon: float = 0.1, spread: str = "uniform") -> np.ndarray:
    """One-hot targets with label smoothing (Szegedy et al. 2016, section 7), float32 (N, K).

    ``spread="uniform"`` gives :math:`q_k = (1-\\varepsilon)\\,\\delta_{k,y} + \\varepsilon / K`, the
    paper's form and what ``keras.losses.CategoricalCrossentropy(label_smoothing=ε)``
    applies. ``spread="others"`` gives :math:`1-\\varepsilon` to the true class and
    :math:`\\varepsilon/(K-1)` to each other class (the lecture slide's form). ``labels``:
    (N,), (N, 1) or one-hot (N, K) (:func:`class_ids`). Used in notebook 04.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    if spread not in SMOOTHING:
        raise ValueError(f"spread must be one of {SMOOTHING}; got {spread!r}.")
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1); got {epsilon!r}.")
    labels = class_ids(labels, num_classes)
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    if spread == "uniform":
        return (1.0 - epsilon) * onehot + epsilon / num_classes
    if num_classes < 2:
        raise ValueError("spread='others' needs at least 2 classes.")
    return (1.0 - epsilon) * onehot + epsilon / (num_classes - 1) * (1.0 - onehot)


def mixup_batch(images, targets, lam, perm):
    """Mix a batch with a permutation of itself: the mixup rule (Zhang et al. 2018, eq. 1).

    :math:`\\tilde x_i = \\lambda_i x_i + (1-\\lambda_i) x_{\\pi(i)}`,
    :math:`\\tilde y_i = \\lambda_i y_i + (1-\\lambda_i) y_{\\pi(i)}`, with ``lam`` (B,) the
    :math:`\\lambda_i` and ``perm`` (B,) the permutation :math:`\\pi`. ``targets`` are one-hot
    (or soft) (B, K) with K >= 2: class ids (B,) or (B, 1) raise a ValueError (blending ids
    gives nonsense; one-hot encode them, as :func:`mixup` does with ``num_classes``). Works
    on tensors (inside tf.data) and arrays. Used by :func:`mixup`.
    """
    images = tf.cast(images, tf.float32)
    targets = tf.cast(targets, tf.float32)
    if targets.shape.rank != 2 or targets.shape[-1] == 1:
        raise ValueError(f"mixup_batch mixes one-hot or soft targets (B, K); got shape {tuple(targets.shape)}. "
                         "Class ids must be one-hot encoded first (tf.one_hot(ids, K), or training.mixup with "
                         "num_classes).")
    lam = tf.cast(lam, tf.float32)
    lam_x = tf.reshape(lam, [-1] + [1] * (len(images.shape) - 1))
    lam_y = tf.reshape(lam, [-1, 1])
    mixed_x = lam_x * images + (1.0 - lam_x) * tf.gather(images, perm)
    mixed_y = lam_y * targets + (1.0 - lam_y) * tf.gather(targets, perm)
    return mixed_x, mixed_y


def sample_beta(alpha: float, shape, seed):
    """Draw :math:`\\lambda \\sim \\mathrm{Beta}(\\alpha, \\alpha)` as :math:`G_1/(G_1+G_2)`, :math:`G_i \\sim \\Gamma(\\alpha, 1)`.

    ``seed`` is a stateless seed, a pair of integers (same seed, same draw).
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    g1 = tf.random.stateless_gamma(shape, seed=seed, alpha=alpha)
    g2 = tf.random.stateless_gamma(shape, seed=seed + tf.constant([0, 1], tf.int64), alpha=alpha)
    return g1 / (g1 + g2)


def mixup(dataset, alpha: float = 0.2, num_classes: int | None = None, seed: int = 0):
    """Mixup as a tf.data transform: a dataset of (images, targets) *batches* -> mixed batches.

    Each example is mixed with another example of the same batch (a random permutation)
    with its own :math:`\\lambda \\sim \\mathrm{Beta}(\\alpha, \\alpha)` (Zhang et al. 2018; the
    paper uses :math:`\\alpha \\in [0.1, 0.4]` on ImageNet). Class ids of shape (B,) or (B, 1)
    (CIFAR-10's) are one-hot encoded first, which needs ``num_classes``; one-hot or soft
    targets (B, K) are mixed as they are (K must equal ``num_classes`` when given); other
    shapes raise a ValueError that names them. The mixed targets are soft, so compile with
    ``keras.losses.CategoricalCrossentropy`` and give validation data one-hot labels.
    New :math:`\\lambda` and pairs every epoch; repeatable for a given ``seed`` once the global
    seed is set (``course_lib.setup`` or ``keras.utils.set_random_seed``).
    Apply it to training data only. Used in notebooks 04 and 10.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"dataset must be a tf.data.Dataset of (images, targets) batches; got {type(dataset).__name__}.")
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError("dataset must yield (images, targets) pairs; batch it first, e.g. course_lib.data.make_dataset.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not alpha > 0:
        raise ValueError(f"alpha must be a positive number (the Beta(alpha, alpha) parameter); got {alpha!r}.")
    x_spec, y_spec = spec
    if x_spec.shape.rank is None or x_spec.shape.rank < 2:
        raise ValueError(f"dataset must yield batches of images (B, H, W, C); got images of shape {x_spec.shape}. "
                         "Batch the dataset before mixup.")
    rank, width = y_spec.shape.rank, (y_spec.shape[-1] if y_spec.shape.rank else None)
    ids = rank == 1 or (rank == 2 and width == 1)  # (B,) or CIFAR-10's (B, 1): class ids
    if ids:
        if num_classes is None:
            raise ValueError(f"targets of shape {tuple(y_spec.shape)} are class ids: pass num_classes so they can be "
                             "one-hot encoded.")
        num_classes = check_positive_int(num_classes, "num_classes")
    elif rank != 2 or width is None:
        raise ValueError(f"targets must be class ids (B,) or (B, 1), or one-hot (B, K); got shape {y_spec.shape}.")
    elif num_classes is not None and width != num_classes:
        raise ValueError(f"targets are one-hot (B, {width}) but num_classes is {num_classes}.")
    alpha = float(alpha)

    def _mix(batch, draw):
        x, y = batch
        if ids:
            y = tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), num_classes)
        n = tf.shape(x)[0]
        pair_seed = tf.stack([draw, tf.constant(seed, tf.int64)])
        lam = sample_beta(alpha, [n], pair_seed)
        perm = tf.argsort(tf.random.stateless_uniform([n], seed=pair_seed + tf.constant([0, 7], tf.int64)))
        return mixup_batch(x, y, lam, perm)

    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip((dataset, draws)).map(_mix, num_parallel_calls=tf.data.AUTOTUNE)


# ======================================================================= 5. diagnosing a run


@dataclass
class FitDiagnosis:
    """What :func:`diagnose_fit` read from a run's curves."""

    verdict: str  # "underfitting", "overfitting" or "good fit"
    train_score: float
    val_score: float
    gap: float
    best_epoch: int  # 1-based epoch with the lowest validation loss
    message: str

    def __str__(self):
        return f"{self.verdict}: {self.message}"


def diagnose_fit(history, metric: str = "accuracy", underfit_below: float = 0.9, overfit_gap: float = 0.05):
    """Read under- or overfitting from a run's final training and validation scores.

    Underfitting (the model does not even fit the training data; lecture: too simple a
    model, too few iterations) when the final training ``metric`` is below
    ``underfit_below``; overfitting (fits training data, fails on new data) when the
    training score exceeds the validation score by more than ``overfit_gap``; otherwise a
    good fit. ``metric`` is a higher-is-better score such as accuracy. Also reports the
    epoch with the lowest validation loss (where early stopping would stop). Used in notebook 04.
    """
    hist = getattr(history, "history", history)
    if not isinstance(hist, dict) or not hist:
        raise ValueError("history must be a keras History or a non-empty dict of per-epoch lists.")
    for key in (metric, f"val_{metric}"):
        if key not in hist or len(hist[key]) == 0:
            raise ValueError(f"history has no {key!r} (train with validation data and that metric); "
                             f"available: {sorted(hist)}.")
    train_s, val_s = float(hist[metric][-1]), float(hist[f"val_{metric}"][-1])
    gap = train_s - val_s
    best = int(np.argmin(hist["val_loss"])) + 1 if hist.get("val_loss") else len(hist[metric])
    if train_s < underfit_below:
        verdict = "underfitting"
        msg = (f"training {metric} {train_s:.3f} < {underfit_below}: the model does not fit the training data; "
               "use a bigger model, better features, or train longer.")
    elif gap > overfit_gap:
        verdict = "overfitting"
        msg = (f"training {metric} {train_s:.3f} exceeds validation {val_s:.3f} by {gap:.3f} > {overfit_gap}; "
               f"validation loss was lowest at epoch {best}. Regularize, simplify, get more data, or stop earlier.")
    else:
        verdict = "good fit"
        msg = f"training {metric} {train_s:.3f}, validation {val_s:.3f} (gap {gap:.3f})."
    return FitDiagnosis(verdict, train_s, val_s, gap, best, msg)


# =================================================================== 6. hyperparameter search


def grid_configs(space: dict) -> list:
    """Every combination of a grid ``{name: [values]}``, as a list of dicts (``sklearn.model_selection.ParameterGrid``)."""
    from sklearn.model_selection import ParameterGrid

    _check_space(space)
    return [dict(c) for c in ParameterGrid(space)]


def random_configs(space: dict, n: int, seed: int = 0) -> list:
    """``n`` random configurations: each name's value drawn from its list or scipy.stats distribution.

    Random search (Bergstra & Bengio 2012) tries more distinct values of the
    hyperparameters that matter than a grid of the same size. Uses
    ``sklearn.model_selection.ParameterSampler``. Used in notebook 04.
    """
    from sklearn.model_selection import ParameterSampler

    _check_space(space, allow_distributions=True)
    n = check_positive_int(n, "n")
    return [dict(c) for c in ParameterSampler(space, n_iter=n, random_state=seed)]


def _check_space(space, allow_distributions=False):
    if not isinstance(space, dict) or not space:
        raise ValueError("space must be a non-empty dict {hyperparameter name: list of values}.")
    for name, values in space.items():
        if allow_distributions and hasattr(values, "rvs"):
            continue
        if not isinstance(values, (list, tuple, np.ndarray)) or len(values) == 0:
            kind = "a non-empty list of values or a scipy.stats distribution" if allow_distributions \
                else "a non-empty list of values"
            raise ValueError(f"space[{name!r}] must be {kind}; got {values!r}.")


@dataclass
class SearchResult:
    """What :func:`search` returns: the table (best first), the best configuration, its model."""

    table: "object"  # pandas.DataFrame
    best_config: dict
    best_model: object = None
    monitor: str = "val_accuracy"
    histories: list = field(default_factory=list)


def _same_data(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        xa, xb = np.asarray(a[0]), np.asarray(b[0])
        return xa.shape == xb.shape and np.array_equal(xa, xb)
    return False


def search(build_fn, configs, train_data, val_data, epochs: int, batch_size: int = 64,
           monitor: str = "val_accuracy", seed: int = 0, verbose: int = 0):
    """Train one model per configuration and rank them by a validation score.

    ``build_fn(**config)`` returns a compiled model; ``configs`` is a list of dicts (from
    :func:`grid_configs` or :func:`random_configs`). Each model trains ``epochs`` epochs
    on ``train_data`` (same seed for every configuration, so they differ only by the
    configuration) and is scored by the best ``monitor`` over its epochs. ``monitor``
    must be a validation metric, and there is deliberately no argument for test data:
    a model chosen by its test score has seen the test set, and its test score is no
    longer an honest estimate. Validation data identical to the training data is refused.

    Returns a :class:`SearchResult`: ``table`` (pandas, one row per configuration, best
    first: the hyperparameters, the score, its epoch, the final training score, seconds),
    ``best_config`` and ``best_model``. Used in notebook 04.
    """
    import pandas as pd

    if not callable(build_fn):
        raise ValueError("build_fn must be a function build_fn(**config) -> compiled keras.Model.")
    configs = list(configs)
    if not configs or not all(isinstance(c, dict) for c in configs):
        raise ValueError("configs must be a non-empty list of dicts, e.g. grid_configs({'learning_rate': [1e-3, 1e-2]}).")
    monitor = _check_monitor(monitor)
    epochs = check_positive_int(epochs, "epochs")
    train_data, _ = _as_fit_data(train_data, "train_data")
    val_data, _ = _as_fit_data(val_data, "val_data")
    if _same_data(train_data, val_data):
        raise ValueError("val_data is the training data: hold out a separate validation set to compare configurations.")
    better = max if _mode(monitor) == "max" else min
    rows, histories, best_model, best_score = [], [], None, None
    for config in configs:
        keras.utils.set_random_seed(seed)
        model = build_fn(**config)
        _check_compiled(model)
        start = time.perf_counter()
        history = train(model, train_data, val_data, epochs, batch_size=batch_size, monitor=monitor,
                        patience=None, verbose=verbose)
        seconds = time.perf_counter() - start
        if monitor not in history.history:
            raise ValueError(f"the models report no {monitor!r}; available: {sorted(history.history)}. "
                             "Compile with that metric or change monitor.")
        curve = history.history[monitor]
        score = better(curve)
        train_key = monitor[len("val_"):]
        rows.append({**config, monitor: score, "epoch": curve.index(score) + 1,
                     train_key: history.history.get(train_key, [np.nan])[-1], "seconds": round(seconds, 1)})
        histories.append(history.history)
        improved = best_score is None or (score > best_score if better is max else score < best_score)
        if improved:
            best_model, best_score = model, score
    table = pd.DataFrame(rows).sort_values(monitor, ascending=_mode(monitor) == "min", kind="stable")
    best_config = {k: table.iloc[0][k] for k in configs[0]}
    best_config = {k: (v.item() if hasattr(v, "item") else v) for k, v in best_config.items()}
    return SearchResult(table.reset_index(drop=True), best_config, best_model, monitor, histories)


# ====================================================================== 7. transfer learning

MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)
OFFLINE_BACKBONE_HINT = (
    "Offline, pretrain a backbone on another course dataset instead: train "
    "course_lib.models.mobilenet_v2 on some cluttered-digit classes, cut it with "
    "course_lib.training.backbone_from_classifier(model) and fine-tune that "
    "(notebook 04, section 'Transfer learning')."
)


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights are not in the Keras cache and could not be downloaded."""


#: ImageNet-1k class indices of the five domestic-cat classes (tabby ... Egyptian cat).
IMAGENET_CAT_CLASSES = range(281, 286)

#: Names of a few ImageNet-1k classes (index: WordNet name, in the index order of the
#: ILSVRC 2012 classes that keras.applications' models output), those the course's photos
#: (course_lib.data.load_photo) tend to get. The full list is a download
#: (keras.applications.imagenet_utils.decode_predictions); :func:`imagenet_class_name`
#: shows the index of any other class.
IMAGENET_CLASS_NAMES = {
    281: "tabby cat", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat",
    286: "cougar", 287: "lynx", 504: "coffee mug", 505: "coffeepot", 550: "espresso maker", 923: "plate",
    967: "espresso", 968: "cup", 652: "military uniform", 834: "suit", 557: "flagpole", 657: "missile",
    744: "projectile", 812: "space shuttle", 698: "palace", 985: "daisy",
}


def imagenet_class_name(index: int) -> str:
    """``"281 tabby cat"`` for a class in :data:`IMAGENET_CLASS_NAMES`, ``"class 917"`` otherwise."""
    index = int(index)
    if not 0 <= index < 1000:
        raise ValueError(f"ImageNet-1k class indices lie in [0, 999]; got {index}.")
    name = IMAGENET_CLASS_NAMES.get(index)
    return f"{index} {name}" if name else f"class {index}"


def _imagenet_weights_file(alpha: float, rows: int, include_top: bool = False) -> str:
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    suffix = "" if include_top else "_no_top"
    name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}{suffix}.h5"
    return os.path.join(home, "models", name)


def _build_imagenet_mobilenet_v2(input_shape, alpha, include_top=False):  # separate so tests can stand in for the download
    if include_top:  # the 1000-class head, as logits (classifier_activation=None): the course's convention
        return keras.applications.MobileNetV2(input_shape=input_shape, alpha=alpha, include_top=True,
                                              weights="imagenet", classifier_activation=None)
    return keras.applications.MobileNetV2(input_shape=input_shape, alpha=alpha, include_top=False,
                                          weights="imagenet", pooling="avg")


def imagenet_mobilenet_v2(input_shape=(96, 96, 3), alpha: float = 0.35, allow_download: bool = True,
                          include_top: bool = False):
    """A MobileNetV2 with ImageNet weights (Sandler et al. 2018), for [0, 1] images.

    Wraps ``keras.applications.MobileNetV2`` behind a ``Rescaling`` layer that maps [0, 1]
    to the [-1, 1] the weights were trained on, so it takes the course's images
    (N, S, S, 3). By default (``include_top=False``, ``pooling="avg"``) it is a feature
    extractor: one vector per image, (N, 1280) for ``alpha`` <= 1 (notebook 04). With
    ``include_top=True`` it is the whole ImageNet classifier: (N, 1000) **logits** of the
    ImageNet-1k classes (the softmax left out, ``classifier_activation=None``), its last
    feature map ``out_relu`` of S/32 x S/32 (7x7 at 224 pixels) feeding global average
    pooling and the ``predictions`` Dense layer, so CAM, Grad-CAM and the other methods of
    ``course_lib.explain`` apply as they are (notebooks 07, 08 and 09, on real photos).
    ImageNet weights exist for ``alpha`` in :data:`MOBILENET_V2_ALPHAS` and square inputs
    of :data:`MOBILENET_V2_SIZES` pixels.

    The weights come from the Keras cache or are downloaded (``..._no_top.h5`` or, with
    the top, ``....h5``: 14 MB at alpha 1.0). With ``allow_download=False`` nothing is
    downloaded. When the weights cannot be had, raises
    :class:`PretrainedWeightsUnavailable` with a one-line message that says what to do.
    """
    if alpha not in MOBILENET_V2_ALPHAS:
        raise ValueError(f"ImageNet MobileNetV2 weights exist for alpha in {MOBILENET_V2_ALPHAS}; got {alpha!r}.")
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[2] != 3 or input_shape[0] != input_shape[1] \
            or input_shape[0] not in MOBILENET_V2_SIZES:
        raise ValueError(f"input_shape must be (S, S, 3) with S in {MOBILENET_V2_SIZES} for ImageNet weights; "
                         f"got {input_shape}. Resize the images (keras.layers.Resizing) to one of these sizes.")
    include_top = bool(include_top)
    what = "classifier" if include_top else "backbone"
    # Without the top there is an offline alternative (a backbone pretrained on course data); with it there is none.
    hint = ("The ImageNet classifier has no offline stand-in: use the notebook's cluttered-digit model instead."
            if include_top else OFFLINE_BACKBONE_HINT)
    weights_file = _imagenet_weights_file(alpha, input_shape[0], include_top)
    if not os.path.exists(weights_file) and not allow_download:
        raise PretrainedWeightsUnavailable(
            f"the ImageNet weights for the MobileNetV2 {what} (alpha={alpha}, {input_shape[0]}px) are not in the "
            f"Keras cache and allow_download=False. {hint}")
    try:
        base = _build_imagenet_mobilenet_v2(input_shape, alpha, include_top)
    except Exception as err:  # no network shows as URLError, OSError, ConnectionError, ...
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]  # one line, whatever the error printed
        raise PretrainedWeightsUnavailable(
            f"could not load the ImageNet weights for the MobileNetV2 {what} ({reason}). Connect to the internet "
            f"and run again (Keras caches them in {os.path.dirname(weights_file)}). {hint}") from None
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(inputs)
    name = "imagenet_mobilenet_v2_classifier" if include_top else "imagenet_mobilenet_v2"
    return keras.Model(inputs, base(x), name=name)


def backbone_from_classifier(model, name: str = "backbone"):
    """Cut a trained classifier after its global pooling layer: images -> feature vectors.

    Returns a Model sharing the classifier's layers and weights (input to the output of
    its last ``GlobalAveragePooling2D`` / ``GlobalMaxPooling2D`` layer). This is how the
    notebook gets a pretrained backbone offline. Used in notebook 04.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model; got {type(model).__name__}.")
    pools = [layer for layer in model.layers
             if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D))]
    if not pools:
        raise ValueError(f"model {model.name!r} has no global pooling layer to cut after; pass a CNN classifier "
                         "that ends in GlobalAveragePooling2D -> Dense.")
    return keras.Model(model.inputs, pools[-1].output, name=name)


def transfer_classifier(backbone, num_classes: int, dropout: float = 0.2, name: str = "transfer"):
    """A new classifier on a frozen backbone: image -> backbone(training=False) -> dropout -> Dense logits.

    The backbone is frozen (``trainable = False``) for the first stage, training only the
    new head (feature extraction). It is *called with* ``training=False`` so that its
    batch-norm layers always use their stored (pretrained) mean and variance, also later
    when :func:`unfreeze_top` makes some of its layers trainable: small batches of the new
    data would otherwise replace those statistics and wreck the features being
    fine-tuned. Used in notebook 04.
    """
    if not isinstance(backbone, keras.Model):
        raise ValueError(f"backbone must be a keras.Model; got {type(backbone).__name__}.")
    num_classes = check_positive_int(num_classes, "num_classes")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}.")
    backbone.trainable = False
    inputs = keras.Input(backbone.input_shape[1:])
    features = backbone(inputs, training=False)
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D()(features)
    features = keras.layers.Dropout(dropout)(features)
    outputs = keras.layers.Dense(num_classes, name="logits")(features)
    return keras.Model(inputs, outputs, name=name)


def _leaf_layers(model):
    """The layers of ``model`` in order, with nested models (e.g. a wrapped keras.applications net) opened up.

    ``models.walk_layers(model, nested_models=False)``, the one walker (notebook 04 calls this name).
    """
    from .models import walk_layers

    return walk_layers(model, nested_models=False)


def unfreeze_top(backbone, n_layers: int, train_batchnorm: bool = False):
    """Make the last ``n_layers`` layers of ``backbone`` trainable for fine-tuning; return their count.

    Earlier layers stay frozen (generic features, Yosinski et al. 2014), and batch-norm
    layers stay frozen unless ``train_batchnorm`` (their statistics and scales keep their
    pretrained values). Re-compile the model afterwards, with a learning rate about 10x
    smaller, so that the small updates refine rather than destroy the features. Used in notebook 04.
    """
    if not isinstance(backbone, keras.Model):
        raise ValueError(f"backbone must be a keras.Model; got {type(backbone).__name__}.")
    n_layers = check_positive_int(n_layers, "n_layers")
    layers = [layer for layer in _leaf_layers(backbone) if layer.weights]
    if n_layers > len(layers):
        raise ValueError(f"n_layers={n_layers} but the backbone has only {len(layers)} layers with weights.")
    backbone.trainable = True
    for i, layer in enumerate(layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= len(layers) - n_layers and (train_batchnorm or not is_bn)
    return sum(layer.trainable for layer in layers)


# ------------------------------------------------------------------ exercise references
# Notebooks 04 and 11's exercises, for the student versions to fall back on until an
# exercise is answered (course_lib.exercises.answer_or_reference).


def momentum_step(w, v, grad, lr: float, mu: float):
    """One SGD-with-momentum step, ``(w_new, v_new)``: v' = mu v - lr g, w' = w + v'.

    The classical momentum of Polyak (1964) in the form of Sutskever et al. (2013),
    eq. 1-2 (what ``keras.optimizers.SGD(momentum=mu)`` does). Notebook 04, exercise 1.
    """
    v_new = mu * np.asarray(v) - lr * np.asarray(grad)
    return np.asarray(w) + v_new, v_new


def warmup_cosine(step, peak: float, total: int, warmup: int) -> float:
    """The learning rate of :class:`WarmupCosine` (decay to 0) at one step, as a Python float.

    Linear warm-up peak * t / w for t < w, then 0.5 peak (1 + cos(pi min(t - w, T - w) / (T - w))).
    Notebook 04, exercise 2.
    """
    return float(WarmupCosine(peak, total, warmup_steps=warmup)(step))


def smooth_targets(labels, num_classes: int, eps: float) -> np.ndarray:
    """Label smoothing in the lecture's form: 1 - eps on the true class, eps / (K - 1) elsewhere.

    :func:`smooth_labels` with ``spread="others"``; float32 (N, K). Notebook 04, exercise 3.
    """
    return smooth_labels(labels, num_classes, eps, spread="others")


def pick_config(table, monitor: str = "val_accuracy"):
    """The ``learning_rate`` of the row of ``table`` (a pandas DataFrame) with the best validation score.

    Chosen on ``monitor`` (a validation column, never a test one), first row on ties, as
    :func:`search` ranks its table. Notebook 04, exercise 4.
    """
    if monitor not in table.columns or not str(monitor).startswith("val_"):
        raise ValueError(f"monitor must be a validation column of the table; got {monitor!r}, columns {list(table.columns)}.")
    return table.loc[table[monitor].idxmax()]["learning_rate"]






def class_weights(labels, num_classes: int) -> dict:
    """Balanced class weights {k: n / (K n_k)} for ``model.fit(class_weight=...)``.

    scikit-learn's ``compute_class_weight("balanced")`` (King & Zeng 2001): a class
    seen half as often weighs twice as much. Every class must occur. Notebook 11, exercise 2.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    labels = class_ids(labels, num_classes)  # (N,), (N, 1) or one-hot
    counts = np.bincount(labels, minlength=num_classes)
    if len(counts) > num_classes or (counts == 0).any():
        raise ValueError(f"labels must cover every class 0..{num_classes - 1} (counts {counts.tolist()}).")
    return {k: len(labels) / (num_classes * counts[k]) for k in range(num_classes)}


#: What a project keeps out of git (notebook 11's .gitignore): data, checkpoints, logs, caches, weights.
IGNORED_DIRS = ("data", "checkpoints", "logs", "__pycache__", ".ipynb_checkpoints")
IGNORED_SUFFIXES = (".keras", ".h5", ".ckpt")


def should_commit(path) -> bool:
    """True if a file at ``path`` ('/'-separated, relative) belongs in a project's repository.

    False inside :data:`IGNORED_DIRS` (data and what training writes: checkpoints,
    logs, caches) and for saved models (:data:`IGNORED_SUFFIXES`); code, notebooks and
    small results are committed. Notebook 11, exercise 5.
    """
    parts = str(path).split("/")
    if any(part in IGNORED_DIRS for part in parts[:-1]):
        return False
    return not parts[-1].lower().endswith(IGNORED_SUFFIXES)
