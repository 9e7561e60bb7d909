"""Tests for course_lib.semi_supervised (notebook 10)."""

import numpy as np
import pytest

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
from scipy.stats import entropy as scipy_entropy  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402

from course_lib import semi_supervised as S  # noqa: E402
from course_lib import training as T  # noqa: E402


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------ FixMatch's unlabelled loss


def test_fixmatch_loss_is_zero_when_no_prediction_passes_the_threshold():
    rng = np.random.default_rng(0)
    weak = rng.normal(scale=0.1, size=(16, 10)).astype("float32")  # max prob about 0.1-0.15
    strong = rng.normal(scale=3.0, size=(16, 10)).astype("float32")
    loss, mask_rate = S.fixmatch_unlabelled_loss(weak, strong, threshold=0.95)
    assert float(loss) == 0.0
    assert float(mask_rate) == 0.0


def test_fixmatch_loss_equals_keras_cross_entropy_on_the_confident_images():
    rng = np.random.default_rng(1)
    weak = rng.normal(size=(32, 5)).astype("float32")
    weak[:10] *= 20.0  # these ten are confident
    strong = rng.normal(size=(32, 5)).astype("float32")
    tau = 0.95
    loss, mask_rate = S.fixmatch_unlabelled_loss(weak, strong, threshold=tau)
    p = softmax(weak.astype(np.float64))
    mask = p.max(axis=1) >= tau
    ce = keras.losses.sparse_categorical_crossentropy(p.argmax(1), strong, from_logits=True)
    expected = (np.asarray(ce) * mask).sum() / len(weak)  # eq. 4: divided by mu*B, not by the mask count
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert float(mask_rate) == pytest.approx(mask.mean())
    assert 0 < mask.sum() < len(weak)


def test_pseudo_labels_argmax_and_mask():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.34, 0.33, 0.33]], dtype="float32")
    labels, mask = S.pseudo_labels(p, threshold=0.6)
    np.testing.assert_array_equal(np.asarray(labels), [0, 2, 0])
    np.testing.assert_array_equal(np.asarray(mask), [1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="threshold must be a probability"):
        S.pseudo_labels(p, threshold=1.5)
    with pytest.raises(ValueError, match="must hold probabilities"):
        S.pseudo_labels(p * 2, threshold=0.5)
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        S.pseudo_labels(p[0], threshold=0.5)


# ------------------------------------------------------------------ sharpening, entropy, consistency


def test_sharpen_tends_to_one_hot_as_temperature_goes_to_zero():
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.45, 0.45 - 1e-3 + 1e-3]], dtype="float32")
    p = p / p.sum(axis=1, keepdims=True)
    gaps = []
    for t in (1.0, 0.5, 0.1, 0.01):
        s = np.asarray(S.sharpen(p[:1], t))
        gaps.append(1.0 - s[0, 0])
    assert all(a > b for a, b in zip(gaps, gaps[1:])), "the top class must gain probability as T falls"
    np.testing.assert_allclose(np.asarray(S.sharpen(p[:1], 1e-3)), [[1.0, 0.0, 0.0]], atol=1e-6)


def test_sharpen_matches_the_formula_and_keeps_rows_summing_to_one():
    rng = np.random.default_rng(2)
    p = softmax(rng.normal(size=(6, 4)))
    for t in (0.5, 1.0, 2.0):
        expected = p ** (1 / t) / (p ** (1 / t)).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(np.asarray(S.sharpen(p, t)), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(S.sharpen(p, 1.0)), p, rtol=1e-5)


def test_sharpen_rejects_bad_input():
    p = np.full((2, 4), 0.25, dtype="float32")
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        S.sharpen(p, 0.0)
    with pytest.raises(ValueError, match="must hold probabilities"):
        S.sharpen(-p, 0.5)


def test_entropy_loss_matches_scipy():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(8, 10)).astype("float32")
    expected = scipy_entropy(softmax(z.astype(np.float64)), axis=1).mean()
    np.testing.assert_allclose(float(S.entropy_loss(z)), expected, rtol=1e-5)


def test_consistency_loss_matches_numpy_and_is_zero_for_equal_predictions():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 8, 10)).astype("float32")
    expected = ((softmax(a) - softmax(b)) ** 2).sum(axis=1).mean()
    np.testing.assert_allclose(float(S.consistency_loss(a, b)), expected, rtol=1e-5)
    assert float(S.consistency_loss(a, a)) == 0.0


# ------------------------------------------------------------------ mixup (reused from section 4)


def test_mixup_with_lambda_one_returns_the_first_batch():
    rng = np.random.default_rng(5)
    x = rng.random((6, 8, 8, 1)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 6)]
    perm = rng.permutation(6)
    mx, my = T.mixup_batch(x, y, np.ones(6), perm)
    np.testing.assert_array_equal(np.asarray(mx), x)
    np.testing.assert_array_equal(np.asarray(my), y)
    mx0, my0 = T.mixup_batch(x, y, np.zeros(6), perm)  # lambda 0: the second (permuted) batch
    np.testing.assert_array_equal(np.asarray(mx0), x[perm])
    np.testing.assert_array_equal(np.asarray(my0), y[perm])


# ------------------------------------------------------------------ data and augmentation


def test_labelled_unlabelled_split():
    labels = np.repeat(np.arange(4), 10)
    lab, unl = S.labelled_unlabelled_split(labels, 3, seed=0)
    assert np.bincount(labels[lab]).tolist() == [3, 3, 3, 3]
    assert len(np.intersect1d(lab, unl)) == 0 and len(lab) + len(unl) == len(labels)
    with pytest.raises(ValueError, match="need more than 10 examples"):
        S.labelled_unlabelled_split(labels, 10)
    with pytest.raises(ValueError, match="integer class ids"):
        S.labelled_unlabelled_split(labels.astype(float), 2)


def test_ssl_dataset_yields_b_labelled_and_mu_b_unlabelled():
    x = np.random.default_rng(6).random((20, 8, 8, 1)).astype("float32")
    y = np.arange(20) % 4
    (xl, yl), xu = next(iter(S.ssl_dataset(x[:8], y[:8], x[8:], batch_size=4, mu=3)))
    assert xl.shape == (4, 8, 8, 1) and yl.shape == (4,) and xu.shape == (12, 8, 8, 1)
    with pytest.raises(ValueError, match="same shape"):
        S.ssl_dataset(x[:8], y[:8], x[8:, :4], batch_size=4)
    with pytest.raises(ValueError, match="same length"):
        S.ssl_dataset(x[:8], y[:7], x[8:])


def test_cutout_erases_one_square_per_image_in_training_only():
    x = np.ones((5, 10, 10, 1), dtype="float32")
    out = np.asarray(S.Cutout(3, fill=0.0, seed=0)(x, training=True))
    erased = (out == 0).reshape(5, -1).sum(axis=1)
    assert (erased >= 1).all() and (erased <= 9).all()
    np.testing.assert_array_equal(np.asarray(S.Cutout(3)(x, training=False)), x)


def test_augmentations_keep_shape_and_range_and_reject_bad_strengths():
    x = np.random.default_rng(7).random((4, 8, 8, 1)).astype("float32")
    for aug in (S.weak_augmentation(flip=False), S.strong_augmentation(flip=False, cutout=2)):
        out = np.asarray(aug(x, training=True))
        assert out.shape == x.shape and np.isfinite(out).all()
        assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="max_shift"):
        S.weak_augmentation(max_shift=1.5)
    with pytest.raises(ValueError, match="rotation"):
        S.strong_augmentation(rotation=2.0)


# ------------------------------------------------------------------ the trainer


def _tiny_model():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


def _blobs(n, seed):
    """Three classes of 8x8 images, each a bright row band at a different height."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.random((n, 8, 8, 1)).astype("float32") * 0.2
    for i, c in enumerate(y):
        x[i, 2 * c + 1: 2 * c + 3] += 0.8
    return np.clip(x, 0, 1), y


@pytest.mark.parametrize("method", S.SSL_METHODS)
def test_trainer_runs_every_method_and_learns_a_simple_task(method):
    keras.utils.set_random_seed(0)
    x, y = _blobs(60, seed=0)
    xv, yv = _blobs(30, seed=1)
    model = _tiny_model()
    trainer = S.SemiSupervisedTrainer(model, method=method, weak=S.weak_augmentation(0.0, flip=False),
                                      strong=S.strong_augmentation(flip=False, cutout=2), threshold=0.5,
                                      ramp_up_steps=5)
    trainer.compile(optimizer=keras.optimizers.Adam(0.05))
    hist = trainer.fit(S.ssl_dataset(x[:6], y[:6], x[6:], batch_size=6, mu=2), steps_per_epoch=15, epochs=2,
                       validation_data=(xv, yv), verbose=0).history
    assert all(np.isfinite(v).all() for v in hist.values())
    assert hist["val_accuracy"][-1] >= 0.9, f"{method}: {hist['val_accuracy']}"
    if method in ("supervised", "mixup", "entropy", "consistency"):
        assert hist["mask_rate"][-1] == 0.0
    if method == "pseudo_label":
        assert hist["mask_rate"][-1] == 1.0  # Lee (2013): every prediction is a target
    # Training accuracy on the labelled batch, except for mixup, whose mixed images have no single
    # label (it used to log an untouched metric: "accuracy: 0.0000e+00" every epoch).
    if method == "mixup":
        assert "accuracy" not in hist
    else:
        assert 0.0 < hist["accuracy"][-1] <= 1.0, hist["accuracy"]


def test_trainer_fixmatch_unlabelled_term_is_zero_with_threshold_one_and_uniform_predictions():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, kernel_initializer="zeros")(h))
    trainer = S.SemiSupervisedTrainer(model, method="fixmatch", threshold=0.99, weak=S.weak_augmentation(flip=False))
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))
    x, y = _blobs(12, seed=2)
    hist = trainer.fit(S.ssl_dataset(x[:3], y[:3], x[3:], batch_size=3, mu=3), steps_per_epoch=2, epochs=1,
                       verbose=0).history
    assert hist["unlabelled_loss"][-1] == 0.0 and hist["mask_rate"][-1] == 0.0


def test_trainer_rejects_bad_arguments():
    model = _tiny_model()
    with pytest.raises(ValueError, match="unknown method"):
        S.SemiSupervisedTrainer(model, method="meanteacher")
    with pytest.raises(ValueError, match="threshold must be a probability"):
        S.SemiSupervisedTrainer(model, threshold=2.0)
    with pytest.raises(ValueError, match="weight"):
        S.SemiSupervisedTrainer(model, weight=-1.0)
    with pytest.raises(ValueError, match="keras.Model"):
        S.SemiSupervisedTrainer("not a model")
    with pytest.raises(ValueError, match="ramp_up_steps"):
        S.SemiSupervisedTrainer(model, ramp_up_steps=-3)


# ------------------------------------------------------------------ Gaussian mixture and EM


def _gaussian_data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [3.0, 1.0], [0.0, 4.0]])
    y = np.arange(n) % 3
    x = means[y] + rng.normal(size=(n, 2)) @ np.array([[1.0, 0.3], [0.0, 0.7]])
    return x, y


def test_e_step_equals_sklearn_gaussian_mixture_predict_proba():
    x, _ = _gaussian_data()
    rng = np.random.default_rng(1)
    weights = np.array([0.2, 0.5, 0.3])
    means = rng.normal(size=(3, 2)) * 2
    a = rng.normal(size=(3, 2, 2))
    covs = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(2)
    gm = GaussianMixture(3, covariance_type="full")
    gm.weights_, gm.means_, gm.covariances_ = weights, means, covs
    gm.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(covs))
    np.testing.assert_allclose(S.gmm_e_step(x, weights, means, covs), gm.predict_proba(x), rtol=1e-6, atol=1e-10)


def test_m_step_without_unlabelled_data_is_the_per_class_maximum_likelihood():
    x, y = _gaussian_data(n=90)
    w, m, c = S.gmm_m_step(x, y, np.zeros((0, 2)), np.zeros((0, 3)), 3, reg_covar=1e-3)
    for k in range(3):
        np.testing.assert_allclose(m[k], x[y == k].mean(axis=0), rtol=1e-10)
        np.testing.assert_allclose(c[k], np.cov(x[y == k].T, bias=True) + 1e-3 * np.eye(2), rtol=1e-10)
    np.testing.assert_allclose(w, np.bincount(y) / len(y))


def test_m_step_on_unlabelled_data_equals_sklearn_estimate():
    from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

    x, _ = _gaussian_data(n=120)
    resp = softmax(np.random.default_rng(3).normal(size=(120, 3)))
    w, m, c = S.gmm_m_step(np.zeros((0, 2)), np.zeros(0, int), x, resp, 3, reg_covar=1e-3)
    nk, means, covs = _estimate_gaussian_parameters(x, resp, 1e-3, "full")
    np.testing.assert_allclose(w, nk / len(x), rtol=1e-10)
    np.testing.assert_allclose(m, means, rtol=1e-10)
    np.testing.assert_allclose(c, covs, rtol=1e-8)


def test_semi_supervised_em_never_lowers_the_likelihood_and_uses_the_unlabelled_data():
    x, y = _gaussian_data(n=600)
    xt, yt = _gaussian_data(seed=9, n=600)
    lab = np.r_[0:3, 3:6]  # two labelled samples per class
    gmm = S.SemiSupervisedGMM(3, n_iter=15).fit(x[lab], y[lab], np.delete(x, lab, axis=0))
    ll = np.array(gmm.log_likelihood_)
    assert (np.diff(ll) >= -1e-6 * np.abs(ll[:-1])).all(), ll
    only_labelled = S.SemiSupervisedGMM(3, n_iter=0).fit(x[lab], y[lab], np.delete(x, lab, axis=0))
    acc_em = (gmm.predict(xt) == yt).mean()
    acc_lab = (only_labelled.predict(xt) == yt).mean()
    assert acc_em >= 0.85 and acc_em > acc_lab, (acc_em, acc_lab)
    np.testing.assert_allclose(gmm.predict_proba(xt).sum(axis=1), 1.0)


def test_gmm_rejects_bad_input():
    x, y = _gaussian_data(n=30)
    with pytest.raises(ValueError, match="not fitted"):
        S.SemiSupervisedGMM(3).predict(x)
    with pytest.raises(ValueError, match="same length"):
        S.SemiSupervisedGMM(3).fit(x[:5], y[:4], x[5:])
    with pytest.raises(ValueError, match="2-D array"):
        S.SemiSupervisedGMM(3).fit(x[:5, 0], y[:5], x[5:])
    with pytest.raises(ValueError, match=r"y_labelled must lie in \[0, 2\); got values in \[0, 2\]"):
        S.SemiSupervisedGMM(2).fit(x[:5], y[:5], x[5:])
    with pytest.raises(ValueError, match="shapes do not match"):
        S.gmm_e_step(x, [1.0], np.zeros((1, 3)), np.eye(3)[None])


def test_ssl_dataset_every_iterator_yields_the_same_stream():
    # fit() makes a new iterator each time; with shuffle().repeat() and reshuffle_each_iteration
    # the second iterator's order depended on how far the first had read ahead (prefetch
    # timing), which made notebook 10's method comparison vary from run to run.
    rng = np.random.default_rng(0)
    x_l, y_l = rng.random((10, 4, 4, 1)).astype("float32"), np.arange(10) % 3
    x_u = rng.random((30, 4, 4, 1)).astype("float32")
    stream = S.ssl_dataset(x_l, y_l, x_u, batch_size=4, mu=2, seed=3)

    def take(n):
        it = iter(stream)
        return [next(it) for _ in range(n)]

    first = take(7)
    take(3)  # a partly consumed iterator, as fit(steps_per_epoch=...) leaves one
    again = take(7)
    for ((xa, ya), ua), ((xb, yb), ub) in zip(first, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(ua, ub)
    labels_seen = np.concatenate([np.asarray(y) for (_, y), _ in first])
    assert set(labels_seen.tolist()) == {0, 1, 2}
