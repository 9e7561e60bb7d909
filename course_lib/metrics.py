"""Evaluation metrics for classifiers, written from their definitions (notebook 06).

Everything here is computed from counts a student can check by hand:

* the **confusion matrix** ``C[i, j]`` = how many examples of true class ``i`` were
  predicted as class ``j`` (rows: truth, columns: prediction);
* for a binary problem its four cells, TP, FN, FP, TN, and the rates built from them:
  accuracy, precision, recall (sensitivity, TPR), specificity (TNR), F1 and F-beta
  (van Rijsbergen, *Information Retrieval*, 1979, ch. 7);
* for a multi-class problem the same per class (one class against the rest),
  averaged as *macro* (mean over classes), *weighted* (mean weighted by support) or
  *micro* (pool the counts first);
* the **ROC curve** (TPR against FPR as the threshold moves; Fawcett, "An
  introduction to ROC analysis", Pattern Recognition Letters 27(8), 2006) and its
  area, the **precision-recall curve** and **average precision** (Davis & Goadrich,
  "The relationship between Precision-Recall and ROC curves", ICML 2006);
* two ways to choose a threshold on the ROC curve: the point closest to the ideal
  corner (0, 1), and Youden's J = TPR - FPR (Youden, "Index for rating diagnostic
  tests", Cancer 3(1), 1950);
* stratified k-fold cross-validation of a Keras model-building function.

The results equal scikit-learn's (``tests/test_metrics.py`` checks them on many
random inputs, with ties, classes never predicted and a single class present).
Where a value is undefined (a division by zero: precision with no positive
prediction, recall with no positive example, AUC with one class) we do what
scikit-learn does, return 0.0 (NaN for the ROC quantities), and say so with an
:class:`UndefinedMetricWarning`, never silently.

Labels are integer class indices (0 = negative, 1 = positive for binary metrics);
scores are real numbers where larger means "more positive" (a logit or a
probability); an example is predicted positive when ``score >= threshold``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning

__all__ = [
    "UndefinedMetricWarning",
    "confusion_matrix",
    "binary_counts",
    "accuracy",
    "precision",
    "recall",
    "specificity",
    "f1_score",
    "fbeta_score",
    "per_class_report",
    "roc_curve",
    "roc_auc",
    "pr_curve",
    "average_precision",
    "closest_to_corner",
    "youden_j",
    "CVResult",
    "cross_validate",
    "plot_confusion_matrix",
    "plot_roc",
    "plot_pr",
]

AVERAGES = ("binary", "macro", "micro", "weighted")

# --------------------------------------------------------------------- checks


def _check_labels(y, name: str) -> np.ndarray:
    """Return ``y`` as a 1-D int64 array of class indices, or raise a clear ValueError."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        raise ValueError(
            f"{name} must be a 1-D array of class indices; got shape {arr.shape}. "
            "If these are logits or probabilities, take the predicted class with .argmax(axis=1)."
        )
    if arr.ndim == 2:  # (N, 1) column: accept it as (N,)
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices; got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: a metric needs at least one example.")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold integer class indices; got dtype {arr.dtype}.")
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise ValueError(
            f"{name} must hold integer class indices (0, 1, ...); got non-integer values such as "
            f"{arr[arr != np.round(arr)][:3] if np.all(np.isfinite(arr)) else 'NaN/Inf'}. "
            "If these are scores or probabilities, threshold them first (e.g. scores >= 0.5), "
            "or pass them to roc_curve / pr_curve, which take scores."
        )
    if arr.min() < 0:
        raise ValueError(f"{name} must hold class indices >= 0; got {arr.min()}.")
    return arr.astype(np.int64)


def _check_pair(y_true, y_pred, num_classes=None):
    """Validate true and predicted labels together; return them and the number of classes."""
    y_true = _check_labels(y_true, "y_true")
    y_pred = _check_labels(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred must have the same length; got {len(y_true)} and {len(y_pred)}.")
    largest = int(max(y_true.max(), y_pred.max()))
    if num_classes is None:
        num_classes = largest + 1
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
        if largest >= num_classes:
            raise ValueError(
                f"labels must lie in 0..{num_classes - 1} for num_classes={num_classes}; found label {largest}. "
                "Raise num_classes or check the labels."
            )
    return y_true, y_pred, int(num_classes)


def _check_binary(y, name: str) -> np.ndarray:
    y = _check_labels(y, name)
    if y.max() > 1:
        raise ValueError(
            f"{name} must be binary (0 = negative, 1 = positive); found label {y.max()}. "
            "For a multi-class problem pass average='macro', 'micro' or 'weighted', "
            "or make it one-vs-rest with (y == k)."
        )
    return y


def _check_scores(y_true, scores):
    """Validate binary labels and real-valued scores of the same length."""
    y_true = _check_binary(y_true, "y_true")
    s = np.asarray(scores)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1:
        raise ValueError(
            f"scores must be a 1-D array with one score per example; got shape {s.shape}. "
            "For a two-column softmax output use its positive column, scores[:, 1]."
        )
    if not np.issubdtype(s.dtype, np.number) or s.dtype == bool:
        raise ValueError(f"scores must be real numbers; got dtype {s.dtype}.")
    if len(s) != len(y_true):
        raise ValueError(f"y_true and scores must have the same length; got {len(y_true)} and {len(s)}.")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or Inf; check the model's outputs (a diverged training run?).")
    return y_true, s.astype(np.float64)


def _check_average(average):
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}; got {average!r}.")
    return average


def _safe_divide(num, den, what: str, reason: str):
    """``num / den`` element-wise; where ``den == 0`` the result is 0.0 and we warn (scikit-learn's rule)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    undefined = den == 0
    out = np.divide(num, den, out=np.zeros_like(num), where=~undefined)
    if np.any(undefined):
        warnings.warn(
            f"{what} is ill-defined and set to 0.0 ({reason}); this follows scikit-learn's zero_division='warn'.",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    return out


# ------------------------------------------------------------ confusion matrix


def confusion_matrix(y_true, y_pred, num_classes=None, normalize: bool = False) -> np.ndarray:
    """Return the confusion matrix ``C`` with ``C[i, j]`` = #examples of class ``i`` predicted as ``j``.

    Rows are the truth, columns the prediction, so the diagonal holds the correct
    predictions. ``num_classes`` defaults to ``max(label) + 1``. With
    ``normalize=True`` each row is divided by its sum (the fraction of class ``i``
    predicted as ``j``, as on the slides); a class with no example gets a row of
    zeros, as scikit-learn's ``normalize="true"`` does. Used in notebook 06.
    """
    y_true, y_pred, k = _check_pair(y_true, y_pred, num_classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)  # one count per (truth, prediction) pair
    if not normalize:
        return cm
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros((k, k)), where=rows > 0)


@dataclass(frozen=True)
class BinaryCounts:
    """The four cells of a binary confusion matrix."""

    tp: int
    fn: int
    fp: int
    tn: int


def binary_counts(y_true, y_pred) -> BinaryCounts:
    """Return TP, FN, FP, TN of a binary problem (1 = positive), read off the 2x2 confusion matrix."""
    y_true = _check_binary(y_true, "y_true")
    y_pred = _check_binary(y_pred, "y_pred")
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_pred, num_classes=2)
    return BinaryCounts(tp=int(tp), fn=int(fn), fp=int(fp), tn=int(tn))


def _per_class_counts(y_true, y_pred, num_classes):
    """Per class k (one against the rest): TP_k, predicted-as-k and truly-k counts, from the matrix."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm)
    return tp, cm.sum(axis=0), cm.sum(axis=1)  # column sums: predicted k; row sums: truly k (support)


def _counts(y_true, y_pred, average, num_classes):
    """(tp, predicted, actual) arrays for the chosen averaging: one entry for binary and micro."""
    _check_average(average)
    if average == "binary":
        c = binary_counts(y_true, y_pred)
        return np.array([c.tp]), np.array([c.tp + c.fp]), np.array([c.tp + c.fn])
    y_true, y_pred, k = _check_pair(y_true, y_pred, num_classes)
    if num_classes is None:  # like scikit-learn: the classes seen in y_true or y_pred
        present = np.union1d(y_true, y_pred)
    else:
        present = np.arange(k)
    tp, pred, true = (a[present] for a in _per_class_counts(y_true, y_pred, k))
    if average == "micro":  # pool the counts of all classes, then divide once
        return tp.sum(keepdims=True), pred.sum(keepdims=True), true.sum(keepdims=True)
    return tp, pred, true


def _average(values, support, average):
    """Average per-class values: plain mean (macro), support-weighted mean (weighted); one value otherwise."""
    if average == "weighted":
        return float(np.average(values, weights=support)) if support.sum() > 0 else 0.0
    return float(np.mean(values))


# -------------------------------------------------------------- binary scores


def accuracy(y_true, y_pred) -> float:
    """Fraction of correct predictions, (TP + TN) / (TP + TN + FP + FN) for two classes; any number of classes."""
    y_true, y_pred, _ = _check_pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def precision(y_true, y_pred, average: str = "binary", num_classes=None) -> float:
    """Precision TP / (TP + FP): of the examples predicted positive, the fraction that are positive.

    ``average="binary"`` scores class 1; ``"macro"``, ``"weighted"`` and ``"micro"``
    treat each class as the positive one in turn and average. Undefined (no positive
    prediction): 0.0 with an :class:`UndefinedMetricWarning`.
    """
    tp, pred, true = _counts(y_true, y_pred, average, num_classes)
    per_class = _safe_divide(tp, pred, "Precision", "no predicted samples")
    return _average(per_class, true, average)


def recall(y_true, y_pred, average: str = "binary", num_classes=None) -> float:
    """Recall (sensitivity, TPR) TP / (TP + FN): of the positive examples, the fraction found.

    Averages as in :func:`precision`. Undefined (no positive example): 0.0 with an
    :class:`UndefinedMetricWarning`.
    """
    tp, pred, true = _counts(y_true, y_pred, average, num_classes)
    per_class = _safe_divide(tp, true, "Recall", "no true samples")
    return _average(per_class, true, average)


def specificity(y_true, y_pred) -> float:
    """Specificity (TNR) TN / (TN + FP): of the negative examples, the fraction called negative.

    It is the recall of class 0, and 1 - FPR. Binary only. Undefined (no negative
    example): 0.0 with an :class:`UndefinedMetricWarning`.
    """
    c = binary_counts(y_true, y_pred)
    return float(_safe_divide(c.tn, c.tn + c.fp, "Specificity", "no negative samples"))


def fbeta_score(y_true, y_pred, beta: float, average: str = "binary", num_classes=None) -> float:
    """F-beta = (1 + b^2) P R / (b^2 P + R) = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP).

    The weighted harmonic mean of precision P and recall R (van Rijsbergen 1979):
    recall counts ``beta`` times as much as precision. The count form is what we
    compute; it stays defined when P is undefined but R is 0. Undefined only when
    TP = FN = FP = 0: 0.0 with an :class:`UndefinedMetricWarning`. ``beta`` > 0.
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)) or not (
        np.isfinite(beta) and beta > 0
    ):
        raise ValueError(f"beta must be a positive finite number (1 gives F1, 2 favours recall); got {beta!r}.")
    tp, pred, true = _counts(y_true, y_pred, average, num_classes)
    b2 = float(beta) ** 2
    fn, fp = true - tp, pred - tp
    per_class = _safe_divide((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp, "F-score", "no true nor predicted samples")
    return _average(per_class, true, average)


def f1_score(y_true, y_pred, average: str = "binary", num_classes=None) -> float:
    """F1 = 2 P R / (P + R) = 2 TP / (2 TP + FN + FP), the harmonic mean of precision and recall."""
    return fbeta_score(y_true, y_pred, 1.0, average=average, num_classes=num_classes)


def per_class_report(y_true, y_pred, num_classes=None) -> dict:
    """Per-class precision, recall, F1 and support (number of true examples), as arrays indexed by class.

    The table scikit-learn's ``classification_report`` prints; classes never predicted
    get precision 0.0 with a warning. Used in notebook 06 for the digits model.
    """
    y_true, y_pred, k = _check_pair(y_true, y_pred, num_classes)
    tp, pred, true = _per_class_counts(y_true, y_pred, k)
    fn, fp = true - tp, pred - tp
    return {
        "precision": _safe_divide(tp, pred, "Precision", "no predicted samples"),
        "recall": _safe_divide(tp, true, "Recall", "no true samples"),
        "f1": _safe_divide(2 * tp, 2 * tp + fn + fp, "F-score", "no true nor predicted samples"),
        "support": true,
    }


# ------------------------------------------------------------- ROC and PR curves


def _counts_at_thresholds(y_true, scores):
    """For every distinct score t (decreasing): how many positives and negatives have score >= t.

    These thresholds are all the distinct decisions a score can make: between two
    consecutive distinct scores nothing changes. Tied scores share one threshold,
    so a tie moves the curve diagonally, as in scikit-learn.
    """
    thresholds = np.unique(scores)[::-1]
    pos = np.sort(scores[y_true == 1])
    neg = np.sort(scores[y_true == 0])
    tps = len(pos) - np.searchsorted(pos, thresholds, side="left")  # positives with score >= t
    fps = len(neg) - np.searchsorted(neg, thresholds, side="left")  # negatives with score >= t
    return tps.astype(np.float64), fps.astype(np.float64), thresholds


def _rate(counts, total, what):
    if total == 0:
        warnings.warn(
            f"No {what} samples in y_true: the {what} rate is undefined and set to NaN (as in scikit-learn).",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return np.full(counts.shape, np.nan)
    return counts / total


def roc_curve(y_true, scores, drop_intermediate: bool = True):
    """Return ``(fpr, tpr, thresholds)`` of the ROC curve (Fawcett 2006), as scikit-learn does.

    For each threshold t (every distinct score, decreasing), predict positive when
    ``score >= t``; TPR = TP / P and FPR = FP / N. A first point (0, 0) with threshold
    ``inf`` (nothing predicted positive) starts the curve. With ``drop_intermediate``
    (the default) a point is dropped when the steps to it and from it are *equal*:
    both the false- and the true-positive counts have a zero second difference there,
    scikit-learn's rule (``sklearn.metrics.roc_curve``, same output). Such a point lies
    on the segment between its neighbours, so dropping it changes neither the drawn
    curve nor the area. Not every collinear point is dropped: with counts
    FP = 1, 3, 7 and TP = 1, 2, 4 the middle point is on the line but the steps
    (2, 1) and (4, 2) differ, so it is kept (keeping a redundant point is harmless;
    scikit-learn keeps it too). With one class only, the undefined rate is NaN with an
    :class:`UndefinedMetricWarning`.
    """
    y_true, scores = _check_scores(y_true, scores)
    tps, fps, thresholds = _counts_at_thresholds(y_true, scores)
    if drop_intermediate and len(tps) > 2:
        corner = (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0)
        keep = np.r_[True, corner, True]
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    thresholds = np.r_[np.inf, thresholds]
    fpr = _rate(fps, fps[-1], "negative")
    tpr = _rate(tps, tps[-1], "positive")
    return fpr, tpr, thresholds


def _trapezoid(x, y) -> float:
    """Area under the polyline through (x, y) with x non-decreasing (the trapezoidal rule)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative.

    Ties count one half (the trapezoid through a tie is the diagonal). 0.5 is
    chance, 1 is perfect, below 0.5 the scores are inverted. With one class in
    ``y_true`` it is undefined: NaN with an :class:`UndefinedMetricWarning` (as in
    recent scikit-learn; checked against 1.9).
    """
    y_true, scores = _check_scores(y_true, scores)
    if len(np.unique(y_true)) < 2:
        warnings.warn(
            "Only one class is present in y_true: ROC AUC is undefined and set to NaN (as in scikit-learn).",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return float("nan")
    fpr, tpr, _ = roc_curve(y_true, scores)
    return _trapezoid(fpr, tpr)


def pr_curve(y_true, scores, drop_intermediate: bool = False):
    """Return ``(precision, recall, thresholds)`` of the precision-recall curve, as scikit-learn does.

    For each distinct score t, predict positive when ``score >= t``; precision =
    TP / (TP + FP) and recall = TP / P. The arrays run in order of *increasing*
    threshold (recall falls), and end with the point (recall 0, precision 1), which
    has no threshold, so ``thresholds`` is one shorter. With ``drop_intermediate``
    (default False, as in scikit-learn) runs of thresholds with the same TP keep only
    their first and last point (the vertical segments of the curve). With no positive
    example recall is set to 1 everywhere, with a warning.
    """
    y_true, scores = _check_scores(y_true, scores)
    tps, fps, thresholds = _counts_at_thresholds(y_true, scores)
    if drop_intermediate and len(tps) > 2:
        keep = np.r_[True, (np.diff(tps[:-1]) != 0) | (np.diff(tps[1:]) != 0), True]
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    predicted = tps + fps
    prec = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted > 0)
    if tps[-1] == 0:
        warnings.warn(
            "No positive samples in y_true: recall is undefined and set to 1.0 for all thresholds "
            "(as in scikit-learn).",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        rec = np.ones_like(tps)
    else:
        rec = tps / tps[-1]
    return np.r_[prec[::-1], 1.0], np.r_[rec[::-1], 0.0], thresholds[::-1]


def average_precision(y_true, scores) -> float:
    """Average precision AP = sum_n (R_n - R_{n-1}) P_n over the thresholds, as scikit-learn defines it.

    Each step up in recall is weighted by the precision reached there: a step
    function, not the trapezoid, which would be over-optimistic because precision
    does not interpolate linearly between points (Davis & Goadrich 2006). The
    baseline for a random ranking is the fraction of positives, not 0.5.
    """
    prec, rec, _ = pr_curve(y_true, scores)
    return float(max(0.0, -np.sum(np.diff(rec) * prec[:-1])))


# ------------------------------------------------------------ choosing a threshold


@dataclass(frozen=True)
class OperatingPoint:
    """A point chosen on a ROC curve: its index, threshold, FPR, TPR and the criterion's value."""

    index: int
    threshold: float
    fpr: float
    tpr: float
    value: float


def _check_curve(fpr, tpr, thresholds):
    fpr, tpr, thresholds = (np.asarray(a, dtype=np.float64) for a in (fpr, tpr, thresholds))
    if not (fpr.ndim == tpr.ndim == thresholds.ndim == 1) or not (len(fpr) == len(tpr) == len(thresholds)):
        raise ValueError(
            "fpr, tpr and thresholds must be 1-D arrays of the same length, as returned by roc_curve; "
            f"got shapes {fpr.shape}, {tpr.shape}, {thresholds.shape}."
        )
    if len(fpr) == 0:
        raise ValueError("the ROC curve is empty.")
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        raise ValueError("the ROC curve contains NaN: y_true had only one class, so no threshold can be chosen.")
    return fpr, tpr, thresholds


def closest_to_corner(fpr, tpr, thresholds) -> OperatingPoint:
    """The ROC point nearest the ideal corner (FPR 0, TPR 1): argmin sqrt(FPR^2 + (1 - TPR)^2).

    ``value`` is that distance. Ties go to the higher threshold (the first point).
    """
    fpr, tpr, thresholds = _check_curve(fpr, tpr, thresholds)
    dist = np.sqrt(fpr**2 + (1.0 - tpr) ** 2)
    i = int(np.argmin(dist))
    return OperatingPoint(i, float(thresholds[i]), float(fpr[i]), float(tpr[i]), float(dist[i]))


def youden_j(fpr, tpr, thresholds) -> OperatingPoint:
    """The ROC point with the largest Youden's J = TPR - FPR = sensitivity + specificity - 1 (Youden 1950).

    J is the vertical height above the chance diagonal. ``value`` is J. Ties go to
    the higher threshold.
    """
    fpr, tpr, thresholds = _check_curve(fpr, tpr, thresholds)
    j = tpr - fpr
    i = int(np.argmax(j))
    return OperatingPoint(i, float(thresholds[i]), float(fpr[i]), float(tpr[i]), float(j[i]))


# ------------------------------------------------------------- cross-validation


def _predicted_classes(outputs):
    """Class predictions from model outputs: logit > 0 for one output unit, argmax otherwise."""
    out = np.asarray(outputs)
    if out.ndim == 2 and out.shape[1] > 1:
        return out.argmax(axis=1)
    return (out.reshape(len(out)) > 0).astype(np.int64)


def _positive_scores(outputs):
    out = np.asarray(outputs)
    if out.ndim == 2 and out.shape[1] == 2:
        return out[:, 1] - out[:, 0]  # logit difference: monotone in P(class 1)
    if out.ndim == 2 and out.shape[1] > 2:
        raise ValueError("metric='roc_auc' needs a binary model (one logit, or two); this one has "
                         f"{out.shape[1]} outputs. Use 'accuracy' or 'macro_f1'.")
    return out.reshape(len(out))


def _predict(model, images, batch_size: int = 256) -> np.ndarray:
    """Model outputs in inference mode, by direct calls (cheaper than ``predict`` for a few hundred images)."""
    import keras

    chunks = [model(images[i : i + batch_size], training=False) for i in range(0, len(images), batch_size)]
    return np.concatenate([keras.ops.convert_to_numpy(c) for c in chunks])


CV_METRICS = {
    "accuracy": lambda y, out: accuracy(y, _predicted_classes(out)),
    "macro_f1": lambda y, out: f1_score(y, _predicted_classes(out), average="macro"),
    "roc_auc": lambda y, out: roc_auc(y, _positive_scores(out)),
}


@dataclass
class CVResult:
    """Scores of k-fold cross-validation: one per fold, their mean and spread (sample std, ddof=1)."""

    scores: np.ndarray
    metric: str

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores, ddof=1)) if len(self.scores) > 1 else 0.0

    def __str__(self):
        return f"{self.metric}: {self.mean:.3f} +/- {self.std:.3f} over {len(self.scores)} folds"


def cross_validate(build_model, images, labels, k: int = 5, metric="accuracy", epochs: int = 5,
                   batch_size: int = 32, seed: int = 0, verbose: int = 0) -> CVResult:
    """Stratified k-fold cross-validation of a Keras model: train k models, score each on its held-out fold.

    ``build_model()`` must return a new *compiled* model (outputs: logits). Folds come
    from :func:`course_lib.data.stratified_kfold` (every fold keeps the class
    proportions). Fold i trains on the other k - 1 folds, with fold i as validation
    data, for ``epochs`` epochs, then scores fold i with ``metric``: ``"accuracy"``,
    ``"macro_f1"``, ``"roc_auc"`` (binary) or a callable ``metric(y_true, outputs)``.
    Each fold is seeded with ``seed + i`` so the run repeats. Returns a
    :class:`CVResult` with the k scores, their mean and standard deviation; the
    spread is the point: one split gives one draw from it. Used in notebook 06.
    """
    import keras

    from .data import stratified_kfold
    from .validation import check_positive_int

    if isinstance(build_model, keras.Model) or not callable(build_model):
        raise ValueError(
            "build_model must be a function that returns a new compiled Keras model (pass the function, "
            "not a model: every fold needs fresh weights)."
        )
    if callable(metric):
        name, score = getattr(metric, "__name__", "metric"), metric
    elif metric in CV_METRICS:
        name, score = metric, CV_METRICS[metric]
    else:
        raise ValueError(f"metric must be one of {sorted(CV_METRICS)} or a callable(y_true, outputs); got {metric!r}.")
    labels = _check_labels(labels, "labels")
    images = np.asarray(images)
    if len(images) != len(labels):
        raise ValueError(f"images and labels must have the same length; got {len(images)} and {len(labels)}.")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    scores = []
    for i, (tr, va) in enumerate(stratified_kfold(labels, k=k, seed=seed)):
        keras.utils.set_random_seed(seed + i)
        model = build_model()
        if not isinstance(model, keras.Model):
            raise ValueError(f"build_model() must return a keras.Model; got {type(model).__name__}.")
        if getattr(model, "optimizer", None) is None or not model.compiled:
            raise ValueError("build_model() must return a compiled model: call model.compile(...) inside it.")
        model.fit(images[tr], labels[tr], validation_data=(images[va], labels[va]), epochs=epochs,
                  batch_size=batch_size, verbose=verbose)
        outputs = _predict(model, images[va])
        scores.append(float(score(labels[va], outputs)))
    return CVResult(np.array(scores), name)


# ---------------------------------------------------------------------- plots


def plot_confusion_matrix(cm, class_names=None, title: str = "Confusion matrix", ax=None):
    """Draw a confusion matrix of counts: colour = row-normalised fraction, each cell = its count.

    Colouring by the row fraction keeps rare classes readable; the count in the cell
    keeps the numbers honest. Rows are the true class, columns the prediction.
    Returns the Figure.
    """
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"cm must be a square (K, K) matrix of counts, as from confusion_matrix; got shape {cm.shape}.")
    if not np.issubdtype(cm.dtype, np.number) or (cm < 0).any():
        raise ValueError("cm must hold non-negative counts.")
    k = cm.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names for a {k}x{k} matrix.")
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 + 0.5 * k, 0.6 + 0.5 * k) if k > 4 else (3.8, 3.2))
    else:
        fig = ax.figure
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            value = cm[i, j]
            text = f"{value:d}" if np.issubdtype(cm.dtype, np.integer) else f"{value:.2g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9 if k <= 10 else 7,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    ax.grid(False)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    return fig


def _check_curves(curves):
    if not isinstance(curves, dict) or not curves:
        raise ValueError("curves must be a non-empty dict {name: (y_true, scores)}.")
    for name, pair in curves.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"curves[{name!r}] must be a pair (y_true, scores).")
    return curves


def plot_roc(curves: dict, title: str = "ROC curve", mark_best: bool = True, ax=None):
    """Draw ROC curves of ``{name: (y_true, scores)}``, each with its AUC in the legend.

    The dashed diagonal is a random ranking (AUC 0.5). With ``mark_best``, each
    curve's point closest to (0, 1) is marked. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    _check_curves(curves)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
    else:
        fig = ax.figure
    for name, (y, s) in curves.items():
        fpr, tpr, thr = roc_curve(y, s)
        line, = ax.plot(fpr, tpr, drawstyle="default", lw=1.8, label=f"{name} (AUC = {roc_auc(y, s):.3f})")
        if mark_best:
            best = closest_to_corner(fpr, tpr, thr)
            ax.plot(best.fpr, best.tpr, "o", color=line.get_color(), ms=7, mfc="none", mew=2)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="chance (AUC = 0.5)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_pr(curves: dict, title: str = "Precision-recall curve", ax=None):
    """Draw precision-recall curves of ``{name: (y_true, scores)}`` with the average precision in the legend.

    Drawn as steps (precision does not interpolate linearly). The dotted line is the
    fraction of positives, the precision of a random ranking. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    _check_curves(curves)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
    else:
        fig = ax.figure
    base = None
    for name, (y, s) in curves.items():
        prec, rec, _ = pr_curve(y, s)
        ax.step(rec, prec, where="post", lw=1.8, label=f"{name} (AP = {average_precision(y, s):.3f})")
        base = float(np.mean(_check_binary(y, "y_true")))
    if base is not None:
        ax.axhline(base, ls=":", color="grey", lw=1, label=f"random ranking (positives = {base:.1%})")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


# -------------------------------------------------------------- exercise references
# Notebooks 01, 06 and 11's exercises, for the student versions to fall back on until an
# exercise is answered (course_lib.exercises.answer_or_reference).


def broken_and_fixed(y_true, pred_clean, pred_perturbed) -> tuple:
    """(broken, fixed) as Python ints: right on clean and wrong when perturbed, and the reverse.

    acc_clean - acc_perturbed = (broken - fixed) / N. Notebook 01, exercise 3.
    """
    y_true, pred_clean, pred_perturbed = map(np.asarray, (y_true, pred_clean, pred_perturbed))
    if not y_true.shape == pred_clean.shape == pred_perturbed.shape:
        raise ValueError(f"the three label arrays must have one shape; got {y_true.shape}, "
                         f"{pred_clean.shape}, {pred_perturbed.shape}.")
    before, after = pred_clean == y_true, pred_perturbed == y_true
    return int(np.sum(before & ~after)), int(np.sum(~before & after))


def rates_from_counts(tp, fn, fp, tn, beta: float = 1.0) -> dict:
    """Accuracy, precision, recall, specificity and F-beta from the four confusion counts.

    F-beta = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP) (van Rijsbergen 1979). Plain
    divisions: a zero denominator is the caller's case to avoid. Notebook 06, exercise 1.
    """
    b2 = beta**2
    return {
        "accuracy": (tp + tn) / (tp + tn + fp + fn),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "specificity": tn / (tn + fp),
        "fbeta": (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp),
    }


def threshold_for_recall(y_true, scores, target: float) -> float:
    """The highest threshold t among the scores with recall(scores >= t) >= ``target``.

    With the positives' scores sorted from high to low, t is the score of the
    ceil(target * P)-th one (at least the first). Notebook 06, exercise 2.
    """
    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=float)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target is a recall in (0, 1]; got {target!r}.")
    positives = np.sort(scores[y_true == 1])[::-1]
    if positives.size == 0:
        raise ValueError("y_true has no positive example: no recall to reach.")
    needed = int(np.ceil(target * len(positives) - 1e-12))
    return float(positives[max(needed, 1) - 1])


def top_confusions(cm, k: int = 3) -> list:
    """The k largest off-diagonal cells of a confusion matrix as (true, predicted, count).

    Largest count first, ties by (true, predicted); cells with count 0 are left out.
    Notebook 11 (exercise 3); notebook 06 prints it after its reading exercise.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square confusion matrix; got shape {cm.shape}.")
    cells = [(int(i), int(j), int(cm[i, j])) for i in range(len(cm)) for j in range(len(cm))
             if i != j and cm[i, j] > 0]
    return sorted(cells, key=lambda c: (-c[2], c[0], c[1]))[:k]


def row_percentages(cm) -> np.ndarray:
    """100 * C[i, j] / sum_j C[i, j] as float: where the examples of each true class went.

    Each row with at least one example sums to 100 and its diagonal cell is the recall of
    that class; a class with no example gets a row of zeros (as scikit-learn's
    ``confusion_matrix(..., normalize="true")``). Notebook 06, exercise 4.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square confusion matrix; got shape {cm.shape}.")
    if not np.issubdtype(cm.dtype, np.number) or (cm < 0).any():
        raise ValueError("cm must hold non-negative counts.")
    rows = cm.sum(axis=1, keepdims=True).astype(float)
    return np.divide(100.0 * cm, rows, out=np.zeros(cm.shape), where=rows > 0)
