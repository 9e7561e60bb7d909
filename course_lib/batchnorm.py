"""Batch normalization from scratch: NumPy forward / backward, a Keras layer, and folding (Day 2).

Batch normalization (Ioffe & Szegedy 2015, Algorithm 1) normalizes each channel over
the mini-batch, then scales and shifts it with learned gamma and beta:

    mu_B = mean(x),  var_B = mean((x - mu_B)^2),  x_hat = (x - mu_B) / sqrt(var_B + eps),
    y = gamma * x_hat + beta.

In training it uses the batch statistics and updates running averages
``moving = momentum * moving + (1 - momentum) * batch``; in inference it uses the
running averages, so it becomes a fixed affine map per channel that can be folded
into the convolution or dense layer before it (:func:`fold_batch_norm`).

* :func:`batchnorm_forward`, :func:`batchnorm_backward`: the maths in NumPy, checked
  with :func:`numerical_gradient` (central differences).
* :class:`BatchNorm`: a Keras layer written from scratch, equal to
  ``keras.layers.BatchNormalization`` (same defaults, same updates).
* :func:`fold_batch_norm`, :func:`find_foldable_batch_norms`: remove BN layers from
  an inference model by rewriting the weights of the Conv2D / DepthwiseConv2D / Dense
  before them.

Used in notebook 02 (and notebook 03 folds the architectures it builds).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

# ------------------------------------------------------------------ NumPy maths


def _check_bn_inputs(x, gamma, beta):
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must be (N, ..., C) with a batch axis first and channels last; got shape {x.shape}.")
    if x.shape[0] * int(np.prod(x.shape[1:-1])) < 2:
        raise ValueError(f"batch statistics need at least 2 values per channel; got x of shape {x.shape}.")
    c = x.shape[-1]
    for name, p in (("gamma", gamma), ("beta", beta)):
        if np.shape(p) != (c,):
            raise ValueError(f"{name} must have shape ({c},), one value per channel (last axis of x); "
                             f"got {np.shape(p)}.")
    return x


def batchnorm_forward(x, gamma, beta, eps: float = 1e-3):
    """Training-mode BN (Ioffe & Szegedy 2015, Algorithm 1) over every axis but the last.

    ``x`` (N, ..., C); ``gamma``, ``beta`` (C,). Returns ``(y, cache)``: ``y`` has x's
    shape; ``cache`` holds what :func:`batchnorm_backward` needs, and the batch ``mean``
    and biased ``var`` (what the running averages are updated with). ``eps`` defaults
    to Keras' 1e-3.
    """
    x = _check_bn_inputs(x, gamma, beta)
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)  # biased (divide by m), as in the paper's Algorithm 1 and in Keras
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    y = gamma * x_hat + beta
    return y, {"x_hat": x_hat, "inv_std": inv_std, "gamma": np.asarray(gamma), "mean": mean, "var": var}


def batchnorm_backward(dy, cache):
    """Gradients of training-mode BN: returns ``(dx, dgamma, dbeta)`` for upstream ``dy``.

    With m values per channel and g = gamma * dy (the gradient w.r.t. x_hat), the chain
    rule through the batch mean and variance (Ioffe & Szegedy 2015, section 3) gives

        dx = inv_std / m * (m * g - sum(g) - x_hat * sum(g * x_hat)),
        dgamma = sum(dy * x_hat),  dbeta = sum(dy)   (sums over all axes but the last).
    """
    dy = np.asarray(dy)
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    if dy.shape != x_hat.shape:
        raise ValueError(f"dy must have the forward output's shape {x_hat.shape}; got {dy.shape}.")
    axes = tuple(range(dy.ndim - 1))
    m = dy.size // dy.shape[-1]
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * x_hat).sum(axis=axes)
    g = dy * gamma
    dx = inv_std / m * (m * g - g.sum(axis=axes) - x_hat * (g * x_hat).sum(axis=axes))
    return dx, dgamma, dbeta


def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, eps: float = 1e-3):
    """Inference-mode BN: the same formula with the running averages instead of batch statistics."""
    x = np.asarray(x)
    return gamma * (x - moving_mean) / np.sqrt(moving_var + eps) + beta


def numerical_gradient(f, x, h: float = 1e-5):
    """Central-difference gradient of a scalar function: df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h.

    ``x`` is perturbed in place and restored; use float64 for checks to ~1e-8.
    """
    x = np.asarray(x)
    if x.dtype != np.float64:
        raise ValueError(f"use float64 for a numerical gradient check; got {x.dtype}.")
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        f_plus = f(x)
        x[i] = old - h
        f_minus = f(x)
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(a, b) -> float:
    """``max |a - b| / max(|a| + |b|, tiny)``: the usual score of a gradient check (below 1e-6 passes)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-12)))


# ------------------------------------------------------------------ Keras layer


@keras.saving.register_keras_serializable(package="course_lib")
class BatchNorm(keras.layers.Layer):
    """Batch normalization over the last axis, from scratch (Ioffe & Szegedy 2015).

    Training (``training=True`` and the layer trainable): normalize with the batch mean
    and biased variance, then update ``moving_mean`` / ``moving_variance`` as
    ``momentum * moving + (1 - momentum) * batch``. Inference: normalize with the
    moving averages. ``gamma`` (ones) and ``beta`` (zeros) are learned. Defaults
    (momentum 0.99, epsilon 1e-3) and variable order match
    ``keras.layers.BatchNormalization``, so ``set_weights`` works both ways. Under a
    mixed-precision policy (``"mixed_float16"``) the four variables and the batch
    statistics stay float32 and only the output takes the compute dtype (float16), as in
    Keras: a running variance of 7e4 would be inf in float16 (its largest value is 65504).
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {momentum!r}.")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0 (it keeps the division finite); got {epsilon!r}.")
        self.momentum, self.epsilon = float(momentum), float(epsilon)

    def build(self, input_shape):
        c = input_shape[-1]
        if c is None:
            raise ValueError("BatchNorm needs a known number of channels (last axis of the input).")
        # autocast=False: under a mixed-precision policy ("mixed_float16") the variables stay
        # float32 when read in call(), as in keras.layers.BatchNormalization.
        self.gamma = self.add_weight(shape=(c,), initializer="ones", name="gamma", autocast=False)
        self.beta = self.add_weight(shape=(c,), initializer="zeros", name="beta", autocast=False)
        self.moving_mean = self.add_weight(shape=(c,), initializer="zeros", name="moving_mean", trainable=False,
                                           autocast=False)
        self.moving_variance = self.add_weight(shape=(c,), initializer="ones", name="moving_variance",
                                               trainable=False, autocast=False)

    def call(self, x, training=None):
        # Statistics in float32 whatever the input: float16 overflows past 65504 (a variance
        # of 7e4 would read back as inf), so half inputs are upcast and the output cast back
        # to the layer's compute dtype, as keras.layers.BatchNormalization does.
        x = ops.cast(x, "float32")
        if training and self.trainable:
            axes = list(range(len(x.shape) - 1))
            mean = ops.mean(x, axis=axes)
            var = ops.mean(ops.square(x - mean), axis=axes)
            self.moving_mean.assign(self.momentum * self.moving_mean + (1.0 - self.momentum) * mean)
            self.moving_variance.assign(self.momentum * self.moving_variance + (1.0 - self.momentum) * var)
        else:
            mean, var = self.moving_mean, self.moving_variance
        y = self.gamma * (x - mean) * ops.rsqrt(var + self.epsilon) + self.beta
        return ops.cast(y, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


# ------------------------------------------------------------------ folding

FOLDABLE = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def _single_call(layer):
    from .explain._interpreter import call_count  # the one reader of Keras' private graph API

    return call_count(layer) == 1


def _bn_reason(bn, producer, consumers, model_outputs):
    """Why this BN cannot be folded into ``producer`` (None when it can)."""
    axis = bn.axis if isinstance(bn.axis, int) else None
    rank = len(bn.input.shape)
    if isinstance(bn.axis, (list, tuple)) and len(bn.axis) == 1:
        axis = bn.axis[0]
    if axis is None or axis % rank != rank - 1:
        return f"normalizes axis {bn.axis}, not the channels-last axis"
    if not _single_call(bn):
        return "is called more than once (shared layer)"
    if producer is None or not isinstance(producer, FOLDABLE):
        what = "the model input" if producer is None or isinstance(producer, keras.layers.InputLayer) else \
            f"{type(producer).__name__} '{producer.name}'"
        return f"follows {what}, not a Conv2D, DepthwiseConv2D or Dense"
    if getattr(producer, "data_format", "channels_last") != "channels_last":
        return f"follows '{producer.name}' in channels_first format"
    if keras.activations.serialize(producer.activation) not in ("linear", None) and \
            producer.activation is not keras.activations.linear:
        return f"follows '{producer.name}' whose activation is not linear (the BN acts after the non-linearity)"
    if not _single_call(producer):
        return f"follows '{producer.name}', a layer called more than once (shared weights)"
    if consumers > 1 or model_outputs:
        return f"'{producer.name}' output is also used elsewhere, so its weights cannot change"
    return None


def find_foldable_batch_norms(model):
    """Which BatchNormalization layers of a Functional / Sequential model can be folded.

    Returns ``(pairs, unfoldable)``: ``pairs`` maps a BN layer name to the name of the
    Conv2D / DepthwiseConv2D / Dense whose output it is the only consumer of (with a
    linear activation); ``unfoldable`` maps the other BN names to the reason. Nested
    models are not entered (:func:`fold_batch_norm` folds them separately).
    """
    from .explain._interpreter import call_count, input_tensors, producer_layer  # Keras' private graph API

    model = _as_functional(model)
    uses = {}
    for layer in model.layers:
        for node_index in range(call_count(layer)):
            for t in input_tensors(layer, node_index):
                uses[id(t)] = uses.get(id(t), 0) + 1
    outputs = {id(t) for t in model.outputs}
    pairs, unfoldable = {}, {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        t = input_tensors(layer)[0]
        producer = producer_layer(t)
        reason = _bn_reason(layer, producer, uses.get(id(t), 0), id(t) in outputs)
        if reason is None:
            pairs[layer.name] = producer.name
        else:
            unfoldable[layer.name] = reason
    return pairs, unfoldable


def _as_functional(model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"fold_batch_norm expects a keras.Model; got {type(model).__name__}.")
    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise ValueError("the Sequential model is not built: give it a keras.Input(shape=...) first layer.")
        return keras.Model(model.inputs, model.outputs, name=model.name)
    from .explain._interpreter import is_graph_model

    if not is_graph_model(model):
        raise ValueError(
            f"{type(model).__name__} is a subclassed model: fold_batch_norm needs a Functional or Sequential "
            "model, whose layer graph it can read."
        )
    return model


def folded_weights(kernel, bias, gamma, beta, mean, var, eps, depthwise: bool = False):
    """BN(conv(x)) = conv'(x): the new kernel and bias (the arithmetic of one fold).

    With s = gamma / sqrt(var + eps) per output channel: kernel' = kernel * s (on the
    output-channel axis) and bias' = (bias - mean) * s + beta. For a DepthwiseConv2D
    kernel (kh, kw, C_in, multiplier) output channel c_in * multiplier + m is scaled.
    """
    s = np.asarray(gamma) / np.sqrt(np.asarray(var) + eps)
    kernel = np.asarray(kernel)
    k = kernel * s.reshape(kernel.shape[-2], kernel.shape[-1]) if depthwise else kernel * s
    return k.astype(kernel.dtype), ((np.asarray(bias) - mean) * s + beta).astype(kernel.dtype)


def _fold_pair(producer, bn):
    weights = producer.get_weights()
    kernel = weights[0]
    bias = weights[1] if producer.use_bias else np.zeros(kernel.shape[-1] if not isinstance(
        producer, keras.layers.DepthwiseConv2D) else kernel.shape[-2] * kernel.shape[-1], kernel.dtype)
    n = len(bias)
    gamma = bn.gamma.numpy() if bn.scale else np.ones(n, kernel.dtype)
    beta = bn.beta.numpy() if bn.center else np.zeros(n, kernel.dtype)
    return folded_weights(kernel, bias, gamma, beta, bn.moving_mean.numpy(), bn.moving_variance.numpy(),
                          bn.epsilon, depthwise=isinstance(producer, keras.layers.DepthwiseConv2D))


def fold_batch_norm(model, verbose: bool = True):
    """Return a copy of ``model`` for inference with every foldable BatchNormalization removed.

    In inference BN is the affine map y = s * (z - mean) + beta with
    s = gamma / sqrt(moving_var + eps) (Ioffe & Szegedy 2015, section 3.2: "a linear
    transform"); when z is the output of a Conv2D, DepthwiseConv2D or Dense with a
    linear activation, the map is absorbed into that layer's kernel and bias
    (:func:`folded_weights`), and the BN layer disappears from the graph. Works on
    Functional and Sequential models (nested ones are folded too). BN layers that cannot
    be folded (see :func:`find_foldable_batch_norms`) are kept and named in a warning
    (``verbose``). The original model is not changed. The copy's inference outputs equal
    the original's up to float rounding; do not train it (there is no BN left to train).
    """
    source = _as_functional(model)
    pairs, unfoldable = find_foldable_batch_norms(source)
    producers = {p: b for b, p in pairs.items()}
    originals = {}

    def clone_layer(layer):
        if isinstance(layer, keras.Model):
            new = fold_batch_norm(layer, verbose=verbose)
        else:
            config = layer.get_config()
            if layer.name in producers:
                config["use_bias"] = True
            new = layer.__class__.from_config(config)
        originals[id(new)] = layer
        return new

    def call_layer(layer, *args, **kwargs):
        if layer.name in pairs and isinstance(layer, keras.layers.BatchNormalization):
            return args[0]  # the folded BN is skipped: its input goes straight on
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(source, clone_function=clone_layer, call_function=call_layer)
    for new in folded.layers:
        old = originals.get(id(new))
        if old is None or isinstance(old, keras.Model):
            continue
        if old.name in producers:
            new.set_weights(list(_fold_pair(old, source.get_layer(producers[old.name]))))
        elif old.weights:
            new.set_weights(old.get_weights())
    if unfoldable and verbose:
        listing = "; ".join(f"'{k}' {v}" for k, v in unfoldable.items())
        warnings.warn(f"fold_batch_norm kept {len(unfoldable)} BatchNormalization layer(s): {listing}.",
                      stacklevel=2)
    return folded


# ------------------------------------------------------------------ exercise references
# Notebook 02's exercises, for the student versions to fall back on until an exercise is
# answered (course_lib.exercises.answer_or_reference).


def bn_forward(x, gamma, beta, eps: float = 1e-3):
    """Training-mode BN as ``(y, mean, var)``: :func:`batchnorm_forward` without the cache.

    Ioffe & Szegedy (2015), Algorithm 1, over every axis of ``x`` (N, ..., C) but the last;
    ``var`` is the biased batch variance. Notebook 02, exercise 2.
    """
    y, cache = batchnorm_forward(np.asarray(x, dtype=np.float64), gamma, beta, eps)
    return y, cache["mean"], cache["var"]


def bn_backward(dy, x, gamma, eps: float = 1e-3):
    """Gradients of training-mode BN from the forward input: ``(dx, dgamma, dbeta)``.

    Recomputes the forward pass on ``x`` (N, ..., C) and applies :func:`batchnorm_backward`
    to the upstream gradient ``dy`` (x's shape). Notebook 02, exercise 3.
    """
    x = np.asarray(x, dtype=np.float64)
    beta = np.zeros(np.shape(gamma))
    _, cache = batchnorm_forward(x, np.asarray(gamma, dtype=np.float64), beta, eps)
    return batchnorm_backward(np.asarray(dy, dtype=np.float64), cache)


def fold_dense_bn(kernel, bias, gamma, beta, moving_mean, moving_var, eps: float = 1e-3):
    """Dense -> inference-mode BN folded into one Dense: ``(new_kernel, new_bias)`` in float64.

    :func:`folded_weights` for a Dense kernel (D_in, D_out): kernel * s and
    (bias - mean) * s + beta with s = gamma / sqrt(var + eps). Notebook 02, exercise 5.
    """
    return folded_weights(np.asarray(kernel, np.float64), np.asarray(bias, np.float64), gamma, beta,
                          moving_mean, moving_var, eps)
