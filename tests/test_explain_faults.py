"""Issue 16's fault kinds in course_lib.explain, each tested on more than the reported example.

1. The explained score is the logit whatever the output activation is called: every
   spelling of softmax and sigmoid gives the maps of a hand-built logit model with the
   same weights; outputs whose logit cannot be recovered raise a ValueError.
2. Several outputs (dict, list) are chosen by name or index and match hand-built single
   output models; several inputs raise a ValueError; layer activations work on both.
3. No NaN from any parameter combination: every pixel covered, or a ValueError.
4. mixed_float16 (and mixed_bfloat16): every method returns finite float32 maps close to
   the float32 model's.
"""

import functools

import numpy as np
import pytest

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib import explain as ex  # noqa: E402
from course_lib import localization  # noqa: E402

L = keras.layers
SIZE, K = 12, 3


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((4, SIZE, SIZE, 3)).astype(np.float32)


# --------------------------------------------------------------------------- kind 1


@pytest.fixture(scope="module")
def backbone():
    """Shared layers image -> (N, 6, 6, 8) feature map; every variant below reuses them (same weights)."""
    keras.utils.set_random_seed(1)
    return [L.Conv2D(6, 3, padding="same", activation="relu", name="conv1"), L.MaxPooling2D(name="pool1"),
            L.Conv2D(8, 3, padding="same", name="conv2"), L.ReLU(name="feat")]


def _features(backbone, x):
    for layer in backbone:
        x = layer(x)
    return x


def _dense_weights(units, seed=2):
    """A confident head: logits spread over tens, so softmax and sigmoid saturate."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 60.0, (8, units)).astype(np.float32), rng.normal(0, 1.0, units).astype(np.float32)]


def _dense(units, activation=None, name="logits"):
    layer = L.Dense(units, activation=activation, name=name)
    layer.build((None, 8))
    layer.set_weights(_dense_weights(units))
    return layer


def _conv1x1(units, activation):
    layer = L.Conv2D(units, 1, activation=activation, name="conv_logits")
    layer.build((None, 1, 1, 8))
    kernel, bias = _dense_weights(units)
    layer.set_weights([kernel.reshape(1, 1, 8, units), bias])
    return layer


def _feature_values(backbone, images):
    """The backbone's feature map, by a fresh model over the shared layers (their .output is another model's)."""
    inp = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inp, _features(backbone, inp)).predict(images, verbose=0)


def _functional(backbone, head):
    inp = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inp, head(_features(backbone, inp)))


def _functional_head(x, head):
    """``head`` as a nested functional model applied to the feature map x."""
    inp = keras.Input(x.shape[1:])
    return keras.Model(inp, head(inp), name="functional_head")(x)


def _gap(x):
    return L.GlobalAveragePooling2D(name="gap")(x)


SOFTMAX_HEADS = {
    "dense_string": lambda x: _dense(K, "softmax")(_gap(x)),
    "dense_keras_activations": lambda x: _dense(K, keras.activations.softmax)(_gap(x)),
    "dense_keras_ops": lambda x: _dense(K, keras.ops.softmax)(_gap(x)),
    "dense_tf_nn_softmax_v2": lambda x: _dense(K, tf.nn.softmax)(_gap(x)),
    "dense_tf_math_softmax": lambda x: _dense(K, tf.math.softmax)(_gap(x)),
    "dense_log_softmax": lambda x: _dense(K, tf.nn.log_softmax)(_gap(x)),
    "activation_string": lambda x: L.Activation("softmax")(_dense(K)(_gap(x))),
    "activation_tf_nn": lambda x: L.Activation(tf.nn.softmax)(_dense(K)(_gap(x))),
    "activation_keras_ops": lambda x: L.Activation(keras.ops.softmax)(_dense(K)(_gap(x))),
    "dense_softmax_layer_as_activation": lambda x: _dense(K, L.Softmax())(_gap(x)),
    "dense_partial_softmax": lambda x: _dense(K, functools.partial(keras.activations.softmax, axis=-1))(_gap(x)),
    "softmax_layer": lambda x: L.Softmax()(_dense(K)(_gap(x))),
    "keras_ops_on_tensor": lambda x: keras.ops.softmax(_dense(K)(_gap(x))),
    "lambda_layer_tf_nn": lambda x: L.Lambda(tf.nn.softmax)(_dense(K)(_gap(x))),
    "functional_nested_head": lambda x: _functional_head(x, lambda t: L.Softmax()(_dense(K)(_gap(t)))),
    "keras_ops_log_softmax_on_tensor": lambda x: keras.ops.log_softmax(_dense(K)(_gap(x))),
    "softmax_then_dropout": lambda x: L.Dropout(0.5)(_dense(K, "softmax")(_gap(x))),
    "softmax_then_linear_activation": lambda x: L.Activation("linear")(L.Softmax()(_dense(K)(_gap(x)))),
    "conv_softmax_then_flatten": lambda x: L.Flatten()(_conv1x1(K, tf.nn.softmax)(
        L.GlobalAveragePooling2D(keepdims=True)(x))),
    "nested_head_activation": lambda x: keras.Sequential(
        [L.GlobalAveragePooling2D(), _dense(K), L.Activation(tf.nn.softmax)], name="head")(x),
    "nested_head_dense_softmax": lambda x: keras.Sequential(
        [L.GlobalAveragePooling2D(), _dense(K, "softmax")], name="head")(x),
}
SIGMOID_HEADS = {
    "dense_string": lambda x, k: _dense(k, "sigmoid")(_gap(x)),
    "dense_keras_activations": lambda x, k: _dense(k, keras.activations.sigmoid)(_gap(x)),
    "dense_keras_ops": lambda x, k: _dense(k, keras.ops.sigmoid)(_gap(x)),
    "dense_tf_nn": lambda x, k: _dense(k, tf.nn.sigmoid)(_gap(x)),
    "activation_tf_math": lambda x, k: L.Activation(tf.math.sigmoid)(_dense(k)(_gap(x))),
    "keras_ops_on_tensor": lambda x, k: keras.ops.sigmoid(_dense(k)(_gap(x))),
    "nested_head": lambda x, k: keras.Sequential([L.GlobalAveragePooling2D(), _dense(k, "sigmoid")])(x),
}


def _logit_model(backbone, units):
    return _functional(backbone, lambda x: _dense(units)(_gap(x)))


def _assert_same_maps(model, reference, images, rtol=1e-5):
    """grad_cam, cam, saliency and occlusion of ``model`` equal those of the logit ``reference``."""
    for method in (ex.grad_cam, ex.saliency):
        got, want = method(model, images), method(reference, images)
        assert np.abs(want).max() > 1e-3  # the logit's map, not a saturated probability's
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())
    got = ex.occlusion(model, images, patch=4, stride=4)
    want = ex.occlusion(reference, images, patch=4, stride=4)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


@pytest.mark.parametrize("spelling", list(SOFTMAX_HEADS))
def test_every_softmax_spelling_explains_the_logit(spelling, backbone, images):
    model = _functional(backbone, SOFTMAX_HEADS[spelling])
    reference = _logit_model(backbone, K)
    logits = reference.predict(images, verbose=0)
    assert np.ptp(logits, axis=1).min() > 5  # confident: the probability's gradient would be ~e-5 of the logit's
    _assert_same_maps(model, reference, images)
    if "nested" not in spelling and "conv" not in spelling:
        np.testing.assert_allclose(ex.cam(model, images), ex.cam(reference, images), rtol=1e-5, atol=1e-5)
    # The probabilities used by RISE and the faithfulness scores are the softmax of the logits.
    y, _, classes = ex.explanation_confidence(model, images, np.ones((len(images), SIZE, SIZE)))
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(y, (z / z.sum(axis=1, keepdims=True))[np.arange(len(images)), classes], rtol=1e-5)


@pytest.mark.parametrize("units", [1, K])
@pytest.mark.parametrize("spelling", list(SIGMOID_HEADS))
def test_every_sigmoid_spelling_explains_the_logit(spelling, units, backbone, images):
    model = _functional(backbone, lambda x: SIGMOID_HEADS[spelling](x, units))
    reference = _logit_model(backbone, units)
    _assert_same_maps(model, reference, images)
    # Probabilities are the model's own sigmoid outputs (a softmax over one logit would be 1).
    probs = np.asarray(model.predict(images, verbose=0), np.float64)
    y, _, classes = ex.explanation_confidence(model, images, np.ones((len(images), SIZE, SIZE)))
    np.testing.assert_allclose(y, probs[np.arange(len(images)), classes], rtol=1e-5)


def test_sequential_model_with_softmax_last(backbone, images):
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), *backbone, L.GlobalAveragePooling2D(),
                              _dense(K, tf.nn.softmax), L.Dropout(0.2)])
    _assert_same_maps(model, _logit_model(backbone, K), images)


@pytest.mark.parametrize("head, match", [
    (lambda x: _dense(K, "hard_sigmoid")(_gap(x)), "function 'hard_sigmoid'.*cannot recover"),
    (lambda x: _dense(K, lambda t: keras.ops.softmax(t))(_gap(x)), "function '<lambda>'.*cannot recover"),
    (lambda x: L.Lambda(lambda t: keras.ops.softmax(t))(_dense(K)(_gap(x))), "function '<lambda>'.*cannot recover"),
    (lambda x: keras.ops.hard_sigmoid(_dense(K)(_gap(x))), "keras.ops' HardSigmoid .* cannot recover"),
    (lambda x: L.Flatten()(_conv1x1(K, functools.partial(keras.activations.softmax, axis=1))(
        L.GlobalAveragePooling2D(keepdims=True)(x))), "softmax over axis 1"),
    (lambda x: L.Dropout(0.1)(_dense(K, keras.activations.log_sigmoid)(_gap(x))), "'log_sigmoid'.*cannot recover"),
    (lambda x: _gap(L.Conv2D(K, 1, activation="softmax", name="conv_softmax")(x)),
     "'conv_softmax' applies a softmax before the pooling 'gap'"),
    (lambda x: L.Softmax(axis=1)(L.Reshape((2, K))(L.Dense(2 * K)(_gap(x)))), "softmax over axis 1"),
])
def test_unstrippable_output_activations_are_refused(head, match, backbone, images):
    model = _functional(backbone, head)
    for method in (ex.grad_cam, ex.saliency, ex.occlusion, ex.rise):
        with pytest.raises(ValueError, match=match):
            method(model, images)
    # Layer activations do not need the logit: they still work.
    np.testing.assert_allclose(ex.layer_activations(model, images, "feat"), _feature_values(backbone, images),
                               rtol=1e-6)


# --------------------------------------------------------------------------- kind 2


@pytest.fixture(scope="module")
def multitask(backbone):
    inp = keras.Input((SIZE, SIZE, 3))
    body = keras.Model(inp, _features(backbone, inp), name="body")
    keras.utils.set_random_seed(3)
    return localization.multitask_model(body, K, hidden=16, dropout=0.0, class_pooling="avg", compile=False)


def test_multiple_outputs_need_a_choice_that_lists_them(multitask, images):
    for method in (ex.grad_cam, ex.grad_cam_plus_plus, ex.cam, ex.saliency, ex.guided_backprop, ex.occlusion,
                   ex.rise, ex.smooth_grad_cam_plus_plus, ex.guided_grad_cam):
        with pytest.raises(ValueError, match=r"2 outputs \(0: 'box' \(None, 4\), 1: 'class' \(None, 3\)\); "
                                             r"choose .* output="):
            method(multitask, images)
    for bad in ("boxes", 2, -1, True, 1.0):
        with pytest.raises(ValueError, match=f"output must name or index one of the 2 outputs.*got {bad!r}"):
            ex.grad_cam(multitask, images, output=bad)
    with pytest.raises(ValueError, match="has one output"):
        ex.grad_cam(keras.Model(multitask.inputs, multitask.outputs[1]), images, output="box")


def _hand_logits(model, layer_name, images, classes):
    """d logit / d image for the pre-activation of Dense ``layer_name``: its input times its kernel, by hand."""
    dense = model.get_layer(layer_name)
    before = keras.Model(model.inputs, dense.input)
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = tf.matmul(before(x), dense.kernel) + dense.bias
        score = tf.gather(logits, classes, batch_dims=1)
    return tape.gradient(score, x).numpy(), logits.numpy()


def test_dict_outputs_by_name_and_index_match_hand_built_models(multitask, images):
    classes = np.array([0, 1, 2, 1], np.int32)
    for output in ("class", 1):
        want, logits = _hand_logits(multitask, "class", images, classes)
        np.testing.assert_allclose(ex.saliency(multitask, images, classes, output=output), want,
                                   rtol=1e-5, atol=1e-6 * np.abs(want).max())
        single = keras.Model(multitask.inputs, multitask.get_layer("class").output)
        np.testing.assert_allclose(ex.grad_cam(multitask, images, classes, output=output),
                                   ex.grad_cam(single, images, classes), rtol=1e-6)
        np.testing.assert_allclose(ex.cam(multitask, images, classes, output=output),
                                   ex.cam(single, images, classes), rtol=1e-6)
    # The box head ends in a sigmoid: its logit is explained, as for any sigmoid output.
    coords = np.array([0, 3, 2, 1], np.int32)
    want, _ = _hand_logits(multitask, "box", images, coords)
    np.testing.assert_allclose(ex.saliency(multitask, images, coords, output="box"), want,
                               rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert ex.grad_cam(multitask, images, coords, output=0).shape == (len(images), SIZE, SIZE)


def test_list_outputs_and_the_other_methods(backbone, images):
    inp = keras.Input((SIZE, SIZE, 3))
    feat = _features(backbone, inp)
    pooled = L.GlobalMaxPooling2D()(feat)
    model = keras.Model(inp, [L.Dense(2, name="a")(_gap(feat)), _dense(K, "softmax", name="b")(pooled)])
    reference = keras.Model(inp, _dense(K, name="b_logits")(pooled))  # the same weights, no softmax
    for method, kwargs in [(ex.grad_cam, {}), (ex.grad_cam_plus_plus, {}), (ex.guided_backprop, {}),
                           (ex.occlusion, dict(patch=4, stride=2)), (ex.rise, dict(n_masks=64, progress=False)),
                           (ex.smooth_grad_cam_plus_plus, dict(n_samples=3))]:
        got = method(model, images, output=1, **kwargs)
        want = method(reference, images, **kwargs)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    maps = ex.grad_cam(model, images, output="b")
    for a, b in zip(ex.explanation_confidence(model, images, maps, output="b"),
                    ex.explanation_confidence(reference, images, maps)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    got = ex.deletion_insertion(model, images, maps, n_steps=4, output=1)
    want = ex.deletion_insertion(reference, images, maps, n_steps=4)
    np.testing.assert_allclose(got["deletion"], want["deletion"], rtol=1e-6)
    boxes = np.tile([[0.0, 0.0, 0.5, 0.5]], (len(images), 1))
    assert ex.localization_accuracy(model, images, np.zeros(len(images), int), boxes, output="b")["iou"].shape == (4,)
    image, _ = ex.activation_maximization(model, 1, steps=3, output="b")
    assert image.shape == (SIZE, SIZE, 3)


def test_output_views_are_cached_and_let_the_model_go(backbone, images):
    import gc
    import weakref

    inp = keras.Input((SIZE, SIZE, 3))
    feat = _features(backbone, inp)
    pooled = _gap(feat)
    model = keras.Model(inp, {"a": L.Dense(2, name="a")(pooled), "b": L.Dense(K, name="b")(pooled)})
    for n in (2, 3, 4):
        ex.grad_cam(model, images[:n], output="b")
    view = ex._CACHE[model][("output", model.output_names.index("b"))]
    fns = [v for k, v in ex._CACHE[view].items() if k[0] == "grad_cam"]
    assert len(fns) == 1 and fns[0].experimental_get_tracing_count() == 1  # one view, one trace
    ref = weakref.ref(model)
    del model, view, fns
    gc.collect()
    assert ref() is None, "the cached output view must not keep the model alive"


def test_layer_activations_on_multi_output_models(multitask, backbone, images):
    want = _feature_values(backbone, images)
    np.testing.assert_allclose(ex.layer_activations(multitask, images, "feat"), want, rtol=1e-6)
    assert "feat" in ex.feature_map_layers(multitask, images)
    # conv 3x3, pool 2, conv 3x3: r = 1 + 2 = 3, 3 + 1 = 4 (jump 2), 4 + 2 * 2 = 8 pixels; unit (3, 3) starts at 3.
    assert ex.receptive_field(multitask, "feat") == (3, 3, 11, 11)
    patches, _, _ = ex.max_activating_patches(multitask, images, "feat", channel=0, k=2)
    assert patches.shape == (2, 8, 8, 3)
    image, scores = ex.activation_maximization(multitask, 0, layer="feat", steps=4)  # a unit: no output needed
    assert image.shape == (SIZE, SIZE, 3) and np.isfinite(scores).all()


_MAPS = np.ones((4, SIZE, SIZE), np.float32)
_BOXES = np.tile([[0.0, 0.0, 0.5, 0.5]], (4, 1))
# Every entry point of course_lib.explain that runs a model, called as a notebook would.
ENTRY_POINTS = {
    "grad_cam": lambda m, x: ex.grad_cam(m, x),
    "grad_cam_plus_plus": lambda m, x: ex.grad_cam_plus_plus(m, x),
    "cam": lambda m, x: ex.cam(m, x),
    "layer_cam": lambda m, x: ex.layer_cam(m, x),
    "smooth_grad_cam_plus_plus": lambda m, x: ex.smooth_grad_cam_plus_plus(m, x, n_samples=2),
    "augmented_grad_cam": lambda m, x: ex.augmented_grad_cam(m, x[0], n_transforms=2, steps=2),
    "saliency": lambda m, x: ex.saliency(m, x),
    "guided_backprop": lambda m, x: ex.guided_backprop(m, x),
    "guided_grad_cam": lambda m, x: ex.guided_grad_cam(m, x),
    "occlusion": lambda m, x: ex.occlusion(m, x, patch=4, stride=2),
    "rise": lambda m, x: ex.rise(m, x, n_masks=8, progress=False),
    "layer_activations": lambda m, x: ex.layer_activations(m, x, "feat"),
    "feature_map_layers": lambda m, x: ex.feature_map_layers(m, x),
    "receptive_field": lambda m, x: ex.receptive_field(m, "feat"),
    "max_activating_patches": lambda m, x: ex.max_activating_patches(m, x, "feat", channel=0, k=2),
    "activation_maximization": lambda m, x: ex.activation_maximization(m, 0, steps=2),
    "activation_maximization_of_a_unit": lambda m, x: ex.activation_maximization(m, 0, layer="feat", steps=2),
    "explanation_confidence": lambda m, x: ex.explanation_confidence(m, x, _MAPS),
    "deletion_insertion": lambda m, x: ex.deletion_insertion(m, x, _MAPS, n_steps=4),
    "sanity_check": lambda m, x: ex.sanity_check(m, x),
    "localization_accuracy": lambda m, x: ex.localization_accuracy(m, x, np.zeros(4, int), _BOXES),
}


@pytest.fixture(scope="module")
def two_input_models(backbone):
    """An image and a vector; two images side by side (channels concatenated)."""
    a, b = keras.Input((SIZE, SIZE, 3), name="image"), keras.Input((2,), name="extra")
    with_vector = keras.Model([a, b], L.Dense(K)(L.Concatenate()([_gap(_features(backbone, a)), b])))
    left, right = keras.Input((SIZE, SIZE, 3), name="left"), keras.Input((SIZE, SIZE, 3), name="right")
    x = L.ReLU(name="feat")(L.Conv2D(8, 3, padding="same")(L.Concatenate()([left, right])))
    two_images = keras.Model([left, right], L.Dense(K)(L.GlobalAveragePooling2D()(x)))
    return {"image_and_vector": (with_vector, r"'image' \(None, 12, 12, 3\), 'extra' \(None, 2\)"),
            "two_images": (two_images, r"'left' \(None, 12, 12, 3\), 'right' \(None, 12, 12, 3\)")}


@pytest.mark.parametrize("kind", ["image_and_vector", "two_images"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_two_input_models_are_refused_clearly_by_every_entry_point(entry, kind, two_input_models, images):
    """A ValueError that names the inputs and says what to do, never Keras' "not connected to inputs"."""
    model, listing = two_input_models[kind]
    with pytest.raises(ValueError, match=f"has 2 inputs \\({listing}\\); course_lib.explain explains models of one "
                                         r"image input\. Build a one-input model around it"):
        ENTRY_POINTS[entry](model, images)


def test_the_advised_one_input_wrapper_explains_a_two_input_model(backbone, images):
    """The error's advice works: wrap the model so that one image supplies both inputs, then explain that."""
    a, b = keras.Input((SIZE, SIZE, 3), name="image"), keras.Input((2,), name="extra")
    feat = _features(backbone, a)
    hidden, head = L.Dense(6, name="hidden"), _dense(K, "softmax", name="head")
    two = keras.Model([a, b], head(L.Concatenate()([hidden(_gap(feat)), b])))
    image = keras.Input((SIZE, SIZE, 3))
    extra = np.array([[0.3, -1.0]], np.float32)
    other = L.Lambda(lambda x: keras.ops.zeros_like(x[:, 0, 0, :2]) + extra)(image)
    wrapped = keras.Model(image, two([image, other]))
    classes = np.array([0, 1, 2, 0], np.int32)
    # By hand: the head's logit (its softmax left out) with the vector fixed, and its gradients.
    x = tf.constant(images)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        A = keras.Model(a, feat)(x)
        tape.watch(A)
        pooled = hidden(tf.reduce_mean(A, axis=(1, 2)))
        logits = tf.matmul(tf.concat([pooled, tf.tile(extra, [len(images), 1])], 1), head.kernel) + head.bias
        score = tf.gather(logits, classes, batch_dims=1)
    grads, dA = tape.gradient(score, x).numpy(), tape.gradient(score, A)
    want = tf.nn.relu(tf.einsum("nhwk,nk->nhw", A, tf.reduce_mean(dA, axis=(1, 2)))).numpy()
    assert want.max() > 0
    np.testing.assert_allclose(ex.saliency(wrapped, images, classes), grads, rtol=1e-5,
                               atol=1e-6 * np.abs(grads).max())
    np.testing.assert_allclose(ex.grad_cam(wrapped, images, classes, layer="feat", upsample=False), want,
                               rtol=1e-5, atol=1e-6 * want.max())
    np.testing.assert_allclose(ex.layer_activations(wrapped, images, "feat"), A.numpy(), rtol=1e-6)


# --------------------------------------------------------------------------- kind 4


def _mp_model(policy):
    """Conv-BN-ReLU-Conv-ReLU-GAP-Dense(softmax) with fixed weights, built under ``policy``."""
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(5)
    inp = keras.Input((SIZE, SIZE, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = L.ReLU()(L.BatchNormalization(name="bn")(x))
    x = L.ReLU(name="feat")(L.Conv2D(8, 3, strides=2, padding="same", name="c2")(x))
    out = L.Dense(K, activation="softmax", name="logits")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


MP_METHODS = {
    "cam": lambda m, x, c: ex.cam(m, x, c),
    "grad_cam": lambda m, x, c: ex.grad_cam(m, x, c),
    "grad_cam_plus_plus": lambda m, x, c: ex.grad_cam_plus_plus(m, x, c),
    "saliency": lambda m, x, c: ex.saliency(m, x, c),
    "guided_backprop": lambda m, x, c: ex.guided_backprop(m, x, c),
    "guided_grad_cam": lambda m, x, c: ex.guided_grad_cam(m, x, c),
    "occlusion": lambda m, x, c: ex.occlusion(m, x, c, patch=4, stride=2),
    "smooth_grad_cam_plus_plus": lambda m, x, c: ex.smooth_grad_cam_plus_plus(m, x, c, n_samples=4),
    "rise": lambda m, x, c: ex.rise(m, x, c, n_masks=128, grid=4, progress=False),
    "augmented_grad_cam": lambda m, x, c: ex.augmented_grad_cam(m, x[0], int(c[0]), n_transforms=4, steps=40)[0],
    "layer_activations": lambda m, x, c: ex.layer_activations(m, x, "feat"),
    "explanation_confidence": lambda m, x, c: np.stack(ex.explanation_confidence(m, x, ex.grad_cam(m, x, c), c)[:2]),
    "deletion": lambda m, x, c: ex.deletion_insertion(m, x, ex.grad_cam(m, x, c), c, n_steps=6)["deletion"],
    "activation_maximization": lambda m, x, c: ex.activation_maximization(m, 1, steps=5)[0],
    "sanity_check": lambda m, x, c: ex.sanity_check(m, x, "grad_cam", c)["trained"],
}


# (relative L2 error, 99th percentile of |error| / max |map|) allowed per policy. float16 keeps
# ~3 significant digits, bfloat16 ~2, and a ReLU whose input is within rounding of 0 may
# switch, so single input-gradient pixels can differ by ~10% (saliency, guided backprop).
# Measured worst cases: float16 1.6% (guided backprop) and 0.9% (deletion curve);
# bfloat16 4.4% (saliency) and 7.2% (saliency).
MP_BOUNDS = {"mixed_float16": (0.03, 0.02), "mixed_bfloat16": (0.08, 0.12)}


@pytest.fixture(scope="module", params=list(MP_BOUNDS))
def mp_models(request):
    try:
        full = _mp_model("float32")
        half = _mp_model(request.param)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(6)
    weights = [w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in full.get_weights()]
    weights[-2] *= 5.0  # a confident classifier, as trained ones are
    full.set_weights(weights)
    half.set_weights(weights)
    assert half.get_layer("c1").compute_dtype == request.param.split("_")[1]
    return full, half, MP_BOUNDS[request.param]


@pytest.mark.parametrize("method", list(MP_METHODS))
def test_mixed_float16_maps_are_finite_float32_and_match_float32(method, mp_models, images):
    full, half, (max_l2, max_q99) = mp_models
    classes = np.argmax(full.predict(images, verbose=0), axis=1).astype(np.int32)
    want = np.asarray(MP_METHODS[method](full, images, classes))
    got = np.asarray(MP_METHODS[method](half, images, classes))
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.issubdtype(got.dtype, np.floating) and np.isfinite(got).all()
    if got.dtype != np.float64:
        assert got.dtype == np.float32
    scale = np.abs(want).max()
    assert scale > 0
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < max_l2
    assert np.quantile(np.abs(got - want), 0.99) < max_q99 * scale


# --------------------------------------------------------------------------- kind 3


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="feat")(inp)
    return keras.Model(inp, L.Dense(K, name="logits")(L.GlobalAveragePooling2D()(x)))


def _occlusion_reference(model, image, c, patch, stride, fill):
    """Brute force: every square position (the last one touching the border), one forward pass each."""
    starts = lambda n: sorted(set(range(0, n - patch + 1, stride)) | {n - patch})  # noqa: E731
    base = model.predict(image[None], verbose=0)[0, c]
    total, count = np.zeros((SIZE, SIZE)), np.zeros((SIZE, SIZE))
    for t in starts(SIZE):
        for left in starts(SIZE):
            x = image.copy()
            x[t : t + patch, left : left + patch] = fill
            total[t : t + patch, left : left + patch] += base - model.predict(x[None], verbose=0)[0, c]
            count[t : t + patch, left : left + patch] += 1
    assert count.min() >= 1
    return total / count


@pytest.mark.parametrize("patch, stride", [(1, 1), (2, 2), (3, 2), (5, 5), (5, 3), (7, 4), (12, 1), (12, 12)])
def test_occlusion_covers_every_pixel_and_matches_brute_force(patch, stride, small, images):
    got = ex.occlusion(small, images[:1], class_index=1, patch=patch, stride=stride, fill=0.3)
    assert np.isfinite(got).all()
    want = _occlusion_reference(small, images[0], 1, patch, stride, 0.3)
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("patch, stride", [(2, 5), (1, 2), (3, 12), (5, 7)])
def test_occlusion_refuses_strides_that_leave_gaps(patch, stride, small, images):
    with pytest.raises(ValueError, match=f"stride {stride} is larger than patch {patch}.*stride <= patch"):
        ex.occlusion(small, images, patch=patch, stride=stride)


def test_rise_extremes_are_finite_and_p1_gives_the_probability(small, images):
    probs = keras.ops.softmax(small.predict(images, verbose=0)).numpy()
    for grid, p, n_masks, memory_mb in [(1, 0.5, 3, 64), (SIZE, 1e-6, 5, 1e-9), (SIZE, 0.5, 1, 64), (3, 1.0, 7, 64)]:
        maps = ex.rise(small, images, class_index=2, n_masks=n_masks, grid=grid, p=p, memory_mb=memory_mb,
                       progress=False)
        assert maps.dtype == np.float32 and np.isfinite(maps).all()
        if p == 1.0:  # every mask is all ones: S = f_c(x) at every pixel (Petsiuk et al. 2018, eq. 6)
            np.testing.assert_allclose(maps, np.broadcast_to(probs[:, 2, None, None], maps.shape), rtol=1e-5)
    for kwargs, match in [(dict(grid=SIZE + 1), "grid 13 is finer"), (dict(p=0.0), "p is the probability"),
                          (dict(p=float("nan")), "p is the probability"),
                          (dict(memory_mb=float("inf")), "memory_mb .* finite and > 0"),
                          (dict(memory_mb=0), "memory_mb")]:
        with pytest.raises(ValueError, match=match):
            ex.rise(small, images, n_masks=4, progress=False, **kwargs)


def test_deletion_insertion_extremes(small, images):
    maps = ex.grad_cam(small, images)
    probs = keras.ops.softmax(small.predict(images, verbose=0)).numpy()
    zeros = keras.ops.softmax(small.predict(np.zeros_like(images), verbose=0)).numpy()
    for n_steps in (1, SIZE * SIZE):
        out = ex.deletion_insertion(small, images, maps, n_steps=n_steps, blur_sigma=float(SIZE))
        for key in ("deletion", "insertion", "deletion_auc", "insertion_auc"):
            assert np.isfinite(out[key]).all()
        classes = np.argmax(probs, axis=1)
        rows = np.arange(len(images))
        # Deletion starts at the image and ends at the zero canvas; insertion ends at the image.
        np.testing.assert_allclose(out["deletion"][:, 0], probs[rows, classes], rtol=1e-6)
        np.testing.assert_allclose(out["deletion"][:, -1], zeros[rows, classes], rtol=1e-6)
        np.testing.assert_allclose(out["insertion"][:, -1], probs[rows, classes], rtol=1e-6)
    flat = ex.deletion_insertion(small, images, np.zeros((len(images), 3, 3)), n_steps=4)  # a constant map
    assert np.isfinite(flat["deletion_auc"]).all()
    for sigma in (0.0, float("inf"), float("nan"), 1e9, SIZE + 1.0):
        with pytest.raises(ValueError, match=r"blur_sigma .* in \(0, 12\]"):
            ex.deletion_insertion(small, images, maps, blur_sigma=sigma)
    with pytest.raises(ValueError, match="n_steps 145 is more than the 144 pixels"):
        ex.deletion_insertion(small, images, maps, n_steps=SIZE * SIZE + 1)
    with pytest.raises(ValueError, match="maps contain NaN"):
        ex.deletion_insertion(small, images, np.full_like(maps, np.nan))


def test_augmented_grad_cam_extremes(small, images):
    for kwargs in [dict(transforms=[(0.0, SIZE - 1.0, -(SIZE - 1.0)), (0.0, 0.0, 0.0)], lam=0.0, mu=0.0),
                   dict(n_transforms=1, lam=0.0, mu=0.0), dict(max_angle=180.0, max_shift=SIZE - 1.0, n_transforms=4),
                   dict(lam=1e6, mu=1e6, n_transforms=3)]:
        h, history = ex.augmented_grad_cam(small, images[0], steps=20, **kwargs)
        assert np.isfinite(h).all() and np.isfinite(history).all()
    for kwargs, match in [(dict(transforms=[(0.0, 100.0, 100.0)]), "move the whole 12x12 image out of the frame"),
                          (dict(transforms=[(0.0, 0.0, 0.0), (0.0, -SIZE, 0.0)]), "out of the frame"),
                          (dict(transforms=[(float("nan"), 0.0, 0.0)]), "finite \\(angle"),
                          (dict(lam=float("inf")), "finite and >= 0"), (dict(mu=float("nan")), "finite and >= 0"),
                          (dict(max_angle=float("nan")), "max_angle"), (dict(max_shift=float("inf")), "max_shift")]:
        with pytest.raises(ValueError, match=match):
            ex.augmented_grad_cam(small, images[0], steps=5, **kwargs)


def test_warp_matrix_refuses_non_finite_warps():
    for angle, shift in ((float("nan"), (0.0, 0.0)), (0.0, (float("inf"), 0.0))):
        with pytest.raises(ValueError, match="angle .* and shift .* must be finite"):
            ex.warp_matrix((SIZE, SIZE), angle, shift)


def test_activation_maximization_refuses_non_finite_steps(small):
    for kwargs in (dict(l2=float("inf")), dict(lr=float("inf")), dict(lr=float("nan"))):
        with pytest.raises(ValueError, match="lr must be > 0 and l2 >= 0, both finite"):
            ex.activation_maximization(small, 0, steps=2, **kwargs)
