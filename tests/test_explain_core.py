"""The redesign of issue 16: one CAM core (Layer-CAM added as one weight function), one IoU, one resize, one walker.

Layer-CAM (Jiang et al., "LayerCAM", IEEE TIP 2021, eq. 4-5) is checked against a direct
computation: a Keras sub-model gives A and dS_c/dA under a GradientTape, one image at a
time, and NumPy forms ReLU(sum_k ReLU(g^k_ij) A^k_ij) in float64.
"""

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib import explain as ex  # noqa: E402
from course_lib import localization, models, training  # noqa: E402

SIZE, CLASSES = 16, 4
L = keras.layers


def _layers():
    return [L.Conv2D(6, 3, padding="same", activation="relu", name="conv1"),
            L.Conv2D(8, 3, strides=2, padding="same", name="conv2"), L.ReLU(name="relu2"),
            L.Conv2D(8, 3, padding="same", name="conv3"), L.Activation("relu", name="act3")]


@pytest.fixture(scope="module")
def flat_and_nested():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = inputs
    for layer in _layers():
        x = layer(x)
    flat = keras.Model(inputs, L.Dense(CLASSES, name="logits")(L.GlobalAveragePooling2D(name="gap")(x)))
    backbone = keras.Sequential([keras.Input((SIZE, SIZE, 3)), *_layers()], name="backbone")
    nested_in = keras.Input((SIZE, SIZE, 3))
    head = L.Dense(CLASSES, activation="softmax", name="logits")
    nested = keras.Model(nested_in, head(L.GlobalAveragePooling2D(name="gap")(backbone(nested_in))))
    for layer in backbone.layers + [head]:
        layer.set_weights(flat.get_layer(layer.name).get_weights())
    return flat, nested


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, SIZE, SIZE, 3)).astype(np.float32)


def reference_layer_cam(model, images, classes, layer):
    """ReLU(sum_k ReLU(dS_c/dA^k_ij) A^k_ij), one image at a time, in float64 (Jiang et al. 2021, eq. 4-5)."""
    sub = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])
    maps = []
    for image, c in zip(images, classes):
        with tf.GradientTape() as tape:
            A, logits = sub(image[None], training=False)
            score = logits[0, int(c)]
        g = tape.gradient(score, A).numpy()[0].astype(np.float64)
        A = A.numpy()[0].astype(np.float64)
        maps.append(np.maximum((np.maximum(g, 0.0) * A).sum(axis=-1), 0.0))
    return np.stack(maps)


@pytest.mark.parametrize("layer", ["act3", "conv1"])
@pytest.mark.parametrize("which", [0, 1])
def test_layer_cam_matches_a_direct_tape_computation(flat_and_nested, images, layer, which):
    flat = flat_and_nested[0]
    classes = np.arange(len(images)) % CLASSES
    ref = reference_layer_cam(flat, images, classes, layer)
    ours = ex.layer_cam(flat_and_nested[which], images, classes, layer=layer, upsample=False)
    assert ours.dtype == np.float32 and ours.shape == ref.shape and np.isfinite(ours).all()
    assert ref.max() > 0, "a map that is all zero would test nothing"
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * ref.max())


def test_layer_cam_differs_from_grad_cam_and_is_upsampled_bilinearly(flat_and_nested, images):
    flat = flat_and_nested[0]
    raw = ex.layer_cam(flat, images, upsample=False)
    up = ex.layer_cam(flat, images)
    want = tf.image.resize(raw[..., None], (SIZE, SIZE), method="bilinear").numpy()[..., 0]
    np.testing.assert_allclose(up, want, rtol=1e-5, atol=1e-6 * want.max())
    assert not np.allclose(ex.normalize(raw), ex.normalize(ex.grad_cam(flat, images, upsample=False)), atol=1e-3)


def test_layer_cam_is_a_method_of_the_localization_protocol(flat_and_nested, images):
    assert ex.METHODS["layer_cam"] is ex.layer_cam
    boxes = np.tile([[0.25, 0.25, 0.75, 0.75]], (len(images), 1))
    scores = ex.localization_accuracy(flat_and_nested[0], images, np.zeros(len(images), int), boxes,
                                      method="layer_cam")
    assert 0.0 <= scores["mean_iou"] <= 1.0 and scores["iou"].shape == (len(images),)


def test_one_combine_step_serves_every_variant():
    assert set(ex.VARIANTS) == {"cam", "grad_cam", "grad_cam_plus_plus", "layer_cam"}
    A = tf.random.stateless_uniform((2, 3, 3, 4), (1, 2))
    G = tf.random.stateless_normal((1, 2, 3, 3, 4), (3, 4))
    for kind, variant in ex.VARIANTS.items():
        head = tf.ones((2, 4)) if variant.uses == "head" else None
        w = variant.weights(A, None if variant.uses == "head" else G, head)
        assert w.shape in ((2, 4), (2, 3, 3, 4)), kind


# ------------------------------------------------------------------------- one IoU


def test_explain_box_iou_is_localization_box_iou_broadcast():
    rng = np.random.default_rng(1)
    lo = rng.random((6, 2)) * 0.5
    a = np.concatenate([lo, lo + rng.random((6, 2)) * 0.5], axis=1)
    b = np.concatenate([lo[::-1], lo[::-1] + rng.random((6, 2)) * 0.5], axis=1)
    ours = ex.box_iou(a[:, None], b[None])                       # (6, 6), broadcast, float64
    theirs = np.stack([localization.iou(np.repeat(a[i : i + 1], 6, 0), b) for i in range(6)])
    assert ours.shape == (6, 6) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    assert ex.box_iou([0.6, 0.6, 0.2, 0.2], [0.2, 0.2, 0.6, 0.6]) == 0.0   # an inverted box is empty
    assert ex.box_iou([0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]) == 0.0   # two empty boxes: 0, not NaN
    with pytest.raises(ValueError, match="4 coordinates"):
        ex.box_iou(np.zeros(3), np.zeros(4))


# ------------------------------------------------------------------ one resize, one walker


def test_resize_maps_is_tf_bilinear_resize():
    maps = np.random.default_rng(2).random((3, 4, 5)).astype(np.float32)
    want = tf.image.resize(maps[..., None], (9, 11), method="bilinear").numpy()[..., 0]
    np.testing.assert_allclose(np.asarray(ex.resize_maps(maps, (9, 11))), want, rtol=1e-6, atol=1e-7)
    assert np.asarray(ex.resize_maps(maps[..., None], (9, 11))).shape == (3, 9, 11, 1)


def test_one_layer_walker(flat_and_nested):
    nested = flat_and_nested[1]
    every = [layer.name for layer in models.walk_layers(nested)]
    leaves = [layer.name for layer in models.walk_layers(nested, nested_models=False)]
    assert "backbone" in every and "backbone" not in leaves and set(leaves) < set(every)
    assert [layer.name for layer in ex._all_layers(nested)] == every
    assert [layer.name for layer in training._leaf_layers(nested)] == leaves
    assert models.count_flops(nested) == models.count_flops(flat_and_nested[0])
