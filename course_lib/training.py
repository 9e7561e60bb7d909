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

8. Semi-supervised learning (notebook 10): :func:`sharpen`, :func:`entropy_loss`,
   :func:`consistency_loss`, :func:`pseudo_labels`, :func:`fixmatch_unlabelled_loss`,
   :class:`SemiSupervisedTrainer` (one ``train_step`` for every method) and the
   Gaussian-mixture baseline (:func:`gmm_e_step`, :func:`gmm_m_step`, :class:`SemiSupervisedGMM`).
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

from .data import check_positive_int, class_ids  # noqa: F401  (class_ids: re-exported, notebooks use training.class_ids)

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


# ============================================================= 8. semi-supervised learning
#
# Few labelled images, many unlabelled ones (notebook 10). The unlabelled images enter the
# loss through one extra term, weighted by ``weight``:
#   entropy minimization (Grandvalet & Bengio 2005), consistency regularization (the
#   Pi-model of Laine & Aila 2017 / Sajjadi et al. 2016), pseudo-labels (Lee 2013) and
#   FixMatch (Sohn et al. 2020); mixup (Zhang et al. 2018, section 4 above) uses labels only.
# MixMatch's sharpening (Berthelot et al. 2019) and a generative baseline (a Gaussian
# mixture fitted by EM on labelled and unlabelled features) complete the section.

SSL_METHODS = ("supervised", "entropy", "consistency", "mixup", "pseudo_label", "fixmatch")


def labelled_unlabelled_split(labels, per_class: int, seed: int = 0):
    """Indices of ``per_class`` labelled examples of every class, and of all the others (unlabelled).

    Returns ``(labelled_idx, unlabelled_idx)``, disjoint, together all of ``labels``. The
    labels of the unlabelled part are then simply not used for training: the usual way
    to simulate the semi-supervised setting on a labelled set (Oliver et al. 2018).
    Used in notebook 10.
    """
    per_class = check_positive_int(per_class, "per_class")
    labels = class_ids(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() <= per_class:
        raise ValueError(f"per_class={per_class} labelled examples need more than {per_class} examples of every class "
                         f"(some must stay unlabelled); class {classes[counts.argmin()]} has {counts.min()}.")
    rng = np.random.default_rng(seed)
    labelled = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes])
    labelled = np.sort(labelled)
    return labelled, np.setdiff1d(np.arange(len(labels)), labelled)


def _check_probabilities(probs, name="probs"):
    p = keras.ops.convert_to_tensor(probs, "float32")
    if len(p.shape) != 2:
        raise ValueError(f"{name} must be (batch, classes) class probabilities; got shape {tuple(p.shape)}.")
    if not tf.executing_eagerly():
        return p
    arr = keras.ops.convert_to_numpy(p)
    if not np.isfinite(arr).all() or (arr < 0).any() or not np.allclose(arr.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(f"{name} must hold probabilities: non-negative rows summing to 1 "
                         "(apply keras.ops.softmax to logits first).")
    return p


def sharpen(probs, temperature: float = 0.5):
    """Temperature sharpening of MixMatch (Berthelot et al. 2019, eq. 7).

    :math:`\\mathrm{Sharpen}(p, T)_k = p_k^{1/T} / \\sum_j p_j^{1/T}`. ``T = 1`` leaves
    ``p`` unchanged; ``T -> 0`` tends to the one-hot vector of the most probable class
    (a hard pseudo-label); MixMatch uses ``T = 0.5``. Computed as
    ``softmax(log p / T)``, which is the same formula without overflow for small ``T``.
    ``probs`` is (B, K), rows summing to 1. Used in notebook 10.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number (T -> 0 gives one-hot); got {temperature!r}.")
    p = _check_probabilities(probs)
    return keras.ops.softmax(keras.ops.log(p) / float(temperature), axis=-1)


def entropy_loss(logits):
    """Mean entropy of the predicted class distributions (Grandvalet & Bengio 2005).

    :math:`\\frac1B \\sum_b H(p_b) = -\\frac1B \\sum_b \\sum_k p_{bk} \\log p_{bk}` with
    :math:`p_b = \\mathrm{softmax}(z_b)`. Minimizing it on unlabelled images pushes the
    decision boundary away from them (low-density separation). Used in notebook 10.
    """
    logp = keras.ops.log_softmax(keras.ops.convert_to_tensor(logits, "float32"), axis=-1)
    return -keras.ops.mean(keras.ops.sum(keras.ops.exp(logp) * logp, axis=-1))


def consistency_loss(logits_a, logits_b):
    """Squared distance between two predictions of the same images: the Pi-model term.

    :math:`\\frac1B \\sum_b \\lVert p(y \\mid \\tilde x_b) - p(y \\mid \\hat x_b) \\rVert_2^2`, where
    :math:`\\tilde x_b, \\hat x_b` are two random augmentations of :math:`x_b` (Laine & Aila
    2017; Sajjadi et al. 2016). ``logits_a`` is treated as the target (no gradient flows
    through it), which keeps the term from collapsing both predictions. Used in notebook 10.
    """
    pa = keras.ops.stop_gradient(keras.ops.softmax(logits_a, axis=-1))
    pb = keras.ops.softmax(logits_b, axis=-1)
    return keras.ops.mean(keras.ops.sum(keras.ops.square(pa - pb), axis=-1))


def pseudo_labels(probs, threshold: float = 0.0):
    """Hard pseudo-labels and the confidence mask: ``argmax p`` and :math:`\\mathbb 1(\\max p \\ge \\tau)`.

    Returns ``(labels, mask)``: int32 (B,) and float32 (B,), 1 where the model is at least
    ``threshold`` sure. ``threshold=0`` keeps every prediction (Lee 2013); FixMatch uses
    0.95. Used by :func:`fixmatch_unlabelled_loss` (notebook 10).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1]; got {threshold!r}.")
    p = _check_probabilities(probs)
    labels = keras.ops.cast(keras.ops.argmax(p, axis=-1), "int32")
    mask = keras.ops.cast(keras.ops.max(p, axis=-1) >= threshold, "float32")
    return labels, mask


def fixmatch_unlabelled_loss(logits_weak, logits_strong, threshold: float = 0.95):
    """FixMatch's unlabelled loss (Sohn et al. 2020, eq. 4) and the fraction of images it uses.

    :math:`\\ell_u = \\frac{1}{\\mu B} \\sum_b \\mathbb 1(\\max q_b \\ge \\tau)\\, H(\\hat q_b, p(y \\mid \\mathcal A(u_b)))`:
    :math:`q_b` is the prediction on the *weakly* augmented image (no gradient), :math:`\\hat q_b`
    its one-hot argmax (the pseudo-label), and the cross-entropy is taken against the
    prediction on the *strongly* augmented image :math:`\\mathcal A(u_b)`. The mean runs
    over all :math:`\\mu B` unlabelled images, so the loss is exactly zero when no
    prediction reaches the threshold :math:`\\tau`. Returns ``(loss, mask_rate)``.
    Used by :class:`SemiSupervisedTrainer` (notebook 10).
    """
    probs = keras.ops.softmax(keras.ops.stop_gradient(keras.ops.convert_to_tensor(logits_weak, "float32")), axis=-1)
    labels, mask = pseudo_labels(probs, threshold)
    ce = keras.losses.sparse_categorical_crossentropy(labels, logits_strong, from_logits=True)
    return keras.ops.mean(mask * ce), keras.ops.mean(mask)


@keras.saving.register_keras_serializable(package="course_lib")
class Cutout(keras.layers.Layer):
    """Cutout (DeVries & Taylor 2017): fill one random ``size`` x ``size`` square per image with ``fill``.

    The square's centre is uniform over the image, so the square may be partly outside.
    Active only in training (``training=True``), like Keras' own random layers. Part of
    :func:`strong_augmentation` (FixMatch's strong augmentation ends with Cutout).
    """

    def __init__(self, size: int, fill: float = 0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.size = check_positive_int(size, "size")
        self.fill = float(fill)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        shape = keras.ops.shape(images)
        b, h, w = shape[0], shape[1], shape[2]
        cy = keras.random.randint((b, 1, 1), 0, h, seed=self.seed_generator)
        cx = keras.random.randint((b, 1, 1), 0, w, seed=self.seed_generator)
        rows = keras.ops.reshape(keras.ops.arange(h), (1, -1, 1))
        cols = keras.ops.reshape(keras.ops.arange(w), (1, 1, -1))
        half = self.size // 2
        inside = (keras.ops.abs(rows - cy) <= half) & (keras.ops.abs(cols - cx) <= half)
        if self.size % 2 == 0:  # an even square spans [c - half, c + half)
            inside = inside & (rows - cy < half) & (cols - cx < half)
        inside = keras.ops.cast(keras.ops.expand_dims(inside, -1), images.dtype)
        return images * (1.0 - inside) + self.fill * inside

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "fill": self.fill, "seed": self.seed}


def weak_augmentation(max_shift: float = 0.125, flip: bool = True, seed: int = 0):
    """FixMatch's weak augmentation: a random horizontal flip and a shift of up to ``max_shift``.

    ``max_shift`` is a fraction of the image size (the paper: 12.5%, i.e. 4 of 32 pixels),
    with reflected borders. ``flip=False`` for images whose mirror is another class or no
    class at all (digits, text; the paper drops the flip for SVHN). A ``keras.Sequential``
    of Keras' random layers, active in training only. Used in notebook 10.
    """
    if not 0.0 <= max_shift < 1.0:
        raise ValueError(f"max_shift must be a fraction of the image size in [0, 1); got {max_shift!r}.")
    steps = [keras.layers.RandomFlip("horizontal", seed=seed)] if flip else []
    steps.append(keras.layers.RandomTranslation(max_shift, max_shift, fill_mode="reflect", seed=seed + 1))
    return keras.Sequential(steps, name="weak_augmentation")


def strong_augmentation(max_shift: float = 0.25, rotation: float = 0.08, zoom: float = 0.2,
                        contrast: float = 0.5, cutout: int = 3, flip: bool = True, seed: int = 0):
    """A strong augmentation in the spirit of RandAugment + Cutout (Cubuk et al. 2020; Sohn et al. 2020).

    Flip (optional), a shift of up to ``max_shift``, a rotation of up to ``rotation`` turns,
    a zoom of up to ``zoom``, a contrast change of up to ``contrast``, then a
    ``cutout`` x ``cutout`` Cutout square (0: none). Every transform is applied at a
    random strength to every image, which distorts it far more than
    :func:`weak_augmentation` while (for these ranges) keeping its class. A
    ``keras.Sequential``, active in training only. Used in notebook 10.
    """
    for name, value in (("max_shift", max_shift), ("rotation", rotation), ("zoom", zoom), ("contrast", contrast)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1); got {value!r}.")
    if isinstance(cutout, bool) or not isinstance(cutout, (int, np.integer)) or cutout < 0:
        raise ValueError(f"cutout must be a square size in pixels >= 0 (0: no cutout); got {cutout!r}.")
    steps = [keras.layers.RandomFlip("horizontal", seed=seed)] if flip else []
    steps.append(keras.layers.RandomTranslation(max_shift, max_shift, fill_mode="constant", seed=seed + 1))
    if rotation > 0:
        steps.append(keras.layers.RandomRotation(rotation, fill_mode="constant", seed=seed + 2))
    if zoom > 0:
        steps.append(keras.layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 3))
    if contrast > 0:
        steps.append(keras.layers.RandomContrast(contrast, value_range=(0.0, 1.0), seed=seed + 4))
    if cutout > 0:
        steps.append(Cutout(int(cutout), seed=seed + 5))
    return keras.Sequential(steps, name="strong_augmentation")


def ssl_dataset(x_labelled, y_labelled, x_unlabelled, batch_size: int = 32, mu: int = 7, seed: int = 0):
    """An endless tf.data stream of ``((x_l, y_l), x_u)``: B labelled and :math:`\\mu B` unlabelled images.

    Both parts are repeated and shuffled independently, so the few labelled images cycle
    many times while the unlabelled ones pass about once per :math:`\\mu B`-sized sweep (the
    FixMatch batch: B = 64, :math:`\\mu` = 7 in the paper). Fit it with
    ``steps_per_epoch``. Every iterator of the stream yields the same sequence, so several
    ``fit`` calls on one stream are reproducible. Used with :class:`SemiSupervisedTrainer`
    (notebook 10).
    """
    from .data import check_images

    x_labelled = check_images(x_labelled, "x_labelled")
    x_unlabelled = check_images(x_unlabelled, "x_unlabelled")
    y_labelled = class_ids(y_labelled, name="y_labelled")  # (N,), (N, 1) or one-hot -> ids (N,)
    if len(y_labelled) != len(x_labelled):
        raise ValueError(f"x_labelled ({len(x_labelled)}) and y_labelled ({len(y_labelled)}) must have the same length.")
    if x_labelled.shape[1:] != x_unlabelled.shape[1:]:
        raise ValueError(f"labelled images {x_labelled.shape[1:]} and unlabelled images {x_unlabelled.shape[1:]} "
                         "must have the same shape.")
    batch_size = check_positive_int(batch_size, "batch_size")
    mu = check_positive_int(mu, "mu")
    lab = tf.data.Dataset.from_tensor_slices((x_labelled, y_labelled.astype(np.int32)))
    # repeat() first, then ONE seeded shuffle of the endless stream that every new iterator
    # starts afresh: shuffle().repeat() with reshuffle_each_iteration=True shares its seed
    # state across iterators, so a second fit() on the same stream got an order that
    # depended on how far the first one's prefetch had read ahead (a timing race).
    lab = lab.repeat().shuffle(len(x_labelled), seed=seed, reshuffle_each_iteration=False).batch(batch_size)
    unl = tf.data.Dataset.from_tensor_slices(x_unlabelled)
    unl = unl.repeat().shuffle(len(x_unlabelled), seed=seed + 1, reshuffle_each_iteration=False).batch(mu * batch_size)
    return tf.data.Dataset.zip((lab, unl)).prefetch(tf.data.AUTOTUNE)


def _sparse_labels(y):
    """Labels (B,), (B, 1) or one-hot (B, K) as int32 ids (B,) inside a train / test step (static shapes)."""
    if len(y.shape) == 2 and y.shape[-1] == 1:
        return keras.ops.cast(keras.ops.reshape(y, (-1,)), "int32")
    if len(y.shape) == 2:
        return keras.ops.cast(keras.ops.argmax(y, axis=-1), "int32")
    if len(y.shape) != 1:
        raise ValueError(f"labels must be class ids (B,) or (B, 1), or one-hot (B, K); got shape {tuple(y.shape)}.")
    return keras.ops.cast(y, "int32")


@keras.saving.register_keras_serializable(package="course_lib")
class SemiSupervisedTrainer(keras.Model):
    """One training loop for the semi-supervised methods of notebook 10, written out in ``train_step``.

    Wraps a classifier (images -> logits) and shares its weights. It is fitted on
    :func:`ssl_dataset` batches ``((x_l, y_l), x_u)``; the loss is

    :math:`L = \\frac1B \\sum_b H(y_b, p(y \\mid \\alpha(x_b))) + w_t\\, \\ell_u`,

    the supervised cross-entropy on weakly augmented (:math:`\\alpha`) labelled images plus
    the unlabelled term of ``method``:

    * ``"supervised"``: none (the baseline: same augmentation, same steps);
    * ``"entropy"``: :func:`entropy_loss` of the predictions on :math:`\\alpha(u)`;
    * ``"consistency"``: :func:`consistency_loss` between two weak augmentations of :math:`u`;
    * ``"pseudo_label"``: cross-entropy with the argmax of the prediction on :math:`\\alpha(u)`
      (Lee 2013; every prediction, no threshold);
    * ``"fixmatch"``: :func:`fixmatch_unlabelled_loss` of :math:`\\alpha(u)` and the strongly
      augmented :math:`\\mathcal A(u)`, with threshold :math:`\\tau` = ``threshold``;
    * ``"mixup"``: no unlabelled term; the labelled batch is mixed with a permutation of
      itself (:func:`mixup_batch`, :math:`\\lambda \\sim \\mathrm{Beta}(\\alpha, \\alpha)` with
      :math:`\\alpha` = ``mixup_alpha``).

    :math:`w_t` = ``weight`` times a linear ramp from 0 over the first ``ramp_up_steps``
    steps (Lee 2013 and Laine & Aila 2017 ramp it up: early predictions are poor
    targets); FixMatch needs none (``ramp_up_steps=0``). All images of a step go through
    the classifier in one batch. Logs ``loss``, ``supervised_loss``, ``unlabelled_loss``,
    ``mask_rate`` (share of unlabelled images used) and ``accuracy``. Evaluation
    (validation data, ``evaluate``) is plain cross-entropy and accuracy. Notebook 10.
    """

    def __init__(self, model, method: str = "fixmatch", weight: float = 1.0, threshold: float = 0.95,
                 weak=None, strong=None, mixup_alpha: float = 0.5, ramp_up_steps: int = 0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise ValueError(f"model must be a keras.Model (images -> logits); got {type(model).__name__}.")
        if method not in SSL_METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(SSL_METHODS)}.")
        if not weight >= 0:
            raise ValueError(f"weight (of the unlabelled term) must be >= 0; got {weight!r}.")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1]; got {threshold!r}.")
        if not mixup_alpha > 0:
            raise ValueError(f"mixup_alpha must be positive (the Beta(alpha, alpha) parameter); got {mixup_alpha!r}.")
        if isinstance(ramp_up_steps, bool) or not isinstance(ramp_up_steps, (int, np.integer)) or ramp_up_steps < 0:
            raise ValueError(f"ramp_up_steps must be an integer >= 0; got {ramp_up_steps!r}.")
        self.model = model
        self.method, self.weight, self.threshold = method, float(weight), float(threshold)
        self.mixup_alpha, self.ramp_up_steps = float(mixup_alpha), int(ramp_up_steps)
        self.weak = weak if weak is not None else weak_augmentation(seed=seed)
        self.strong = strong if strong is not None else strong_augmentation(seed=seed + 10)
        self.seed_generator = keras.random.SeedGenerator(seed + 20)
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("loss", "supervised_loss", "unlabelled_loss", "mask_rate")}
        self.trackers["accuracy"] = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _ramp(self):
        if self.ramp_up_steps == 0:
            return 1.0
        step = keras.ops.cast(self.optimizer.iterations, "float32")
        return keras.ops.minimum(1.0, step / float(self.ramp_up_steps))

    def _views(self, xl, xu):
        """The augmented batches the method needs: labelled first, then the unlabelled views."""
        views = [self.weak(xl, training=True)]
        if self.method in ("entropy", "pseudo_label"):
            views.append(self.weak(xu, training=True))
        elif self.method == "consistency":
            views += [self.weak(xu, training=True), self.weak(xu, training=True)]
        elif self.method == "fixmatch":
            views += [self.weak(xu, training=True), self.strong(xu, training=True)]
        return views

    def _ssl_losses(self, xl, yl, xu):
        yl = _sparse_labels(yl)
        views = self._views(xl, xu)
        n = [keras.ops.shape(v)[0] for v in views]
        targets = keras.ops.one_hot(yl, self.model.output_shape[-1])
        if self.method == "mixup":
            b = n[0]
            lam = keras.random.beta((b,), self.mixup_alpha, self.mixup_alpha, seed=self.seed_generator)
            perm = keras.ops.argsort(keras.random.uniform((b,), seed=self.seed_generator))
            views[0], targets = mixup_batch(views[0], targets, lam, perm)
        logits = self.model(keras.ops.concatenate(views, axis=0), training=True)
        parts, start = [], 0
        for size in n:
            parts.append(logits[start:start + size])
            start = start + size
        sup = keras.ops.mean(keras.losses.categorical_crossentropy(targets, parts[0], from_logits=True))
        mask_rate = keras.ops.convert_to_tensor(0.0)
        if self.method == "entropy":
            unl = entropy_loss(parts[1])
        elif self.method == "consistency":
            unl = consistency_loss(parts[1], parts[2])
        elif self.method == "pseudo_label":
            unl, mask_rate = fixmatch_unlabelled_loss(parts[1], parts[1], threshold=0.0)
        elif self.method == "fixmatch":
            unl, mask_rate = fixmatch_unlabelled_loss(parts[1], parts[2], threshold=self.threshold)
        else:
            unl = keras.ops.convert_to_tensor(0.0)
        loss = sup + self.weight * self._ramp() * unl
        if self.losses:
            loss = loss + keras.ops.sum(keras.ops.stack(self.losses))
        return loss, sup, unl, mask_rate, parts[0]

    def train_step(self, data):
        (xl, yl), xu = data
        with tf.GradientTape() as tape:
            loss, sup, unl, mask_rate, logits_l = self._ssl_losses(xl, yl, xu)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        for key, value in (("loss", loss), ("supervised_loss", sup), ("unlabelled_loss", unl), ("mask_rate", mask_rate)):
            self.trackers[key].update_state(value)
        if self.method != "mixup":
            self.trackers["accuracy"].update_state(_sparse_labels(yl), logits_l)
        return {k: m.result() for k, m in self.trackers.items()}

    def test_step(self, data):
        x, y = data[0], _sparse_labels(data[1])
        logits = self.model(x, training=False)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        self.trackers["loss"].update_state(loss)
        self.trackers["accuracy"].update_state(y, logits)
        return {"loss": self.trackers["loss"].result(), "accuracy": self.trackers["accuracy"].result()}


# --------------------------------------------------------- generative baseline: Gaussian mixture + EM


def _check_features(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"{name} must be a finite 2-D array (samples, features); got shape {x.shape}. "
                         "Flatten images or reduce them with sklearn.decomposition.PCA first.")
    return x


def gmm_e_step(x, weights, means, covariances):
    """E step: the responsibility of each mixture component for each sample.

    :math:`\\gamma_{ji} = \\alpha_i\\, \\mathcal N(x_j \\mid \\mu_i, \\Sigma_i) / \\sum_{l} \\alpha_l\\, \\mathcal N(x_j \\mid \\mu_l, \\Sigma_l)`
    (Zhou 2016, *Machine Learning*, eq. 13.5; Dempster, Laird & Rubin 1977). ``x`` is
    (N, D), ``weights`` (K,), ``means`` (K, D), ``covariances`` (K, D, D). Computed in
    log space (``scipy.special.logsumexp``) so far-away samples do not underflow to 0/0.
    Returns (N, K), rows summing to 1. Used by :class:`SemiSupervisedGMM` (notebook 10).
    """
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    x = _check_features(x, "x")
    weights, means, covariances = np.asarray(weights, float), np.asarray(means, float), np.asarray(covariances, float)
    k, d = means.shape
    if weights.shape != (k,) or covariances.shape != (k, d, d) or x.shape[1] != d:
        raise ValueError(f"shapes do not match: x {x.shape}, weights {weights.shape}, means {means.shape}, "
                         f"covariances {covariances.shape}; expected (N, D), (K,), (K, D), (K, D, D).")
    log_joint = np.stack([np.log(weights[i]) + multivariate_normal.logpdf(x, means[i], covariances[i])
                          for i in range(k)], axis=1).reshape(len(x), k)
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def gmm_m_step(x_labelled, y_labelled, x_unlabelled, responsibilities, num_classes: int, reg_covar: float = 1e-3):
    """M step of semi-supervised EM: one Gaussian per class from labelled *and* unlabelled samples.

    A labelled sample counts fully for its class; an unlabelled sample :math:`x_j` counts
    :math:`\\gamma_{ji}` for class :math:`i`. With :math:`l_i` labelled samples of class i and
    :math:`m` samples in all (Zhou 2016, eqs. 13.6-13.8):

    * :math:`\\mu_i = \\big(\\sum_{u} \\gamma_{ji} x_j + \\sum_{y_j = i} x_j\\big) / \\big(\\sum_u \\gamma_{ji} + l_i\\big)`;
    * :math:`\\Sigma_i` = the same weighted mean of :math:`(x_j - \\mu_i)(x_j - \\mu_i)^T`, plus
      ``reg_covar`` on the diagonal (as ``sklearn.mixture.GaussianMixture`` adds, so that
      :math:`\\Sigma_i` stays invertible);
    * :math:`\\alpha_i = (\\sum_u \\gamma_{ji} + l_i) / m`.

    Returns ``(weights, means, covariances)``. Used by :class:`SemiSupervisedGMM` (notebook 10).
    """
    x_labelled = _check_features(x_labelled, "x_labelled")
    x_unlabelled = _check_features(x_unlabelled, "x_unlabelled") if len(x_unlabelled) else \
        np.zeros((0, x_labelled.shape[1]))
    resp = np.asarray(responsibilities, dtype=np.float64).reshape(len(x_unlabelled), num_classes)
    onehot = np.eye(num_classes)[class_ids(y_labelled, num_classes, "y_labelled")]
    x = np.concatenate([x_labelled, x_unlabelled])
    r = np.concatenate([onehot, resp])  # labelled rows: one-hot; unlabelled rows: gamma
    counts = r.sum(axis=0)
    if (counts <= 0).any():
        raise ValueError(f"class {int(np.argmin(counts))} has no labelled sample and no responsibility: "
                         "every class needs at least one labelled example.")
    means = r.T @ x / counts[:, None]
    covariances = np.empty((num_classes, x.shape[1], x.shape[1]))
    for i in range(num_classes):
        diff = x - means[i]
        covariances[i] = (r[:, i, None] * diff).T @ diff / counts[i] + reg_covar * np.eye(x.shape[1])
    return counts / len(x), means, covariances


class SemiSupervisedGMM:
    """A generative semi-supervised classifier: one Gaussian per class, fitted by EM.

    All data, labelled or not, is assumed drawn from the mixture
    :math:`p(x) = \\sum_i \\alpha_i \\mathcal N(x \\mid \\mu_i, \\Sigma_i)`, component :math:`i` being
    class :math:`i`; the unknown labels of the unlabelled samples are the missing data of
    EM (Miller & Uyar 1997; Nigam et al. 2000; Zhou 2016, section 13.2). ``fit`` starts
    from the labelled samples alone (the M step with no unlabelled data), then alternates
    :func:`gmm_e_step` on the unlabelled samples and :func:`gmm_m_step` for ``n_iter``
    iterations, recording the log-likelihood (which EM never decreases) in
    ``log_likelihood_``. ``predict_proba`` is the E step (Bayes' rule). scikit-learn
    style. Used in notebook 10.
    """

    def __init__(self, num_classes: int, n_iter: int = 20, reg_covar: float = 1e-3):
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.n_iter = int(n_iter)
        if self.n_iter < 0:
            raise ValueError(f"n_iter must be >= 0 (0: labelled samples only); got {n_iter!r}.")
        if not reg_covar > 0:
            raise ValueError(f"reg_covar must be positive (it keeps covariances invertible); got {reg_covar!r}.")
        self.reg_covar = float(reg_covar)

    def _log_likelihood(self, x_labelled, y_labelled, x_unlabelled):
        from scipy.special import logsumexp
        from scipy.stats import multivariate_normal

        def log_joint(x):
            return np.stack([np.log(self.weights_[i]) + multivariate_normal.logpdf(x, self.means_[i], self.covariances_[i])
                             for i in range(self.num_classes)], axis=1).reshape(len(x), self.num_classes)

        ll = log_joint(x_labelled)[np.arange(len(x_labelled)), y_labelled].sum()
        if len(x_unlabelled):
            ll += logsumexp(log_joint(x_unlabelled), axis=1).sum()
        return float(ll)

    def fit(self, x_labelled, y_labelled, x_unlabelled):
        x_labelled = _check_features(x_labelled, "x_labelled")
        x_unlabelled = _check_features(x_unlabelled, "x_unlabelled")
        y_labelled = class_ids(y_labelled, self.num_classes, "y_labelled")
        if len(y_labelled) != len(x_labelled):
            raise ValueError(f"x_labelled ({len(x_labelled)}) and y_labelled ({len(y_labelled)}) must have the same length.")
        if x_unlabelled.shape[1] != x_labelled.shape[1]:
            raise ValueError(f"labelled ({x_labelled.shape[1]}) and unlabelled ({x_unlabelled.shape[1]}) samples "
                             "must have the same number of features.")
        empty = np.zeros((0, self.num_classes))
        self.weights_, self.means_, self.covariances_ = gmm_m_step(
            x_labelled, y_labelled, x_unlabelled[:0], empty, self.num_classes, self.reg_covar)
        self.log_likelihood_ = [self._log_likelihood(x_labelled, y_labelled, x_unlabelled)]
        for _ in range(self.n_iter):
            resp = gmm_e_step(x_unlabelled, self.weights_, self.means_, self.covariances_)
            self.weights_, self.means_, self.covariances_ = gmm_m_step(
                x_labelled, y_labelled, x_unlabelled, resp, self.num_classes, self.reg_covar)
            self.log_likelihood_.append(self._log_likelihood(x_labelled, y_labelled, x_unlabelled))
        return self

    def predict_proba(self, x):
        if not hasattr(self, "means_"):
            raise ValueError("this SemiSupervisedGMM is not fitted yet: call fit(x_labelled, y_labelled, x_unlabelled).")
        return gmm_e_step(x, self.weights_, self.means_, self.covariances_)

    def predict(self, x):
        return self.predict_proba(x).argmax(axis=1)


# ------------------------------------------------------------------ exercise references
# Notebooks 04, 10 and 11's exercises, for the student versions to fall back on until an
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


def confident_pseudo_labels(probs, tau: float):
    """``(labels, mask)`` as NumPy: argmax class per row, 1.0 where max p >= tau else 0.0.

    :func:`pseudo_labels` (FixMatch's confidence mask, Sohn et al. 2020, eq. 4) with
    int64 labels and float64 mask. Notebook 10, exercise 1.
    """
    labels, mask = pseudo_labels(np.asarray(probs, np.float32), tau)
    return np.asarray(labels).astype(np.int64), np.asarray(mask).astype(np.float64)


def sharpen_np(p, T: float) -> np.ndarray:
    """MixMatch's Sharpen(p, T) = p**(1/T) / sum_j p_j**(1/T) row by row, float64 NumPy.

    Berthelot et al. (2019), eq. 7, computed like :func:`sharpen` as softmax(log p / T)
    so small T cannot overflow. Notebook 10, exercise 2.
    """
    p = np.asarray(p, np.float64)
    if p.ndim != 2 or (p < 0).any():
        raise ValueError(f"p must be (B, K) probabilities; got shape {p.shape}.")
    if not T > 0:
        raise ValueError(f"T must be positive; got {T!r}.")
    with np.errstate(divide="ignore"):
        z = np.log(p) / T
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def class_weights(labels, num_classes: int) -> dict:
    """Balanced class weights {k: n / (K n_k)} for ``model.fit(class_weight=...)``.

    scikit-learn's ``compute_class_weight("balanced")`` (King & Zeng 2001): a class
    seen half as often weighs twice as much. Every class must occur. Notebook 11, exercise 1.
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
    small results are committed. Notebook 11, exercise 3.
    """
    parts = str(path).split("/")
    if any(part in IGNORED_DIRS for part in parts[:-1]):
        return False
    return not parts[-1].lower().endswith(IGNORED_SUFFIXES)
