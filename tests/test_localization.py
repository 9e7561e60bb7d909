"""Tests of course_lib.localization: conversions and IoU against Keras' own box utilities
and an independent pixel-counting reference, losses against Keras losses, the multitask
model's compile and custom train_step versions against each other, and the errors."""

import numpy as np
import pytest

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
from keras.utils import bounding_boxes as kbb  # noqa: E402

from course_lib import localization as loc  # noqa: E402


def random_boxes(n, seed=0, degenerate=0):
    """Random valid xyxy boxes in [0, 1]; the first ``degenerate`` have zero width."""
    rng = np.random.default_rng(seed)
    lo = rng.uniform(0, 0.7, size=(n, 2))
    wh = rng.uniform(0.01, 0.3, size=(n, 2))
    wh[:degenerate, 0] = 0.0
    return np.concatenate([lo, lo + wh], axis=1).astype(np.float32)


# ------------------------------------------------------------------ conversions


@pytest.mark.parametrize("center, keras_format", [(False, "xywh"), (True, "center_xywh")])
def test_conversions_match_keras_and_round_trip(center, keras_format):
    boxes = random_boxes(50, seed=1) * 48
    ours = loc.xyxy_to_xywh(boxes, center=center)
    ref = keras.ops.convert_to_numpy(kbb.convert_format(boxes, source="xyxy", target=keras_format))
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(loc.xywh_to_xyxy(ours, center=center), boxes, atol=1e-5)


def test_pixels_and_normalised_match_keras_relative_format():
    boxes = random_boxes(20, seed=2)
    px = loc.to_pixels(boxes, width=64, height=32)
    ref = keras.ops.convert_to_numpy(kbb.convert_format(boxes, source="rel_xyxy", target="xyxy", height=32, width=64))
    np.testing.assert_allclose(px, ref, atol=1e-4)
    np.testing.assert_allclose(loc.to_normalized(px, width=64, height=32), boxes, atol=1e-6)


# ------------------------------------------------------------------------ IoU


def pixel_iou(a, b):
    """Independent reference: rasterise integer pixel boxes and count pixels."""
    grid = np.zeros((2, 100, 100), bool)
    grid[0, a[1]:a[3], a[0]:a[2]] = True
    grid[1, b[1]:b[3], b[0]:b[2]] = True
    union = (grid[0] | grid[1]).sum()
    return (grid[0] & grid[1]).sum() / union if union else 0.0


def test_iou_equals_pixel_counting_reference():
    rng = np.random.default_rng(3)
    lo = rng.integers(0, 60, size=(300, 2, 2))
    a = np.concatenate([lo[:, 0], lo[:, 0] + rng.integers(0, 40, size=(300, 2))], axis=1)
    b = np.concatenate([lo[:, 1], lo[:, 1] + rng.integers(0, 40, size=(300, 2))], axis=1)
    ref = np.array([pixel_iou(x, y) for x, y in zip(a, b)])
    ours = loc.iou(a / 100.0, b / 100.0)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert (ref == 0).any() and (ref > 0.3).any()  # the sample covers disjoint and overlapping pairs


def test_iou_matches_keras_compute_iou_diagonal():
    a, b = random_boxes(40, seed=4), random_boxes(40, seed=5)
    b[:10] = a[:10] + 0.02  # some strongly overlapping pairs
    ref = np.diag(keras.ops.convert_to_numpy(kbb.compute_iou(a, b, bounding_box_format="xyxy")))
    np.testing.assert_allclose(loc.iou(a, b), ref, atol=1e-5)


def test_box_iou_counts_inverted_predictions_as_empty():
    true = np.array([[0.2, 0.2, 0.6, 0.6]], np.float32)
    inverted = np.array([[0.6, 0.6, 0.2, 0.2]], np.float32)  # what an untrained head may output
    assert float(loc.box_iou(true, inverted)[0]) == 0.0


def test_iou_disjoint_identical_and_degenerate():
    a = np.array([[0.0, 0.0, 0.2, 0.2], [0.1, 0.1, 0.5, 0.5], [0.3, 0.3, 0.3, 0.6], [0.4, 0.4, 0.4, 0.4]])
    b = np.array([[0.5, 0.5, 0.9, 0.9], [0.1, 0.1, 0.5, 0.5], [0.3, 0.3, 0.3, 0.6], [0.4, 0.4, 0.4, 0.4]])
    out = loc.iou(a, b)
    np.testing.assert_allclose(out, [0.0, 1.0, 0.0, 0.0], atol=1e-6)
    assert np.isfinite(out).all()


def test_box_iou_has_no_nan_gradient_on_degenerate_boxes():
    import tensorflow as tf

    pred = tf.Variable(random_boxes(8, seed=6, degenerate=4))
    true = tf.constant(random_boxes(8, seed=6, degenerate=4))
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(loc.box_iou(true, pred)) + tf.reduce_mean(loc.box_giou(true, pred))
    grad = tape.gradient(value, pred)
    assert np.isfinite(value.numpy()) and np.isfinite(grad.numpy()).all()


def test_box_iou_metric_is_the_mean_iou():
    a, b = random_boxes(30, seed=7), random_boxes(30, seed=8)
    b[:15] = a[:15] + 0.01
    metric = loc.BoxIoU()
    metric.update_state(a[:10], b[:10])
    metric.update_state(a[10:], b[10:])
    np.testing.assert_allclose(float(metric.result()), loc.iou(a, b).mean(), atol=1e-5)


# ---------------------------------------------------------------------- losses


def test_box_losses_match_keras_losses():
    t, p = random_boxes(16, seed=9), random_boxes(16, seed=10)
    l2 = float(loc.L2BoxLoss()(t, p))
    l1 = float(loc.L1BoxLoss()(t, p))
    np.testing.assert_allclose(l2, 4 * float(keras.losses.MeanSquaredError()(t, p)), rtol=1e-5)
    np.testing.assert_allclose(l1, 4 * float(keras.losses.MeanAbsoluteError()(t, p)), rtol=1e-5)
    for beta in (0.05, 0.2):
        smooth = float(loc.SmoothL1BoxLoss(beta=beta)(t, p))
        huber = 4 * float(keras.losses.Huber(delta=beta)(t, p)) / beta
        np.testing.assert_allclose(smooth, huber, rtol=1e-5)


def test_giou_loss_against_numpy_reference():
    t, p = random_boxes(32, seed=11), random_boxes(32, seed=12)
    p[:8] = t[:8] + 0.03
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    overlap = np.concatenate([np.maximum(t[:, :2], p[:, :2]), np.minimum(t[:, 2:], p[:, 2:])], axis=1)
    inter = np.clip(overlap[:, 2] - overlap[:, 0], 0, None) * np.clip(overlap[:, 3] - overlap[:, 1], 0, None)
    union = area(t) + area(p) - inter
    c = np.concatenate([np.minimum(t[:, :2], p[:, :2]), np.maximum(t[:, 2:], p[:, 2:])], axis=1)
    giou = inter / union - (area(c) - union) / area(c)
    np.testing.assert_allclose(float(loc.GIoULoss()(t, p)), np.mean(1 - giou), rtol=1e-4)
    assert (giou[8:] < 0).any()  # disjoint pairs get a negative GIoU, hence a gradient


def test_get_box_loss_rejects_unknown_names():
    assert isinstance(loc.get_box_loss("giou"), loc.GIoULoss)
    with pytest.raises(ValueError, match="unknown box loss"):
        loc.get_box_loss("l3")
    with pytest.raises(ValueError, match="beta must be > 0"):
        loc.SmoothL1BoxLoss(beta=0)


# ---------------------------------------------------------------------- models


def tiny_backbone(size=16, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D(4)(x)
    return keras.Model(inp, x)


def fake_data(n=32, size=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, size, size, 3)).astype(np.float32)
    y = {"class": rng.integers(0, classes, n), "box": random_boxes(n, seed=seed)}
    return x, y


def test_multitask_model_heads_and_compiled_loss_is_weighted_sum():
    alpha = 0.3
    model = loc.multitask_model(tiny_backbone(), num_classes=3, alpha=alpha, dropout=0.0, hidden=8)
    x, y = fake_data()
    out = model.predict(x, verbose=0)
    assert out["class"].shape == (32, 3) and out["box"].shape == (32, 4)
    assert (out["box"] > 0).all() and (out["box"] < 1).all()  # sigmoid box: inside the image
    logs = model.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    s = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y["class"], out["class"]))
    r = float(loc.L2BoxLoss()(y["box"], out["box"]))
    np.testing.assert_allclose(logs["loss"], alpha * s + (1 - alpha) * r, rtol=1e-4)
    pred_iou = keras.ops.convert_to_numpy(loc.box_iou(y["box"], out["box"]))  # untrained boxes may be inverted
    np.testing.assert_allclose(logs["box_iou"], pred_iou.mean(), atol=1e-5)


def test_custom_train_step_equals_compile_version():
    x, y = fake_data(n=16, seed=1)
    for box_loss in ("l2", "giou"):
        compiled = loc.multitask_model(tiny_backbone(seed=1), 3, alpha=0.4, box_loss=box_loss, dropout=0.0, hidden=8,
                                       optimizer=keras.optimizers.SGD(0.5))
        plain = loc.multitask_model(tiny_backbone(seed=2), 3, dropout=0.0, hidden=8, compile=False)
        plain.set_weights(compiled.get_weights())
        custom = loc.MultitaskTrainer(plain, alpha=0.4, box_loss=box_loss)
        custom.compile(optimizer=keras.optimizers.SGD(0.5))
        before = [w.copy() for w in compiled.get_weights()]
        logs_a = compiled.train_on_batch(x, y, return_dict=True)
        logs_b = custom.train_on_batch(x, y, return_dict=True)
        np.testing.assert_allclose(logs_a["loss"], logs_b["loss"], rtol=1e-5)
        moved = max(np.abs(a - b).max() for a, b in zip(compiled.get_weights(), before))
        assert moved > 1e-3  # the step did something
        for wa, wb in zip(compiled.get_weights(), plain.get_weights()):
            np.testing.assert_allclose(wa, wb, atol=1e-5)


def test_custom_trainer_fits_and_logs_compile_names():
    x, y = fake_data(n=32, seed=2)
    custom = loc.MultitaskTrainer(loc.multitask_model(tiny_backbone(), 3, compile=False, hidden=8), alpha=0.5)
    custom.compile(optimizer=keras.optimizers.Adam(1e-2))
    hist = custom.fit(x, y, validation_data=(x, y), epochs=3, batch_size=16, verbose=0).history
    assert {"loss", "class_loss", "box_loss", "class_accuracy", "box_iou", "val_loss", "val_box_iou"} <= set(hist)
    assert hist["loss"][-1] < hist["loss"][0]


def test_box_regressor_and_quick_and_dirty_build():
    reg = loc.box_regressor(tiny_backbone(), activation="linear", hidden=8)
    assert reg.output.shape[-1] == 4 and reg.layers[-1].activation.__name__ == "linear"
    qd = loc.quick_and_dirty_model(tiny_backbone())
    assert qd.output["class"].shape[-1] == 1 and qd.output["box"].shape[-1] == 4
    x, y = fake_data(n=8, classes=2)
    logs = qd.evaluate(x, {"class": y["class"][:, None].astype("float32"), "box": y["box"]}, return_dict=True, verbose=0)
    assert np.isfinite(logs["loss"])


def test_localization_report_and_show_boxes():
    model = loc.multitask_model(tiny_backbone(), num_classes=3, hidden=8)
    x, y = fake_data(n=6)
    rep = loc.localization_report(model, x, y["class"], y["box"])
    assert 0 <= rep["accuracy"] <= 1 and rep["ious"].shape == (6,) and np.isfinite(rep["ious"]).all()
    np.testing.assert_allclose(rep["mean_iou"], keras.ops.convert_to_numpy(loc.box_iou(y["box"], rep["pred_box"])).mean(), atol=1e-6)
    fig = loc.show_boxes(x, y["box"], rep["pred_box"], labels=y["class"], predictions=rep["pred_class"], ncols=3)
    assert len(fig.axes) == 6 and all(len(ax.patches) == 2 for ax in fig.axes)
    assert "IoU" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="pred_boxes must have the shape"):
        loc.show_boxes(x, y["box"], rep["pred_box"][:3])


# ------------------------------------------------------------------- keypoints


def test_stick_figures_and_keypoint_model():
    imgs, kps = loc.make_stick_figures(12, image_size=32, seed=0)
    assert imgs.shape == (12, 32, 32, 3) and kps.shape == (12, len(loc.JOINTS), 2)
    assert imgs.min() >= 0 and imgs.max() <= 1 and (kps > 0).all() and (kps < 1).all()
    again, _ = loc.make_stick_figures(12, image_size=32, seed=0)
    np.testing.assert_array_equal(imgs, again)
    model = loc.keypoint_model(tiny_backbone(32), len(loc.JOINTS), hidden=8)
    assert model.predict(imgs, verbose=0).shape == kps.shape
    scores = loc.pck(kps, kps + 0.001)
    np.testing.assert_array_equal(scores, np.ones(len(loc.JOINTS)))
    assert loc.pck(kps, kps + 0.5).max() == 0.0


# ---------------------------------------------------------------------- errors


def test_bad_boxes_give_clear_errors():
    with pytest.raises(ValueError, match="x_max >= x_min"):
        loc.iou([[0.5, 0.1, 0.2, 0.4]], [[0.1, 0.1, 0.2, 0.2]])
    with pytest.raises(ValueError, match="y_max >= y_min"):
        loc.xyxy_to_xywh([[0.1, 0.5, 0.2, 0.4]])
    with pytest.raises(ValueError, match="last dimension of 4"):
        loc.iou(np.zeros((3, 5)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="last dimension of 4"):
        loc.to_pixels(np.zeros((3, 2)), 10, 10)
    with pytest.raises(ValueError, match="same shape"):
        loc.iou(random_boxes(3), random_boxes(4))
    with pytest.raises(ValueError, match="NaN"):
        loc.iou([[0, 0, np.nan, 1]], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="negative width"):
        loc.xywh_to_xyxy([[0.1, 0.1, -0.2, 0.3]])
    with pytest.raises(ValueError, match="width must be a positive integer"):
        loc.to_pixels(random_boxes(2), 0, 10)


@pytest.mark.parametrize("alpha", [0, 1, 0.0, 1.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_alpha_must_be_strictly_between_0_and_1(alpha):
    with pytest.raises(ValueError, match="alpha must be"):
        loc.multitask_model(tiny_backbone(), 3, alpha=alpha)
    with pytest.raises(ValueError, match="alpha must be"):
        loc.multitask_loss(1.0, 1.0, alpha)


def test_backbone_without_spatial_output_is_rejected():
    inp = keras.Input((16, 16, 3))
    pooled = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp)))
    with pytest.raises(ValueError, match="spatial feature map"):
        loc.multitask_model(pooled, 3)
    with pytest.raises(ValueError, match="spatial feature map"):
        loc.box_regressor(pooled)
    with pytest.raises(ValueError, match="must be a keras.Model"):
        loc.multitask_model(keras.layers.Conv2D(4, 3), 3)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        loc.multitask_model(tiny_backbone(), 1)
    with pytest.raises(ValueError, match="pooling must be"):
        loc.multitask_model(tiny_backbone(), 3, box_pooling="mean")
    with pytest.raises(ValueError, match="outputs"):
        loc.MultitaskTrainer(tiny_backbone(), alpha=0.5)
    with pytest.raises(ValueError, match="keypoints must be"):
        loc.pck(np.zeros((2, 3, 2)), np.zeros((2, 3, 3)))


def test_giou_orders_inverted_predicted_corners():
    true = random_boxes(6, seed=13)
    pred = random_boxes(6, seed=14)
    inverted = pred[:, [2, 3, 0, 1]]  # the same boxes with swapped corners
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loc.box_giou(true, inverted)),
                               keras.ops.convert_to_numpy(loc.box_giou(true, pred)), atol=1e-6)


# ------------------------------------------------------------------ CoordConv


def test_add_coords_appends_normalised_x_and_y_channels():
    x = np.random.default_rng(3).random((2, 5, 7, 3)).astype(np.float32)
    out = keras.ops.convert_to_numpy(loc.AddCoords()(x))
    assert out.shape == (2, 5, 7, 5)
    np.testing.assert_array_equal(out[..., :3], x)  # the input channels are kept as they are
    # independent reference: np.meshgrid of np.linspace over columns (x) and rows (y)
    xx, yy = np.meshgrid(np.linspace(-1, 1, 7), np.linspace(-1, 1, 5))
    for i in range(2):
        np.testing.assert_allclose(out[i, ..., 3], xx, atol=1e-6)
        np.testing.assert_allclose(out[i, ..., 4], yy, atol=1e-6)
    inp = keras.Input((None, None, 4))
    assert tuple(loc.AddCoords()(inp).shape) == (None, None, None, 6)


def test_add_coords_lets_a_1x1_conv_read_the_position():
    # A 1x1 convolution without coordinates cannot output the column index of a constant
    # image; with AddCoords a linear 1x1 conv can, exactly (the CoordConv paper's point).
    inp = keras.Input((6, 6, 1))
    conv = keras.layers.Conv2D(1, 1, use_bias=False)
    model = keras.Model(inp, conv(loc.AddCoords()(inp)))
    conv.set_weights([np.array([0.0, 1.0, 0.0], np.float32).reshape(1, 1, 3, 1)])
    out = keras.ops.convert_to_numpy(model(np.ones((1, 6, 6, 1), np.float32)))[0, ..., 0]
    np.testing.assert_allclose(out, np.tile(np.linspace(-1, 1, 6), (6, 1)), atol=1e-6)


def test_add_coords_rejects_non_image_input():
    with pytest.raises(ValueError, match="batch, height, width, channels"):
        loc.AddCoords()(keras.Input((8, 3)))
