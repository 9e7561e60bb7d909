"""Issue 16, kind 5: every helper that takes labels reads (N,), (N, 1) and one-hot (N, K) alike.

The reported fault: ``training.mixup`` took CIFAR-10's (N, 1) integer labels for one-hot
targets and blended class ids. Each helper below is run on the three shapes of the same
labels and must give the (N,) result, which is checked against a reference (a by-hand
mixup from recovered lambdas and pairs, scikit-learn's balanced class weights, the
formulas); other shapes (soft targets, (N, H, W), non-integers) raise a ValueError that
names the shape.
"""

import numpy as np
import pytest

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib import explain as ex  # noqa: E402
from course_lib import localization as loc  # noqa: E402
from course_lib import semi_supervised as S  # noqa: E402
from course_lib import training as T  # noqa: E402

K = 4
IDS = np.array([0, 3, 1, 2, 3, 0, 1, 2, 2, 3, 0, 1], np.int64)


def _shapes(ids=IDS, k=K):
    """The same labels as (N,), (N, 1) uint8 (CIFAR-10's) and one-hot (N, K) float32."""
    return {"flat": ids, "column": ids[:, None].astype(np.uint8), "onehot": np.eye(k, dtype=np.float32)[ids]}


def test_class_ids_reads_three_shapes_and_refuses_others():
    for labels in _shapes().values():
        np.testing.assert_array_equal(T.class_ids(labels, K), IDS)
    bad = [
        (np.full((12, K), 0.25), r"labels of shape \(12, 4\) are not one-hot"),
        (np.zeros((12, 2, 2), int), r"got shape \(12, 2, 2\)"),
        (IDS + 0.5, r"labels of shape \(12,\) must be integer class ids; got dtype float64"),
        (IDS[:, None].astype(np.float32), r"labels of shape \(12, 1\) must be integer class ids; got dtype float32"),
        (np.eye(3)[IDS % 3], "one-hot with 3 columns but num_classes is 4"),
        (IDS[:, None] + 4, r"must lie in \[0, 4\); got values in \[4, 7\]"),
        (IDS.astype(bool), "got dtype bool"),
    ]
    for labels, match in bad:
        with pytest.raises(ValueError, match=match):
            T.class_ids(labels, K)


def _mixup_once(labels, num_classes=K, seed=3):
    """One mixup batch of images x_i = e_i (one-hot along the width), so lambda_i and pi(i) can be read back."""
    n = len(IDS)
    x = np.eye(n, dtype=np.float32)[:, None, :, None]  # (n, 1, n, 1)
    ds = tf.data.Dataset.from_tensor_slices((x, labels)).batch(n)
    mixed_x, mixed_y = next(iter(T.mixup(ds, alpha=0.4, num_classes=num_classes, seed=seed)))
    return mixed_x.numpy()[:, 0, :, 0], mixed_y.numpy()


@pytest.mark.parametrize("shape", ["flat", "column", "onehot"])
def test_mixup_targets_are_blended_one_hot_rows_for_every_label_shape(shape):
    keras.utils.set_random_seed(0)
    mixed_x, mixed_y = _mixup_once(_shapes()[shape])
    assert mixed_y.shape == (len(IDS), K)
    onehot = np.eye(K)[IDS]
    for i, row in enumerate(mixed_x):  # row = lam e_i + (1 - lam) e_j
        lam = row[i]
        others = np.flatnonzero(np.arange(len(row)) != i)
        j = others[np.argmax(row[others])] if lam < 1 else i
        want = lam * onehot[i] + (1 - lam) * onehot[j] if j != i else onehot[i]
        np.testing.assert_allclose(mixed_y[i], want, atol=1e-6)
    np.testing.assert_allclose(mixed_y.sum(axis=1), 1.0, atol=1e-6)


def test_mixup_refuses_ambiguous_label_shapes():
    x = np.zeros((6, 2, 2, 1), np.float32)
    column = tf.data.Dataset.from_tensor_slices((x, IDS[:6, None])).batch(3)
    with pytest.raises(ValueError, match=r"targets of shape \(None, 1\) are class ids: pass num_classes"):
        T.mixup(column)
    onehot = tf.data.Dataset.from_tensor_slices((x, np.eye(K)[IDS[:6]])).batch(3)
    with pytest.raises(ValueError, match=r"targets are one-hot \(B, 4\) but num_classes is 10"):
        T.mixup(onehot, num_classes=10)
    cube = tf.data.Dataset.from_tensor_slices((x, np.zeros((6, 2, 2)))).batch(3)
    with pytest.raises(ValueError, match=r"got shape \(None, 2, 2\)"):
        T.mixup(cube, num_classes=K)
    for targets in (IDS[:3, None].astype(np.float32), IDS[:3].astype(np.float32)):
        with pytest.raises(ValueError, match=r"mixup_batch mixes one-hot or soft targets \(B, K\); got shape \(3"):
            T.mixup_batch(x[:3], targets, np.full(3, 0.5), np.array([1, 2, 0]))


@pytest.mark.parametrize("shape", ["column", "onehot"])
def test_label_helpers_agree_with_flat_labels(shape):
    labels = _shapes()[shape]
    np.testing.assert_allclose(T.smooth_labels(labels, K, 0.1), 0.9 * np.eye(K)[IDS] + 0.1 / K, rtol=1e-6)
    np.testing.assert_allclose(T.smooth_targets(labels, K, 0.3), T.smooth_targets(IDS, K, 0.3), rtol=1e-6)
    # class_weights equals scikit-learn's compute_class_weight("balanced").
    from sklearn.utils.class_weight import compute_class_weight

    want = compute_class_weight("balanced", classes=np.arange(K), y=IDS)
    got = T.class_weights(labels, K)
    np.testing.assert_allclose([got[k] for k in range(K)], want, rtol=1e-12)
    for a, b in zip(S.labelled_unlabelled_split(labels, 2, seed=1), S.labelled_unlabelled_split(IDS, 2, seed=1)):
        np.testing.assert_array_equal(a, b)


def test_ssl_dataset_and_trainer_read_every_label_shape():
    rng = np.random.default_rng(0)
    x = rng.random((12, 4, 4, 1)).astype(np.float32)
    for labels in _shapes().values():
        (xl, yl), xu = next(iter(S.ssl_dataset(x, labels, x, batch_size=12, mu=1, seed=0)))
        assert yl.shape == (12,) and yl.dtype == tf.int32
        order = [int(np.flatnonzero((x == v).all(axis=(1, 2, 3)))[0]) for v in xl.numpy()]
        np.testing.assert_array_equal(yl.numpy(), IDS[order])
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 1))
    model = keras.Model(inp, keras.layers.Dense(K)(keras.layers.Flatten()(inp)))
    trainer = S.SemiSupervisedTrainer(model, method="supervised", weak=S.weak_augmentation(0.0, flip=False))
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))
    logits = model.predict(x, verbose=0)
    want_loss = float(np.mean(keras.losses.sparse_categorical_crossentropy(IDS, logits, from_logits=True)))
    for labels in _shapes().values():
        result = trainer.evaluate(x, labels, batch_size=12, verbose=0, return_dict=True)
        np.testing.assert_allclose(result["loss"], want_loss, rtol=1e-5)
        np.testing.assert_allclose(result["accuracy"], np.mean(logits.argmax(1) == IDS), rtol=1e-6)
    for labels in _shapes().values():  # one training step on each shape: same (unchanged, lr 0) losses
        stream = S.ssl_dataset(x, labels, x, batch_size=12, mu=1)
        (xb, yb), _ = next(iter(stream))  # the batch fit() will draw first (every iterator starts alike)
        want_batch = float(np.mean(keras.losses.sparse_categorical_crossentropy(
            yb.numpy(), model.predict(xb.numpy(), verbose=0), from_logits=True)))
        history = trainer.fit(stream, steps_per_epoch=1, verbose=0)
        np.testing.assert_allclose(history.history["supervised_loss"][0], want_batch, rtol=1e-4)


def test_gmm_helpers_read_every_label_shape():
    rng = np.random.default_rng(1)
    xl = rng.normal(size=(12, 2)) + IDS[:, None]
    xu = rng.normal(size=(8, 2))
    resp = np.full((8, K), 1.0 / K)
    want = S.gmm_m_step(xl, IDS, xu, resp, K)
    for labels in _shapes().values():
        for a, b in zip(S.gmm_m_step(xl, labels, xu, resp, K), want):
            np.testing.assert_allclose(a, b, rtol=1e-12)
        gmm = S.SemiSupervisedGMM(K, n_iter=2).fit(xl, labels, xu)
        np.testing.assert_allclose(gmm.means_, S.SemiSupervisedGMM(K, n_iter=2).fit(xl, IDS, xu).means_, rtol=1e-12)
    with pytest.raises(ValueError, match=r"y_labelled of shape \(12, 4\) are not one-hot"):
        S.gmm_m_step(xl, np.full((12, K), 0.25), xu, resp, K)


def test_localization_and_explain_helpers_read_every_label_shape():
    rng = np.random.default_rng(2)
    n = len(IDS)
    logits = rng.normal(size=(n, K))
    true_boxes, pred_boxes = rng.random((n, 4)), rng.random((n, 4))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = 0.3 * -np.log(p[np.arange(n), IDS]).mean() + 0.7 * ((true_boxes - pred_boxes) ** 2).sum(1).mean()
    for labels in _shapes().values():
        np.testing.assert_allclose(loc.multitask_loss_np(labels, logits, true_boxes, pred_boxes, 0.3), want, rtol=1e-12)

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    feat = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    pooled = keras.layers.GlobalAveragePooling2D()(feat)
    model = keras.Model(inp, {"class": keras.layers.Dense(K, name="class")(pooled),
                              "box": keras.layers.Dense(4, activation="sigmoid", name="box")(pooled)})
    images = rng.random((n, 8, 8, 1)).astype(np.float32)
    boxes = np.tile([[0.1, 0.1, 0.6, 0.6]], (n, 1)).astype(np.float32)
    predicted = model.predict(images, verbose=0)["class"].argmax(1)
    for labels in _shapes().values():
        report = loc.localization_report(model, images, labels, boxes)
        assert report["accuracy"] == pytest.approx(np.mean(predicted == IDS))  # (N, 1) used to broadcast to (N, N)
        acc = ex.localization_accuracy(model, images, labels, boxes, output="class")
        assert acc["classification_accuracy"] == pytest.approx(np.mean(predicted == IDS))
    with pytest.raises(ValueError, match=r"labels of shape \(12, 4\) are not one-hot"):
        loc.localization_report(model, images, np.full((n, K), 0.25), boxes)


def test_show_images_titles_every_label_shape():
    from course_lib import viz

    images = np.zeros((len(IDS), 4, 4, 1), np.float32)
    names = ["zero", "one", "two", "three"]
    want = [names[i] for i in IDS]
    for labels in _shapes().values():
        fig = viz.show_images(images, labels=labels, predictions=_shapes()["column"], class_names=names)
        titles = [ax.get_title() for ax in fig.axes[: len(IDS)]]
        assert titles == [f"{w} / {w}" for w in want]  # a (N, 1) column used to print "[3]"
    fig = viz.show_images(images[:2], labels=np.array(["cat", "dog"]))
    assert [ax.get_title() for ax in fig.axes[:2]] == ["cat", "dog"]
    with pytest.raises(ValueError, match=r"predictions of shape \(12, 4\) are not one-hot"):
        viz.show_images(images, predictions=np.full((len(IDS), K), 0.25))
