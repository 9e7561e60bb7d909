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
    """Names of the layers, nested ones included, whose output is a 4-D feature map, in execution order.

    Parameters
    ----------
    model : keras.Model
        Functional, Sequential or nested, with one image input.
    images : float32 array of shape (N, H, W, C), values in [0, 1]
        Only the first image is run, to learn the layers' output shapes.

    Returns
    -------
    names : list of str
        The candidates for ``layer=`` in :func:`grad_cam` and :func:`layer_activations`.

    Raises
    ------
    ValueError
        As :func:`layer_activations` (model, ``images``).

    Notes
    -----
    Not used in a notebook; a helper for choosing ``layer=``.
    """
    graph = _graph(model, check_images(images), scores=False)
    return [op.name for op in graph.maps()]


def find_layer(model, name):
    """The layer called ``name`` in ``model`` or in any nested sub-model, depth first.

    Parameters
    ----------
    model : keras.Model
    name : str

    Returns
    -------
    layer : keras.layers.Layer
        The first match of :func:`course_lib.models.walk_layers` (a nested model counts as a layer).

    Raises
    ------
    ValueError
        No layer called ``name``; the message lists the layer names.

    Notes
    -----
    Used in notebook 08.
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


def _input_shape(model, input_shape):
    """``input_shape``, or the model's fixed (H, W, C); a ValueError when neither is known."""
    source = "input_shape"
    if input_shape is None:
        inputs = getattr(model, "inputs", None) or []
        input_shape, source = (tuple(inputs[0].shape[1:]) if inputs else ()), "the model's input"
    shape = tuple(input_shape)
    if len(shape) != 3 or any(not isinstance(d, (int, np.integer)) or d <= 0 for d in shape):
        raise ValueError(f"need the input size (H, W, C) as positive ints; {source} is {shape}. "
                         "Pass input_shape=(H, W, C).")
    return tuple(int(d) for d in shape)


def _build_activations(model, target, shape):
    model_ref, target_ref = weakref.ref(model), weakref.ref(target)

    @tf.function(input_signature=_spec(shape)[:1])
    def fn(images):
        record, hook = _recorder(target_ref())
        _run(model_ref(), images, hook, is_top=False)  # the layer's output as computed: nothing stripped
        return record["A"]

    return fn


def layer_activations(model, images, layer: str, batch_size: int = 256) -> np.ndarray:
    """The output of one layer (a 4-D feature map, nested models included) for a batch of images.

    The whole model runs through the interpreter, one compiled function per model and layer,
    so a layer inside a nested backbone and a model with several outputs work too. Nothing is
    stripped: the layer's output as the model computes it (inference mode).

    Parameters
    ----------
    model : keras.Model
        Functional, Sequential or nested, with one image input (any number of outputs).
    images : float32 array of shape (N, H, W, C), values in [0, 1]
    layer : str
        Name of a layer whose output is 4-D (see :func:`feature_map_layers`).
    batch_size : int
        Images per compiled call, >= 1.

    Returns
    -------
    activations : float32 ndarray of shape (N, h, w, K)
        In the layer's units; float32 under ``mixed_float16`` too.

    Raises
    ------
    ValueError
        ``model`` not a built functional or Sequential keras.Model, or with several inputs
        (the message lists them and says how to wrap the model); ``images`` not (N, H, W, C)
        float in [0, 1], or of another size than the model's input; ``layer`` unknown or not
        4-D (the message lists the candidates); ``batch_size`` < 1.

    Notes
    -----
    Used in notebooks 07 and 08.
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

    Takes the gradient of the unit at ``position`` (summed over channels) with respect to 16
    random inputs, so that a ReLU closed on one input does not hide pixels; the box of
    non-zero gradient is the receptive field. For stacks of convolutions and poolings it
    equals the recursion of :func:`receptive_field_size`, clipped to the image.

    Parameters
    ----------
    model : keras.Model
        As in :func:`layer_activations`.
    layer : str
        Name of a layer whose output is 4-D.
    position : (i, j) ints or None
        Row and column of the unit in the layer's (h, w) map; None: the centre (h // 2, w // 2).
    input_shape : (H, W, C) ints or None
        None: the model's input shape, which must then be fixed.

    Returns
    -------
    field : (top, left, bottom, right) ints
        In input pixels, bottom and right exclusive.

    Raises
    ------
    ValueError
        As :func:`layer_activations` (model, ``layer``); an input size that is not fixed
        and no ``input_shape``; ``position`` outside the layer's map; a dead unit (zero
        gradient for every input).

    References
    ----------
    Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural Networks",
    Distill 2019, eq. 2 (the recursion); measured by gradients as in Luo et al., "Understanding
    the Effective Receptive Field", NeurIPS 2016. Used in notebook 08.
    """
    shape = _input_shape(model, input_shape)
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
    """The ``k`` input patches that excite channel ``channel`` of ``layer`` the most.

    For each image, the position where the channel is highest; the ``k`` strongest images
    (one patch per image) are cut out at that unit's receptive field (measured once at the
    centre unit by :func:`receptive_field` and moved by the map's stride), zero-padded where
    the field leaves the image, so every patch has the field's size.

    Parameters
    ----------
    model, images, layer
        As in :func:`layer_activations`.
    channel : int
        Channel of ``layer``, in [0, K).
    k : int
        Number of patches, >= 1 (at most N come back).

    Returns
    -------
    patches : float32 ndarray of shape (min(k, N), r_h, r_w, C), values in [0, 1]
        Strongest first; (r_h, r_w) is the receptive field's size in pixels.
    values : float32 ndarray of shape (min(k, N),)
        The channel's peak activation in each of those images, in the layer's units.
    indices : int ndarray of shape (min(k, N),)
        The images' indices in ``images``.

    Raises
    ------
    ValueError
        As :func:`layer_activations` and :func:`receptive_field`; ``channel`` not an int in
        [0, K); ``k`` < 1.

    References
    ----------
    Zeiler and Fergus, ECCV 2014, Sec. 4; Girshick et al., "Rich Feature Hierarchies", CVPR
    2014, Fig. 4 (top-activating regions of a unit). Used in notebook 08.
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
    """Synthesise an input that maximises one unit: normalised gradient ascent with an L2 penalty.

    Maximises S(x) - l2 * ||x - 0.5||^2 over images x in [0, 1]. S is the logit of class
    ``objective`` (``layer=None``; a final softmax or sigmoid is stripped) or the mean over
    the map of channel ``objective`` of ``layer``. Each step adds lr * g / rms(g) (the
    gradient normalised by its root mean square, a common stabiliser) and clips x to [0, 1].
    Starts from grey plus Gaussian noise of standard deviation 0.01.

    Parameters
    ----------
    model : keras.Model
        As in :func:`grad_cam` with ``layer=None``; as in :func:`layer_activations` otherwise.
    objective : int
        A class index (``layer=None``) or a channel index of ``layer``.
    layer : str or None
        A layer with a 4-D output, or None for the class logit.
    steps : int
        Ascent steps, >= 1.
    lr : float
        Step size in pixel intensity (RMS of the step), finite, > 0.
    l2 : float
        Weight of the L2 penalty toward grey, finite, >= 0.
    input_shape : (H, W, C) ints or None
        None: the model's input shape, which must then be fixed.
    seed : int
        Seed of ``np.random.default_rng`` for the starting noise.
    output : str, int or None
        With ``layer=None``, as in :func:`grad_cam`.

    Returns
    -------
    image : float32 ndarray of shape (H, W, C), values in [0, 1]
    scores : float32 ndarray of shape (steps,)
        S (logits, or the layer's units) before each step.

    Raises
    ------
    ValueError
        As :func:`grad_cam` (model, ``output``) or :func:`layer_activations` (``layer``);
        ``steps`` < 1; ``lr`` not finite and > 0 or ``l2`` not finite and >= 0; an input size
        that is not fixed and no ``input_shape``; ``objective`` out of range.

    References
    ----------
    Erhan et al., "Visualizing Higher-Layer Features of a Deep Network", 2009; Simonyan et
    al., ICLR 2014 workshop, Sec. 2, eq. 1 (there on the zero-centred image). Used in
    notebook 08.
    """
    if layer is None:
        model = _select_output(model, output)
    steps = check_positive_int(steps, "steps")
    if not (0 < lr < np.inf and 0 <= l2 < np.inf):
        raise ValueError(f"lr must be > 0 and l2 >= 0, both finite; got lr={lr}, l2={l2}.")
    shape = _input_shape(model, input_shape)
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

    r_l = r_{l-1} + (k_l - 1) j_{l-1} and j_l = j_{l-1} s_l, from r_0 = j_0 = 1.

    Parameters
    ----------
    layers : sequence of (kernel_size, stride) int pairs
        One pair per convolution or pooling, input first.

    Returns
    -------
    sizes : list of int
        The receptive field's side in input pixels after each layer (not clipped to an image).

    References
    ----------
    Araujo, Norris and Sim, Distill 2019, eq. 2; :func:`receptive_field` measures the same
    with gradients. Used in notebook 08, exercise 2 (the reference solution).
    """
    sizes, r, j = [], 1, 1
    for k, s in layers:
        r, j = r + (k - 1) * j, j * s
        sizes.append(r)
    return sizes


def top_images(activations, channel: int, k: int) -> np.ndarray:
    """Indices of the ``k`` images whose peak activation of ``channel`` is largest, strongest first.

    Parameters
    ----------
    activations : float array of shape (N, h, w, K)
        A layer's activations (:func:`layer_activations`).
    channel : int
        In [0, K).
    k : int
        >= 1 (at most N come back).

    Returns
    -------
    indices : int ndarray of shape (min(k, N),)
        Ties keep the lower index (a stable sort).

    Raises
    ------
    ValueError
        ``activations`` not 4-D; ``channel`` not an int in [0, K); ``k`` not a positive int.

    References
    ----------
    The ranking of :func:`max_activating_patches` (Zeiler and Fergus 2014, Sec. 4). Used in
    notebook 08, exercise 3 (the reference solution).
    """
    a = np.asarray(activations)
    if a.ndim != 4:
        raise ValueError(f"activations must be (N, h, w, K); got shape {a.shape}.")
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < a.shape[-1]:
        raise ValueError(f"channel must be an int in [0, {a.shape[-1] - 1}]; got {channel!r}.")
    peaks = a[..., channel].reshape(len(a), -1).max(axis=1)
    return np.argsort(-peaks, kind="stable")[: check_positive_int(k, "k")]


def ascent_step(x, w, lr: float, l2: float) -> np.ndarray:
    """One normalised gradient-ascent step on S(x) = sum(w x) - l2 ||x - 0.5||^2, clipped to [0, 1].

    g = w - 2 l2 (x - 0.5), x' = clip(x + lr g / (rms(g) + 1e-8), 0, 1): the step of
    :func:`activation_maximization` on a linear unit.

    Parameters
    ----------
    x : float array, values in [0, 1]
        The current image (any shape).
    w : float array broadcasting to ``x``
        The linear unit's weights.
    lr : float
        Step size (RMS of the step before clipping).
    l2 : float
        Weight of the L2 penalty toward grey.

    Returns
    -------
    x_next : float64 ndarray of the shape of ``x``, values in [0, 1]

    References
    ----------
    Erhan et al. 2009; Simonyan et al. 2014, eq. 1. Used in notebook 08, exercise 4 (the
    reference solution).
    """
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(w) - 2.0 * l2 * (x - 0.5)
    return np.clip(x + lr * g / (np.sqrt(np.mean(g**2)) + 1e-8), 0.0, 1.0)


