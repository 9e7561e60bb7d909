"""Notebook 08's tools: activations, receptive fields, maximally activating patches, activation maximization."""

import keras
import numpy as np
import pytest

from course_lib import explain


def _stack(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(4, 5, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", name="c2")(x)
    x = keras.layers.ReLU(name="c2_relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(x))


def _images(n=12, seed=1):
    return np.random.default_rng(seed).random((n, 24, 24, 3)).astype(np.float32)


def test_layer_activations_equal_keras_submodel_also_nested():
    model, x = _stack(), _images()
    reference = keras.Model(model.inputs, model.get_layer("c2_relu").output).predict(x, verbose=0)
    np.testing.assert_allclose(explain.layer_activations(model, x, "c2_relu"), reference, atol=1e-5)
    # The same network used as a nested backbone: the inner layer is still reachable.
    backbone = keras.Model(model.inputs, model.get_layer("c2_relu").output, name="backbone")
    inp = keras.Input((24, 24, 3))
    outer = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(backbone(inp))))
    np.testing.assert_allclose(explain.layer_activations(outer, x, "c2_relu"), reference, atol=1e-5)
    with pytest.raises(ValueError, match="no layer named 'c9'"):
        explain.layer_activations(model, x, "c9")


def test_receptive_field_equals_the_recursion():
    model = _stack()
    # c1: r=5; p1 (2, 2): r=6, j=2; c2 (3, 1): r = 6 + 2 * 2 = 10
    top, left, bottom, right = explain.receptive_field(model, "c1")
    assert (bottom - top, right - left) == (5, 5)
    top, left, bottom, right = explain.receptive_field(model, "c2_relu")
    assert (bottom - top, right - left) == (10, 10)
    # A unit in the corner sees a field clipped by the image border.
    t, l, b, r = explain.receptive_field(model, "c2_relu", position=(0, 0))
    assert (t, l) == (0, 0) and b - t < 10
    with pytest.raises(ValueError, match="position must lie"):
        explain.receptive_field(model, "c2_relu", position=(40, 0))


def test_max_activating_patches_cut_the_field_of_the_strongest_units():
    model, x = _stack(), _images(20)
    acts = explain.layer_activations(model, x, "c1")
    patches, values, idx = explain.max_activating_patches(model, x, "c1", 2, k=5)
    assert patches.shape == (5, 5, 5, 3) and np.all(np.diff(values) <= 0)
    peaks = acts[..., 2].reshape(20, -1).max(axis=1)
    np.testing.assert_allclose(values, np.sort(peaks)[::-1][:5], rtol=1e-6)
    # For c1 ('same' 5x5 conv) the patch of unit (i, j) is the input around (i, j), zero-padded.
    i, j = divmod(int(acts[idx[0], ..., 2].argmax()), 24)
    padded = np.pad(x[idx[0]], ((2, 2), (2, 2), (0, 0)))
    np.testing.assert_allclose(patches[0], padded[i : i + 5, j : j + 5], atol=1e-6)
    with pytest.raises(ValueError, match=r"channel must be an int in \[0, 3\]"):
        explain.max_activating_patches(model, x, "c1", 4)


def test_activation_maximization_raises_the_unit_and_leaves_the_model_alone():
    model = _stack()
    before = [w.copy() for w in model.get_weights()]
    image, scores = explain.activation_maximization(model, 1, steps=30, lr=0.05)
    assert image.shape == (24, 24, 3) and 0 <= image.min() and image.max() <= 1
    assert np.isfinite(scores).all() and scores[-1] > scores[0]
    logit = model.predict(image[None], verbose=0)[0, 1]
    assert logit > scores[0]
    _, channel_scores = explain.activation_maximization(model, 0, layer="c2", steps=30)
    assert channel_scores[-1] > channel_scores[0]
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"class index in \[0, 2\]"):
        explain.activation_maximization(model, 3)
    with pytest.raises(ValueError, match="lr must be > 0"):
        explain.activation_maximization(model, 0, lr=0)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        explain.activation_maximization(model, 0, steps=0)
