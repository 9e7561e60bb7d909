"""course_lib.explain.perception_visualization (Giulivi et al., BMVC 2021) against an independent computation.

The reference below builds the encoder with keras.Model, Grad-CAM with tf.GradientTape (eq. 1-2 of
Selvaraju et al.), resizes with tf.image.resize and normalises with NumPy: nothing of course_lib.explain.
"""

import numpy as np
import pytest

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib import explain  # noqa: E402

SIZE, CLASSES = 16, 4


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="feat")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(x))


def make_decoder(channels=6, out_channels=3, activation="sigmoid", bias=0.0):
    keras.utils.set_random_seed(2)
    latent = keras.Input((SIZE // 2, SIZE // 2, channels))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(latent)
    x = keras.layers.UpSampling2D(2)(x)
    out = keras.layers.Conv2D(out_channels, 3, padding="same", activation=activation,
                              bias_initializer=keras.initializers.Constant(bias))(x)
    return keras.Model(latent, out)


@pytest.fixture(scope="module")
def decoder():
    return make_decoder()


def reference(model, decoder, images, classes, layer="feat"):
    """PV by hand: encoder, decoder, Grad-CAM with GradientTape, bilinear resize, min-max scaling, product."""
    both = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        A, logits = both(x, training=False)
        score = tf.gather(logits, classes, axis=1, batch_dims=1)
    g = tape.gradient(score, A).numpy()
    A = A.numpy()
    alpha = g.mean(axis=(1, 2))                                          # eq. 1
    maps = np.maximum(np.einsum("nhwk,nk->nhw", A, alpha), 0)            # eq. 2
    maps = tf.image.resize(maps[..., None], images.shape[1:3], method="bilinear").numpy()[..., 0]
    lo, hi = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
    saliency = np.where(hi > lo, (maps - lo) / np.where(hi > lo, hi - lo, 1), 0)
    rec = decoder(A, training=False).numpy()
    return saliency[..., None] * rec, rec, saliency


def test_matches_the_independent_computation(model, decoder, images):
    classes = np.array([0, 1, 2, 3, 1])
    out = explain.perception_visualization(model, decoder, images, class_index=classes, layer="feat")
    pv, rec, sal = reference(model, decoder, images, classes)
    assert set(out) == {"pv", "reconstruction", "saliency"}
    assert out["pv"].shape == images.shape and out["saliency"].shape == images.shape[:3]
    assert all(v.dtype == np.float32 for v in out.values())
    np.testing.assert_allclose(out["reconstruction"], rec, atol=1e-6)
    np.testing.assert_allclose(out["saliency"], sal, atol=1e-5)
    np.testing.assert_allclose(out["pv"], pv, atol=1e-5)
    assert out["pv"].min() >= 0 and out["pv"].max() <= 1
    # Where Grad-CAM peaks, PV is the reconstruction itself; a class with no positive evidence has a zero map.
    peaked = np.flatnonzero(out["saliency"].max(axis=(1, 2)) == 1)
    assert len(peaked) >= 2, "the test needs classes with positive evidence"
    np.testing.assert_array_equal(out["pv"][out["saliency"].max(axis=(1, 2)) == 0], 0)
    for i in peaked:
        r, c = np.unravel_index(np.argmax(out["saliency"][i]), images.shape[1:3])
        np.testing.assert_allclose(out["pv"][i, r, c], out["reconstruction"][i, r, c], atol=1e-6)


def test_defaults_are_the_top_class_and_grad_cams_layer(model, decoder, images):
    top = model.predict(images, verbose=0).argmax(-1)
    out = explain.perception_visualization(model, decoder, images)  # layer None: "feat" feeds the pooling
    pv, _, _ = reference(model, decoder, images, top)
    np.testing.assert_allclose(out["pv"], pv, atol=1e-5)
    one = explain.perception_visualization(model, decoder, images, class_index=2, batch_size=2)
    np.testing.assert_allclose(one["pv"], reference(model, decoder, images, np.full(len(images), 2))[0], atol=1e-5)


def test_bad_decoders_are_clear_errors(model, decoder, images):
    with pytest.raises(ValueError, match="decoder must be a keras.Model"):
        explain.perception_visualization(model, lambda z: z, images)
    with pytest.raises(ValueError, match="decoder must take one input of the layer's shape"):
        explain.perception_visualization(model, make_decoder(channels=5), images)
    with pytest.raises(ValueError, match="decoder must take one input of the layer's shape"):
        explain.perception_visualization(model, decoder, images, layer="conv1")  # the decoder was built for "feat"
    with pytest.raises(ValueError, match="must reconstruct the input image"):
        explain.perception_visualization(model, make_decoder(out_channels=1), images)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        explain.perception_visualization(model, make_decoder(activation=None, bias=3.0), images)
    with pytest.raises(ValueError, match="contain NaN or Inf"):
        explain.perception_visualization(model, make_decoder(activation=None, bias=float("nan")), images)


def test_bad_inputs_are_clear_errors(model, decoder, images):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        explain.perception_visualization(model, decoder, images * 255)
    with pytest.raises(ValueError, match="batch_size"):
        explain.perception_visualization(model, decoder, images, batch_size=0)
    with pytest.raises(ValueError, match="out of range|class"):
        explain.perception_visualization(model, decoder, images, class_index=CLASSES)
    with pytest.raises(ValueError, match="no layer named"):
        explain.perception_visualization(model, decoder, images, layer="nope")
    with pytest.raises(ValueError, match="expects"):
        explain.perception_visualization(model, decoder, images[:, :8, :8])
