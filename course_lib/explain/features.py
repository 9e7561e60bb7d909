"""Visualizing CNNs (notebook 08): which layers there are, what a unit computes, sees and responds to.

Layer activations, receptive fields, the patches that excite a channel most, and an input
synthesised to excite a unit. They run the model through the same interpreter as the
class maps, so layers inside nested backbones work too. Filter and activation grids are
in ``course_lib.viz``.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from ..validation import check_images, check_positive_int
from ._interpreter import _all_layers, _cached, _graph, _recorder, _resolve_layer, _run, _select_output, _spec


def feature_map_layers(model, images) -> list:
    """Names of the layers (nested ones included) whose output is a 4-D feature map, in order."""
    graph = _graph(model, check_images(images), scores=False)
    return [op.name for op in graph.maps()]


def find_layer(model, name):
    """Return the layer called ``name`` in ``model`` or in any nested sub-model (depth first).

    Raises a ValueError listing the layer names when there is none.
    """
    for layer in _all_layers(model):
        if layer.name == name:
            return layer
    names = [layer.name for layer in _all_layers(model)]
    raise ValueError(f"no layer named {name!r} in model {model.name!r}; layers are: {', '.join(names)}.")



#
# What a unit responds to (notebook 08): its activations, its receptive field, the input
# patches that excite it most, and an input synthesised to excite it. They run the model
# through the same interpreter as above, so layers inside nested backbones work too.


def _build_activations(model, target, shape):
    model_ref, target_ref = weakref.ref(model), weakref.ref(target)

    @tf.function(input_signature=_spec(shape)[:1])
    def fn(images):
        record, hook = _recorder(target_ref())
        _run(model_ref(), images, hook, is_top=False)  # the layer's output as computed: nothing stripped
        return record["A"]

    return fn


def layer_activations(model, images, layer: str, batch_size: int = 256) -> np.ndarray:
    """Return the output of ``layer`` (a 4-D feature map, nested models included) for ``images``.

    A float32 array (N, h, w, C), computed by one compiled function per model and layer.
    Works on models with several outputs (the whole model runs). Used in notebook 08.
    """
    images = check_images(images)
    graph = _graph(model, images, scores=False)
    target = _resolve_layer(model, graph, layer)
    batch_size = check_positive_int(batch_size, "batch_size")
    fn = _cached(model, ("activations", id(target), images.shape[1:]),
                 lambda: _build_activations(model, target, images.shape[1:]))
    return np.concatenate([fn(tf.constant(images[i : i + batch_size])).numpy()
                           for i in range(0, len(images), batch_size)]).astype(np.float32)


def receptive_field(model, layer: str, position=None, input_shape=None):
    """Measure the receptive field of one unit of ``layer``: the input pixels its value depends on.

    Takes the gradient of the unit at ``position`` (default: the centre of the map,
    summed over channels) with respect to 16 random inputs, so that a ReLU closed on one
    input does not hide pixels; the box of non-zero gradient is the receptive field. For
    stacks of convolutions and poolings it equals the recursion r_l = r_{l-1} +
    (k_l - 1) j_{l-1}, j_l = j_{l-1} s_l (notebook 08, exercise 2), clipped to the image.
    Returns ``(top, left, bottom, right)`` in input pixels, bottom and right exclusive.
    """
    shape = tuple(input_shape or model.inputs[0].shape[1:])
    x = tf.constant(np.random.default_rng(0).uniform(0.0, 1.0, (16, *shape)).astype(np.float32))
    target = _resolve_layer(model, _graph(model, x.numpy()[:1], scores=False), layer)
    record, hook = _recorder(target)
    with tf.GradientTape() as tape:
        tape.watch(x)
        _run(model, x, hook, is_top=False)
        h, w = record["A"].shape[1:3]
        i, j = position if position is not None else (h // 2, w // 2)
        if not (0 <= i < h and 0 <= j < w):
            raise ValueError(f"position must lie in the {h}x{w} map of {layer!r}; got {position}.")
        unit = tf.reduce_sum(record["A"][:, i, j])
    grad = np.abs(tape.gradient(unit, x).numpy()).sum(axis=(0, -1))
    rows, cols = np.flatnonzero(grad.any(axis=1)), np.flatnonzero(grad.any(axis=0))
    if rows.size == 0:
        raise ValueError(f"unit ({i}, {j}) of {layer!r} has zero gradient for every input (a dead unit); pick another.")
    return int(rows[0]), int(cols[0]), int(rows[-1] + 1), int(cols[-1] + 1)


def max_activating_patches(model, images, layer: str, channel: int, k: int = 9):
    """Find the ``k`` input patches that excite channel ``channel`` of ``layer`` the most.

    For each image, the position where the channel is highest; the ``k`` strongest images
    (one patch per image) are cut out at that unit's receptive field (Zeiler and Fergus
    2014, Sec. 4; Girshick et al. 2014, Fig. 4), zero-padded where the field leaves the
    image, so every patch has the field's size. Returns ``(patches, values, indices)``,
    strongest first. Used in notebook 08.
    """
    images = check_images(images)
    acts = layer_activations(model, images, layer)
    if not isinstance(channel, (int, np.integer)) or not 0 <= channel < acts.shape[-1]:
        raise ValueError(f"channel must be an int in [0, {acts.shape[-1] - 1}] for layer {layer!r}; got {channel!r}.")
    k = check_positive_int(k, "k")
    n, h, w = acts.shape[:3]
    flat = acts[..., channel].reshape(n, -1)
    best_pos, best_val = flat.argmax(axis=1), flat.max(axis=1)
    order = np.argsort(-best_val, kind="stable")[: min(k, n)]
    # The field is measured once at the centre unit and moved by the map's stride.
    top, left, bottom, right = receptive_field(model, layer, (h // 2, w // 2), images.shape[1:])
    H, W = images.shape[1:3]
    size_y, size_x = bottom - top, right - left
    patches = np.zeros((len(order), size_y, size_x, images.shape[-1]), np.float32)
    for out, idx in enumerate(order):
        i, j = divmod(int(best_pos[idx]), w)
        y0 = top + int(round((i - h // 2) * H / h))
        x0 = left + int(round((j - w // 2) * W / w))
        ys, xs = slice(max(y0, 0), min(y0 + size_y, H)), slice(max(x0, 0), min(x0 + size_x, W))
        patches[out, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = images[idx, ys, xs]
    return patches, best_val[order], order


def activation_maximization(model, objective: int, layer: str | None = None, steps: int = 200, lr: float = 0.05,
                            l2: float = 1e-3, input_shape=None, seed: int = 0, output=None):
    """Synthesise an input that maximises one unit: gradient ascent with L2 regularisation.

    Maximises S(x) - l2 * ||x - 0.5||^2 over images x in [0, 1] (Simonyan et al. 2014,
    eq. 1, there on the zero-centred image; Erhan et al. 2009). S is the logit of class
    ``objective`` (``layer=None``; a final softmax or sigmoid is stripped) or the mean over the map
    of channel ``objective`` of ``layer``. Each step adds lr * g / rms(g) (the gradient
    normalised by its root mean square, a common stabiliser) and clips x to [0, 1].
    Starts from grey plus a little noise. Returns ``(image (H, W, C), S at each step)``.
    ``output`` (with ``layer=None``) as in :func:`grad_cam`. Used in notebook 08.
    """
    if layer is None:
        model = _select_output(model, output)
    steps = check_positive_int(steps, "steps")
    if not (0 < lr < np.inf and 0 <= l2 < np.inf):
        raise ValueError(f"lr must be > 0 and l2 >= 0, both finite; got lr={lr}, l2={l2}.")
    shape = tuple(input_shape or model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    start = (0.5 + 0.01 * rng.standard_normal((1, *shape))).astype(np.float32)
    graph = _graph(model, start, scores=layer is None)
    target = None if layer is None else _resolve_layer(model, graph, layer)
    n_units = graph.n_classes if target is None else graph.shape(target)[-1]
    if isinstance(objective, bool) or not isinstance(objective, (int, np.integer)) or not 0 <= objective < n_units:
        what = "a class index" if target is None else f"a channel index of {layer!r}"
        raise ValueError(f"objective must be {what} in [0, {n_units - 1}]; got {objective!r}.")
    x = tf.Variable(start)

    @tf.function
    def step():
        record, hook = _recorder(target)
        with tf.GradientTape() as tape:
            logits = _run(model, x, hook)
            unit = logits[:, objective] if target is None else record["A"][..., objective]
            score = tf.reduce_mean(unit)
            objective_value = score - l2 * tf.reduce_sum(tf.square(x - 0.5))
        g = tape.gradient(objective_value, x)
        x.assign(tf.clip_by_value(x + lr * g / (tf.sqrt(tf.reduce_mean(tf.square(g))) + 1e-8), 0.0, 1.0))
        return score

    scores = np.array([float(step()) for _ in range(steps)], np.float32)
    return x.numpy()[0], scores



def receptive_field_size(layers) -> list:
    """Receptive-field size after each (kernel_size, stride) layer of a stack.

    r_l = r_{l-1} + (k_l - 1) j_{l-1}, j_l = j_{l-1} s_l from r_0 = j_0 = 1 (Araujo et al.
    2019, eq. 2); :func:`receptive_field` measures the same with gradients. Notebook 08, exercise 2.
    """
    sizes, r, j = [], 1, 1
    for k, s in layers:
        r, j = r + (k - 1) * j, j * s
        sizes.append(r)
    return sizes


def top_images(activations, channel: int, k: int) -> np.ndarray:
    """Indices of the ``k`` images whose peak activation of ``channel`` is largest, strongest first.

    ``activations`` (N, h, w, C); ties keep the lower index. The ranking
    :func:`max_activating_patches` uses (Zeiler and Fergus 2014). Notebook 08, exercise 3.
    """
    a = np.asarray(activations)
    peaks = a[..., channel].reshape(len(a), -1).max(axis=1)
    return np.argsort(-peaks, kind="stable")[: check_positive_int(k, "k")]


def ascent_step(x, w, lr: float, l2: float) -> np.ndarray:
    """One normalised gradient-ascent step on S(x) = sum(w x) - l2 ||x - 0.5||^2, clipped to [0, 1].

    The step of :func:`activation_maximization` on a linear unit (Erhan et al. 2009;
    Simonyan et al. 2014): g = w - 2 l2 (x - 0.5), x' = clip(x + lr g / rms(g)). Notebook 08, exercise 4.
    """
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(w) - 2.0 * l2 * (x - 0.5)
    return np.clip(x + lr * g / (np.sqrt(np.mean(g**2)) + 1e-8), 0.0, 1.0)


