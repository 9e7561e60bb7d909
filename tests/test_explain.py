"""Tests of course_lib.explain against independent references written from the papers' equations.

The references below build a Keras sub-model (possible for a *flat* functional model)
and compute, one image at a time, Grad-CAM (Selvaraju et al. 2017, eq. 1-2) and
Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with Y = exp(S), literally, in float64).
The nested and Sequential versions of the same models (same weights) must give the
same maps as the flat reference.
"""

import gc
import weakref

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib import explain as ex  # noqa: E402

SIZE, CLASSES = 16, 5
L = keras.layers


# --------------------------------------------------------------------------- models


def _stack():
    """Fresh backbone layers covering every ReLU form; the last one feeds the pooling."""
    return [
        L.Rescaling(2.0, offset=-1.0, name="scale"),
        L.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        L.Conv2D(8, 3, strides=2, padding="same", name="conv2"),
        L.ReLU(name="relu2"),
        L.Conv2D(12, 3, padding="same", name="conv3"),
        L.BatchNormalization(name="bn3"),
        L.Activation("relu", name="act3"),
        L.Conv2D(10, 3, padding="same", name="conv4"),
        L.ReLU(max_value=6.0, name="relu6_4"),
    ]


def _head(softmax=False):
    return [L.GlobalAveragePooling2D(name="gap"), L.Dense(CLASSES, activation="softmax" if softmax else None,
                                                           name="logits")]


def _apply(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def _copy_weights(src, dst):
    """Copy weights layer by layer, matching names (nested models included)."""
    by_name = {layer.name: layer for layer in ex._all_layers(src) if not isinstance(layer, keras.Model)}
    for layer in ex._all_layers(dst):
        if not isinstance(layer, keras.Model) and layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())


def _randomize_bn(model, seed=1):
    rng = np.random.default_rng(seed)
    bn = [layer for layer in ex._all_layers(model) if isinstance(layer, L.BatchNormalization)][0]
    g, b, mean, var = bn.get_weights()
    bn.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, b.shape),
                    rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])


def flat_model(seed=0, softmax=False):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inp, _apply(_stack() + _head(softmax), inp), name="flat")
    _randomize_bn(model)
    return model


def nested_model(flat, softmax=False):
    inp = keras.Input((SIZE, SIZE, 3))
    backbone = keras.Model(inp, _apply(_stack(), inp), name="backbone")
    inp2 = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inp2, _apply(_head(softmax), backbone(inp2)), name="nested")
    _copy_weights(flat, model)
    return model


def sequential_model(flat, nested_backbone=False):
    if nested_backbone:
        layers = [keras.Sequential([keras.Input((SIZE, SIZE, 3)), *_stack()], name="seq_backbone"), *_head()]
    else:
        layers = [*_stack(), *_head()]
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), *layers], name="seq")
    _copy_weights(flat, model)
    return model


@pytest.fixture(scope="module")
def models():
    flat = flat_model()
    return {"flat": flat, "nested": nested_model(flat), "sequential": sequential_model(flat),
            "sequential_nested": sequential_model(flat, nested_backbone=True)}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((6, SIZE, SIZE, 3)).astype(np.float32)


# ----------------------------------------------------------------------- references


def _reference_grads(flat, images, classes, layer):
    """Per image: feature maps A (h, w, K), gradients dS_c/dA, and S_c, from a flat sub-model."""
    sub = keras.Model(flat.inputs, [flat.get_layer(layer).output, flat.output])
    out = []
    for x, c in zip(images, classes):
        x = tf.constant(x[None])
        with tf.GradientTape() as tape:
            A, S = sub(x, training=False)
            score = S[0, c]
        g = tape.gradient(score, A)
        out.append((A[0].numpy().astype(np.float64), g[0].numpy().astype(np.float64), float(score)))
    return out


def reference_grad_cam(flat, images, classes, layer="relu6_4"):
    """Selvaraju et al. 2017: alpha_k = (1/Z) sum_ij dS/dA_ij^k (eq. 1); L = ReLU(sum_k alpha_k A^k) (eq. 2)."""
    maps = []
    for A, g, _ in _reference_grads(flat, images, classes, layer):
        alpha = g.sum(axis=(0, 1)) / (A.shape[0] * A.shape[1])
        maps.append(np.maximum((A * alpha).sum(-1), 0))
    return np.array(maps)


def reference_grad_cam_pp(flat, images, classes, layer="relu6_4"):
    """Chattopadhay et al. 2018, eq. 19 with Y = exp(S), literally (float64, small logits only).

    dY/dA = exp(S) g, d2Y/dA2 = exp(S) g^2, d3Y/dA3 = exp(S) g^3 (piecewise-linear net);
    alpha = d2 / (2 d2 + sum_ab A_ab d3); w_k = sum_ij alpha_ij relu(dY/dA_ij); L = ReLU(sum_k w_k A^k).
    Returned divided by exp(S) (a positive factor), which is what course_lib computes.
    """
    maps = []
    for A, g, S in _reference_grads(flat, images, classes, layer):
        Y = np.exp(S)
        d1, d2, d3 = Y * g, Y * g**2, Y * g**3
        denom = 2 * d2 + A.sum(axis=(0, 1)) * d3
        alpha = np.divide(d2, denom, out=np.zeros_like(d2), where=denom != 0)
        w = (alpha * np.maximum(d1, 0)).sum(axis=(0, 1))
        maps.append(np.maximum((A * w).sum(-1), 0) / Y)
    return np.array(maps)


def _assert_maps_close(ours, ref, rtol=1e-4):
    scale = np.abs(ref).max()
    assert scale > 0, "reference map is all zero: the test would not discriminate"
    np.testing.assert_allclose(ours, ref, rtol=0, atol=rtol * scale)


def _top(model, images):
    return np.argmax(model.predict(images, verbose=0), -1)


# -------------------------------------------------------------------- the spec's core


@pytest.mark.parametrize("kind", ["flat", "nested", "sequential", "sequential_nested"])
def test_grad_cam_times_hw_equals_relu_cam(models, images, kind):
    model = models[kind]
    any_negative = False
    for c_index in [None, *range(CLASSES)]:
        g = ex.grad_cam(model, images, c_index, upsample=False)
        c = ex.cam(model, images, c_index, upsample=False)
        h, w = g.shape[1:]
        assert (h, w) == (SIZE // 2, SIZE // 2)
        _assert_maps_close(g * h * w, np.maximum(c, 0), rtol=1e-4)
        any_negative |= bool((c < 0).any())
    assert any_negative, "CAM is the raw map and may be negative (the identity needs the ReLU)"


@pytest.mark.parametrize("kind", ["flat", "nested", "sequential", "sequential_nested"])
@pytest.mark.parametrize("layer", [None, "relu2", "conv3"])
def test_grad_cam_matches_reference(models, images, kind, layer):
    classes = np.arange(len(images)) % CLASSES
    ref = reference_grad_cam(models["flat"], images, classes, layer or "relu6_4")
    ours = ex.grad_cam(models[kind], images, classes, layer=layer, upsample=False)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    _assert_maps_close(ours, ref)


@pytest.mark.parametrize("kind", ["flat", "nested", "sequential", "sequential_nested"])
@pytest.mark.parametrize("layer", [None, "relu2"])
def test_grad_cam_plus_plus_matches_reference(models, images, kind, layer):
    classes = np.arange(len(images)) % CLASSES
    ref = reference_grad_cam_pp(models["flat"], images, classes, layer or "relu6_4")
    ours = ex.grad_cam_plus_plus(models[kind], images, classes, layer=layer, upsample=False)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    _assert_maps_close(ours, ref)
    assert not np.allclose(normalize_(ours), normalize_(reference_grad_cam(models["flat"], images, classes,
                                                                           layer or "relu6_4"))), \
        "Grad-CAM++ must differ from Grad-CAM on a random model"


def normalize_(m):
    return ex.normalize(m)


def test_upsampled_maps_are_bilinear_resizes(models, images):
    model = models["nested"]
    raw = ex.grad_cam(model, images, upsample=False)
    up = ex.grad_cam(model, images)
    assert up.shape == (len(images), SIZE, SIZE) and up.dtype == np.float32
    expected = tf.image.resize(raw[..., None], (SIZE, SIZE), method="bilinear").numpy()[..., 0]
    np.testing.assert_allclose(up, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", [ex.cam, ex.grad_cam, ex.grad_cam_plus_plus])
def test_batched_equals_per_image(models, images, fn):
    model = models["nested"]
    classes = [3, 1, 4, 1, 0, 2]
    batch = fn(model, images, classes, batch_size=4)  # two chunks of different sizes
    for i in range(len(images)):
        single = fn(model, images[i : i + 1], classes[i])
        np.testing.assert_allclose(batch[i], single[0], rtol=1e-5, atol=1e-6 * np.abs(batch).max())


def test_class_index_forms(models, images):
    model = models["flat"]
    top = _top(model, images)
    np.testing.assert_allclose(ex.grad_cam(model, images), ex.grad_cam(model, images, top), rtol=1e-6)
    np.testing.assert_allclose(ex.grad_cam(model, images, 2), ex.grad_cam(model, images, [2] * len(images)),
                               rtol=1e-6)
    per_class = [ex.grad_cam(model, images, c) for c in range(CLASSES)]
    assert not np.allclose(per_class[0], per_class[1]), "maps of different classes must differ"


def test_large_logits_stay_finite():
    flat = flat_model(seed=3)
    dense = flat.get_layer("logits")
    k, b = dense.get_weights()
    dense.set_weights([k * 400.0, b + 150.0])
    x = np.random.default_rng(1).random((4, SIZE, SIZE, 3)).astype(np.float32)
    logits = flat.predict(x, verbose=0)
    assert logits.max() > 100, f"the test needs logits above 100; got max {logits.max():.1f}"
    for fn in (ex.cam, ex.grad_cam, ex.grad_cam_plus_plus):
        maps = fn(flat, x)
        assert np.isfinite(maps).all(), f"{fn.__name__} gave NaN or Inf with logits up to {logits.max():.0f}"
        assert maps.max() > 0
    # exp(S) would overflow float32 here, yet the maps keep the shape of the small-logit ones
    np.testing.assert_allclose(ex.normalize(ex.grad_cam_plus_plus(flat, x, upsample=False)),
                               ex.normalize(reference_grad_cam_pp_no_exp(flat, x, np.argmax(logits, -1))),
                               atol=1e-4)


def reference_grad_cam_pp_no_exp(flat, images, classes):
    """eq. 19 with exp(S) cancelled by hand (same algebra as the reference above)."""
    maps = []
    for A, g, _ in _reference_grads(flat, images, classes, "relu6_4"):
        denom = 2 * g**2 + A.sum(axis=(0, 1)) * g**3
        alpha = np.divide(g**2, denom, out=np.zeros_like(g), where=denom != 0)
        maps.append(np.maximum((A * (alpha * np.maximum(g, 0)).sum(axis=(0, 1))).sum(-1), 0))
    return np.array(maps)


def _snapshot(model):
    return ([w.numpy().copy() for w in model.weights],
            [(layer.name, layer.get_config(), layer.trainable) for layer in ex._all_layers(model)])


def test_model_unchanged_by_every_call(models, images):
    for model in models.values():
        weights, configs = _snapshot(model)
        ex.cam(model, images)
        ex.grad_cam(model, images, layer="relu2")
        ex.grad_cam_plus_plus(model, images)
        ex.guided_backprop(model, images)
        ex.guided_grad_cam(model, images)
        ex.saliency(model, images)
        ex.occlusion(model, images[:1], patch=8, stride=8)
        ex.localization_accuracy(model, images, np.zeros(len(images), int), np.tile([0, 0, 0.5, 0.5], (6, 1)))
        after_w, after_c = _snapshot(model)
        assert len(weights) == len(after_w) and all(np.array_equal(a, b) for a, b in zip(weights, after_w))
        assert configs == after_c, f"layer configs of {model.name} changed"


@pytest.mark.parametrize("separate", [False, True])
def test_softmax_output_explains_the_logit(images, separate):
    flat = flat_model()
    inp = keras.Input((SIZE, SIZE, 3))
    if separate:
        out = L.Activation("softmax", name="probs")(_apply(_stack() + _head(), inp))
    else:
        out = _apply(_stack() + _head(softmax=True), inp)
    soft = keras.Model(inp, out)
    _copy_weights(flat, soft)
    assert np.allclose(soft.predict(images, verbose=0).sum(-1), 1, atol=1e-5)
    for fn in (ex.cam, ex.grad_cam, ex.grad_cam_plus_plus):
        np.testing.assert_allclose(fn(soft, images, 1), fn(flat, images, 1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ex.guided_backprop(soft, images), ex.guided_backprop(flat, images), atol=1e-7)


def _mobilenet_model(sequential=False):
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False,
                                              weights=None)
    head = [L.GlobalAveragePooling2D(), L.Dense(3)]
    if sequential:
        return keras.Sequential([keras.Input((32, 32, 3)), backbone, *head])
    inp = keras.Input((32, 32, 3))
    return keras.Model(inp, _apply(head, backbone(inp)))


@pytest.mark.parametrize("sequential", [False, True])
def test_layer_inside_nested_mobilenet(sequential):
    model = _mobilenet_model(sequential)
    x = np.random.default_rng(2).random((3, 32, 32, 3)).astype(np.float32)
    by_name = ex.grad_cam(model, x, layer="out_relu", upsample=False)
    default = ex.grad_cam(model, x, upsample=False)
    assert by_name.shape == (3, 1, 1)
    np.testing.assert_allclose(by_name, default, rtol=1e-6)
    inner = ex.grad_cam_plus_plus(model, x, layer="block_6_expand_relu")
    assert inner.shape == (3, 32, 32) and np.isfinite(inner).all() and inner.max() > 0
    assert "out_relu" in ex.feature_map_layers(model, x)
    assert ex.find_layer(model, "out_relu").name == "out_relu"


def test_cache_reuses_one_function_and_lets_the_model_go(images):
    model = nested_model(flat_model())
    for n in (2, 5, 6, 3):
        ex.grad_cam(model, images[:n])
    fns = [v for k, v in ex._CACHE[model].items() if k[0] == "grad_cam"]
    assert len(fns) == 1 and fns[0].experimental_get_tracing_count() == 1
    ref = weakref.ref(model)
    del model, fns
    gc.collect()
    assert ref() is None, "the cache must not keep a model alive"


# ------------------------------------------------------------------ guided backprop


class GuidedReLU(L.Layer):
    """Reference guided ReLU (Springenberg et al. 2015): d = dy * (dy > 0) * (0 < x < max_value)."""

    def __init__(self, max_value=None, **kwargs):
        super().__init__(**kwargs)
        self.max_value = max_value

    def call(self, x):
        max_value = self.max_value

        @tf.custom_gradient
        def guided(x):
            y = tf.nn.relu(x) if max_value is None else tf.clip_by_value(x, 0.0, max_value)
            inside = tf.cast(x > 0, x.dtype) if max_value is None else tf.cast((x > 0) & (x < max_value), x.dtype)

            def grad(dy):
                return dy * tf.cast(dy > 0, dy.dtype) * inside

            return y, grad

        return guided(x)


def _relu_form_model(form, reference=False):
    """A nested model whose ReLUs take the given form; ``reference`` uses GuidedReLU instead."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((SIZE, SIZE, 3))
    if form == "activation_arg":
        conv = L.Conv2D(8, 3, padding="same", activation=None if reference else "relu", name="c")
        x = conv(inp)
        x = GuidedReLU(name="g")(x) if reference else x
    else:
        x = L.Conv2D(8, 3, padding="same", name="c")(inp)
        make = {"Activation": lambda: L.Activation("relu"), "ReLU": lambda: L.ReLU(),
                "ReLU6": lambda: L.ReLU(max_value=6.0)}[form]
        x = GuidedReLU(6.0 if form == "ReLU6" else None, name="g")(x) if reference else make()(x)
    x = L.Conv2D(8, 3, padding="same", name="c2")(x)
    x = GuidedReLU(name="g2")(x) if reference else L.ReLU()(x)
    backbone = keras.Model(inp, x, name="bb")
    inp2 = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inp2, L.Dense(CLASSES, name="d")(L.GlobalAveragePooling2D()(backbone(inp2))))


@pytest.mark.parametrize("form", ["activation_arg", "Activation", "ReLU", "ReLU6"])
def test_guided_backprop_every_relu_form(images, form):
    model, ref = _relu_form_model(form), _relu_form_model(form, reference=True)
    _copy_weights(model, ref)
    x = np.clip(images * 4.0, 0, 1)  # larger activations, so ReLU6 saturates somewhere
    guided, plain = ex.guided_backprop(model, x, 1), ex.saliency(model, x, 1)
    assert guided.shape == x.shape and guided.dtype == np.float32
    assert not np.allclose(guided, plain, atol=1e-3 * np.abs(plain).max()), "guided must differ from the gradient"
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        score = ref(xt, training=False)[:, 1]
    expected = tape.gradient(score, xt).numpy()
    np.testing.assert_allclose(guided, expected, atol=1e-5 * np.abs(expected).max())
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = model(xt, training=False)[:, 1]
    np.testing.assert_allclose(plain, tape.gradient(score, xt).numpy(), atol=1e-5 * np.abs(plain).max())


def test_guided_grad_cam_is_the_product(models, images):
    model = models["nested"]
    top = _top(model, images)
    out = ex.guided_grad_cam(model, images)
    expected = ex.guided_backprop(model, images, top) * ex.grad_cam(model, images, top)[..., None]
    assert out.shape == images.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------------- occlusion


def test_occlusion_matches_a_naive_loop(models, images):
    model = models["sequential"]
    patch, stride = 8, 4
    x = images[:2]
    ours = ex.occlusion(model, x, class_index=[0, 3], patch=patch, stride=stride, batch_size=7)
    assert ours.shape == (2, SIZE, SIZE) and ours.dtype == np.float32
    for i, c in enumerate([0, 3]):
        base = model.predict(x[i : i + 1], verbose=0)[0, c]
        total, count = np.zeros((SIZE, SIZE)), np.zeros((SIZE, SIZE))
        for t in range(0, SIZE - patch + 1, stride):
            for left in range(0, SIZE - patch + 1, stride):
                occ = x[i : i + 1].copy()
                occ[0, t : t + patch, left : left + patch] = 0.5
                total[t : t + patch, left : left + patch] += base - model.predict(occ, verbose=0)[0, c]
                count[t : t + patch, left : left + patch] += 1
        np.testing.assert_allclose(ours[i], total / count, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ display helpers


def test_normalize_and_overlay():
    maps = np.stack([np.arange(12.0).reshape(3, 4), np.full((3, 4), 7.0)])
    out = ex.normalize(maps)
    assert out.dtype == np.float32 and out.shape == maps.shape
    assert out[0].min() == 0 and out[0].max() == 1 and np.all(out[1] == 0)
    np.testing.assert_allclose(ex.normalize(maps[0]), out[0])
    img = np.random.default_rng(0).random((16, 16, 1)).astype(np.float32)
    shown = ex.overlay(img, maps[0])
    assert shown.shape == (16, 16, 3) and shown.min() >= 0 and shown.max() <= 1
    np.testing.assert_allclose(ex.overlay(img, maps[0], alpha=0.0), np.repeat(img, 3, -1), atol=1e-6)


# ------------------------------------------------------------- weakly supervised localization


def test_cam_to_box_takes_the_largest_component():
    m = np.zeros((10, 20), np.float32)
    m[1:3, 1:3] = 1.0  # small, brightest blob
    m[5:9, 10:16] = 0.5  # larger blob above 20% of max
    m[0, 19] = 0.1  # below the threshold
    box = ex.cam_to_box(m)
    np.testing.assert_allclose(box, [10 / 20, 5 / 10, 16 / 20, 9 / 10])
    np.testing.assert_allclose(ex.cam_to_box(m, threshold=0.6), [1 / 20, 1 / 10, 3 / 20, 3 / 10])
    diag = np.eye(6, dtype=np.float32)  # 8-connected: one component
    np.testing.assert_allclose(ex.cam_to_box(diag), [0, 0, 1, 1])
    both = ex.cam_to_box(np.stack([m, np.zeros_like(m)]))
    assert both.shape == (2, 4)
    np.testing.assert_allclose(both[1], [0, 0, 1, 1])  # nothing positive: the whole image


def test_box_iou_and_mass_share():
    a = np.array([0.0, 0.0, 0.5, 0.5])
    assert ex.box_iou(a, a) == pytest.approx(1.0)
    assert ex.box_iou(a, [0.25, 0.25, 0.75, 0.75]) == pytest.approx(0.0625 / (0.25 + 0.25 - 0.0625))
    assert ex.box_iou(a, [0.6, 0.6, 1.0, 1.0]) == 0.0
    maps = np.zeros((2, 4, 4))
    maps[0, :2, :2] = 1.0
    maps[1] = 1.0
    share = ex.box_mass_share(maps, np.tile(a, (2, 1)))
    np.testing.assert_allclose(share, [1.0, 0.25])


def test_localization_accuracy_follows_the_protocol(models, images):
    model = models["flat"]
    rng = np.random.default_rng(5)
    labels = rng.integers(0, CLASSES, len(images))
    lo = rng.uniform(0, 0.5, (len(images), 2))
    boxes = np.concatenate([lo, lo + 0.5], 1).astype(np.float32)
    boxes[0] = ex.cam_to_box(ex.grad_cam(model, images[:1], labels[0]))[0]  # one sure hit
    res = ex.localization_accuracy(model, images, labels, boxes)
    iou = ex.box_iou(ex.cam_to_box(ex.grad_cam(model, images, labels)), boxes)
    correct = _top(model, images) == labels
    np.testing.assert_allclose(res["iou"], iou, rtol=1e-6)
    assert res["iou"][0] == pytest.approx(1.0)
    assert res["gt_known_localization_accuracy"] == pytest.approx(np.mean(iou >= 0.5))
    assert res["localization_accuracy"] == pytest.approx(np.mean(correct & (iou >= 0.5)))
    assert res["classification_accuracy"] == pytest.approx(correct.mean())
    two = np.stack([boxes, np.tile([0.0, 0.0, 1.0, 1.0], (len(images), 1))], 1)
    res2 = ex.localization_accuracy(model, images, labels, two, method="cam")
    iou_cam = ex.box_iou(ex.cam_to_box(ex.cam(model, images, labels))[:, None], two).max(1)
    np.testing.assert_allclose(res2["iou"], iou_cam, rtol=1e-6)


def test_box_accuracy_by_threshold_matches_a_direct_loop():
    # A blob of value 1 (the object) with a halo of 0.3 around it: at a threshold under
    # 0.3 the box grows to the halo and misses; above 0.3 it is the object's box.
    maps = np.zeros((3, 20, 20), np.float32)
    maps[:, 4:16, 4:16] = 0.3
    maps[:, 8:12, 8:12] = 1.0
    maps[2] = np.random.default_rng(0).random((20, 20))
    boxes = np.tile(np.float32([0.4, 0.4, 0.6, 0.6]), (3, 1))
    thresholds = [0.1, 0.2, 0.5, 0.9]
    acc = ex.box_accuracy_by_threshold(maps, boxes, thresholds)
    expected = [np.mean(ex.box_iou(ex.cam_to_box(maps, t), boxes) >= 0.5) for t in thresholds]
    np.testing.assert_allclose(acc, expected)
    np.testing.assert_allclose(acc[:3], [0.0, 0.0, 2 / 3])
    halo = np.tile(np.float32([0.2, 0.2, 0.8, 0.8]), (3, 1))
    two = np.stack([boxes, halo], 1)  # scored against the better of two boxes: the halo's, at 0.1
    np.testing.assert_allclose(ex.box_accuracy_by_threshold(maps, two, [0.1, 0.5]), [2 / 3, 2 / 3])
    with pytest.raises(ValueError, match="thresholds"):
        ex.box_accuracy_by_threshold(maps, boxes, [0.2, 1.0])
    with pytest.raises(ValueError, match="boxes must be"):
        ex.box_accuracy_by_threshold(maps, boxes[:2], [0.2])
    with pytest.raises(ValueError, match="maps must be"):
        ex.box_accuracy_by_threshold(maps[0], boxes, [0.2])


# ------------------------------------------------------------------------ bad input


def test_bad_inputs_raise_clear_errors(models, images):
    model = models["nested"]
    with pytest.raises(ValueError, match="no layer named 'nope'.*relu2"):
        ex.grad_cam(model, images, layer="nope")
    with pytest.raises(ValueError, match="not a 4-D feature map"):
        ex.grad_cam(model, images, layer="gap")
    with pytest.raises(ValueError, match="one class per image"):
        ex.grad_cam(model, images, [1, 2])
    with pytest.raises(ValueError, match=r"class_index must lie in \[0, 4\]"):
        ex.grad_cam_plus_plus(model, images, 5)
    with pytest.raises(ValueError, match="must lie in"):
        ex.cam(model, images, [0, 1, 2, 3, 4, -1])
    with pytest.raises(ValueError, match="model expects"):
        ex.grad_cam(model, np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ex.grad_cam(model, images * 255)
    with pytest.raises(ValueError, match="keras.Model"):
        ex.grad_cam(lambda x: x, images)
    with pytest.raises(ValueError, match="use grad_cam"):
        ex.cam(model, images, layer="relu2")
    with pytest.raises(ValueError, match="patch"):
        ex.occlusion(model, images, patch=32)
    with pytest.raises(ValueError, match="method must be"):
        ex.localization_accuracy(model, images, np.zeros(6, int), np.zeros((6, 4)), method="rise")
    with pytest.raises(ValueError, match="boxes must be"):
        ex.localization_accuracy(model, images, np.zeros(6, int), np.zeros((6, 3)))
    with pytest.raises(ValueError, match="threshold"):
        ex.cam_to_box(np.ones((4, 4)), threshold=1.5)
    with pytest.raises(ValueError, match="maps must be"):
        ex.cam_to_box(np.ones(4))
    with pytest.raises(ValueError, match="heatmap must be"):
        ex.overlay(images[0], np.ones((2, 4, 4)))
    # The errors the docstrings' Raises sections name (issue 16: docstrings checked against the code).
    with pytest.raises(ValueError, match="cmap must be a matplotlib colormap name.*got 'nope'"):
        ex.overlay(images[0], np.ones((4, 4)), cmap="nope")
    with pytest.raises(ValueError, match=r"c must be a class index in \[0, 4\]; got 5"):
        ex.cam_weighted_sum(np.ones((2, 2, 3)), np.ones((3, 5)), 5)
    with pytest.raises(ValueError, match=r"channel must be an int in \[0, 2\]; got 3"):
        ex.top_images(np.ones((4, 2, 2, 3)), 3, 1)
    with pytest.raises(ValueError, match=r"activations must be \(N, h, w, K\)"):
        ex.top_images(np.ones((4, 3)), 0, 1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got 0"):
        ex.deletion_insertion(model, images, np.ones((6, SIZE, SIZE)), batch_size=0)
    free = keras.Model(*(lambda i: (i, L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(2, 3, name="c")(i)))))(
        keras.Input((None, None, 3))))
    for call in (lambda: ex.receptive_field(free, "c"), lambda: ex.activation_maximization(free, 0, steps=1)):
        with pytest.raises(ValueError, match=r"the model's input is \(None, None, 3\). Pass input_shape"):
            call()
    assert ex.receptive_field(free, "c", input_shape=(8, 8, 3)) == (3, 3, 6, 6)  # 3x3 valid: unit (3, 3) sees 3-5
    with pytest.raises(ValueError, match=r"input_shape is \(8, 8\). Pass input_shape=\(H, W, C\)"):
        ex.receptive_field(free, "c", input_shape=(8, 8))


def test_cam_rejects_other_heads(images):
    inp = keras.Input((SIZE, SIZE, 3))
    x = L.Conv2D(4, 3, activation="relu")(inp)
    flat_head = keras.Model(inp, L.Dense(CLASSES)(L.Flatten()(x)))
    with pytest.raises(ValueError, match="use grad_cam"):
        ex.cam(flat_head, images)
    assert ex.grad_cam(flat_head, images).shape == (len(images), SIZE, SIZE)  # Grad-CAM works on any head
    gmp = keras.Model(inp, L.Dense(CLASSES)(L.GlobalMaxPooling2D()(x)))
    with pytest.raises(ValueError, match="GlobalMaxPooling2D.*use grad_cam"):
        ex.cam(gmp, images)


def test_unbuilt_and_subclassed_models_are_refused(images):
    with pytest.raises(ValueError, match="not built"):
        ex.grad_cam(keras.Sequential([L.Conv2D(2, 3), L.GlobalAveragePooling2D(), L.Dense(2)]), images)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv, self.pool, self.dense = L.Conv2D(2, 3), L.GlobalAveragePooling2D(), L.Dense(2)

        def call(self, x):
            return self.dense(self.pool(self.conv(x)))

    sub = Sub()
    sub(images[:1])
    with pytest.raises(ValueError, match="subclassed"):
        ex.grad_cam(sub, images)
