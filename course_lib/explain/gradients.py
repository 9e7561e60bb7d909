"""Gradients on the input: :func:`saliency`, :func:`guided_backprop` and :func:`guided_grad_cam` (notebook 07)."""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from ..validation import check_images, check_positive_int
from ._interpreter import (_cached, _explained, _guided_identity, _in_batches, _is_relu, _pick, _run,
                           _select_output, _spec)
from .cam import grad_cam


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
    images, graph, classes = _explained(model, images, class_index)
    batch_size = check_positive_int(batch_size, "batch_size")
    key = ("guided" if guided else "saliency", images.shape[1:])
    fn = _cached(model, key, lambda: _build_input_gradient(model, guided, images.shape[1:]))
    return _in_batches(fn, images, classes, batch_size)


def saliency(model, images, class_index=None, batch_size=64, output=None):
    """The plain gradient dS_c/dx of the class logit with respect to the input pixels.

    Parameters
    ----------
    model, images, class_index, batch_size, output
        As in :func:`grad_cam`.

    Returns
    -------
    gradients : float32 ndarray of shape (N, H, W, C)
        Signed, in logit per unit of pixel intensity (images in [0, 1]); show
        ``np.abs(g).max(axis=-1)`` as the paper does.

    Raises
    ------
    ValueError
        As :func:`grad_cam` (model, ``images``, ``class_index``, ``batch_size``, ``output``).

    References
    ----------
    Simonyan, Vedaldi and Zisserman, "Deep Inside Convolutional Networks", ICLR 2014
    workshop, Sec. 3, eq. 3 (w = dS_c/dI at the image) and Sec. 3.1 (the map: the
    absolute value, max over channels). Used in notebook 07, as the baseline guided backprop is compared with.
    """
    model = _select_output(model, output)
    return _input_gradient(model, images, class_index, False, batch_size)[0]


def guided_backprop(model, images, class_index=None, batch_size=64, output=None):
    """Guided backpropagation of the class logit to the input pixels.

    At every ReLU the backward pass keeps a gradient only where the forward input was
    positive *and* the gradient is positive. Applied after every ReLU form
    (activation='relu' or 'relu6' in any layer, Activation('relu'), ReLU(),
    ReLU(max_value=6)), inside nested models too, without changing the model: the
    interpreter wraps each ReLU's output in an identity whose gradient is clipped at zero.

    Parameters
    ----------
    model, images, class_index, batch_size, output
        As in :func:`grad_cam`.

    Returns
    -------
    gradients : float32 ndarray of shape (N, H, W, C)
        Signed, in logit per unit of pixel intensity (images in [0, 1]).

    Raises
    ------
    ValueError
        As :func:`grad_cam` (model, ``images``, ``class_index``, ``batch_size``, ``output``).

    References
    ----------
    Springenberg et al., "Striving for Simplicity: The All Convolutional Net", ICLR 2015
    workshop, Fig. 1 (the guided rule R_i = (f_i > 0) (R_{i+1} > 0) R_{i+1}).
    Used in notebook 07.
    """
    model = _select_output(model, output)
    return _input_gradient(model, images, class_index, True, batch_size)[0]


def guided_grad_cam(model, images, class_index=None, layer=None, batch_size=64, output=None):
    """Guided Grad-CAM: guided backprop times the upsampled Grad-CAM map, pixel by pixel.

    Both parts explain the same class (each image's top class when ``class_index`` is None):
    the product is high-resolution (from guided backprop) and class-discriminative (from
    Grad-CAM).

    Parameters
    ----------
    model, images, class_index, layer, batch_size, output
        As in :func:`grad_cam`; ``layer`` is Grad-CAM's.

    Returns
    -------
    maps : float32 ndarray of shape (N, H, W, C)
        :func:`guided_backprop` times :func:`grad_cam` (upsampled, broadcast over channels).

    Raises
    ------
    ValueError
        As :func:`grad_cam`.

    References
    ----------
    Selvaraju et al., "Grad-CAM", ICCV 2017, Sec. 3.1 "Guided Grad-CAM". Used in notebook 07.
    """
    model = _select_output(model, output)
    images = check_images(images)
    gb, classes, _ = _input_gradient(model, images, class_index, True, batch_size)
    maps = grad_cam(model, images, classes, layer=layer, upsample=True, batch_size=batch_size)
    return (gb * maps[..., None]).astype(np.float32)


