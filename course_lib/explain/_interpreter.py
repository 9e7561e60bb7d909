"""The model interpreter of course_lib.explain, and the only file of course_lib that reads private Keras API.

Why not ``keras.Model(model.inputs, [model.get_layer(name).output, model.output])``?
In Keras 3 it fails for a layer inside a nested backbone ("not connected to inputs"),
Sequential models without an Input have no ``.output``, and swapping activations to get
guided gradients would change the model. Instead we *interpret* the model: walk its graph
and call each layer ourselves (:func:`_run`), with a hook that sees every layer's output.

What is here: the private-API readers (first section; ``course_lib.batchnorm``' batch-norm
folding uses them too), the output's tail (a final softmax or sigmoid, in any spelling,
is stripped so the explained score is the logit), the layer-by-layer forward pass, what
one pass tells about a model (:class:`_Graph`), the per-model cache of compiled
functions, and the argument checks every explanation method shares. Nothing public.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from ..models import walk_layers

# ============================================================ Keras internals, read here only
#
# Keras 3 has no public API for a functional model's graph. Every private attribute that
# course_lib reads goes through these six functions, so a Keras release that renames one
# breaks one place (tested at the declared Keras floor).


def keras_history(tensor):
    """Where a symbolic tensor came from: Keras' private ``_keras_history``.

    Parameters
    ----------
    tensor : KerasTensor or any object

    Returns
    -------
    history : (operation, node index, tensor index), or None
        None for a plain tensor or any object without a history.

    Notes
    -----
    Reads private Keras API (tested at the declared Keras floor). Used by the interpreter
    and ``course_lib.batchnorm``.
    """
    return getattr(tensor, "_keras_history", None)


def producer_layer(tensor):
    """The layer (or operation) whose output ``tensor`` is.

    Parameters
    ----------
    tensor : KerasTensor or any object

    Returns
    -------
    op : keras.Operation or None
        None for a model input or a plain tensor.

    Notes
    -----
    Used by ``course_lib.batchnorm`` (folding) and for naming a model's outputs.
    """
    history = keras_history(tensor)
    return None if history is None else history[0]


def input_tensors(op, node_index=0) -> list:
    """The symbolic tensors fed to one call of ``op``: Keras' private ``_inbound_nodes``.

    Parameters
    ----------
    op : keras.Operation
    node_index : int
        Which call of ``op`` (0: the first; a shared layer has several).

    Returns
    -------
    tensors : list of KerasTensor
        [] when ``op`` was never called that many times.

    Notes
    -----
    Used by the interpreter and ``course_lib.batchnorm``.
    """
    nodes = getattr(op, "_inbound_nodes", None) or []
    return list(nodes[node_index].input_tensors) if node_index < len(nodes) else []


def call_count(op) -> int:
    """How many times ``op`` was called while building models.

    Parameters
    ----------
    op : keras.Operation

    Returns
    -------
    count : int
        2 or more: a shared layer (``course_lib.batchnorm`` refuses to fold those).
    """
    return len(getattr(op, "_inbound_nodes", None) or [])


def is_graph_model(model) -> bool:
    """Whether ``model`` is a functional model, a layer graph that can be read and run.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    functional : bool
        True for a functional model with inputs; False for a subclassed one.
    """
    return (hasattr(model, "_run_through_graph") and hasattr(model, "_operations")
            and hasattr(model, "_inbound_nodes") and bool(getattr(model, "inputs", None)))


def run_through_graph(model, x, operation_fn):
    """Run a functional model's graph on ``x``, calling ``operation_fn(op)(*args, **kwargs)`` for each operation.

    Parameters
    ----------
    model : keras.Model
        Functional (:func:`is_graph_model`).
    x : tensor or nested structure of tensors
        The model's inputs.
    operation_fn : callable
        ``operation_fn(op)`` returns the callable that replaces ``op`` in this pass.

    Returns
    -------
    outputs : tensor or nested structure of tensors
        In the structure of the model's outputs.

    Notes
    -----
    Keras' private ``Functional._run_through_graph``; the interpreter's forward pass.
    """
    return model._run_through_graph(x, operation_fn=operation_fn)


def has_training_arg(op) -> bool:
    """Whether ``op.call`` takes a ``training`` argument (Dropout, BatchNormalization, nested models).

    Parameters
    ----------
    op : keras.Operation

    Returns
    -------
    takes_training : bool
    """
    return bool(getattr(op, "_call_has_training_arg", False))


# ==================================================================== the model's tail

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
    op, node_index, _ = keras_history(tensor)
    inputs = input_tensors(op, node_index)
    return op, (inputs[0] if len(inputs) == 1 else None)


def _check_functional(model):
    if not isinstance(model, keras.Sequential) and (
            not is_graph_model(model) or not getattr(model, "outputs", None)):
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
        before = _producer(tensor)[0] if tensor is not None and keras_history(tensor) is not None else None
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
    if has_training_arg(op):
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

        out = run_through_graph(model, x, operation_fn)
    return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), out) if is_top else out



def _all_layers(model):
    """Every layer of ``model``, depth first, nested models and their layers included (:func:`models.walk_layers`)."""
    return walk_layers(model)


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
        names = [producer_layer(t).name for t in model.outputs]
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


def _explained(model, images, class_index):
    """The checks at the boundary of every class-score method: ``(images, graph, classes)``, -1 meaning "top class"."""
    from ..validation import check_images

    images = check_images(images)
    graph = _graph(model, images)
    return images, graph, _check_classes(class_index, len(images), graph.n_classes)


def _spec(shape):
    return [tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None,), tf.int32)]


def _pick(logits, classes):
    """Replace -1 by the top class and return (classes, the scores S_c of shape (N,))."""
    classes = tf.where(classes < 0, tf.argmax(logits, -1, output_type=tf.int32), classes)
    return classes, tf.gather(logits, classes, batch_dims=1)


def _in_batches(fn, images, classes, batch_size, more=None):
    """Call a compiled ``fn(images, classes[, more]) -> (maps, classes, logits)`` chunk by chunk; concatenate.

    ``more(start, stop)``, when given, returns a further input for the chunk of images start:stop.
    """
    def inputs(i):
        chunk = [images[i : i + batch_size], classes[i : i + batch_size]]
        return [tf.constant(a) for a in (chunk if more is None else [*chunk, more(i, i + batch_size)])]

    parts = [fn(*inputs(i)) for i in range(0, len(images), batch_size)]
    return [np.concatenate([p[j].numpy() for p in parts]) for j in range(3)]


def _recorder(target):
    record = {}

    def hook(op, args, out):
        if op is target:
            record["A"] = out
        return out

    return record, hook


def _build_logits(model, shape):
    model_ref = weakref.ref(model)

    @tf.function(input_signature=_spec(shape)[:1])
    def fn(images):
        return _run(model_ref(), images, lambda op, args, out: out)

    return fn


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

