"""Tests of section 8 of course_lib.explain (notebook 09) against references written from the papers.

Smooth Grad-CAM++ is checked against a per-copy loop in float64 on a Keras sub-model
(Omeiza et al. 2019, eq. 4-6); RISE against its eq. 6 written as one matrix product;
Augmented Grad-CAM against the closed-form minimiser of its objective when the TV term
is off; the faithfulness metrics against their definitions (Chattopadhay et al. 2018,
Petsiuk et al. 2018) on a model whose answer depends on a known region of the image.
"""

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib import explain as ex  # noqa: E402

SIZE, CLASSES = 16, 4
L = keras.layers


def cnn(seed=0):
    """A small GAP classifier: three 3x3 convolutions (the second with stride 2) -> 8x8x8 maps -> GAP -> Dense.

    Smooth Grad-CAM++ is tested on "conv2": at the last map the gradient of a GAP -> Dense
    head is the same at every position and for every input, so noise would change nothing.
    """
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv3")(x)
    out = L.Dense(CLASSES, name="logits")(L.GlobalAveragePooling2D(name="gap")(x))
    return keras.Model(inp, out, name="cnn")


def region_model():
    """Two classes; logit 0 = 20 x (mean brightness of the top-left 6x6 block - 0.75), logit 1 = 0."""
    inp = keras.Input((SIZE, SIZE, 3))
    conv = L.Conv2D(2, SIZE, padding="valid", name="reader")
    out = L.Reshape((2,))(conv(inp))
    model = keras.Model(inp, out, name="region")
    kernel = np.zeros((SIZE, SIZE, 3, 2), np.float32)
    kernel[:6, :6, :, 0] = 20.0 / (6 * 6 * 3)
    conv.set_weights([kernel, np.array([-15.0, 0.0], np.float32)])
    return model


@pytest.fixture(scope="module")
def model():
    return cnn()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, SIZE, SIZE, 3)).astype(np.float32)


def softmax(z):
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def snapshot(model):
    return [w.copy() for w in model.get_weights()]


# ------------------------------------------------------------------ Smooth Grad-CAM++


def reference_smooth(model, images, classes, n_samples, noise, seed, last_copy_bug=False):
    """Omeiza et al. (2019) eq. 4-6, one noisy copy at a time, averages in float64.

    With ``last_copy_bug`` the relu(gradient) in the weights is the last copy's, as in
    one public implementation: the version ours must not match.
    """
    sub = keras.Model(model.inputs, [model.get_layer("conv2").output, model.output])
    eps = noise * np.random.default_rng(seed).standard_normal((len(images), n_samples, *images.shape[1:]),
                                                               np.float32)
    maps = []
    for i, x in enumerate(images):
        A = sub(x[None])[0].numpy()[0].astype(np.float64)
        gs = []
        for s in range(n_samples):
            xn = tf.constant((x + eps[i, s])[None])
            with tf.GradientTape() as tape:
                a, logits = sub(xn)
                score = logits[0, classes[i]]
            gs.append(tape.gradient(score, a).numpy()[0].astype(np.float64))
        gs = np.stack(gs)
        d1, d2, d3 = gs.mean(0), (gs**2).mean(0), (gs**3).mean(0)
        denom = 2 * d2 + A.sum(axis=(0, 1)) * d3
        alpha = np.where(denom != 0, d2 / np.where(denom != 0, denom, 1), 0)
        relu_g = np.maximum(gs[-1] if last_copy_bug else d1, 0)
        w = (alpha * relu_g).sum(axis=(0, 1))
        maps.append(np.maximum(A @ w, 0))
    maps = np.stack(maps).astype(np.float32)
    return tf.image.resize(maps[..., None], (SIZE, SIZE), method="bilinear").numpy()[..., 0]


def test_smooth_grad_cam_pp_matches_reference_not_the_last_copy_variant(model, images):
    classes = np.array([0, 1, 2, 3, 1], np.int32)
    ours = ex.smooth_grad_cam_plus_plus(model, images, classes, layer="conv2", n_samples=6, noise=0.3, seed=3)
    ref = reference_smooth(model, images, classes, 6, 0.3, 3)
    bug = reference_smooth(model, images, classes, 6, 0.3, 3, last_copy_bug=True)
    scale = np.abs(ref).max()
    assert ours.shape == (5, SIZE, SIZE) and ours.dtype == np.float32 and np.isfinite(ours).all()
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4 * scale)
    # the two definitions differ here, so the test can tell them apart
    assert np.abs(bug - ref).max() > 100 * 1e-4 * scale


def test_smooth_grad_cam_pp_without_noise_is_grad_cam_pp(model, images):
    ours = ex.smooth_grad_cam_plus_plus(model, images, layer="conv2", n_samples=3, noise=0.0)
    np.testing.assert_allclose(ours, ex.grad_cam_plus_plus(model, images, layer="conv2"), rtol=1e-4, atol=1e-6)


def test_smooth_grad_cam_pp_at_the_gap_layer_is_grad_cam_pp_whatever_the_noise(model, images):
    # the gradient of GAP -> Dense w.r.t. the map it pools is w / (h w) for every input
    ours = ex.smooth_grad_cam_plus_plus(model, images, n_samples=4, noise=0.3)
    np.testing.assert_allclose(ours, ex.grad_cam_plus_plus(model, images), rtol=1e-4, atol=1e-6)


def test_smooth_grad_cam_pp_batch_size_does_not_matter(model, images):
    a = ex.smooth_grad_cam_plus_plus(model, images, layer="conv2", n_samples=4, noise=0.2, batch_size=1)
    b = ex.smooth_grad_cam_plus_plus(model, images, layer="conv2", n_samples=4, noise=0.2, batch_size=16)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------- RISE


def test_rise_masks_shape_range_mean_and_shifts():
    masks = ex.rise_masks(400, (SIZE, SIZE), grid=4, p=0.3, seed=1)
    assert masks.shape == (400, SIZE, SIZE) and masks.dtype == np.float32
    assert masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean() - 0.3) < 0.03
    # random shifts: the soft cell edges do not all sit at the same place
    assert len({tuple(np.round(m[0], 4)) for m in masks[:50]}) > 10


def test_rise_is_eq6_and_chunking_does_not_matter(model, images):
    masks = ex.rise_masks(64, (SIZE, SIZE), grid=4, p=0.5, seed=2)
    classes = np.argmax(model.predict(images, verbose=0), axis=1)
    ref = []
    for i, x in enumerate(images):
        probs = softmax(model.predict(x[None] * masks[..., None], verbose=0).astype(np.float64))[:, classes[i]]
        ref.append(np.tensordot(probs, masks, axes=1) / (64 * 0.5))
    big = ex.rise(model, images, n_masks=64, grid=4, p=0.5, seed=2, progress=False)
    small = ex.rise(model, images, n_masks=64, grid=4, p=0.5, seed=2, memory_mb=0.01, progress=False)
    np.testing.assert_allclose(big, np.stack(ref), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(small, big, rtol=1e-5, atol=1e-7)


def bright_corner(n, seed=2):
    """Images dark (about 0.1) except a bright (about 0.9) top-left 6x6 block: class 0 for region_model."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.05, 0.15, (n, SIZE, SIZE, 3))
    images[:, :6, :6] = rng.uniform(0.85, 0.95, (n, 6, 6, 3))
    return images.astype(np.float32)


def test_rise_finds_the_region_the_model_reads():
    model = region_model()
    image = bright_corner(1)
    sal = ex.rise(model, image, class_index=0, n_masks=500, grid=4, p=0.5, progress=False)[0]
    assert sal[:6, :6].mean() > 1.5 * sal[8:, 8:].mean()


# ------------------------------------------------------------------ Augmented Grad-CAM


def test_warp_matrix_identity_shift_and_rotation():
    rng = np.random.default_rng(0)
    img = rng.random((SIZE, SIZE))
    np.testing.assert_allclose((ex.warp_matrix((SIZE, SIZE)) @ img.ravel()).reshape(SIZE, SIZE), img)
    shifted = (ex.warp_matrix((SIZE, SIZE), 0.0, (2, -3)) @ img.ravel()).reshape(SIZE, SIZE)
    expected = np.zeros_like(img)
    expected[2:, : SIZE - 3] = img[: SIZE - 2, 3:]
    np.testing.assert_allclose(shifted, expected, atol=1e-12)
    rotated = (ex.warp_matrix((SIZE, SIZE), 90.0) @ img.ravel()).reshape(SIZE, SIZE)
    assert min(np.abs(rotated - np.rot90(img, k)).max() for k in (1, 3)) < 1e-9


def test_augmented_grad_cam_objective_falls_and_reaches_the_closed_form(model, images):
    transforms = [(0, 0, 0), (10, 1, -1), (-12, -2, 1), (5, 2, 2), (-4, -1, -2), (15, 0, 1)]
    mu = 0.05
    h, history = ex.augmented_grad_cam(model, images[0], transforms=transforms, lam=0.0, mu=mu, steps=3000)
    assert h.shape == (SIZE, SIZE) and np.isfinite(h).all()
    assert history.min() < 0.5 * history[0]
    # closed form of 1/2 sum ||D A_l h - g_l||^2 + mu/2 ||h||^2, with D from tf's area resize
    c = int(np.argmax(model.predict(images[:1], verbose=0)))
    warps = [ex.warp_matrix((SIZE, SIZE), a, (dy, dx)).toarray() for a, dy, dx in transforms]
    warped = np.stack([(A @ images[0].reshape(-1, 3)).reshape(SIZE, SIZE, 3) for A in warps]).astype(np.float32)
    g = ex.grad_cam(model, warped, c, upsample=False).astype(np.float64)
    g /= g.max()
    basis = np.eye(SIZE * SIZE).reshape(-1, SIZE, SIZE, 1)
    D = tf.image.resize(basis, (8, 8), method="area").numpy().reshape(SIZE * SIZE, 64).T
    M = [D @ A for A in warps]
    h_star = np.linalg.solve(sum(m.T @ m for m in M) + mu * np.eye(SIZE * SIZE),
                             sum(m.T @ gl.ravel() for m, gl in zip(M, g)))

    def objective(v):
        return 0.5 * sum(np.sum((m @ v - gl.ravel()) ** 2) for m, gl in zip(M, g)) + 0.5 * mu * v @ v

    assert objective(h.ravel().astype(np.float64)) <= objective(h_star) * 1.02 + 1e-9
    assert abs(history.min() - objective(h.ravel().astype(np.float64))) <= 1e-3 * history[0]


def test_augmented_grad_cam_with_tv_objective_falls(model, images):
    h, history = ex.augmented_grad_cam(model, images[1], n_transforms=8, lam=0.01, mu=0.01, steps=150)
    assert np.isfinite(h).all() and history.min() < 0.5 * history[0]


# ---------------------------------------------------------------------- faithfulness


def test_average_drop_and_increase_in_confidence_definitions():
    Y, O = np.array([0.8, 0.5, 0.4]), np.array([0.4, 0.6, 0.4])
    # drops: (0.8-0.4)/0.8 = 0.5, 0, 0 -> 100 * 0.5 / 3; increases: only the second
    assert ex.average_drop(Y, O) == pytest.approx(100 * 0.5 / 3)
    assert ex.increase_in_confidence(Y, O) == pytest.approx(100 / 3)


def test_explanation_confidence_is_probability_on_map_times_image(model, images):
    maps = np.random.default_rng(1).random((5, 8, 8)).astype(np.float32)
    Y, O, classes = ex.explanation_confidence(model, images, maps)
    up = ex.normalize(tf.image.resize(maps[..., None], (SIZE, SIZE), method="bilinear").numpy()[..., 0])
    py = softmax(model.predict(images, verbose=0).astype(np.float64))
    po = softmax(model.predict(images * up[..., None], verbose=0).astype(np.float64))
    np.testing.assert_array_equal(classes, py.argmax(1))
    np.testing.assert_allclose(Y, py[np.arange(5), classes], rtol=1e-5)
    np.testing.assert_allclose(O, po[np.arange(5), classes], rtol=1e-5)


def test_curve_auc_is_the_trapezoid_rule():
    curve = np.random.default_rng(0).random((3, 11))
    from scipy.integrate import trapezoid  # np.trapezoid needs NumPy 2; the course's floor is 1.26

    np.testing.assert_allclose(ex.curve_auc(curve), trapezoid(curve, np.linspace(0, 1, 11), axis=1))


def test_deletion_insertion_endpoints_and_a_faithful_map_wins():
    model = region_model()
    images = bright_corner(3)
    good = np.zeros((3, SIZE, SIZE), np.float32)
    good[:, :6, :6] = 1.0
    good += np.random.default_rng(3).random(good.shape).astype(np.float32) * 0.01
    res_good = ex.deletion_insertion(model, images, good, class_index=0, n_steps=16, blur_sigma=2.0)
    res_bad = ex.deletion_insertion(model, images, 1.0 - good, class_index=0, n_steps=16, blur_sigma=2.0)
    probs = lambda x: softmax(model.predict(x, verbose=0).astype(np.float64))[:, 0]  # noqa: E731
    from scipy import ndimage
    blurred = np.stack([ndimage.gaussian_filter(x, sigma=(2, 2, 0)) for x in images]).astype(np.float32)
    assert res_good["deletion"].shape == (3, 17)
    np.testing.assert_allclose(res_good["deletion"][:, 0], probs(images), rtol=1e-5)
    np.testing.assert_allclose(res_good["deletion"][:, -1], probs(np.zeros_like(images)), rtol=1e-5)
    np.testing.assert_allclose(res_good["insertion"][:, 0], probs(blurred), rtol=1e-5)
    np.testing.assert_allclose(res_good["insertion"][:, -1], probs(images), rtol=1e-5)
    assert (res_good["deletion_auc"] < res_bad["deletion_auc"] - 0.2).all()
    assert (res_good["insertion_auc"] > res_bad["insertion_auc"] + 0.2).all()


# ---------------------------------------------------------------------- sanity check


def test_randomized_copy_leaves_the_original_alone(model, images):
    before = snapshot(model)
    copy = ex.randomized_copy(model, seed=1)
    for a, b in zip(before, snapshot(model)):
        np.testing.assert_array_equal(a, b)
    kernel = copy.get_layer("conv2").get_weights()[0]
    assert not np.allclose(kernel, model.get_layer("conv2").get_weights()[0])
    assert abs(kernel.std() - model.get_layer("conv2").get_weights()[0].std()) < 0.3 * kernel.std()


def test_sanity_check_tells_a_model_free_map_from_grad_cam(model, images):
    def brightness(m, x, c):  # ignores the model entirely
        return x.mean(axis=-1)

    free = ex.sanity_check(model, images, brightness)
    np.testing.assert_allclose(free["spearman"], 1.0, atol=1e-6)
    gc = ex.sanity_check(model, images, "grad_cam", seed=1)
    assert gc["trained"].shape == gc["randomized"].shape == (5, SIZE, SIZE)
    assert np.all(np.abs(gc["spearman"]) <= 1.0) and gc["spearman"].mean() < 0.9


def test_every_call_leaves_the_model_unchanged(model, images):
    before = snapshot(model)
    ex.smooth_grad_cam_plus_plus(model, images, n_samples=2)
    ex.rise(model, images[:1], n_masks=8, grid=4, progress=False)
    ex.augmented_grad_cam(model, images[0], n_transforms=3, steps=5)
    maps = ex.grad_cam(model, images)
    ex.explanation_confidence(model, images, maps)
    ex.deletion_insertion(model, images[:2], maps[:2], n_steps=4)
    ex.sanity_check(model, images[:2], "grad_cam")
    for a, b in zip(before, snapshot(model)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ errors


def test_clear_errors(model, images):
    maps = np.ones((5, SIZE, SIZE), np.float32)
    with pytest.raises(ValueError, match="noise"):
        ex.smooth_grad_cam_plus_plus(model, images, noise=-1.0)
    with pytest.raises(ValueError, match="n_samples"):
        ex.smooth_grad_cam_plus_plus(model, images, n_samples=0)
    with pytest.raises(ValueError, match="class_index"):
        ex.smooth_grad_cam_plus_plus(model, images, class_index=CLASSES)
    with pytest.raises(ValueError, match="grid"):
        ex.rise(model, images, grid=SIZE + 1, progress=False)
    with pytest.raises(ValueError, match="p is the probability"):
        ex.rise(model, images, p=0.0, progress=False)
    with pytest.raises(ValueError, match="memory_mb"):
        ex.rise(model, images, memory_mb=0, progress=False)
    with pytest.raises(ValueError, match="n_masks"):
        ex.rise(model, images, n_masks=0, progress=False)
    with pytest.raises(ValueError, match="transforms"):
        ex.augmented_grad_cam(model, images[0], transforms=[(1.0, 2.0)])
    with pytest.raises(ValueError, match="lam and mu"):
        ex.augmented_grad_cam(model, images[0], lam=-1.0)
    with pytest.raises(ValueError, match="one map per image"):
        ex.explanation_confidence(model, images, maps[:3])
    with pytest.raises(ValueError, match="NaN"):
        ex.deletion_insertion(model, images, np.full_like(maps, np.nan))
    with pytest.raises(ValueError, match="blur_sigma"):
        ex.deletion_insertion(model, images, maps, blur_sigma=0)
    with pytest.raises(ValueError, match="n_steps"):
        ex.deletion_insertion(model, images, maps, n_steps=SIZE * SIZE + 1)
    with pytest.raises(ValueError, match="softmax outputs"):
        ex.average_drop(np.array([2.0]), np.array([0.5]))
    with pytest.raises(ValueError, match="same non-zero length"):
        ex.increase_in_confidence(np.array([0.5, 0.5]), np.array([0.5]))
    with pytest.raises(ValueError, match="at least 2 points"):
        ex.curve_auc(np.array([0.5]))
    with pytest.raises(ValueError, match="method must be one of"):
        ex.sanity_check(model, images, "lime")
    with pytest.raises(ValueError, match="keras.Model"):
        ex.randomized_copy("not a model")
