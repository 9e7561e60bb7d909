"""Explaining a classifier: class activation maps, gradients on the input, occlusion, localization.

Sections (in this order):

1. **Model plumbing**: run any functional, Sequential or nested Keras model layer by
   layer, record an inner feature map (also inside a nested backbone), strip a final
   softmax or sigmoid (any spelling), choose one of several outputs, swap ReLU gradients
   for guided ones, and cache one compiled function per model and layer. The model
   itself is never changed (a squash inside a layer is left out by calling that layer
   once with a linear activation, restored at once).
2. **Class activation maps**: :func:`cam` (Zhou et al. 2016), :func:`grad_cam`
   (Selvaraju et al. 2017) and :func:`grad_cam_plus_plus` (Chattopadhay et al. 2018).
3. **Gradients on the input**: :func:`saliency` (Simonyan et al. 2014),
   :func:`guided_backprop` (Springenberg et al. 2015) and :func:`guided_grad_cam`.
4. **Perturbation**: :func:`occlusion` (Zeiler and Fergus 2014).
5. **Display**: :func:`normalize` and :func:`overlay`.
6. **Weakly supervised localization**: :func:`cam_to_box`, :func:`box_iou`,
   :func:`box_mass_share`, :func:`localization_accuracy` (the CAM paper's protocol) and
   :func:`box_accuracy_by_threshold` (choosing the threshold on held-out boxes, Choe et al. 2020).
7. **Visualizing CNNs** (notebook 08): :func:`layer_activations`,
   :func:`receptive_field`, :func:`max_activating_patches` and
   :func:`activation_maximization` (filter and activation grids are in ``course_lib.viz``).
8. **Beyond Grad-CAM** (notebook 09): :func:`smooth_grad_cam_plus_plus` (Omeiza et al.
   2019), :func:`rise` (Petsiuk et al. 2018), :func:`augmented_grad_cam` (Morbidelli et al.
   2020); faithfulness: :func:`average_drop`, :func:`increase_in_confidence` (Chattopadhay
   et al. 2018), :func:`deletion_insertion`; :func:`sanity_check` (Adebayo et al. 2018).

Conventions: images are float32 in [0, 1], (N, H, W, C); models output logits (a final
softmax or sigmoid is stripped in any spelling, so the explained score is always the
logit S_c; an output activation whose logit cannot be recovered raises a ValueError).
A model with several outputs is explained one output at a time (``output=`` name or
index); models with several inputs are refused. Every map is returned as a float32 NumPy
array, also for a model built under the ``mixed_float16`` policy. Used in notebooks 07,
08, 09 and 11.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from ..data import check_images, check_positive_int

__all__ = [
    "cam", "grad_cam", "grad_cam_plus_plus", "saliency", "guided_backprop", "guided_grad_cam",
    "occlusion", "normalize", "overlay", "cam_to_box", "box_iou", "box_mass_share",
    "localization_accuracy", "box_accuracy_by_threshold", "find_layer", "feature_map_layers",
    "layer_activations", "receptive_field", "max_activating_patches", "activation_maximization",
    "smooth_grad_cam_plus_plus", "rise_masks", "rise", "warp_matrix", "augmented_grad_cam",
    "explanation_confidence", "average_drop", "increase_in_confidence", "curve_auc", "deletion_insertion",
    "randomized_copy", "sanity_check",
]

# ======================================================================= 1. model plumbing
#
# Why not ``keras.Model(model.inputs, [model.get_layer(name).output, model.output])``?
# In Keras 3 it fails for a layer inside a nested backbone ("not connected to inputs"),
# Sequential models without an Input have no ``.output``, and swapping activations to
# get guided gradients would change the model. Instead we *interpret* the model: walk
# its graph and call each layer ourselves, with a hook that sees every layer's output.

RELU_NAMES = ("relu", "relu6")
GLOBAL_POOLS = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
_PASS_THROUGH = (keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.Identity)


def _is_model(op) -> bool:
    return isinstance(op, keras.Model)


def _activation_name(op) -> str:
    act = getattr(op, "activation", None)
    return getattr(act, "__name__", "") if callable(act) else ""


def _is_relu(op) -> bool:
    """True for every ReLU form: ReLU(), ReLU(max_value=6), Activation('relu'), activation='relu'."""
    return isinstance(op, keras.layers.ReLU) or _activation_name(op) in RELU_NAMES


# --- the explained score is the logit, whatever the output activation is called.
# Every spelling resolves to one of these function names: "softmax" (a string,
# keras.activations, keras.ops), "softmax_v2" (tf.nn.softmax, tf.math.softmax), their
# log_softmax twins (log-probabilities differ from the logits by a constant per image),
# and "sigmoid" (string, keras.activations, keras.ops, tf.nn, tf.math).
SOFTMAX_NAMES = ("softmax", "softmax_v2", "log_softmax", "log_softmax_v2")
SIGMOID_NAMES = ("sigmoid",)
# keras.ops.softmax / log_softmax / sigmoid called on a KerasTensor add these operations to a functional graph.
_SQUASH_OPS = {"Softmax": "softmax", "LogSoftmax": "softmax", "Sigmoid": "sigmoid"}
# Layers that only move values around: a squash before them is still the model's last non-linearity.
_SHAPE_ONLY = (keras.layers.Flatten, keras.layers.Reshape, keras.layers.Dropout, keras.layers.SpatialDropout1D,
               keras.layers.SpatialDropout2D, keras.layers.SpatialDropout3D, keras.layers.GaussianNoise,
               keras.layers.GaussianDropout, keras.layers.AlphaDropout, keras.layers.Identity,
               keras.layers.ActivityRegularization)
_POOLS = (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling1D,
          keras.layers.GlobalMaxPooling2D, keras.layers.AveragePooling2D, keras.layers.MaxPooling2D)


def _squash_kind(op):
    """"softmax", "sigmoid" or None (no squashing output activation) for one operation.

    Raises a ValueError for an activation that looks like a squash but cannot be
    recognised (hard_sigmoid, a lambda, a softmax over another axis): its logit is unknown.
    """
    axis = None
    cls = type(op).__name__
    if isinstance(op, keras.layers.Softmax):
        kind, axis = "softmax", op.axis
    elif not isinstance(op, keras.layers.Layer) and cls in _SQUASH_OPS:
        kind, axis = _SQUASH_OPS[cls], getattr(op, "axis", -1)
    elif not isinstance(op, keras.layers.Layer) and ("Softmax" in cls or "Sigmoid" in cls):  # e.g. keras.ops.hard_sigmoid
        raise ValueError(f"the model's output is keras.ops' {cls} ({op.name!r}), whose logit course_lib.explain "
                         "cannot recover; output logits, or use keras.ops.softmax / keras.ops.sigmoid.")
    else:
        # Dense / Conv2D / Activation(...) keep it in .activation; Lambda(tf.nn.softmax) in .function.
        act = op.function if isinstance(op, keras.layers.Lambda) else getattr(op, "activation", None)
        if not callable(act):
            return None
        if isinstance(act, keras.layers.Layer):  # activation=keras.layers.Softmax()
            return _squash_kind(act)
        if getattr(act, "keywords", {}).get("axis", -1) != -1:  # functools.partial(softmax, axis=1)
            raise ValueError(f"the model's output layer {op.name!r} applies a softmax over axis "
                             f"{act.keywords['axis']}, not the class axis (-1); output logits instead.")
        name = getattr(getattr(act, "func", act), "__name__", type(act).__name__)  # a partial names its function
        if name in SOFTMAX_NAMES:
            return "softmax"
        if name in SIGMOID_NAMES:
            return "sigmoid"
        if "softmax" in name or "sigmoid" in name or "lambda" in name:
            raise ValueError(f"the model's output layer {op.name!r} ends in the function {name!r}, whose logit "
                             "course_lib.explain cannot recover; build the output layer without it (logits, "
                             "activation=None) or with 'softmax' / 'sigmoid'.")
        return None
    if axis not in (-1, None) and (not isinstance(axis, int) or axis != len(op.output.shape) - 1):
        raise ValueError(f"the model's output {op.name!r} is a softmax over axis {axis}, not the class axis (-1); "
                         "course_lib.explain cannot strip it. Output logits (N, classes) instead.")
    return kind


def _is_softmax(op) -> bool:
    """True for a squash that is an operation of its own (Softmax, Activation, Lambda, keras.ops), not an activation=."""
    return (isinstance(op, (keras.layers.Softmax, keras.layers.Activation, keras.layers.Lambda))
            or (not isinstance(op, keras.layers.Layer) and type(op).__name__ in _SQUASH_OPS))


def _passes_through(op) -> bool:
    """A layer that only moves or copies values (Flatten, Dropout, Activation('linear'), ...)."""
    return isinstance(op, _SHAPE_ONLY) or (isinstance(op, keras.layers.Activation) and
                                           _activation_name(op) == "linear")


def _producer(tensor):
    """(operation, the tensor feeding it or None) for a symbolic tensor of a functional model."""
    op, node_index, _ = tensor._keras_history
    inputs = op._inbound_nodes[node_index].input_tensors if getattr(op, "_inbound_nodes", None) else []
    return op, (inputs[0] if len(inputs) == 1 else None)


def _check_functional(model):
    if not isinstance(model, keras.Sequential) and (
            not hasattr(model, "_run_through_graph") or not getattr(model, "outputs", None)):
        raise ValueError(
            f"model {model.name!r} is a subclassed Model; course_lib.explain needs a functional or "
            "Sequential model (build it with keras.Input and layers, as in the course notebooks)."
        )


def _find_tail(model):
    """The output's tail: ``(ids of the ops from the output back to its squash, "softmax" | "sigmoid" | None)``.

    From the output, walk back over shape-only layers (Flatten, Reshape, Dropout, ...)
    to the first layer that computes; that layer's softmax or sigmoid, if any, is
    skipped by :func:`_run` (a nested model there is searched the same way). A squash
    *before* a pooling layer (softmax, then global average pooling) has no logit to
    recover and raises a ValueError.
    """
    if isinstance(model, keras.Sequential):
        chain = []
        for layer in reversed(model.layers):
            chain.append(layer)
            if not _passes_through(layer):
                break
        before = None
        if len(chain) < len(model.layers):
            before = model.layers[len(model.layers) - len(chain) - 1]
    else:
        chain, tensor = [], model.outputs[0]
        while True:
            op, tensor = _producer(tensor)
            chain.append(op)
            if not _passes_through(op) or tensor is None:
                break
        before = _producer(tensor)[0] if tensor is not None and hasattr(tensor, "_keras_history") else None
    head = chain[-1]
    kind = _tail(head)[1] if _is_model(head) else _squash_kind(head)
    if kind is None and isinstance(head, _POOLS) and before is not None and not _is_model(before):
        hidden = _squash_kind(before)
        if hidden is not None:
            raise ValueError(f"layer {before.name!r} applies a {hidden} before the pooling {head.name!r}: the "
                             "model's output is a pooled probability with no logit to explain. Pool first, then "
                             "output logits (e.g. GlobalAveragePooling2D, then Dense(classes)).")
    return {id(op) for op in chain}, kind


def _tail(model):
    return _cached(model, ("tail",), lambda: _find_tail(model))


@tf.custom_gradient
def _guided_identity(x):
    """Identity forward; backward lets only positive gradients through (guided backprop's rule)."""

    def grad(dy):
        return dy * tf.cast(dy > 0, dy.dtype)

    return tf.identity(x), grad


def _call_layer(op, args, kwargs, strip_softmax):
    """Call one leaf layer in inference mode; in the output's tail, return the logits before a softmax / sigmoid.

    A squash that is its own operation is skipped; a squash inside a layer (Dense, Conv2D,
    ... with ``activation=``) is left out by calling the layer once with a linear
    activation, so the layer computes its logits in its own dtype (mixed precision too).
    """
    if strip_softmax and _squash_kind(op) is not None:
        if _is_softmax(op):
            return args[0]
        saved = op.activation
        op.activation = keras.activations.linear
        try:
            return _call_layer(op, args, kwargs, False)
        finally:
            op.activation = saved
    if getattr(op, "_call_has_training_arg", False):
        kwargs = dict(kwargs, training=False)
    return op(*args, **kwargs)


def _apply(op, args, kwargs, hook, is_top):
    """Run one operation (a leaf layer or a nested model), then let ``hook`` see / replace its output."""
    out = _run(op, args[0], hook, is_top) if _is_model(op) else _call_layer(op, args, kwargs, is_top)
    return hook(op, args, out)


def _run(model, x, hook, is_top=True):
    """Forward pass of ``model`` on ``x`` layer by layer (recursing into nested models).

    ``hook(op, args, output)`` is called after every operation and returns the output to
    use downstream (so it can record a feature map or wrap it for guided gradients).
    With ``is_top`` a softmax or sigmoid producing the model's output is skipped (see
    :func:`_find_tail`): the result is logits, cast to float32 (a mixed_float16 model
    computes them in float16).
    """
    _check_functional(model)
    tail = _tail(model)[0] if is_top else set()
    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            x = _apply(layer, (x,), {}, hook, id(layer) in tail)
        out = x
    else:
        def operation_fn(op):
            return lambda *args, **kwargs: _apply(op, args, kwargs, hook, id(op) in tail)

        out = model._run_through_graph(x, operation_fn=operation_fn)
    return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), out) if is_top else out


def _all_layers(model):
    """Every layer of ``model``, depth first, nested models and their layers included."""
    for layer in model.layers:
        yield layer
        if _is_model(layer):
            yield from _all_layers(layer)


class _Graph:
    """What one eager pass on a single image tells about a model: order, shapes, producers."""

    def __init__(self, model, image):
        self.ops, self.outputs, self.inputs_of, self.producer = [], {}, {}, {}
        self._keep = []  # keep tensors alive so that their id() stays unique

        def hook(op, args, out):
            self.last = out
            self.ops.append(op)
            self.outputs[id(op)] = out
            self.inputs_of[id(op)] = args
            self.producer.setdefault(id(out), op)  # innermost op wins (a nested model returns its last output)
            self._keep.extend([out, *args])
            return out

        try:  # an output activation with no recoverable logit only matters to the class-score methods
            self.squash, self.error = _tail(model)[1], None
        except ValueError as error:
            self.squash, self.error = None, error
        out = _run(model, tf.constant(image[None]), hook, is_top=self.error is None)
        self.producer.setdefault(id(out), self.producer.get(id(self.last)))  # logits cast from float16
        self._keep.append(out)
        # Several outputs, or not (N, classes): fine for layer activations; the methods that
        # explain a class score check it in _graph(scores=True) after _select_output.
        self.logits = out if tf.is_tensor(out) and len(out.shape) == 2 else None
        self.output_shapes = [tuple(t.shape) for t in tf.nest.flatten(out)]
        self.n_classes = None if self.logits is None else int(out.shape[-1])

    def shape(self, op):
        return tuple(self.outputs[id(op)].shape)

    def maps(self):
        """The operations whose output is a 4-D feature map, in execution order."""
        return [op for op in self.ops if len(self.shape(op)) == 4]

    def default_target(self):
        """The last 4-D map that feeds a global pooling layer, else the last 4-D map."""
        pools = [op for op in self.ops if isinstance(op, GLOBAL_POOLS)]
        if pools:
            return self.producer[id(self.inputs_of[id(pools[-1])][0])]
        maps = self.maps()
        if not maps:
            raise ValueError("the model has no 4-D feature map (N, h, w, channels) to explain; "
                             "class activation maps need a convolutional model.")
        return maps[-1]


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


# --- the cache: one entry per model, dropped when the model is garbage collected.
# The compiled functions hold the model only through a weak reference, so the cache
# never keeps a model alive (a strong reference from value to key would).
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _cached(model, key, build):
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        per_model[key] = build()
    return per_model[key]


def _check_model(model):
    """A built keras.Model with one image input, or a ValueError that says what to do."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model (functional or Sequential); got {type(model).__name__}.")
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built; give it a keras.Input or call it on a batch first.")
    _check_functional(model)
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) > 1:
        listing = ", ".join(f"{t.name!r} {tuple(t.shape)}" for t in inputs)
        raise ValueError(f"model {model.name!r} has {len(inputs)} inputs ({listing}); course_lib.explain explains "
                         "models of one image input. Build a one-input model around it that supplies the other "
                         "inputs (e.g. keras.Model(image, model([image, other_from_image]))), then explain that.")


def _output_names(model) -> list:
    """The names of a functional model's outputs, in the order of ``model.outputs``."""
    try:
        names = list(model.output_names)
    except (AttributeError, TypeError):
        names = []
    if len(names) != len(model.outputs):
        names = [t._keras_history[0].name for t in model.outputs]
    return names


def _select_output(model, output=None):
    """The model whose single output is explained: ``model`` itself, or a view of one of its outputs.

    ``output``: None (only for a model with one output), an output name (for a dict of
    outputs, its key) or an index into ``model.outputs``. A model with several outputs
    and ``output=None`` raises a ValueError that lists them. The view
    ``keras.Model(model.inputs, model.outputs[i])`` shares the layers and weights; it is
    built once per model and output.
    """
    _check_model(model)
    outputs = [] if isinstance(model, keras.Sequential) else (getattr(model, "outputs", None) or [])
    names = _output_names(model) if outputs else [model.name]
    listing = ", ".join(f"{i}: {n!r} {tuple(t.shape)}" for i, (n, t) in enumerate(zip(names, outputs)))
    if len(outputs) <= 1:
        if output is not None and output != 0 and output not in names:
            raise ValueError(f"model {model.name!r} has one output ({names[0]!r}); leave output=None.")
        return model
    if output is None:
        raise ValueError(f"model {model.name!r} has {len(outputs)} outputs ({listing}); choose the class scores to "
                         f"explain with output=<name or index>, e.g. output={names[0]!r}.")
    if isinstance(output, str) and output in names:
        index = names.index(output)
    elif isinstance(output, (int, np.integer)) and not isinstance(output, bool) and 0 <= output < len(outputs):
        index = int(output)
    else:
        raise ValueError(f"output must name or index one of the {len(outputs)} outputs of model {model.name!r} "
                         f"({listing}); got {output!r}.")
    return _cached(model, ("output", index),
                   lambda: keras.Model(model.inputs, model.outputs[index], name=f"{model.name}_{names[index]}"))


def _graph(model, images, scores=True) -> _Graph:
    """The model's :class:`_Graph` for this image size; with ``scores``, check it outputs (N, classes)."""
    _check_model(model)
    expected = None
    try:
        expected = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    if expected is not None and (
        len(expected) != 3 or any(e is not None and e != s for e, s in zip(expected, images.shape[1:]))
    ):
        raise ValueError(f"images have shape {images.shape[1:]} per image but the model expects {expected}; "
                         "resize the images or explain a model built for this size.")
    graph = _cached(model, ("graph", images.shape[1:]), lambda: _Graph(model, images[0]))
    if scores and graph.error is not None:
        raise graph.error
    if scores and graph.logits is None:
        if len(graph.output_shapes) > 1:
            _select_output(model)  # raises the ValueError that lists the outputs
        raise ValueError(f"the model must output class scores of shape (N, classes); got {graph.output_shapes[0]}. "
                         "Explain a classifier, or add a head with GlobalAveragePooling2D and Dense.")
    return graph


def _resolve_layer(model, graph, layer):
    """The operation whose output is explained: ``layer=None`` picks :meth:`_Graph.default_target`."""
    if layer is None:
        return graph.default_target()
    candidates = ", ".join(op.name for op in graph.maps())
    if not isinstance(layer, str):
        raise ValueError(f"layer must be a layer name (str) or None; got {type(layer).__name__}. "
                         f"Feature-map layers: {candidates}.")
    matches = [op for op in graph.ops if op.name == layer]
    if not matches:
        raise ValueError(f"no layer named {layer!r} in model {model.name!r} (nested models included); "
                         f"choose one of the feature-map layers: {candidates}.")
    op = matches[-1]
    if len(graph.shape(op)) != 4:
        raise ValueError(f"layer {layer!r} outputs shape {graph.shape(op)}, not a 4-D feature map; "
                         f"choose one of: {candidates}.")
    return op


def _check_classes(class_index, n, n_classes):
    """``class_index`` as an int32 array (n,), with -1 meaning "the top predicted class"."""
    if class_index is None:
        return np.full(n, -1, np.int32)
    if isinstance(class_index, (int, np.integer)) and not isinstance(class_index, bool):
        classes = np.full(n, int(class_index))
    else:
        classes = np.asarray(class_index)
        if classes.ndim != 1 or not np.issubdtype(classes.dtype, np.integer):
            raise ValueError(f"class_index must be None, an int or a sequence of ints; got {class_index!r}.")
        if len(classes) != n:
            raise ValueError(f"class_index has {len(classes)} entries for {n} images; give one class per image.")
    if classes.size and (classes.min() < 0 or classes.max() >= n_classes):
        raise ValueError(f"class_index must lie in [0, {n_classes - 1}] for this {n_classes}-class model; "
                         f"got values in [{classes.min()}, {classes.max()}].")
    return classes.astype(np.int32)


def _spec(shape):
    return [tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None,), tf.int32)]


def _pick(logits, classes):
    """Replace -1 by the top class and return (classes, the scores S_c of shape (N,))."""
    classes = tf.where(classes < 0, tf.argmax(logits, -1, output_type=tf.int32), classes)
    return classes, tf.gather(logits, classes, batch_dims=1)


def _in_batches(fn, images, classes, batch_size):
    """Call a compiled ``fn(images, classes) -> (maps, classes, logits)`` chunk by chunk; concatenate."""
    parts = [fn(tf.constant(images[i : i + batch_size]), tf.constant(classes[i : i + batch_size]))
             for i in range(0, len(images), batch_size)]
    return [np.concatenate([p[j].numpy() for p in parts]) for j in range(3)]


# ================================================================ 2. class activation maps


def _weights_grad_cam(A, g):
    """Selvaraju et al. (2017), eq. 1: alpha_k = (1/Z) sum_ij dS/dA^k_ij (global-average-pooled gradients)."""
    return tf.reduce_mean(g, axis=(1, 2))


def _weights_grad_cam_pp(A, g):
    """Chattopadhay et al. (2018), eq. 19 with the weights of their Sec. 3.

    For Y = exp(S) and a network piecewise linear in A, the derivatives of Y are
    exp(S) g, exp(S) g^2 and exp(S) g^3 (g = dS/dA), and exp(S) cancels in
    alpha_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab g_ij^3). We never form exp(S), so any
    logit gives finite weights. The weights w_k = sum_ij alpha_ij relu(dY/dA_ij) are
    computed with relu(g) instead of relu(exp(S) g): a deviation by the positive factor
    exp(S), which rescales the map without changing its shape. alpha = 0 where g = 0.
    """
    g2, g3 = g * g, g * g * g
    denom = 2.0 * g2 + tf.reduce_sum(A, axis=(1, 2), keepdims=True) * g3
    alpha = tf.where(denom != 0.0, g2 / tf.where(denom != 0.0, denom, 1.0), 0.0)
    return tf.reduce_sum(alpha * tf.nn.relu(g), axis=(1, 2))


WEIGHTS = {"grad_cam": _weights_grad_cam, "grad_cam_plus_plus": _weights_grad_cam_pp}


def _recorder(target):
    record = {}

    def hook(op, args, out):
        if op is target:
            record["A"] = out
        return out

    return record, hook


def _build_gradient_map(model, target, kind, shape, upsample):
    """Compile ``fn(images, classes) -> (maps, classes, logits)`` for Grad-CAM or Grad-CAM++."""
    model_ref, target_ref, weights = weakref.ref(model), weakref.ref(target), WEIGHTS[kind]

    @tf.function(input_signature=_spec(shape))
    def fn(images, classes):
        record, hook = _recorder(target_ref())
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = _run(model_ref(), images, hook)
            classes, score = _pick(logits, classes)
            A = record["A"]
        g = tf.cast(tape.gradient(score, A), tf.float32)  # per image: images do not interact at inference
        A = tf.cast(A, tf.float32)
        maps = tf.nn.relu(tf.einsum("nhwk,nk->nhw", A, weights(A, g)))
        if upsample:
            maps = tf.image.resize(maps[..., None], shape[:2], method="bilinear")[..., 0]
        return maps, classes, logits

    return fn


def _gradient_map(kind, model, images, class_index, layer, upsample, batch_size):
    images = check_images(images)
    graph = _graph(model, images)
    target = _resolve_layer(model, graph, layer)
    classes = _check_classes(class_index, len(images), graph.n_classes)
    batch_size = check_positive_int(batch_size, "batch_size")
    key = (kind, id(target), images.shape[1:], bool(upsample))
    fn = _cached(model, key, lambda: _build_gradient_map(model, target, kind, images.shape[1:], bool(upsample)))
    return _in_batches(fn, images, classes, batch_size)


def grad_cam(model, images, class_index=None, layer=None, upsample=True, batch_size=64, output=None):
    """Grad-CAM maps L_c = ReLU(sum_k alpha_k^c A^k), float32 (N, H, W), or (N, h, w) with upsample=False.

    Selvaraju et al., "Grad-CAM", ICCV 2017, eq. 1 (alpha = global-average-pooled
    gradients of the class logit S_c w.r.t. the feature maps A of ``layer``) and eq. 2
    (ReLU of the weighted sum). Raw maps, not normalised (see :func:`normalize`).

    ``class_index``: None (each image's top class), an int (that class for every image)
    or one class per image. ``layer``: None (the last 4-D map feeding the global pooling,
    inside a nested backbone too) or a layer name, also of a nested sub-model. Upsampling
    is bilinear. Works for functional, Sequential and nested models; the model is not
    changed. Batched: each image's map equals its map computed alone. Used in notebook 07.

    The explained score S_c is the logit: a final softmax or sigmoid is left out in every
    spelling (a string, ``keras.activations``, ``keras.ops``, ``tf.nn``, an ``Activation``
    or ``Softmax`` layer, ``activation=`` of a Dense or Conv layer, the end of a nested
    head); an output activation whose logit cannot be recovered raises a ValueError.
    ``output``: for a model with several outputs (e.g. ``localization.multitask_model``'s
    ``"class"`` and ``"box"``), the one to explain, by name or index; None raises a
    ValueError listing them. Models with several inputs raise a ValueError. Under
    ``mixed_float16`` the maps are float32 too.
    """
    model = _select_output(model, output)
    return _gradient_map("grad_cam", model, images, class_index, layer, upsample, batch_size)[0]


def grad_cam_plus_plus(model, images, class_index=None, layer=None, upsample=True, batch_size=64, output=None):
    """Grad-CAM++ maps ReLU(sum_k w_k^c A^k), float32 (N, H, W), or (N, h, w) with upsample=False.

    Chattopadhay et al., "Grad-CAM++", WACV 2018: pixel-wise weights alpha from eq. 19
    (the closed form for an exponential output Y = exp(S_c)), evaluated without exp(S),
    so logits above 100 give finite maps; see :func:`_weights_grad_cam_pp` for the one
    deviation (a positive factor exp(S_c) left out). Same arguments as :func:`grad_cam`.
    Used in notebook 07 (two instances of a digit).
    """
    model = _select_output(model, output)
    return _gradient_map("grad_cam_plus_plus", model, images, class_index, layer, upsample, batch_size)[0]


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


def _build_cam(model, target, dense, shape, upsample):
    model_ref, target_ref, dense_ref = weakref.ref(model), weakref.ref(target), weakref.ref(dense)

    @tf.function(input_signature=_spec(shape))
    def fn(images, classes):
        record, hook = _recorder(target_ref())
        logits = _run(model_ref(), images, hook)
        classes, _ = _pick(logits, classes)
        w = tf.gather(tf.transpose(tf.cast(dense_ref().kernel, tf.float32)), classes)  # (N, K): w_k^c
        maps = tf.einsum("nhwk,nk->nhw", tf.cast(record["A"], tf.float32), w)
        if upsample:
            maps = tf.image.resize(maps[..., None], shape[:2], method="bilinear")[..., 0]
        return maps, classes, logits

    return fn


def cam(model, images, class_index=None, layer=None, upsample=True, batch_size=64, output=None):
    """Class activation maps M_c(x, y) = sum_k w_k^c f_k(x, y), float32 (N, H, W) or (N, h, w).

    Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016,
    Sec. 2: f_k are the maps that feed the global average pooling and w_k^c the
    weights of the Dense layer after it (bias left out). The raw map, which may be
    negative: S_c = (1/Z) sum_xy M_c(x, y) + b_c. Only for GAP -> Dense heads; any other
    head raises a ValueError pointing to :func:`grad_cam`. Same arguments as
    :func:`grad_cam` (``output`` too). Used in notebook 07.
    """
    model = _select_output(model, output)
    images = check_images(images)
    graph = _graph(model, images)
    target = _resolve_layer(model, graph, layer)
    dense = _cam_head(model, graph, target)
    classes = _check_classes(class_index, len(images), graph.n_classes)
    batch_size = check_positive_int(batch_size, "batch_size")
    key = ("cam", id(target), images.shape[1:], bool(upsample))
    fn = _cached(model, key, lambda: _build_cam(model, target, dense, images.shape[1:], bool(upsample)))
    return _in_batches(fn, images, classes, batch_size)[0]


# ============================================================== 3. gradients on the input


def _build_input_gradient(model, guided, shape):
    model_ref = weakref.ref(model)

    def hook(op, args, out):
        return _guided_identity(out) if guided and _is_relu(op) else out

    @tf.function(input_signature=_spec(shape))
    def fn(images, classes):
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = _run(model_ref(), images, hook)
            classes, score = _pick(logits, classes)
        return tape.gradient(score, images), classes, logits

    return fn


def _input_gradient(model, images, class_index, guided, batch_size):
    images = check_images(images)
    graph = _graph(model, images)
    classes = _check_classes(class_index, len(images), graph.n_classes)
    batch_size = check_positive_int(batch_size, "batch_size")
    key = ("guided" if guided else "saliency", images.shape[1:])
    fn = _cached(model, key, lambda: _build_input_gradient(model, guided, images.shape[1:]))
    return _in_batches(fn, images, classes, batch_size)


def saliency(model, images, class_index=None, batch_size=64, output=None):
    """The plain gradient dS_c/dx of the class logit w.r.t. the input, float32 (N, H, W, C).

    Simonyan, Vedaldi and Zisserman, "Deep Inside Convolutional Networks", ICLR 2014
    workshop, Sec. 3 (they show its absolute value, max over channels). Used in notebook 07
    as the baseline guided backprop is compared with. ``output`` as in :func:`grad_cam`.
    """
    model = _select_output(model, output)
    return _input_gradient(model, images, class_index, False, batch_size)[0]


def guided_backprop(model, images, class_index=None, batch_size=64, output=None):
    """Guided backpropagation of the class logit to the input, float32 (N, H, W, C).

    Springenberg et al., "Striving for Simplicity", ICLR 2015 workshop, Fig. 1: at every
    ReLU the backward pass keeps a gradient only where the forward input was positive
    *and* the gradient is positive. Applied after every ReLU form (activation='relu' or
    'relu6' in any layer, Activation('relu'), ReLU(), ReLU(max_value=6)), inside nested
    models too, without changing the model: the interpreter wraps each ReLU's output in an
    identity whose gradient is clipped at zero. ``output`` as in :func:`grad_cam`. Used in notebook 07.
    """
    model = _select_output(model, output)
    return _input_gradient(model, images, class_index, True, batch_size)[0]


def guided_grad_cam(model, images, class_index=None, layer=None, batch_size=64, output=None):
    """Guided Grad-CAM: guided backprop times the upsampled Grad-CAM map, float32 (N, H, W, C).

    Selvaraju et al. (2017), Sec. 3.1 "Guided Grad-CAM": the pointwise product gives a
    high-resolution and class-discriminative map. Both parts explain the same class
    (the top class of each image when ``class_index`` is None). ``output`` as in
    :func:`grad_cam`. Used in notebook 07.
    """
    model = _select_output(model, output)
    images = check_images(images)
    gb, classes, _ = _input_gradient(model, images, class_index, True, batch_size)
    maps = grad_cam(model, images, classes, layer=layer, upsample=True, batch_size=batch_size)
    return (gb * maps[..., None]).astype(np.float32)


# ========================================================================= 4. perturbation


def _build_logits(model, shape):
    model_ref = weakref.ref(model)

    @tf.function(input_signature=_spec(shape)[:1])
    def fn(images):
        return _run(model_ref(), images, lambda op, args, out: out)

    return fn


def _starts(size, patch, stride):
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:  # make the last patch touch the border
        starts.append(size - patch)
    return starts


def occlusion(model, images, class_index=None, patch=8, stride=4, fill=0.5, batch_size=256, output=None):
    """Occlusion sensitivity: the drop of the class logit when a grey square hides each place.

    Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
    Sec. 4.2: slide a ``patch`` x ``patch`` square of value ``fill`` with step ``stride``;
    each pixel gets the mean of S_c(x) - S_c(x occluded) over the squares covering it
    (positive: evidence for the class); the last square of a row or column touches the
    border, and ``stride <= patch`` is required, so every pixel is covered (else a
    ValueError). Returns float32 (N, H, W). All occluded copies of
    an image go through the model in batches of ``batch_size``. ``output`` as in
    :func:`grad_cam`. Used in notebook 07.
    """
    model = _select_output(model, output)
    images = check_images(images)
    graph = _graph(model, images)
    classes = _check_classes(class_index, len(images), graph.n_classes)
    n, h, w = images.shape[:3]
    patch, stride = check_positive_int(patch, "patch"), check_positive_int(stride, "stride")
    batch_size = check_positive_int(batch_size, "batch_size")
    if patch > min(h, w):
        raise ValueError(f"patch {patch} is larger than the images ({h}x{w}); use a smaller patch.")
    if stride > patch:
        raise ValueError(f"stride {stride} is larger than patch {patch}: the pixels between two squares would "
                         "never be occluded and have no value (0/0). Use stride <= patch.")
    if not 0.0 <= float(fill) <= 1.0:
        raise ValueError(f"fill must be a grey level in [0, 1]; got {fill}.")
    fn = _cached(model, ("logits", images.shape[1:]), lambda: _build_logits(model, images.shape[1:]))
    spots = [(t, l) for t in _starts(h, patch, stride) for l in _starts(w, patch, stride)]
    maps = np.zeros((n, h, w), np.float32)
    for i in range(n):
        copies = np.repeat(images[i : i + 1], len(spots) + 1, axis=0)
        for j, (t, l) in enumerate(spots, start=1):
            copies[j, t : t + patch, l : l + patch] = fill
        logits = np.concatenate([fn(tf.constant(copies[k : k + batch_size])).numpy()
                                 for k in range(0, len(copies), batch_size)])
        c = int(np.argmax(logits[0])) if classes[i] < 0 else int(classes[i])
        drops = logits[0, c] - logits[1:, c]
        total, count = np.zeros((h, w), np.float64), np.zeros((h, w), np.float64)
        for (t, l), d in zip(spots, drops):
            total[t : t + patch, l : l + patch] += d
            count[t : t + patch, l : l + patch] += 1
        maps[i] = total / count
    return maps


# ============================================================================== 5. display


def normalize(maps):
    """Scale each map to [0, 1] by its own min and max (a constant map becomes zeros).

    ``maps`` (H, W) or (N, H, W, ...); returns float32 of the same shape. Used in notebooks 07-09.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim < 2:
        raise ValueError(f"maps must be (H, W) or (N, H, W); got shape {maps.shape}.")
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or Inf; cannot normalise them.")
    single = maps.ndim == 2
    m = maps[None] if single else maps
    axes = tuple(range(1, m.ndim))
    lo, hi = m.min(axis=axes, keepdims=True), m.max(axis=axes, keepdims=True)
    out = np.where(hi > lo, (m - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0).astype(np.float32)
    return out[0] if single else out


def overlay(image, heatmap, alpha=0.5, cmap="jet"):
    """Blend a heat-map (normalised, coloured by ``cmap``) over an image: float32 (H, W, 3) in [0, 1].

    ``image`` (H, W, C) in [0, 1] (grey is repeated to RGB); ``heatmap`` (h, w), resized
    bilinearly to the image when its size differs. Used in notebooks 07-09 for display.
    """
    import matplotlib

    image = check_images(np.asarray(image)[None], "image")[0]
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be one 2-D map (h, w); got shape {heatmap.shape}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}.")
    if heatmap.shape != image.shape[:2]:
        heatmap = tf.image.resize(heatmap[..., None], image.shape[:2], method="bilinear").numpy()[..., 0]
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    colour = matplotlib.colormaps[cmap](normalize(heatmap))[..., :3]
    return ((1.0 - alpha) * rgb + alpha * colour).astype(np.float32)


# ============================================================ 6. weakly supervised localization


def cam_to_box(maps, threshold=0.2):
    """Box around a heat-map's largest blob: float32 (4,) for one map (H, W), (N, 4) for (N, H, W).

    Zhou et al. (2016), Sec. 3: keep the pixels above ``threshold`` x the map's max,
    take the largest connected component (8-connected, ``scipy.ndimage.label``) and
    return its bounding box (x_min, y_min, x_max, y_max) normalised by the map's width
    and height (a pixel column c spans [c/W, (c+1)/W]). A map with no positive value
    gives the whole image. Used in notebook 07.
    """
    from scipy import ndimage

    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim not in (2, 3):
        raise ValueError(f"maps must be (H, W) or (N, H, W); got shape {maps.shape}.")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold is a fraction of the map's max in [0, 1); got {threshold}.")
    single = maps.ndim == 2
    boxes = []
    for m in maps[None] if single else maps:
        h, w = m.shape
        top = m.max()
        if not np.isfinite(top) or top <= 0:
            boxes.append([0.0, 0.0, 1.0, 1.0])
            continue
        labels, count = ndimage.label(m > threshold * top, structure=np.ones((3, 3)))
        sizes = ndimage.sum_labels(np.ones_like(m), labels, index=np.arange(1, count + 1))
        rows, cols = np.nonzero(labels == 1 + int(np.argmax(sizes)))
        boxes.append([cols.min() / w, rows.min() / h, (cols.max() + 1) / w, (rows.max() + 1) / h])
    boxes = np.asarray(boxes, np.float32)
    return boxes[0] if single else boxes


def box_iou(a, b):
    """Intersection over union of boxes (x_min, y_min, x_max, y_max), broadcast over leading axes."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ValueError(f"boxes must end in 4 coordinates (x_min, y_min, x_max, y_max); got {a.shape}, {b.shape}.")
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_mass_share(maps, boxes):
    """Share of each map's positive mass inside its box, float32 (N,) in [0, 1].

    ``maps`` (N, H, W); ``boxes`` (N, 4) normalised. Pixels count when their centre is in
    the box. Used in notebook 07 to ask whether a model looks at the digit or at a cue.
    """
    maps = np.clip(np.asarray(maps, np.float64), 0, None)
    boxes = np.asarray(boxes, np.float64)
    if maps.ndim != 3 or boxes.shape != (len(maps), 4):
        raise ValueError(f"need maps (N, H, W) and boxes (N, 4); got {maps.shape} and {boxes.shape}.")
    h, w = maps.shape[1:]
    ys, xs = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
    inside = ((xs[None, None, :] >= boxes[:, 0, None, None]) & (xs[None, None, :] <= boxes[:, 2, None, None])
              & (ys[None, :, None] >= boxes[:, 1, None, None]) & (ys[None, :, None] <= boxes[:, 3, None, None]))
    total = maps.sum(axis=(1, 2))
    return np.where(total > 0, (maps * inside).sum(axis=(1, 2)) / np.where(total > 0, total, 1), 0).astype(np.float32)


METHODS = {"cam": cam, "grad_cam": grad_cam, "grad_cam_plus_plus": grad_cam_plus_plus}


def localization_accuracy(model, images, labels, boxes, method="grad_cam", threshold=0.2, iou_threshold=0.5,
                          layer=None, batch_size=64, output=None) -> dict:
    """Weakly supervised localization scores, the CAM paper's protocol (Zhou et al. 2016, Sec. 3).

    For each image (``labels`` (N,), (N, 1) or one-hot (N, K)): the map of the true class by ``method`` ("cam", "grad_cam",
    "grad_cam_plus_plus"), :func:`cam_to_box` at ``threshold``, IoU with the ground-truth
    box (the best over the boxes when ``boxes`` is (N, K, 4)). Returns a dict with
    ``classification_accuracy``; ``localization_accuracy`` (top-1: class right *and*
    IoU >= ``iou_threshold``, the complement of the paper's top-1 localization error);
    ``gt_known_localization_accuracy`` (IoU >= ``iou_threshold`` whatever the prediction);
    ``mean_iou``; and ``iou`` (N,). ``output`` as in :func:`grad_cam`. Used in notebook 07.
    """
    model = _select_output(model, output)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    from ..data import class_ids

    images = check_images(images)
    labels = class_ids(labels)  # (N,), (N, 1) or one-hot (N, K)
    boxes = np.asarray(boxes, np.float32)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have one class per image (N = {len(images)}); got {len(labels)}.")
    if boxes.shape[0] != len(images) or boxes.shape[-1] != 4 or boxes.ndim not in (2, 3):
        raise ValueError(f"boxes must be (N, 4) or (N, K, 4) with N = {len(images)}; got shape {boxes.shape}.")
    graph = _graph(model, images)
    labels = _check_classes(labels, len(images), graph.n_classes)
    if method == "cam":
        _cam_head(model, graph, _resolve_layer(model, graph, layer))
        maps = cam(model, images, labels, layer=layer, batch_size=batch_size)
        logits = _cached(model, ("logits", images.shape[1:]), lambda: _build_logits(model, images.shape[1:]))
        logits = np.concatenate([logits(tf.constant(images[i : i + batch_size])).numpy()
                                 for i in range(0, len(images), batch_size)])
    else:
        maps, _, logits = _gradient_map(method, model, images, labels, layer, True, batch_size)
    pred_boxes = cam_to_box(maps, threshold)
    gt = boxes if boxes.ndim == 3 else boxes[:, None]
    iou = box_iou(pred_boxes[:, None], gt).max(axis=1)
    correct = np.argmax(logits, -1) == labels
    hit = iou >= iou_threshold
    return {
        "classification_accuracy": float(correct.mean()),
        "localization_accuracy": float((correct & hit).mean()),
        "gt_known_localization_accuracy": float(hit.mean()),
        "mean_iou": float(iou.mean()),
        "iou": iou.astype(np.float32),
    }


def box_accuracy_by_threshold(maps, boxes, thresholds, iou_threshold=0.5):
    """Share of maps whose :func:`cam_to_box` box reaches ``iou_threshold``, for each threshold: (T,).

    The CAM paper fixed the threshold at 20% of the map's max for GoogLeNet on ImageNet.
    Choe et al. ("Evaluating Weakly Supervised Object Localization Methods Right",
    CVPR 2020, Sec. 4) show that the best threshold differs between models and methods,
    and that comparisons are only fair when each method's threshold is chosen on a
    held-out split with boxes. This is their box accuracy as a function of the
    threshold; its maximum is their MaxBoxAcc. Choose the threshold on the validation
    set, then score the test set at it. ``maps`` (N, H, W); ``boxes`` (N, 4) or
    (N, K, 4) normalised (best of the K). Used in notebook 07.
    """
    maps = np.asarray(maps, np.float32)
    boxes = np.asarray(boxes, np.float32)
    thresholds = np.atleast_1d(np.asarray(thresholds, np.float64))
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W); got shape {maps.shape}.")
    if boxes.shape[0] != len(maps) or boxes.shape[-1] != 4 or boxes.ndim not in (2, 3):
        raise ValueError(f"boxes must be (N, 4) or (N, K, 4) with N = {len(maps)}; got shape {boxes.shape}.")
    if thresholds.ndim != 1 or not ((thresholds >= 0) & (thresholds < 1)).all():
        raise ValueError(f"thresholds are fractions of each map's max in [0, 1); got {thresholds.tolist()}.")
    gt = boxes if boxes.ndim == 3 else boxes[:, None]
    return np.array([float((box_iou(cam_to_box(maps, t)[:, None], gt).max(axis=1) >= iou_threshold).mean())
                     for t in thresholds], np.float32)


# ================================================================== 7. visualizing CNNs
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


# ================================================================== 8. beyond Grad-CAM
#
# Notebook 09: a smoother gradient map (Smooth Grad-CAM++), a black-box one (RISE), a
# sharper one (Augmented Grad-CAM), and the numbers that say whether a map is faithful
# to the model (Average Drop, Increase in Confidence, deletion / insertion) and whether
# it depends on the model at all (the model-randomization sanity check).


def _build_smooth_gcpp(model, target, shape, n_samples):
    """Compile ``fn(images, noisy, classes) -> (maps, classes, logits)``; ``noisy`` is (S*b, ...), sample-major."""
    model_ref, target_ref = weakref.ref(model), weakref.ref(target)

    @tf.function(input_signature=[*_spec(shape)[:1], tf.TensorSpec((None, *shape), tf.float32),
                                  tf.TensorSpec((None,), tf.int32)])
    def fn(images, noisy, classes):
        record, hook = _recorder(target_ref())
        logits = _run(model_ref(), images, hook)
        classes, _ = _pick(logits, classes)
        A = tf.cast(record["A"], tf.float32)                      # clean feature maps (b, h, w, K)
        record_n, hook_n = _recorder(target_ref())
        with tf.GradientTape() as tape:
            noisy_logits = _run(model_ref(), noisy, hook_n)
            score = tf.gather(noisy_logits, tf.tile(classes, [n_samples]), batch_dims=1)
            A_n = record_n["A"]
        g = tf.cast(tape.gradient(score, A_n), tf.float32)        # (S*b, h, w, K), one copy per row
        g = tf.reshape(g, (n_samples, -1, *g.shape[1:]))
        d1, d2, d3 = (tf.reduce_mean(p, axis=0) for p in (g, g * g, g * g * g))   # the same S copies for all three
        denom = 2.0 * d2 + tf.reduce_sum(A, axis=(1, 2), keepdims=True) * d3
        alpha = tf.where(denom != 0.0, d2 / tf.where(denom != 0.0, denom, 1.0), 0.0)
        weights = tf.reduce_sum(alpha * tf.nn.relu(d1), axis=(1, 2))
        maps = tf.nn.relu(tf.einsum("nhwk,nk->nhw", A, weights))
        maps = tf.image.resize(maps[..., None], shape[:2], method="bilinear")[..., 0]
        return maps, classes, logits

    return fn


def smooth_grad_cam_plus_plus(model, images, class_index=None, layer=None, n_samples=16, noise=0.15,
                              seed=0, batch_size=16, output=None):
    """Smooth Grad-CAM++ maps, float32 (N, H, W), upsampled bilinearly to the images.

    Omeiza et al., "Smooth Grad-CAM++", 2019, eq. 4-6: Grad-CAM++'s weights (eq. 19 of
    Chattopadhay et al. 2018) with the first, second and third derivatives replaced by
    their means over ``n_samples`` noisy copies x + eps, eps ~ N(0, noise^2) per pixel
    (SmoothGrad's noise, Smilkov et al. 2017; ``noise`` is in image units, images in
    [0, 1]). With g_s = dS_c/dA at copy s, D1 = mean_s g_s, D2 = mean_s g_s^2,
    D3 = mean_s g_s^3 (all three over the *same* copies; one public implementation pairs
    the averaged powers with the last copy's gradient, which we do not do):
    alpha = D2 / (2 D2 + sum_ab A_ab D3), w_k = sum_ij alpha_ij relu(D1_ij), map =
    relu(sum_k w_k A^k), where A are the feature maps of the clean image and the class
    is the clean image's (top class when ``class_index`` is None). As in
    :func:`grad_cam_plus_plus` the factor exp(S) is left out. With ``noise=0`` it equals
    :func:`grad_cam_plus_plus`. The noise is ``noise * rng.standard_normal((N,
    n_samples, H, W, C))`` with ``rng = np.random.default_rng(seed)``. ``output`` as in
    :func:`grad_cam`. Used in notebook 09.
    """
    model = _select_output(model, output)
    images = check_images(images)
    graph = _graph(model, images)
    target = _resolve_layer(model, graph, layer)
    classes = _check_classes(class_index, len(images), graph.n_classes)
    n_samples = check_positive_int(n_samples, "n_samples")
    batch_size = check_positive_int(batch_size, "batch_size")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise is the standard deviation of the Gaussian noise in image units, >= 0; got {noise}.")
    shape = images.shape[1:]
    eps = float(noise) * np.random.default_rng(seed).standard_normal((len(images), n_samples, *shape), np.float32)
    fn = _cached(model, ("smooth_gcpp", id(target), shape, n_samples),
                 lambda: _build_smooth_gcpp(model, target, shape, n_samples))
    maps = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size]
        noisy = (x[:, None] + eps[i : i + batch_size]).swapaxes(0, 1).reshape(-1, *shape)  # sample-major
        maps.append(fn(tf.constant(x), tf.constant(noisy), tf.constant(classes[i : i + batch_size]))[0].numpy())
    return np.concatenate(maps).astype(np.float32)


def rise_masks(n_masks, image_shape, grid=8, p=0.5, seed=0):
    """RISE's random masks, float32 (n_masks, H, W) in [0, 1] (Petsiuk et al. 2018, Sec. 3.2).

    Each mask: a ``grid`` x ``grid`` binary grid, each cell 1 with probability ``p``,
    upsampled bilinearly to (grid + 1) * ceil(H / grid) pixels a side, then cropped at a
    random offset in [0, ceil(H / grid)) x [0, ceil(W / grid)), so the soft cells do not
    all sit on the same lattice. Used by :func:`rise` and in notebook 09.
    """
    n_masks, grid = check_positive_int(n_masks, "n_masks"), check_positive_int(grid, "grid")
    h, w = int(image_shape[0]), int(image_shape[1])
    if grid > min(h, w):
        raise ValueError(f"grid {grid} is finer than the {h}x{w} images; use grid <= {min(h, w)}.")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p is the probability that a grid cell is kept, in (0, 1]; got {p}.")
    rng = np.random.default_rng(seed)
    ch, cw = -(-h // grid), -(-w // grid)
    cells = (rng.random((n_masks, grid, grid, 1)) < p).astype(np.float32)
    big = tf.image.resize(cells, ((grid + 1) * ch, (grid + 1) * cw), method="bilinear").numpy()[..., 0]
    dy, dx = rng.integers(0, ch, n_masks), rng.integers(0, cw, n_masks)
    return np.stack([big[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n_masks)]).astype(np.float32)


def _probabilities(model, images, batch_size=256):
    """Class probabilities, float64 (N, classes), through the cached logits function.

    The softmax of the logits; for a model whose output was a sigmoid, or that has a
    single logit (a binary classifier), the sigmoid of each logit (a softmax over one
    class would always be 1).
    """
    fn = _cached(model, ("logits", images.shape[1:]), lambda: _build_logits(model, images.shape[1:]))
    logits = np.concatenate([fn(tf.constant(images[i : i + batch_size])).numpy()
                             for i in range(0, len(images), batch_size)]).astype(np.float64)
    if _tail(model)[1] == "sigmoid" or logits.shape[1] == 1:
        from scipy.special import expit

        return expit(logits)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def rise(model, images, class_index=None, n_masks=2000, grid=8, p=0.5, seed=0, memory_mb=64, progress=True,
         output=None):
    """RISE saliency maps, float32 (N, H, W): the mean of the masks weighted by the class probability.

    Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models", BMVC 2018, eq. 6: S(x) = 1 / (E[M] n_masks) sum_i f_c(x * M_i) M_i, with f_c
    the softmax probability of class c, masks from :func:`rise_masks` (the same masks for
    every image) and E[M] = ``p``. Black box: only forward passes. The masked copies go
    through the model in chunks of at most ``memory_mb`` MiB of input, with a tqdm
    progress bar over the chunks (``progress=False`` hides it). For a sigmoid (or
    one-logit) output f_c is the sigmoid probability. ``output`` as in :func:`grad_cam`.
    Used in notebook 09.
    """
    from tqdm.auto import tqdm

    model = _select_output(model, output)
    images = check_images(images)
    graph = _graph(model, images)
    classes = _check_classes(class_index, len(images), graph.n_classes)
    if not 0 < memory_mb < np.inf:
        raise ValueError(f"memory_mb is the memory budget of one chunk of masked images in MiB, finite and > 0; "
                         f"got {memory_mb}.")
    masks = rise_masks(n_masks, images.shape[1:3], grid, p, seed)
    top = np.argmax(_probabilities(model, images), axis=1)
    classes = np.where(classes < 0, top, classes)
    chunk = max(1, int(memory_mb * 2**20 // (4 * np.prod(images.shape[1:]))))
    spans = [(i, k) for i in range(len(images)) for k in range(0, n_masks, chunk)]
    maps = np.zeros(images.shape[:3], np.float64)
    for i, k in tqdm(spans, desc="RISE", disable=not progress, leave=False):
        m = masks[k : k + chunk]
        probs = _probabilities(model, (images[i] * m[..., None]).astype(np.float32), batch_size=chunk)
        maps[i] += np.tensordot(probs[:, classes[i]], m, axes=1)
    return (maps / (n_masks * p)).astype(np.float32)


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
    """Sparse (H*W, H*W) matrix of a rotation by ``angle`` degrees about the centre, then a shift (dy, dx).

    Output pixel p takes the bilinear interpolation of the input at R^-1 (p - c - t) + c;
    outside the image counts as 0. The same operator A_l warps the image (channel by
    channel) and the high-resolution heat-map in :func:`augmented_grad_cam`. A non-finite
    angle or shift raises a ValueError.
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

    Morbidelli et al., "Augmented Grad-CAM: Heat-Maps Super Resolution Through
    Augmentation", ICASSP 2020, eq. 1: with g_l the low-resolution Grad-CAM of
    A_l(x) (``upsample=False``), D the area downsampling to the Grad-CAM's size and
    A_l the warp (:func:`warp_matrix`), solve

        min_h 1/2 sum_l ||D A_l h - g_l||^2 + lam TV_l1(h) + mu/2 ||h||^2

    by subgradient descent with steps 1 / (L sqrt(t + 1)), L the Lipschitz constant of
    the smooth part; the best iterate is returned (the subgradient method is not a
    descent method). The g_l are divided by their common max, so ``lam`` and ``mu`` do
    not depend on the model's scale. ``transforms``: a list of (angle in degrees, dy, dx),
    or None for the identity plus ``n_transforms - 1`` random ones (angle uniform in
    +-``max_angle``, shifts in +-``max_shift`` pixels). Every warp explains the class of
    the unwarped image. Returns ``(h (H, W) float32, objective per step (steps,))``.
    ``output`` as in :func:`grad_cam`. Used in notebook 09.
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


# --- faithfulness: do the maps point at what the model uses?


def _check_maps(maps, images):
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3 or len(maps) != len(images):
        raise ValueError(f"maps must be (N, h, w) with one map per image (N = {len(images)}); got shape {maps.shape}.")
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or Inf; compute them again or drop those images.")
    if maps.shape[1:] != images.shape[1:3]:
        maps = tf.image.resize(maps[..., None], images.shape[1:3], method="bilinear").numpy()[..., 0]
    return maps


def explanation_confidence(model, images, maps, class_index=None, batch_size=256, output=None):
    """Class probabilities Y on the images and O on the explanation maps E = normalize(map) * image.

    Chattopadhay et al. (2018), Sec. 5.1.1: the explanation map is the point-wise product
    of the upsampled heat-map, scaled to [0, 1], with the image. The class is the top
    class on the image unless ``class_index`` is given. Returns ``(Y, O, classes)``,
    float64 (N,), float64 (N,), int (N,). Feeds :func:`average_drop` and
    :func:`increase_in_confidence`. Probabilities are the softmax of the logits, or their
    sigmoid for a sigmoid (or one-logit) output. ``output`` as in :func:`grad_cam`. Used in notebook 09.
    """
    model = _select_output(model, output)
    images = check_images(images)
    graph = _graph(model, images)
    classes = _check_classes(class_index, len(images), graph.n_classes)
    maps = normalize(_check_maps(maps, images))
    batch_size = check_positive_int(batch_size, "batch_size")
    py = _probabilities(model, images, batch_size)
    classes = np.where(classes < 0, np.argmax(py, axis=1), classes)
    po = _probabilities(model, (images * maps[..., None]).astype(np.float32), batch_size)
    rows = np.arange(len(images))
    return py[rows, classes], po[rows, classes], classes


def _check_scores(Y, O):
    Y, O = np.asarray(Y, np.float64), np.asarray(O, np.float64)
    if Y.ndim != 1 or Y.shape != O.shape or len(Y) == 0:
        raise ValueError(f"Y and O must be 1-D arrays of the same non-zero length; got shapes {Y.shape} and {O.shape}.")
    if not (np.all(Y > 0) and np.all(Y <= 1) and np.all(O >= 0) and np.all(O <= 1)):
        raise ValueError("Y and O are class probabilities: Y in (0, 1], O in [0, 1]; pass softmax outputs, not logits.")
    return Y, O


def average_drop(Y, O):
    """Average Drop in percent: 100 * mean_i max(0, Y_i - O_i) / Y_i (Chattopadhay et al. 2018, Sec. 5.1.1).

    Y: the class probability on the image, O: on the explanation map (lower is better).
    Used in notebook 09.
    """
    Y, O = _check_scores(Y, O)
    return float(100.0 * np.mean(np.maximum(0.0, Y - O) / Y))


def increase_in_confidence(Y, O):
    """Increase in Confidence in percent: 100 * mean_i 1[O_i > Y_i] (Chattopadhay et al. 2018, Sec. 5.1.1).

    The share of images whose explanation map alone is *more* convincing than the image
    (higher is better). Used in notebook 09.
    """
    Y, O = _check_scores(Y, O)
    return float(100.0 * np.mean(O > Y))


def curve_auc(curve):
    """Area under a curve sampled at equally spaced fractions 0..1 (trapezoid rule), per row."""
    curve = np.asarray(curve, np.float64)
    if curve.shape[-1] < 2:
        raise ValueError(f"a curve needs at least 2 points; got shape {curve.shape}.")
    return (curve.sum(-1) - 0.5 * (curve[..., 0] + curve[..., -1])) / (curve.shape[-1] - 1)


def deletion_insertion(model, images, maps, class_index=None, n_steps=24, blur_sigma=2.0, batch_size=256,
                       output=None):
    """Deletion and insertion curves and their areas (Petsiuk et al. 2018, Sec. 4.1, "causal metrics").

    Pixels are ranked by the map (highest first). Deletion: starting from the image,
    set the next H*W / ``n_steps`` pixels to 0 at each step (the zero canvas) and
    record the class probability; a faithful map makes it fall fast (low AUC is better).
    Insertion: starting from the image blurred with a Gaussian of ``blur_sigma`` pixels
    (the paper's blurred canvas), put the original pixels back in the same order; the
    probability should rise fast (high AUC is better); ``blur_sigma`` in (0, max(H, W)],
    ``n_steps`` in [1, H*W], else a ValueError. Curves have ``n_steps + 1``
    points at fractions 0, 1/n_steps, ..., 1; areas by the trapezoid rule
    (:func:`curve_auc`). The class is the top class on the image unless given.
    Returns a dict of ``deletion``, ``insertion`` (N, n_steps + 1) and ``deletion_auc``,
    ``insertion_auc`` (N,). ``output`` as in :func:`grad_cam`. Used in notebook 09.
    """
    from scipy import ndimage

    model = _select_output(model, output)
    images = check_images(images)
    graph = _graph(model, images)
    classes = _check_classes(class_index, len(images), graph.n_classes)
    maps = _check_maps(maps, images)
    n_steps = check_positive_int(n_steps, "n_steps")
    n, h, w, c = images.shape
    if n_steps > h * w:
        raise ValueError(f"n_steps {n_steps} is more than the {h * w} pixels of an image.")
    if not 0 < blur_sigma <= max(h, w):
        raise ValueError(f"blur_sigma is the Gaussian blur's standard deviation in pixels, in (0, {max(h, w)}] "
                         f"(at most the image size: wider blurs are a flat image); got {blur_sigma}.")
    classes = np.where(classes < 0, np.argmax(_probabilities(model, images, batch_size), axis=1), classes)
    counts = np.round(np.linspace(0, h * w, n_steps + 1)).astype(int)
    out = {"deletion": np.zeros((n, n_steps + 1)), "insertion": np.zeros((n, n_steps + 1))}
    for i in range(n):
        order = np.argsort(-maps[i].ravel(), kind="stable")
        rank = np.empty(h * w, int)
        rank[order] = np.arange(h * w)
        chosen = (rank[None] < counts[:, None]).reshape(-1, h, w, 1)       # (steps + 1, h, w, 1)
        blurred = ndimage.gaussian_filter(images[i], sigma=(blur_sigma, blur_sigma, 0))
        deleted = np.where(chosen, 0.0, images[i][None]).astype(np.float32)
        inserted = np.where(chosen, images[i][None], blurred[None]).astype(np.float32)
        probs = _probabilities(model, np.concatenate([deleted, inserted]), batch_size)[:, classes[i]]
        out["deletion"][i], out["insertion"][i] = probs[: n_steps + 1], probs[n_steps + 1 :]
    out["deletion_auc"], out["insertion_auc"] = curve_auc(out["deletion"]), curve_auc(out["insertion"])
    return out


# --- the model-randomization sanity check (Adebayo et al. 2018)


def randomized_copy(model, seed=0):
    """A copy of ``model`` with every kernel redrawn at random; the original is not touched.

    Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, Sec. 3.1 (model
    parameter randomization): each kernel (Conv2D, DepthwiseConv2D, Dense, ...) becomes
    Gaussian noise with the trained kernel's standard deviation; biases and batch-norm
    parameters are copied. Built with ``keras.models.clone_model``. Used in notebook 09.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model; got {type(model).__name__}.")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    rng = np.random.default_rng(seed)
    for layer in _all_layers(copy):
        for name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            var = None if isinstance(layer, keras.Model) else getattr(layer, name, None)
            if var is not None and hasattr(var, "assign"):
                std = float(np.std(keras.ops.convert_to_numpy(var)))
                var.assign(rng.normal(0.0, std or 0.05, tuple(var.shape)).astype(var.dtype))
    return copy


def sanity_check(model, images, method="grad_cam", class_index=None, seed=0, output=None, **kwargs):
    """Model-randomization sanity check: Spearman rank correlation of each image's maps.

    Maps by ``method`` (a name: "cam", "grad_cam", "grad_cam_plus_plus",
    "smooth_grad_cam_plus_plus", "rise", "occlusion", or a callable
    ``f(model, images, class_index, **kwargs)``) on the trained model and on
    :func:`randomized_copy`, for the trained model's class of each image. A correlation
    near 1 means the map barely depends on the weights: it explains the image, not the
    model (Adebayo et al. 2018, Sec. 3.1, their Fig. 2 uses the same rank correlation).
    A constant map has no ranking and gets correlation 0. Returns a dict of
    ``spearman`` (N,), ``trained`` and ``randomized`` maps. ``output`` as in :func:`grad_cam`
    (both models explain that output). Used in notebook 09.
    """
    from scipy.stats import spearmanr

    model = _select_output(model, output)
    names = {**METHODS, "smooth_grad_cam_plus_plus": smooth_grad_cam_plus_plus, "rise": rise, "occlusion": occlusion}
    if isinstance(method, str):
        if method not in names:
            raise ValueError(f"method must be one of {', '.join(names)} or a callable; got {method!r}.")
        method = names[method]
    elif not callable(method):
        raise ValueError(f"method must be a method name or a callable; got {type(method).__name__}.")
    images = check_images(images)
    graph = _graph(model, images)
    classes = _check_classes(class_index, len(images), graph.n_classes)
    classes = np.where(classes < 0, np.argmax(_probabilities(model, images), axis=1), classes).astype(np.int32)
    trained = np.asarray(method(model, images, classes, **kwargs), np.float32)
    randomized = np.asarray(method(randomized_copy(model, seed), images, classes, **kwargs), np.float32)
    rho = []
    for a, b in zip(trained.reshape(len(images), -1), randomized.reshape(len(images), -1)):
        rho.append(0.0 if a.std() == 0 or b.std() == 0 else float(spearmanr(a, b)[0]))
    return {"spearman": np.asarray(rho, np.float32), "trained": trained, "randomized": randomized}


# ------------------------------------------------------------------ exercise references
# The small NumPy functions of notebooks 07, 08 and 09's exercises, for the student
# versions to fall back on until an exercise is answered (course_lib.exercises).


def cam_weighted_sum(features, weights, c: int) -> np.ndarray:
    """The class activation map M_c = sum_k w[k, c] A^k (Zhou et al. 2016, eq. 1-2), shape (h, w).

    ``features`` (h, w, K) is the last convolution's output for one image, ``weights``
    (K, classes) the dense layer after global average pooling. Notebook 07, exercise 1.
    """
    features, weights = np.asarray(features), np.asarray(weights)
    if features.ndim != 3 or weights.ndim != 2 or weights.shape[0] != features.shape[-1]:
        raise ValueError(f"features (h, w, K) and weights (K, classes) must agree; got {features.shape}, {weights.shape}.")
    return features @ weights[:, c]


def grad_cam_map(features, gradients) -> np.ndarray:
    """Grad-CAM of one image, ReLU(sum_k alpha_k A^k), alpha_k = mean gradient (Selvaraju et al. 2017, eq. 1-2).

    ``features`` and ``gradients`` (dS_c / dA) are (h, w, K); returns (h, w). The
    gradient-based counterpart of :func:`grad_cam`. Notebook 07, exercise 2.
    """
    features, gradients = np.asarray(features), np.asarray(gradients)
    if features.shape != gradients.shape or features.ndim != 3:
        raise ValueError(f"features and gradients must both be (h, w, K); got {features.shape}, {gradients.shape}.")
    return np.maximum(features @ gradients.mean(axis=(0, 1)), 0.0)


def map_to_box(heatmap, threshold: float = 0.2) -> np.ndarray:
    """Box of one map's largest 8-connected blob above ``threshold`` x max: :func:`cam_to_box` on (H, W).

    Normalised (x_min, y_min, x_max, y_max), float32 (4,). Notebook 07, exercise 3.
    """
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be one (H, W) map; got shape {heatmap.shape}.")
    return cam_to_box(heatmap, threshold)


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


def rise_estimate(scores, masks, p: float) -> np.ndarray:
    """RISE saliency from given scores: sum_i S_i M_i / (p N) (Petsiuk et al. 2018, eq. 6).

    ``scores`` (N,) the class score on each masked image, ``masks`` (N, H, W) the masks
    (:func:`rise_masks`), ``p`` their keep probability. :func:`rise` does this in batches.
    Notebook 09, exercise 1.
    """
    scores, masks = np.asarray(scores, float), np.asarray(masks, float)
    if len(scores) != len(masks) or not 0 < p <= 1:
        raise ValueError(f"one score per mask and p in (0, 1]; got {scores.shape}, {masks.shape}, p={p}.")
    return np.tensordot(scores, masks, axes=1) / (p * len(scores))


def drop_and_increase(Y, O) -> tuple:
    """(:func:`average_drop`, :func:`increase_in_confidence`), both in percent (Chattopadhay et al. 2018).

    Notebook 09, exercise 2.
    """
    return average_drop(Y, O), increase_in_confidence(Y, O)


def anisotropic_tv(h) -> float:
    """Anisotropic total variation sum |vertical diffs| + sum |horizontal diffs| of a 2-D map.

    Morbidelli et al. (2020), eq. 2, the regulariser of :func:`augmented_grad_cam`.
    Notebook 09, exercise 3.
    """
    h = np.asarray(h, float)
    if h.ndim != 2:
        raise ValueError(f"h must be a 2-D map; got shape {h.shape}.")
    return float(_tv(h)[0])
