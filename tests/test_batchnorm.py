"""Batch normalization: NumPy maths vs numerical gradients, our Keras layer vs Keras', BN folding."""

import warnings

import numpy as np
import pytest

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
from keras import layers as L  # noqa: E402

from course_lib import batchnorm as CL  # noqa: E402


# ------------------------------------------------------------------ NumPy forward / backward
def test_forward_normalizes_each_channel_then_scales_and_shifts():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(16, 5, 5, 4))
    gamma, beta = rng.uniform(0.5, 2.0, 4), rng.normal(size=4)
    y, cache = CL.batchnorm_forward(x, np.ones(4), np.zeros(4), eps=0.0)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-12)
    y2, _ = CL.batchnorm_forward(x, gamma, beta, eps=0.0)
    np.testing.assert_allclose(y2.mean(axis=(0, 1, 2)), beta, atol=1e-12)
    np.testing.assert_allclose(y2.std(axis=(0, 1, 2)), gamma, atol=1e-12)
    np.testing.assert_allclose(cache["var"], x.var(axis=(0, 1, 2)))


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 3, 2)])
def test_backward_matches_numerical_gradient_float64(shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    c = shape[-1]
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(size=c)
    dy = rng.normal(size=shape)  # loss = sum(dy * y): its gradient w.r.t. y is dy

    def loss(x_=None, gamma_=None, beta_=None):
        y, _ = CL.batchnorm_forward(x if x_ is None else x_, gamma if gamma_ is None else gamma_,
                                    beta if beta_ is None else beta_)
        return float((dy * y).sum())

    _, cache = CL.batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = CL.batchnorm_backward(dy, cache)
    assert CL.relative_error(dx, CL.numerical_gradient(lambda v: loss(x_=v), x.copy())) < 1e-6
    assert CL.relative_error(dgamma, CL.numerical_gradient(lambda v: loss(gamma_=v), gamma.copy())) < 1e-6
    assert CL.relative_error(dbeta, CL.numerical_gradient(lambda v: loss(beta_=v), beta.copy())) < 1e-6


def test_backward_matches_tensorflow_autodiff():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    x, dy = rng.normal(size=(8, 4, 4, 3)), rng.normal(size=(8, 4, 4, 3))
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.normal(size=3)
    tx, tg, tb = (tf.Variable(v) for v in (x, gamma, beta))
    with tf.GradientTape() as tape:
        mean, var = tf.nn.moments(tx, axes=[0, 1, 2])
        y = tf.nn.batch_normalization(tx, mean, var, tb, tg, 1e-3)
        loss = tf.reduce_sum(y * dy)
    ref = tape.gradient(loss, [tx, tg, tb])
    _, cache = CL.batchnorm_forward(x, gamma, beta, eps=1e-3)
    for ours, theirs in zip(CL.batchnorm_backward(dy, cache), ref):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-7, atol=1e-9)


def test_numpy_bn_bad_inputs():
    with pytest.raises(ValueError, match="gamma must have shape \\(3,\\)"):
        CL.batchnorm_forward(np.ones((4, 3)), np.ones(2), np.zeros(3))
    with pytest.raises(ValueError, match="at least 2 values per channel"):
        CL.batchnorm_forward(np.ones((1, 3)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="batch axis first"):
        CL.batchnorm_forward(np.ones(3), np.ones(3), np.zeros(3))
    _, cache = CL.batchnorm_forward(np.random.rand(4, 3), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="dy must have the forward output's shape"):
        CL.batchnorm_backward(np.ones((4, 2)), cache)
    with pytest.raises(ValueError, match="use float64"):
        CL.numerical_gradient(lambda v: v.sum(), np.ones(3, np.float32))


# ------------------------------------------------------------------ Keras layer from scratch
def _twin_models(shape, momentum=0.9):
    inp = keras.Input(shape)
    ours = keras.Model(inp, CL.BatchNorm(momentum=momentum)(inp))
    inp2 = keras.Input(shape)
    ref = keras.Model(inp2, L.BatchNormalization(momentum=momentum)(inp2))
    rng = np.random.default_rng(3)
    c = shape[-1]
    weights = [rng.uniform(0.5, 1.5, c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.5, 2, c)]
    ours.set_weights(weights)
    ref.set_weights(weights)
    return ours, ref


@pytest.mark.parametrize("shape", [(6, 6, 4), (5,)])
def test_bn_layer_matches_keras_in_both_modes_and_moving_averages(shape):
    ours, ref = _twin_models(shape)
    rng = np.random.default_rng(4)
    for _ in range(5):  # several training steps: outputs and running averages must agree
        x = rng.normal(2.0, 3.0, size=(8,) + shape).astype("float32")
        np.testing.assert_allclose(ours(x, training=True), ref(x, training=True), atol=1e-5)
        for w_ours, w_ref in zip(ours.get_weights(), ref.get_weights()):
            np.testing.assert_allclose(w_ours, w_ref, atol=1e-5)
    x = rng.normal(2.0, 3.0, size=(8,) + shape).astype("float32")
    np.testing.assert_allclose(ours(x, training=False), ref(x, training=False), atol=1e-5)
    assert not np.allclose(ours(x, training=True), ours(x, training=False), atol=1e-3)  # the modes differ


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_bn_layer_matches_keras_under_both_precision_policies(policy):
    """Issue 16, kind 4: statistics stay float32. A variance of ~7e4 (std 265) is inf in float16.

    Inputs are float16-representable (x = 265 z rounded to float16) so both layers see the
    same numbers; outputs are compared in float16's precision (3 decimal digits: rtol 1e-2).
    """
    keras.mixed_precision.set_global_policy(policy)
    try:
        ours, ref = _twin_models((6, 6, 4), momentum=0.5)
        for layer in ours.layers[1:] + ref.layers[1:]:
            assert layer.compute_dtype == ("float16" if policy == "mixed_float16" else "float32")
        rng = np.random.default_rng(7)
        for _ in range(3):
            x = (265.0 * rng.normal(size=(8, 6, 6, 4))).astype("float16").astype("float32")
            a, b = ours(x, training=True), ref(x, training=True)
            assert a.dtype == b.dtype
            np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=1e-2, atol=1e-2)
        for w_ours, w_ref in zip(ours.get_weights(), ref.get_weights()):
            assert w_ours.dtype == w_ref.dtype == np.float32
            np.testing.assert_allclose(w_ours, w_ref, rtol=1e-4)
        assert ours.get_weights()[3].max() > 3e4  # the running variance is large and finite
        x = (265.0 * rng.normal(size=(8, 6, 6, 4))).astype("float16").astype("float32")
        a = np.asarray(ours(x, training=False), np.float32)
        assert np.isfinite(a).all() and a.std() > 0.1
        np.testing.assert_allclose(a, np.asarray(ref(x, training=False), np.float32), rtol=1e-2, atol=1e-2)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_bn_layer_trains_like_keras_in_fit():
    def build(bn):
        inp = keras.Input((8,))
        out = L.Dense(3)(bn(L.Dense(6)(inp)))
        return keras.Model(inp, out)

    keras.utils.set_random_seed(0)
    ours = build(CL.BatchNorm())
    keras.utils.set_random_seed(0)
    ref = build(L.BatchNormalization())
    ref.set_weights(ours.get_weights())
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 3, 64)
    for m in (ours, ref):
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True))
        m.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for w_ours, w_ref in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(w_ours, w_ref, atol=1e-5)


def test_bn_layer_round_trips_through_keras_file(tmp_path):
    ours, _ = _twin_models((4,))
    ours.save(tmp_path / "bn.keras")
    back = keras.models.load_model(tmp_path / "bn.keras")
    x = np.random.default_rng(6).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(back(x, training=False), ours(x, training=False), atol=1e-7)


def test_bn_layer_bad_arguments():
    with pytest.raises(ValueError, match="momentum must be in \\[0, 1\\)"):
        CL.BatchNorm(momentum=1.5)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        CL.BatchNorm(epsilon=0.0)


# ------------------------------------------------------------------ folding
def _randomize_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            values = {"gamma": rng.uniform(0.5, 1.5, n), "beta": rng.normal(0, 0.3, n),
                      "moving_mean": rng.normal(0, 0.3, n), "moving_variance": rng.uniform(0.3, 2.0, n)}
            layer.set_weights([values[w.name] for w in layer.weights])


def _mixed_model():
    inp = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False)(x)
    y = L.ReLU()(L.BatchNormalization(center=False)(y))
    y = L.Conv2D(8, 1)(y)  # with bias
    y = L.BatchNormalization(scale=False)(y)
    z = L.Add()([x, y])
    z = L.BatchNormalization(name="bn_after_add")(z)  # nothing to fold into
    z = L.GlobalAveragePooling2D()(z)
    z = L.Dense(10)(z)
    out = L.BatchNormalization(name="bn_dense")(z)
    return keras.Model(inp, out)


def test_fold_matches_original_and_leaves_it_unchanged():
    model = _mixed_model()
    _randomize_bn(model)
    before = [w.copy() for w in model.get_weights()]
    with pytest.warns(UserWarning, match="kept 1 BatchNormalization layer.*'bn_after_add' follows Add"):
        folded = CL.fold_batch_norm(model)
    x = np.random.default_rng(7).random((6, 12, 12, 3)).astype("float32")
    assert np.abs(model.predict(x, verbose=0) - folded.predict(x, verbose=0)).max() <= 1e-4
    kept = [layer.name for layer in folded.layers if isinstance(layer, L.BatchNormalization)]
    assert kept == ["bn_after_add"]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert sum(isinstance(layer, L.BatchNormalization) for layer in model.layers) == 5


def test_fold_mobilenetv2_without_bias_convs():
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
                                           classifier_activation=None)
    _randomize_bn(model, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every BN in MobileNetV2 follows a conv: nothing kept, no warning
        folded = CL.fold_batch_norm(model)
    assert not any(isinstance(layer, L.BatchNormalization) for layer in folded.layers)
    x = np.random.default_rng(8).random((4, 32, 32, 3)).astype("float32")
    diff = np.abs(model(x, training=False).numpy() - folded(x, training=False).numpy()).max()
    assert diff <= 1e-4


def test_fold_sequential_and_nested_models():
    seq = keras.Sequential([keras.Input((8,)), L.Dense(6, use_bias=False), L.BatchNormalization(), L.ReLU(),
                            L.Dense(4), L.BatchNormalization()])
    inp = keras.Input((8,))
    outer = keras.Model(inp, L.BatchNormalization()(L.Dense(3)(seq(inp))))
    _randomize_bn(outer, seed=2)
    folded = CL.fold_batch_norm(outer)
    x = np.random.default_rng(9).normal(size=(5, 8)).astype("float32")
    assert np.abs(outer.predict(x, verbose=0) - folded.predict(x, verbose=0)).max() <= 1e-4
    assert not any(isinstance(layer, L.BatchNormalization) for layer in folded._flatten_layers())


def test_find_foldable_reports_reasons():
    inp = keras.Input((6, 6, 2))
    a = L.Conv2D(4, 3, activation="relu", name="conv_relu")(inp)
    a = L.BatchNormalization(name="bn_after_relu")(a)
    b = L.Conv2D(4, 3, name="conv_shared_out")(inp)
    b1 = L.BatchNormalization(name="bn_shared")(b)
    c = L.BatchNormalization(name="bn_input")(inp)
    out = L.Concatenate()([L.Flatten()(t) for t in (a, b1, b, c)])
    pairs, unfoldable = CL.find_foldable_batch_norms(keras.Model(inp, out))
    assert pairs == {}
    assert "not linear" in unfoldable["bn_after_relu"]
    assert "used elsewhere" in unfoldable["bn_shared"]
    assert "model input" in unfoldable["bn_input"]


def test_folded_weights_by_hand():
    kernel, bias = np.array([[2.0, -1.0]]), np.array([0.5, 0.0])
    k, b = CL.folded_weights(kernel, bias, gamma=np.array([1.0, 2.0]), beta=np.array([0.0, 1.0]),
                             mean=np.array([0.5, 1.0]), var=np.array([4.0, 1.0]), eps=0.0)
    np.testing.assert_allclose(k, [[1.0, -2.0]])
    np.testing.assert_allclose(b, [0.0, -1.0])


def test_fold_bad_inputs():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="expects a keras.Model"):
        CL.fold_batch_norm(L.Dense(3))
    with pytest.raises(ValueError, match="subclassed model"):
        CL.fold_batch_norm(Sub())
    with pytest.raises(ValueError, match="Sequential model is not built"):
        CL.fold_batch_norm(keras.Sequential([L.Dense(3)]))
