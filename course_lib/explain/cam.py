"""Class activation maps: CAM, Grad-CAM, Grad-CAM++, Smooth Grad-CAM++, Layer-CAM and Augmented Grad-CAM.

A CAM variant is only its *weight function* (the pattern of pytorch-grad-cam's
``base_cam.py``). Every variant feeds one step, :func:`_combine`:

    weights -> weighted sum over the channels of A -> ReLU -> bilinear upsampling,

compiled once per model, layer, image size and variant by :func:`_build`. A weight
function ``f(A, G, head)`` gets the feature maps ``A`` (N, h, w, K) of the explained
layer, the gradients ``G = dS_c/dA`` (S, N, h, w, K) at S copies of each image (S = 1; S
noisy copies for Smooth Grad-CAM++) and ``head``, the output Dense layer's weights of
each image's class (N, K) (CAM only); it returns one weight per channel (N, K) or one per
position and channel (N, h, w, K). Adding a method is adding a weight function, a line
of :data:`VARIANTS` and its public function. Maps are raw (not normalised; see
:func:`course_lib.explain.normalize`). Used in notebooks 07 and 09.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from ..validation import check_images, check_positive_int
from ._interpreter import (_PASS_THROUGH, _cached, _check_classes, _graph, _in_batches, _pick, _probabilities,
                           _recorder, _resolve_layer, _run, _select_output, _spec)
from .display import resize_maps

# ============================================================================ weight functions


def _moment(G, p):
    """mean_s G_s^p over the S gradient copies: (N, h, w, K); G itself (no mean) when S = 1."""
    power = G if p == 1 else G * G if p == 2 else G * G * G
    return power[0] if G.shape[0] == 1 else tf.reduce_mean(power, axis=0)


def _weights_cam(A, G, head):
    """Zhou et al. (2016), Sec. 2: w_k^c, the output Dense layer's weights of class c (bias left out)."""
    return head


def _weights_grad_cam(A, G, head):
    """Selvaraju et al. (2017), eq. 1: alpha_k = (1/Z) sum_ij dS/dA^k_ij (global-average-pooled gradients)."""
    return tf.reduce_mean(_moment(G, 1), axis=(1, 2))


def _weights_grad_cam_pp(A, G, head):
    """Chattopadhay et al. (2018), eq. 19 and Sec. 3; with S noisy copies, Omeiza et al. (2019), eq. 4-6.

    For Y = exp(S) and a network piecewise linear in A, the derivatives of Y are
    exp(S) g, exp(S) g^2 and exp(S) g^3 (g = dS/dA), and exp(S) cancels in
    alpha_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab g_ij^3). We never form exp(S), so any
    logit gives finite weights. The weights w_k = sum_ij alpha_ij relu(dY/dA_ij) are
    computed with relu(g) instead of relu(exp(S) g): a deviation by the positive factor
    exp(S), which rescales the map without changing its shape. alpha = 0 where g = 0.
    Smooth Grad-CAM++ replaces g, g^2, g^3 by their means over the *same* S copies.
    """
    d1, d2, d3 = _moment(G, 1), _moment(G, 2), _moment(G, 3)
    denom = 2.0 * d2 + tf.reduce_sum(A, axis=(1, 2), keepdims=True) * d3
    alpha = tf.where(denom != 0.0, d2 / tf.where(denom != 0.0, denom, 1.0), 0.0)
    return tf.reduce_sum(alpha * tf.nn.relu(d1), axis=(1, 2))


def _weights_layer_cam(A, G, head):
    """Jiang et al. (2021), eq. 4-5: w^k_ij = ReLU(dS/dA^k_ij), one weight per position and channel."""
    return tf.nn.relu(_moment(G, 1))


@dataclass(frozen=True)
class _Variant:
    weights: Callable      # f(A, G, head) -> (N, K) or (N, h, w, K)
    uses: str = "gradients"  # what the weights read: "gradients" (dS_c/dA) or "head" (the Dense kernel)
    relu: bool = True        # CAM's raw map keeps its negative values


VARIANTS = {
    "cam": _Variant(_weights_cam, uses="head", relu=False),
    "grad_cam": _Variant(_weights_grad_cam),
    "grad_cam_plus_plus": _Variant(_weights_grad_cam_pp),
    "layer_cam": _Variant(_weights_layer_cam),
}
WEIGHTS = {kind: variant.weights for kind, variant in VARIANTS.items()}

# ===================================================================== the one combine step


def _combine(A, weights, relu, size):
    """weights -> weighted sum -> ReLU -> upsample, float32 (N, h, w) or (N, H, W) with ``size=(H, W)``."""
    if weights.shape.rank == 2:
        maps = tf.einsum("nhwk,nk->nhw", A, weights)  # one weight per channel
    else:
        maps = tf.reduce_sum(weights * A, axis=-1)      # one weight per position and channel
    if relu:
        maps = tf.nn.relu(maps)
    return maps if size is None else resize_maps(maps, size)


def _forward(model, target, images, classes, gradients):
    """One pass: (A float32 (N, h, w, K), dS_c/dA float32 or None, classes with -1 resolved, logits)."""
    record, hook = _recorder(target)
    with tf.GradientTape() as tape:
        tape.watch(images)  # so that A is recorded even when the model has no trainable weight
        logits = _run(model, images, hook)
        classes, score = _pick(logits, classes)
    A = record["A"]
    g = tf.cast(tape.gradient(score, A), tf.float32) if gradients else None  # per image: images do not interact
    return tf.cast(A, tf.float32), g, classes, logits


def _build(model, target, dense, kind, shape, upsample, n_samples):
    """Compile ``fn(images, classes[, noisy]) -> (maps, classes, logits)`` for one variant.

    With ``n_samples``, the gradients are taken at the noisy copies ``noisy`` (S*b, H, W,
    C), sample-major, and A and the classes on the clean images (Smooth Grad-CAM++).
    """
    variant = VARIANTS[kind]
    model_ref, target_ref = weakref.ref(model), weakref.ref(target)
    dense_ref = None if dense is None else weakref.ref(dense)
    size = shape[:2] if upsample else None

    def maps_of(images, classes, noisy):
        same_pass = variant.uses == "gradients" and noisy is None
        A, g, classes, logits = _forward(model_ref(), target_ref(), images, classes, same_pass)
        G = head = None
        if variant.uses == "head":
            head = tf.gather(tf.transpose(tf.cast(dense_ref().kernel, tf.float32)), classes)  # (N, K): w_k^c
        elif noisy is None:
            G = g[None]
        else:
            _, g, _, _ = _forward(model_ref(), target_ref(), noisy, tf.tile(classes, [n_samples]), True)
            G = tf.reshape(g, (n_samples, -1, *g.shape[1:]))
        return _combine(A, variant.weights(A, G, head), variant.relu, size), classes, logits

    if n_samples:
        noisy_spec = tf.TensorSpec((None, *shape), tf.float32)
        return tf.function(maps_of, input_signature=[*_spec(shape), noisy_spec])

    @tf.function(input_signature=_spec(shape))
    def fn(images, classes):
        return maps_of(images, classes, None)

    return fn


def _class_maps(kind, model, images, class_index, layer, upsample, batch_size, n_samples=None, noise=0.0, seed=0):
    """Maps of variant ``kind``: ``[maps, classes, logits]`` as NumPy arrays, after the checks at the boundary."""
    images = check_images(images)
    graph = _graph(model, images)
    target = _resolve_layer(model, graph, layer)
    dense = _cam_head(model, graph, target) if VARIANTS[kind].uses == "head" else None
    classes = _check_classes(class_index, len(images), graph.n_classes)
    batch_size = check_positive_int(batch_size, "batch_size")
    shape = images.shape[1:]
    fn = _cached(model, (kind, id(target), shape, bool(upsample), n_samples),
                 lambda: _build(model, target, dense, kind, shape, bool(upsample), n_samples))
    if not n_samples:
        return _in_batches(fn, images, classes, batch_size)
    eps = float(noise) * np.random.default_rng(seed).standard_normal((len(images), n_samples, *shape), np.float32)

    def noisy(i, j):  # (S*b, H, W, C), sample-major
        return (images[i:j, None] + eps[i:j]).swapaxes(0, 1).reshape(-1, *shape)

    return _in_batches(fn, images, classes, batch_size, noisy)


def _cam_head(model, graph, target):
    """Check the head is GAP -> Dense (dropout allowed) fed by ``target``; return the Dense layer."""
    hint = "CAM needs a head of GlobalAveragePooling2D then one Dense layer; use grad_cam, which works on any head."
    dense = graph.producer[id(graph.logits)]
    if not isinstance(dense, keras.layers.Dense):
        raise ValueError(f"the model's output layer {dense.name!r} is a {type(dense).__name__}, not Dense. {hint}")
    op = graph.producer[id(graph.inputs_of[id(dense)][0])]
    while isinstance(op, _PASS_THROUGH):
        op = graph.producer[id(graph.inputs_of[id(op)][0])]
    if not isinstance(op, keras.layers.GlobalAveragePooling2D) or op.keepdims:
        raise ValueError(f"the Dense output layer {dense.name!r} is fed by {op.name!r} ({type(op).__name__}). {hint}")
    feeding = graph.inputs_of[id(op)][0]
    if graph.outputs[id(target)] is not feeding:
        raise ValueError(f"CAM is defined on the feature map that feeds the global average pooling "
                         f"({graph.producer[id(feeding)].name!r}), not on {target.name!r}; "
                         "leave layer=None, or use grad_cam for other layers.")
    return dense


# ============================================================================== the methods


def grad_cam(model, images, class_index=None, layer=None, upsample=True, batch_size=64, output=None):
    """Grad-CAM maps L_c = ReLU(sum_k alpha_k^c A^k) of the class logit S_c.

    Parameters
    ----------
    model : keras.Model
        A functional, Sequential or nested classifier with one image input. The explained
        score is the logit: a final softmax or sigmoid is left out in every spelling (a
        string, ``keras.activations``, ``keras.ops``, ``tf.nn``, an ``Activation`` or
        ``Softmax`` layer, ``activation=`` of a Dense or Conv layer, the end of a nested
        head). The model is not changed.
    images : float32 array of shape (N, H, W, C), values in [0, 1]
    class_index : None, int or int array of shape (N,)
        None: each image's top class; an int: that class for every image.
    layer : str or None
        Name of the explained layer, whose output is a 4-D map (N, h, w, K), also inside
        a nested backbone; None: the last 4-D map feeding the global pooling.
    upsample : bool
        True: bilinear resize to the images' (H, W); False: the layer's (h, w).
    batch_size : int
        Images per compiled call (a memory bound); each map equals its image's map alone.
    output : str, int or None
        For a model with several outputs (e.g. ``localization.multitask_model``'s
        ``"class"`` and ``"box"``), the one to explain, by name or index.

    Returns
    -------
    maps : float32 ndarray of shape (N, H, W), or (N, h, w) with ``upsample=False``
        Raw maps, >= 0, in the units of A times logit per unit of A (see
        :func:`~course_lib.explain.normalize`); float32 under ``mixed_float16`` too.

    Raises
    ------
    ValueError
        Images not (N, H, W, C) in [0, 1]; a class out of range; an unknown or non-4-D
        ``layer``; ``batch_size`` < 1; an output activation whose logit cannot be
        recovered; a model with several outputs and ``output=None`` (the message lists
        them), or an ``output`` that names none of them; a model with several inputs (the
        message lists them and says how to wrap the model); a subclassed or unbuilt model;
        images whose (H, W, C) differ from the model's input; a model that does not
        output class scores (N, classes) or has no 4-D feature map.

    References
    ----------
    Selvaraju et al., "Grad-CAM", ICCV 2017, eq. 1 (alpha = global-average-pooled
    gradients of S_c w.r.t. the feature maps A) and eq. 2 (ReLU of the weighted sum).
    Used in notebook 07.
    """
    model = _select_output(model, output)
    return _class_maps("grad_cam", model, images, class_index, layer, upsample, batch_size)[0]


def grad_cam_plus_plus(model, images, class_index=None, layer=None, upsample=True, batch_size=64, output=None):
    """Grad-CAM++ maps ReLU(sum_k w_k^c A^k), with pixel-weighted gradients.

    Parameters
    ----------
    model, images, class_index, layer, upsample, batch_size, output
        As in :func:`grad_cam`.

    Returns
    -------
    maps : float32 ndarray of shape (N, H, W), or (N, h, w) with ``upsample=False``
        Raw maps, >= 0; finite for logits above 100 too.

    Raises
    ------
    ValueError
        As :func:`grad_cam`.

    References
    ----------
    Chattopadhay et al., "Grad-CAM++", WACV 2018: pixel-wise weights alpha from eq. 19
    (the closed form for an exponential output Y = exp(S_c)), evaluated without exp(S);
    see :func:`_weights_grad_cam_pp` for the one deviation (a positive factor exp(S_c)
    left out). Used in notebook 07 (two instances of a digit).
    """
    model = _select_output(model, output)
    return _class_maps("grad_cam_plus_plus", model, images, class_index, layer, upsample, batch_size)[0]


def cam(model, images, class_index=None, layer=None, upsample=True, batch_size=64, output=None):
    """Class activation maps M_c(x, y) = sum_k w_k^c f_k(x, y), from the output layer's weights.

    Parameters
    ----------
    model, images, class_index, upsample, batch_size, output
        As in :func:`grad_cam`; the head must be GlobalAveragePooling2D, then one Dense
        layer (Dropout between them allowed).
    layer : str or None
        None, or the name of the map that feeds the global average pooling.

    Returns
    -------
    maps : float32 ndarray of shape (N, H, W), or (N, h, w) with ``upsample=False``
        The raw map, which may be negative: S_c = (1/Z) sum_xy M_c(x, y) + b_c.

    Raises
    ------
    ValueError
        As :func:`grad_cam`; any other head, or a ``layer`` that does not feed the pooling
        (the message points to :func:`grad_cam`).

    References
    ----------
    Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016,
    Sec. 2 and eq. 1-2: f_k are the maps that feed the global average pooling and w_k^c
    the weights of the Dense layer after it (bias left out). Used in notebook 07.
    """
    model = _select_output(model, output)
    return _class_maps("cam", model, images, class_index, layer, upsample, batch_size)[0]


def layer_cam(model, images, class_index=None, layer=None, upsample=True, batch_size=64, output=None):
    """Layer-CAM maps ReLU(sum_k ReLU(dS_c/dA^k_ij) A^k_ij): a weight per position and channel.

    Parameters
    ----------
    model, images, class_index, layer, upsample, batch_size, output
        As in :func:`grad_cam`. Shallow layers give finer maps than Grad-CAM's.

    Returns
    -------
    maps : float32 ndarray of shape (N, H, W), or (N, h, w) with ``upsample=False``
        Raw maps, >= 0.

    Raises
    ------
    ValueError
        As :func:`grad_cam`.

    References
    ----------
    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
    Localization", IEEE TIP 30, 2021, eq. 4-5 (there on a ReLU'd feature map; we keep
    the final ReLU of the sum, as the paper's code does). Not used in a notebook;
    :func:`localization_accuracy` and :func:`sanity_check` take it as ``method="layer_cam"``.
    """
    model = _select_output(model, output)
    return _class_maps("layer_cam", model, images, class_index, layer, upsample, batch_size)[0]


def smooth_grad_cam_plus_plus(model, images, class_index=None, layer=None, n_samples=16, noise=0.15,
                              seed=0, batch_size=16, output=None):
    """Smooth Grad-CAM++ maps: Grad-CAM++'s weights from gradients averaged over noisy copies.

    With g_s = dS_c/dA at copy x + eps_s, D1 = mean_s g_s, D2 = mean_s g_s^2,
    D3 = mean_s g_s^3 (all three over the *same* copies; one public implementation pairs
    the averaged powers with the last copy's gradient, which we do not do):
    alpha = D2 / (2 D2 + sum_ab A_ab D3), w_k = sum_ij alpha_ij relu(D1_ij), map =
    relu(sum_k w_k A^k), where A are the feature maps of the clean image and the class is
    the clean image's. As in :func:`grad_cam_plus_plus` the factor exp(S) is left out;
    with ``noise=0`` it equals :func:`grad_cam_plus_plus`.

    Parameters
    ----------
    model, images, class_index, layer, output
        As in :func:`grad_cam`.
    n_samples : int
        Noisy copies per image, >= 1.
    noise : float
        Standard deviation of the Gaussian noise, in image units (images in [0, 1]), >= 0.
        The noise is ``noise * rng.standard_normal((N, n_samples, H, W, C))`` with
        ``rng = np.random.default_rng(seed)``.
    seed : int
    batch_size : int
        Clean images per compiled call (each brings ``n_samples`` copies).

    Returns
    -------
    maps : float32 ndarray of shape (N, H, W)
        Raw maps, >= 0, upsampled bilinearly to the images.

    Raises
    ------
    ValueError
        As :func:`grad_cam`; ``n_samples`` < 1; ``noise`` negative or not finite.

    References
    ----------
    Omeiza et al., "Smooth Grad-CAM++", 2019, eq. 4-6 (eq. 19 of Chattopadhay et al.
    2018 with averaged derivatives); SmoothGrad's noise, Smilkov et al. 2017. Used in notebook 09.
    """
    model = _select_output(model, output)
    n_samples = check_positive_int(n_samples, "n_samples")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise is the standard deviation of the Gaussian noise in image units, >= 0; got {noise}.")
    return _class_maps("grad_cam_plus_plus", model, images, class_index, layer, True, batch_size,
                       n_samples=n_samples, noise=noise, seed=seed)[0]


METHODS = {"cam": cam, "grad_cam": grad_cam, "grad_cam_plus_plus": grad_cam_plus_plus, "layer_cam": layer_cam}


# --- Augmented Grad-CAM: heat-map super-resolution (Morbidelli et al. 2020)


def _area_matrix(n_out, n_in):
    """(n_out, n_in) matrix averaging the input over each output cell's span (fractional overlaps)."""
    m = np.zeros((n_out, n_in))
    for r in range(n_out):
        lo, hi = r * n_in / n_out, (r + 1) * n_in / n_out
        for c in range(int(np.floor(lo)), int(np.ceil(hi))):
            m[r, c] = min(hi, c + 1) - max(lo, c)
    return m / m.sum(axis=1, keepdims=True)


def warp_matrix(shape, angle=0.0, shift=(0.0, 0.0)):
    """Sparse matrix of a rotation about the image centre, then a shift, as bilinear interpolation.

    Output pixel p takes the bilinear interpolation of the input at R^-1 (p - c - t) + c
    (c the centre ((H - 1) / 2, (W - 1) / 2), t the shift); outside the image counts as 0.
    The same operator A_l warps the image (channel by channel) and the high-resolution
    heat-map in :func:`augmented_grad_cam`.

    Parameters
    ----------
    shape : (H, W) ints, or any sequence starting with them
        The image's height and width in pixels.
    angle : float
        Rotation about the centre in degrees; finite.
    shift : (dy, dx) floats
        Translation in pixels after the rotation; finite.

    Returns
    -------
    warp : scipy.sparse.csr_matrix of shape (H*W, H*W), float64
        Row-major pixels: ``(warp @ image.reshape(H * W, C)).reshape(H, W, C)`` is the warped
        image. At most 4 non-zeros per row; a row of zeros where p comes from outside.

    Raises
    ------
    ValueError
        A non-finite ``angle`` or ``shift``, or a ``shift`` that is not two numbers.

    References
    ----------
    Morbidelli et al., "Augmented Grad-CAM", ICASSP 2020, eq. 1 (the known transformations
    A_l). Used in notebook 09 through :func:`augmented_grad_cam`.
    """
    from scipy import sparse

    if not np.isfinite([angle, *shift]).all() or len(shift) != 2:
        raise ValueError(f"angle (degrees) and shift (dy, dx) must be finite numbers; got {angle}, {tuple(shift)}.")
    h, w = int(shape[0]), int(shape[1])
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    t = np.deg2rad(angle)
    y, x = yy - cy - shift[0], xx - cx - shift[1]
    sy, sx = np.cos(t) * y - np.sin(t) * x + cy, np.sin(t) * y + np.cos(t) * x + cx   # inverse rotation
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    rows, cols, vals = [], [], []
    out = np.arange(h * w).reshape(h, w)
    for oy, ox in ((0, 0), (0, 1), (1, 0), (1, 1)):
        yi, xi = y0 + oy, x0 + ox
        wt = (1 - np.abs(sy - yi)) * (1 - np.abs(sx - xi))
        ok = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w) & (wt > 0)
        rows.append(out[ok]), cols.append((yi * w + xi)[ok]), vals.append(wt[ok])
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(h * w, h * w))


def _tv(h):
    """Anisotropic total variation sum |dx h| + |dy h| (Morbidelli et al. 2020, eq. 2) and a subgradient."""
    dy, dx = np.diff(h, axis=0), np.diff(h, axis=1)
    sy, sx = np.sign(dy), np.sign(dx)
    sub = np.zeros_like(h)
    sub[1:] += sy
    sub[:-1] -= sy
    sub[:, 1:] += sx
    sub[:, :-1] -= sx
    return np.abs(dy).sum() + np.abs(dx).sum(), sub


def augmented_grad_cam(model, image, class_index=None, layer=None, transforms=None, n_transforms=16,
                       max_angle=15.0, max_shift=4.0, lam=0.01, mu=0.01, steps=300, seed=0, output=None):
    """Augmented Grad-CAM: one high-resolution map from the Grad-CAMs of known warps of ``image``.

    With g_l the low-resolution Grad-CAM (``upsample=False``) of the warped image A_l(x), D
    the area downsampling from (H, W) to the Grad-CAM's (h, w) and A_l the warp
    (:func:`warp_matrix`), solve

        min_h 1/2 sum_l ||D A_l h - g_l||^2 + lam TV_l1(h) + mu/2 ||h||^2

    by subgradient descent with steps 1 / (L sqrt(t + 1)), L the Lipschitz constant of the
    smooth part; the best iterate is returned (the subgradient method is not a descent
    method). The g_l are divided by their common max, so ``lam`` and ``mu`` do not depend on
    the model's scale. Every warp explains the class of the unwarped image.

    Parameters
    ----------
    model : keras.Model
        As in :func:`grad_cam`.
    image : float32 array of shape (H, W, C), values in [0, 1]
        One image (no batch axis).
    class_index : None or int
        None: the image's top class.
    layer : str or None
        As in :func:`grad_cam`.
    transforms : list of (angle, dy, dx) or None
        Warps as (degrees, pixels, pixels), finite; None: the identity plus
        ``n_transforms - 1`` random ones.
    n_transforms : int
        Number of warps when ``transforms`` is None, >= 1.
    max_angle : float
        Random angles are uniform in [-max_angle, max_angle] degrees; finite, >= 0.
    max_shift : float
        Random shifts are uniform in [-max_shift, max_shift] pixels; finite, >= 0.
    lam : float
        Weight of the anisotropic total variation (:func:`anisotropic_tv`); finite, >= 0.
    mu : float
        Weight of the L2 term; finite, >= 0.
    steps : int
        Subgradient steps, >= 1.
    seed : int
        Seed of ``np.random.default_rng`` for the random warps.
    output : str, int or None
        As in :func:`grad_cam`.

    Returns
    -------
    h : float32 ndarray of shape (H, W)
        The super-resolved map, in units of the largest low-resolution Grad-CAM (the g_l
        are scaled to a common max of 1).
    history : float32 ndarray of shape (steps,)
        The objective at each step, before the step.

    Raises
    ------
    ValueError
        As :func:`grad_cam` (model, ``image``, class, ``layer``, ``output``); ``steps`` or
        ``n_transforms`` < 1; ``lam``, ``mu``, ``max_angle`` or ``max_shift`` negative or not
        finite; ``transforms`` not a non-empty list of finite triples; a transform that moves
        the whole image out of the frame.

    References
    ----------
    Morbidelli et al., "Augmented Grad-CAM: Heat-Maps Super Resolution Through
    Augmentation", ICASSP 2020, eq. 1 (the objective) and eq. 2 (the TV term). Used in
    notebook 09.
    """
    from scipy import sparse
    from scipy.sparse.linalg import eigsh

    model = _select_output(model, output)
    image = check_images(np.asarray(image)[None], "image")[0]
    graph = _graph(model, image[None])
    classes = _check_classes(class_index, 1, graph.n_classes)
    steps = check_positive_int(steps, "steps")
    if not (0 <= lam < np.inf and 0 <= mu < np.inf):
        raise ValueError(f"lam and mu weigh the TV and L2 terms and must be finite and >= 0; got lam={lam}, mu={mu}.")
    if transforms is None:
        if not (0 <= max_angle < np.inf and 0 <= max_shift < np.inf):
            raise ValueError(f"max_angle (degrees) and max_shift (pixels) must be finite and >= 0; "
                             f"got {max_angle}, {max_shift}.")
        n_transforms = check_positive_int(n_transforms, "n_transforms")
        rng = np.random.default_rng(seed)
        transforms = [(0.0, 0.0, 0.0)] + [
            (rng.uniform(-max_angle, max_angle), rng.uniform(-max_shift, max_shift), rng.uniform(-max_shift, max_shift))
            for _ in range(n_transforms - 1)]
    try:
        transforms = [tuple(float(v) for v in t) for t in transforms]
    except (TypeError, ValueError):
        transforms = [()]
    if not transforms or any(len(t) != 3 for t in transforms) or not np.isfinite(transforms).all():
        raise ValueError("transforms must be a non-empty list of finite (angle in degrees, dy, dx) triples.")
    H, W, C = image.shape
    warps = [warp_matrix((H, W), a, (dy, dx)) for a, dy, dx in transforms]
    lost = [t for t, A in zip(transforms, warps) if A.nnz == 0]
    if lost:
        raise ValueError(f"transforms {lost} move the whole {H}x{W} image out of the frame (nothing left to "
                         f"explain); keep the shifts within the image, e.g. |dy| < {H} and |dx| < {W}.")
    warped = np.stack([(A @ image.reshape(H * W, C)).reshape(H, W, C) for A in warps]).astype(np.float32)
    if classes[0] < 0:
        classes = np.argmax(_probabilities(model, image[None]), axis=1).astype(np.int32)
    g = grad_cam(model, warped, np.repeat(classes, len(warped)), layer=layer, upsample=False)
    h_lo, w_lo = g.shape[1:]
    g = g / max(float(g.max()), 1e-12)
    D = sparse.csr_matrix(np.kron(_area_matrix(h_lo, H), _area_matrix(w_lo, W)))
    ops = [D @ A for A in warps]
    gram = sum(M.T @ M for M in ops)
    lipschitz = float(eigsh(gram, k=1, return_eigenvectors=False)[0]) + mu
    rhs = sum(M.T @ gl.ravel() for M, gl in zip(ops, g))

    def objective(h):
        fit = 0.5 * sum(float(np.sum((M @ h.ravel() - gl.ravel()) ** 2)) for M, gl in zip(ops, g))
        return fit + lam * _tv(h)[0] + 0.5 * mu * float(np.sum(h * h))

    h = np.zeros((H, W))
    best, best_value, history = h, np.inf, []
    for t in range(steps):
        value = objective(h)
        history.append(value)
        if value < best_value:
            best, best_value = h, value
        grad = (gram @ h.ravel() - rhs).reshape(H, W) + lam * _tv(h)[1] + mu * h
        h = h - grad / (lipschitz * np.sqrt(t + 1.0))
    return best.astype(np.float32), np.asarray(history, np.float32)



# ------------------------------------------------------------------ exercise references


def cam_weighted_sum(features, weights, c: int) -> np.ndarray:
    """The class activation map M_c = sum_k w[k, c] A^k of one image.

    Parameters
    ----------
    features : float array of shape (h, w, K)
        The last convolution's output A for one image.
    weights : float array of shape (K, classes)
        The kernel of the Dense layer after the global average pooling.
    c : int
        The class, in [0, classes).

    Returns
    -------
    map : float ndarray of shape (h, w)
        In the dtype of ``features @ weights``; may be negative (no ReLU in CAM).

    Raises
    ------
    ValueError
        ``features`` not 3-D, ``weights`` not 2-D, their K differing, or ``c`` out of range.

    References
    ----------
    Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016, eq. 1-2.
    Used in notebook 07, exercise 1 (the reference solution; :func:`cam` computes it batched).
    """
    features, weights = np.asarray(features), np.asarray(weights)
    if features.ndim != 3 or weights.ndim != 2 or weights.shape[0] != features.shape[-1]:
        raise ValueError(f"features (h, w, K) and weights (K, classes) must agree; got {features.shape}, {weights.shape}.")
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < weights.shape[1]:
        raise ValueError(f"c must be a class index in [0, {weights.shape[1] - 1}]; got {c!r}.")
    return features @ weights[:, c]


def grad_cam_map(features, gradients) -> np.ndarray:
    """Grad-CAM of one image: ReLU(sum_k alpha_k A^k), alpha_k the mean of dS_c/dA^k over positions.

    Parameters
    ----------
    features : float array of shape (h, w, K)
        The explained layer's output A for one image.
    gradients : float array of shape (h, w, K)
        dS_c / dA, the gradient of the class logit w.r.t. ``features``.

    Returns
    -------
    map : float ndarray of shape (h, w), >= 0
        In the dtype of ``features @ gradients.mean(axis=(0, 1))``.

    Raises
    ------
    ValueError
        ``features`` and ``gradients`` not both 3-D of the same shape.

    References
    ----------
    Selvaraju et al., "Grad-CAM", ICCV 2017, eq. 1-2. Used in notebook 07, exercise 2 (the
    reference solution; :func:`grad_cam` computes it batched).
    """
    features, gradients = np.asarray(features), np.asarray(gradients)
    if features.shape != gradients.shape or features.ndim != 3:
        raise ValueError(f"features and gradients must both be (h, w, K); got {features.shape}, {gradients.shape}.")
    return np.maximum(features @ gradients.mean(axis=(0, 1)), 0.0)



def anisotropic_tv(h) -> float:
    """Anisotropic total variation ``sum |vertical differences| + sum |horizontal differences|`` of a map.

    Parameters
    ----------
    h : float array of shape (H, W)

    Returns
    -------
    tv : float
        In the units of ``h``, >= 0; 0 for a constant map.

    Raises
    ------
    ValueError
        ``h`` not 2-D.

    References
    ----------
    Morbidelli et al. (2020), eq. 2, the regulariser of :func:`augmented_grad_cam`. Used in
    notebook 09, exercise 3 (the reference solution).
    """
    h = np.asarray(h, float)
    if h.ndim != 2:
        raise ValueError(f"h must be a 2-D map; got shape {h.shape}.")
    return float(_tv(h)[0])
