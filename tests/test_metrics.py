"""course_lib.metrics against scikit-learn on many random inputs, and its errors.

Every comparison uses ``rtol=1e-12`` (the same counts divided the same way), and
checks that we warn exactly when scikit-learn warns that a value is undefined.
"""

import warnings

import numpy as np
import pytest
from sklearn import metrics as sk
from sklearn.exceptions import UndefinedMetricWarning

from course_lib import metrics as m

TOL = dict(rtol=1e-12, atol=1e-12)


def _run(fn, *args, **kwargs):
    """Call fn and return (result, whether it raised an UndefinedMetricWarning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, any(issubclass(w.category, UndefinedMetricWarning) for w in caught)


def _label_cases(seed=0, n_cases=150, max_classes=2):
    """Random (y_true, y_pred) pairs, including the awkward ones scikit-learn special-cases."""
    rng = np.random.default_rng(seed)
    for i in range(n_cases):
        n = int(rng.integers(1, 40))
        k = int(rng.integers(2, max_classes + 1))
        y_true = rng.integers(0, k, n)
        y_pred = rng.integers(0, k, n)
        kind = i % 5
        if kind == 1:  # a class never predicted
            y_pred = np.where(y_pred == k - 1, 0, y_pred)
        elif kind == 2:  # a single class present in y_true
            y_true = np.full(n, int(rng.integers(0, k)))
        elif kind == 3:  # everything predicted as one class
            y_pred = np.full(n, int(rng.integers(0, k)))
        elif kind == 4:  # perfect predictions
            y_pred = y_true.copy()
        yield y_true, y_pred, k


def _score_cases(seed=0, n_cases=150):
    """Random (y_true, scores): ties, integer and float32 scores, one class only, tiny inputs."""
    rng = np.random.default_rng(seed)
    for i in range(n_cases):
        n = int(rng.integers(1, 60))
        y = rng.integers(0, 2, n)
        s = rng.normal(size=n) + 1.5 * y * rng.random()
        kind = i % 6
        if kind == 1:
            s = np.round(s, 1)  # many ties
        elif kind == 2:
            s = rng.integers(0, 4, n)  # integer scores, ties everywhere
        elif kind == 3:
            s = s.astype(np.float32)
        elif kind == 4:
            y = np.full(n, int(rng.integers(0, 2)))  # one class only
        elif kind == 5:
            s = np.full(n, 0.3)  # all scores tied
        yield y, s


# --------------------------------------------------------------- worked example


def _worked_example():
    """The lecture's example: 20 positives, 8 found (TP 8, FN 12); 10 negatives, 4 false alarms (FP 4, TN 6)."""
    y_true = np.r_[np.ones(20), np.zeros(10)].astype(int)
    y_pred = np.r_[np.ones(8), np.zeros(12), np.ones(4), np.zeros(6)].astype(int)
    return y_true, y_pred


def test_worked_example_equals_the_hand_computation():
    y_true, y_pred = _worked_example()
    assert m.binary_counts(y_true, y_pred) == m.BinaryCounts(tp=8, fn=12, fp=4, tn=6)
    assert m.accuracy(y_true, y_pred) == pytest.approx(14 / 30)
    assert m.precision(y_true, y_pred) == pytest.approx(8 / 12)
    assert m.recall(y_true, y_pred) == pytest.approx(8 / 20)
    assert m.specificity(y_true, y_pred) == pytest.approx(6 / 10)
    assert m.f1_score(y_true, y_pred) == pytest.approx(2 * 8 / (2 * 8 + 12 + 4))  # = 0.5
    p, r = 8 / 12, 8 / 20
    assert m.fbeta_score(y_true, y_pred, 2) == pytest.approx(5 * p * r / (4 * p + r))


# ---------------------------------------------------------------- confusion matrix


def test_confusion_matrix_matches_sklearn():
    for y_true, y_pred, k in _label_cases(seed=1, max_classes=6):
        labels = np.arange(k)
        np.testing.assert_array_equal(m.confusion_matrix(y_true, y_pred, num_classes=k),
                                      sk.confusion_matrix(y_true, y_pred, labels=labels))
        np.testing.assert_allclose(m.confusion_matrix(y_true, y_pred, num_classes=k, normalize=True),
                                   sk.confusion_matrix(y_true, y_pred, labels=labels, normalize="true"), **TOL)
    cm = m.confusion_matrix([0, 2, 2], [0, 2, 1])
    assert cm.shape == (3, 3) and cm.sum() == 3  # num_classes defaults to max label + 1


# ------------------------------------------------------------------ binary scores


def test_binary_scores_match_sklearn_and_warn_when_sklearn_does():
    pairs = [
        (m.precision, lambda a, b: sk.precision_score(a, b)),
        (m.recall, lambda a, b: sk.recall_score(a, b)),
        (m.specificity, lambda a, b: sk.recall_score(a, b, pos_label=0)),
        (m.f1_score, lambda a, b: sk.f1_score(a, b)),
        (lambda a, b: m.fbeta_score(a, b, 0.5), lambda a, b: sk.fbeta_score(a, b, beta=0.5)),
        (lambda a, b: m.fbeta_score(a, b, 3.7), lambda a, b: sk.fbeta_score(a, b, beta=3.7)),
        (m.accuracy, sk.accuracy_score),
    ]
    n_warned = 0
    for y_true, y_pred, _ in _label_cases(seed=2):
        for ours, theirs in pairs:
            a, warned_a = _run(ours, y_true, y_pred)
            b, warned_b = _run(theirs, y_true, y_pred)
            assert a == pytest.approx(b, rel=1e-12, abs=1e-12), (ours, y_true, y_pred)
            assert warned_a == warned_b, (ours, y_true, y_pred, warned_a, warned_b)
            n_warned += warned_a
    assert n_warned > 20  # the random cases did exercise the undefined branches


def test_undefined_precision_is_zero_with_a_warning():
    with pytest.warns(UndefinedMetricWarning, match="Precision is ill-defined"):
        assert m.precision([1, 0, 1], [0, 0, 0]) == 0.0
    with pytest.warns(UndefinedMetricWarning, match="Recall is ill-defined"):
        assert m.recall([0, 0], [1, 0]) == 0.0
    with pytest.warns(UndefinedMetricWarning, match="Specificity is ill-defined"):
        assert m.specificity([1, 1], [1, 0]) == 0.0
    with pytest.warns(UndefinedMetricWarning, match="F-score is ill-defined"):
        assert m.f1_score([0, 0], [0, 0]) == 0.0


def test_multiclass_averages_match_sklearn():
    for y_true, y_pred, k in _label_cases(seed=3, n_cases=50, max_classes=7):
        for average in ("macro", "micro", "weighted"):
            for num_classes, labels in ((None, None), (k, np.arange(k))):
                kw = dict(average=average, labels=labels)
                for ours, theirs in (
                    (lambda a, b: m.precision(a, b, average, num_classes), lambda a, b: sk.precision_score(a, b, **kw)),
                    (lambda a, b: m.recall(a, b, average, num_classes), lambda a, b: sk.recall_score(a, b, **kw)),
                    (lambda a, b: m.f1_score(a, b, average, num_classes), lambda a, b: sk.f1_score(a, b, **kw)),
                    (lambda a, b: m.fbeta_score(a, b, 2.0, average, num_classes),
                     lambda a, b: sk.fbeta_score(a, b, beta=2.0, **kw)),
                ):
                    a, warned_a = _run(ours, y_true, y_pred)
                    b, warned_b = _run(theirs, y_true, y_pred)
                    assert a == pytest.approx(b, rel=1e-12, abs=1e-12), (average, num_classes, y_true, y_pred)
                    assert warned_a == warned_b, (average, num_classes, y_true, y_pred)
        assert m.accuracy(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred))


def test_per_class_report_matches_sklearn():
    for y_true, y_pred, k in _label_cases(seed=4, n_cases=60, max_classes=10):
        ours, _ = _run(m.per_class_report, y_true, y_pred, num_classes=k)
        (p, r, f, s), _ = _run(sk.precision_recall_fscore_support, y_true, y_pred, labels=np.arange(k))
        for key, ref in (("precision", p), ("recall", r), ("f1", f), ("support", s)):
            np.testing.assert_allclose(ours[key], ref, **TOL)


# ----------------------------------------------------------------------- curves


@pytest.mark.parametrize("drop", [True, False])
def test_roc_curve_matches_sklearn(drop):
    for y, s in _score_cases(seed=5):
        (fpr, tpr, thr), warned_a = _run(m.roc_curve, y, s, drop_intermediate=drop)
        (fpr_r, tpr_r, thr_r), warned_b = _run(sk.roc_curve, y, s, drop_intermediate=drop)
        assert warned_a == warned_b
        np.testing.assert_allclose(fpr, fpr_r, **TOL)  # NaN where sklearn has NaN (one class only)
        np.testing.assert_allclose(tpr, tpr_r, **TOL)
        np.testing.assert_allclose(thr, thr_r, **TOL)


def test_roc_drop_intermediate_drops_equal_steps_and_keeps_other_collinear_points():
    """Issue 16, kind 6: the docstring's rule (equal steps), checked on both cases and against sklearn."""
    # Equal steps: counts (FP, TP) = (1, 1), (2, 2), (3, 3): the middle point is dropped.
    y, s = [0, 1, 0, 1, 0, 1], [0.9, 0.9, 0.5, 0.5, 0.1, 0.1]
    fpr, tpr, thr = m.roc_curve(y, s, drop_intermediate=True)
    np.testing.assert_allclose(fpr, [0, 1 / 3, 1], **TOL)
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.1], **TOL)
    # Collinear but unequal steps: (1, 1), (3, 2), (7, 4); the middle point lies on the line
    # from (1/7, 1/4) to (1, 1) and is kept, by sklearn too.
    y = [0, 1] + [0, 0, 1] + [0, 0, 0, 0, 1, 1]
    s = [0.9] * 2 + [0.5] * 3 + [0.1] * 6
    fpr, tpr, thr = m.roc_curve(y, s, drop_intermediate=True)
    np.testing.assert_allclose(fpr, [0, 1 / 7, 3 / 7, 1], **TOL)
    np.testing.assert_allclose(tpr, [0, 1 / 4, 2 / 4, 1], **TOL)
    slope = lambda i, j: (tpr[j] - tpr[i]) / (fpr[j] - fpr[i])  # noqa: E731
    assert slope(1, 2) == pytest.approx(slope(2, 3))  # collinear
    for ours, ref in zip((fpr, tpr, thr), sk.roc_curve(y, s, drop_intermediate=True)):
        np.testing.assert_allclose(ours, ref, **TOL)


@pytest.mark.parametrize("drop", [False, True])
def test_pr_curve_matches_sklearn(drop):
    for y, s in _score_cases(seed=6):
        (p, r, t), warned_a = _run(m.pr_curve, y, s, drop_intermediate=drop)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p_r, r_r, t_r = sk.precision_recall_curve(y, s, drop_intermediate=drop)
        assert warned_a == any("No positive class" in str(w.message) for w in caught)
        np.testing.assert_allclose(p, p_r, **TOL)
        np.testing.assert_allclose(r, r_r, **TOL)
        np.testing.assert_allclose(t, t_r, **TOL)


def test_auc_and_average_precision_match_sklearn():
    for y, s in _score_cases(seed=7):
        auc, warned_a = _run(m.roc_auc, y, s)
        auc_r, warned_b = _run(sk.roc_auc_score, y, s)
        assert warned_a == warned_b
        np.testing.assert_allclose(auc, auc_r, **TOL)  # NaN, with a warning, for one class
        ap, _ = _run(m.average_precision, y, s)
        ap_r, _ = _run(sk.average_precision_score, y, s)
        np.testing.assert_allclose(ap, ap_r, **TOL)


def test_auc_is_the_probability_a_positive_outranks_a_negative():
    """An independent check of the area: the Mann-Whitney statistic, ties counting one half."""
    rng = np.random.default_rng(8)
    for _ in range(30):
        y = np.r_[1, 0, rng.integers(0, 2, 40)]
        s = np.round(rng.normal(size=len(y)) + y, 1)
        pos, neg = s[y == 1][:, None], s[y == 0][None, :]
        pairs = np.mean((pos > neg) + 0.5 * (pos == neg))
        assert m.roc_auc(y, s) == pytest.approx(pairs, abs=1e-12)


def test_one_class_auc_warns_and_is_nan():
    with pytest.warns(UndefinedMetricWarning, match="Only one class"):
        assert np.isnan(m.roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    with pytest.warns(UndefinedMetricWarning, match="No negative samples"):
        fpr, tpr, _ = m.roc_curve([1, 1], [0.2, 0.5])
    assert np.isnan(fpr).all() and not np.isnan(tpr).any()


def test_operating_points_match_brute_force_on_sklearn_curve():
    rng = np.random.default_rng(9)
    for _ in range(40):
        y = np.r_[0, 1, rng.integers(0, 2, 50)]
        s = np.round(rng.normal(size=len(y)) + 1.2 * y, 1)
        fpr, tpr, thr = sk.roc_curve(y, s)
        dist = np.hypot(fpr, 1 - tpr)
        best = m.closest_to_corner(fpr, tpr, thr)
        assert best.value == pytest.approx(dist.min()) and best.index == int(np.argmin(dist))
        assert best.threshold == thr[best.index] and best.fpr == fpr[best.index]
        j = m.youden_j(fpr, tpr, thr)
        assert j.value == pytest.approx((tpr - fpr).max()) and j.tpr - j.fpr == pytest.approx(j.value)
        # the chosen threshold reproduces the point when used as a decision rule
        y_pred = (s >= j.threshold).astype(int)
        assert m.recall(y, y_pred) == pytest.approx(j.tpr)
        assert 1 - m.specificity(y, y_pred) == pytest.approx(j.fpr)


# --------------------------------------------------------------------- errors


def test_bad_labels_raise_clear_errors():
    with pytest.raises(ValueError, match="same length"):
        m.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="argmax"):
        m.confusion_matrix([0, 1], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="threshold them first"):
        m.precision([0, 1], [0.2, 0.9])
    with pytest.raises(ValueError, match="empty"):
        m.recall([], [])
    with pytest.raises(ValueError, match=">= 0"):
        m.confusion_matrix([0, -1], [0, 1])
    with pytest.raises(ValueError, match="must be binary"):
        m.precision([0, 2], [0, 1])
    with pytest.raises(ValueError, match="num_classes=2"):
        m.confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        m.confusion_matrix([0, 1], [0, 1], num_classes=0)
    with pytest.raises(ValueError, match="average must be one of"):
        m.f1_score([0, 1], [0, 1], average="samples")
    with pytest.raises(ValueError, match="beta must be a positive"):
        m.fbeta_score([0, 1], [0, 1], beta=0)
    with pytest.raises(ValueError, match="integer class indices"):
        m.accuracy(["a", "b"], ["a", "b"])


def test_bad_scores_raise_clear_errors():
    with pytest.raises(ValueError, match="NaN or Inf"):
        m.roc_curve([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match=r"scores\[:, 1\]"):
        m.roc_auc([0, 1], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="same length"):
        m.pr_curve([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="one-vs-rest"):
        m.average_precision([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="real numbers"):
        m.roc_curve([0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="only one class"):
        with pytest.warns(UndefinedMetricWarning):
            m.closest_to_corner(*m.roc_curve([1, 1], [0.1, 0.2]))
    with pytest.raises(ValueError, match="same length"):
        m.youden_j([0, 1], [0, 1], [1.0])


# ------------------------------------------------------------------ cross-validation


def _blobs(n=60, seed=0):
    """Two separable classes of tiny 2x2 'images' in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = np.clip(0.5 + (y[:, None] - 0.5) * 0.6 + 0.1 * rng.normal(size=(n, 4)), 0, 1)
    return x.reshape(n, 2, 2, 1).astype(np.float32), y


def _build_tiny():
    import keras

    inputs = keras.Input((2, 2, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(2)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_cross_validate_scores_every_fold():
    x, y = _blobs()
    result = m.cross_validate(_build_tiny, x, y, k=3, epochs=5, batch_size=8, seed=0)
    assert result.scores.shape == (3,) and result.metric == "accuracy"
    assert result.mean > 0.9, str(result)  # the classes are separable
    assert result.std == pytest.approx(np.std(result.scores, ddof=1))

    def worst_class_recall(y_true, outputs):
        return float(np.diag(m.confusion_matrix(y_true, outputs.argmax(1), 2, normalize=True)).min())

    auc = m.cross_validate(_build_tiny, x, y, k=2, epochs=5, metric="roc_auc")
    assert auc.mean > 0.95
    custom = m.cross_validate(_build_tiny, x, y, k=2, epochs=5, metric=worst_class_recall)
    assert custom.metric == "worst_class_recall" and custom.scores.shape == (2,)


def test_cross_validate_errors():
    import keras

    x, y = _blobs(20)

    def uncompiled():
        inputs = keras.Input((2, 2, 1))
        return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))

    with pytest.raises(ValueError, match="compiled"):
        m.cross_validate(uncompiled, x, y, k=2, epochs=1)
    with pytest.raises(ValueError, match="metric must be one of"):
        m.cross_validate(_build_tiny, x, y, metric="auc")
    with pytest.raises(ValueError, match="build_model must be a function"):
        m.cross_validate(_build_tiny(), x, y)
    with pytest.raises(ValueError, match="same length"):
        m.cross_validate(_build_tiny, x[:5], y)
    with pytest.raises(ValueError, match="at least 11 examples"):
        m.cross_validate(_build_tiny, x, y, k=11)


# ------------------------------------------------------------------------ plots


def test_plot_confusion_matrix_writes_counts_in_cells():
    y_true, y_pred = _worked_example()
    cm = m.confusion_matrix(y_true, y_pred)
    fig = m.plot_confusion_matrix(cm, class_names=["negative", "positive"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["6", "4", "12", "8"]  # row 0 = true negatives (TN, FP), row 1 = positives (FN, TP)
    assert fig.axes[0].get_xlabel() == "predicted class" and fig.axes[0].get_title()
    with pytest.raises(ValueError, match="square"):
        m.plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="class_names"):
        m.plot_confusion_matrix(cm, class_names=["a"])


def test_plot_roc_and_pr_put_the_area_in_the_legend():
    rng = np.random.default_rng(10)
    y = rng.integers(0, 2, 80)
    s = rng.normal(size=80) + y
    fig = m.plot_roc({"model": (y, s)})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0] == f"model (AUC = {sk.roc_auc_score(y, s):.3f})"
    fig = m.plot_pr({"model": (y, s)})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0] == f"model (AP = {sk.average_precision_score(y, s):.3f})"
    with pytest.raises(ValueError, match="non-empty dict"):
        m.plot_roc({})
    with pytest.raises(ValueError, match="pair"):
        m.plot_pr({"model": y})
