"""Faithfulness (notebook 09): do the maps point at what the model uses, and do they depend on the model at all?

Average Drop and Increase in Confidence (Chattopadhay et al. 2018), deletion and
insertion curves (Petsiuk et al. 2018), and the model-randomization sanity check
(Adebayo et al. 2018).
"""

from __future__ import annotations

import keras
import numpy as np

from ..validation import check_positive_int
from ._interpreter import _all_layers, _explained, _probabilities, _select_output
from .cam import METHODS, smooth_grad_cam_plus_plus
from .display import normalize, resize_maps
from .perturbation import occlusion, rise


# --- faithfulness: do the maps point at what the model uses?


def _check_maps(maps, images):
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3 or len(maps) != len(images):
        raise ValueError(f"maps must be (N, h, w) with one map per image (N = {len(images)}); got shape {maps.shape}.")
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or Inf; compute them again or drop those images.")
    if maps.shape[1:] != images.shape[1:3]:
        maps = np.asarray(resize_maps(maps, images.shape[1:3]))
    return maps


def explanation_confidence(model, images, maps, class_index=None, batch_size=256, output=None):
    """Class probabilities Y on the images and O on the explanation maps E = normalize(map) * image.

    The explanation map is the point-wise product of the heat-map, upsampled bilinearly to
    the image and scaled to [0, 1] by :func:`normalize`, with the image. Probabilities are
    the softmax of the logits, or their sigmoid for a sigmoid (or one-logit) output. The
    class is each image's top class on the image unless given.

    Parameters
    ----------
    model, images, class_index, output
        As in :func:`grad_cam`.
    maps : float array of shape (N, h, w)
        One heat-map per image, any units, finite; resized to (H, W) when (h, w) differ.
    batch_size : int
        Images per compiled call, >= 1.

    Returns
    -------
    Y : float64 ndarray of shape (N,), values in [0, 1]
        The class probability on the image.
    O : float64 ndarray of shape (N,), values in [0, 1]
        The class probability on the explanation map.
    classes : int ndarray of shape (N,)
        The explained class of each image.

    Raises
    ------
    ValueError
        As :func:`grad_cam` (model, ``images``, ``class_index``, ``output``); ``maps`` not
        (N, h, w) with one map per image, or not finite; ``batch_size`` < 1.

    References
    ----------
    Chattopadhay et al., "Grad-CAM++", WACV 2018, Sec. 5.1.1 (the explanation map E^c).
    Feeds :func:`average_drop` and :func:`increase_in_confidence`. Used in notebook 09.
    """
    model = _select_output(model, output)
    images, graph, classes = _explained(model, images, class_index)
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
    """Average Drop in percent: 100 * mean_i max(0, Y_i - O_i) / Y_i (lower is better).

    Parameters
    ----------
    Y : float array of shape (N,), values in (0, 1]
        The class probability on each image.
    O : float array of shape (N,), values in [0, 1]
        The class probability on each explanation map (:func:`explanation_confidence`).

    Returns
    -------
    drop : float in [0, 100]

    Raises
    ------
    ValueError
        ``Y`` and ``O`` not 1-D of the same non-zero length; values outside those ranges
        (logits instead of probabilities).

    References
    ----------
    Chattopadhay et al., "Grad-CAM++", WACV 2018, Sec. 5.1.1. Used in notebook 09.
    """
    Y, O = _check_scores(Y, O)
    return float(100.0 * np.mean(np.maximum(0.0, Y - O) / Y))


def increase_in_confidence(Y, O):
    """Increase in Confidence in percent: 100 * mean_i 1[O_i > Y_i] (higher is better).

    The share of images whose explanation map alone is *more* convincing than the image.

    Parameters
    ----------
    Y, O
        As in :func:`average_drop`.

    Returns
    -------
    increase : float in [0, 100]

    Raises
    ------
    ValueError
        As :func:`average_drop`.

    References
    ----------
    Chattopadhay et al., "Grad-CAM++", WACV 2018, Sec. 5.1.1. Used in notebook 09.
    """
    Y, O = _check_scores(Y, O)
    return float(100.0 * np.mean(O > Y))


def curve_auc(curve):
    """Area under curves sampled at equally spaced fractions 0, 1/(T-1), ..., 1 (trapezoid rule).

    Parameters
    ----------
    curve : float array of shape (..., T), T >= 2
        One curve per row (e.g. the deletion or insertion probabilities).

    Returns
    -------
    auc : float64 ndarray of shape (...) (a float64 scalar for one curve)
        In the curve's units (probability for :func:`deletion_insertion`).

    Raises
    ------
    ValueError
        Fewer than 2 points per curve.

    References
    ----------
    Petsiuk, Das and Saenko, "RISE", BMVC 2018, Sec. 4.1 (the area under the deletion and
    insertion curves). Used by :func:`deletion_insertion` (notebook 09).
    """
    curve = np.asarray(curve, np.float64)
    if curve.shape[-1] < 2:
        raise ValueError(f"a curve needs at least 2 points; got shape {curve.shape}.")
    return (curve.sum(-1) - 0.5 * (curve[..., 0] + curve[..., -1])) / (curve.shape[-1] - 1)


def deletion_insertion(model, images, maps, class_index=None, n_steps=24, blur_sigma=2.0, batch_size=256,
                       output=None):
    """Deletion and insertion curves and their areas: do the map's top pixels carry the class?

    Pixels are ranked by the map (highest first; ties by position). Deletion: starting from
    the image, set the next H*W / ``n_steps`` pixels to 0 at each step (the zero canvas) and
    record the class probability; a faithful map makes it fall fast (low AUC is better).
    Insertion: starting from the image blurred with a Gaussian of ``blur_sigma`` pixels (the
    paper's blurred canvas), put the original pixels back in the same order; the probability
    should rise fast (high AUC is better). The class is each image's top class unless given;
    probabilities as in :func:`explanation_confidence`.

    Parameters
    ----------
    model, images, class_index, output
        As in :func:`grad_cam`.
    maps : float array of shape (N, h, w)
        One heat-map per image, any units, finite; resized to (H, W) when (h, w) differ.
    n_steps : int
        Steps of each curve, in [1, H*W].
    blur_sigma : float
        Standard deviation of the insertion canvas' blur in pixels, in (0, max(H, W)].
    batch_size : int
        Images per compiled call, >= 1.

    Returns
    -------
    curves : dict
        ``deletion`` and ``insertion``: float64 ndarrays (N, n_steps + 1) of class
        probabilities at the fractions 0, 1/n_steps, ..., 1 of pixels changed;
        ``deletion_auc`` and ``insertion_auc``: float64 ndarrays (N,) in [0, 1]
        (:func:`curve_auc`).

    Raises
    ------
    ValueError
        As :func:`grad_cam` (model, ``images``, ``class_index``, ``output``); ``maps`` not
        (N, h, w) with one finite map per image; ``n_steps`` not in [1, H*W]; ``blur_sigma``
        not in (0, max(H, W)]; ``batch_size`` < 1.

    References
    ----------
    Petsiuk, Das and Saenko, "RISE", BMVC 2018, Sec. 4.1 ("causal metrics"). Used in notebook 09.
    """
    from scipy import ndimage

    model = _select_output(model, output)
    images, graph, classes = _explained(model, images, class_index)
    maps = _check_maps(maps, images)
    n_steps = check_positive_int(n_steps, "n_steps")
    batch_size = check_positive_int(batch_size, "batch_size")
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

    Each kernel (Conv2D, DepthwiseConv2D, SeparableConv2D, Dense, ..., nested models
    included) becomes Gaussian noise with the trained kernel's standard deviation (0.05 when
    that is 0); biases and batch-norm parameters are copied. Built with
    ``keras.models.clone_model``.

    Parameters
    ----------
    model : keras.Model
        Functional or Sequential.
    seed : int
        Seed of ``np.random.default_rng``.

    Returns
    -------
    copy : keras.Model
        Same architecture, new weights in the kernels' dtypes.

    Raises
    ------
    ValueError
        ``model`` not a keras.Model.

    References
    ----------
    Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, Sec. 3.1 (model
    parameter randomization). Used by :func:`sanity_check` (notebook 09).
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

    Maps by ``method`` on the trained model and on :func:`randomized_copy`, both for the
    trained model's class of each image. A correlation near 1 means the map barely depends
    on the weights: it explains the image, not the model. A constant map has no ranking and
    gets correlation 0.

    Parameters
    ----------
    model, images, class_index, output
        As in :func:`grad_cam` (both models explain that output).
    method : str or callable
        "cam", "grad_cam", "grad_cam_plus_plus", "layer_cam", "smooth_grad_cam_plus_plus",
        "rise", "occlusion", or ``f(model, images, class_index, **kwargs)`` returning one map
        per image.
    seed : int
        Seed of :func:`randomized_copy`.
    **kwargs
        Passed to ``method``.

    Returns
    -------
    result : dict
        ``spearman``: float32 ndarray (N,) in [-1, 1]; ``trained`` and ``randomized``: the
        float32 maps, as ``method`` returns them.

    Raises
    ------
    ValueError
        An unknown ``method`` name or a non-callable; as :func:`grad_cam` (model, ``images``,
        ``class_index``, ``output``); whatever ``method`` raises for ``kwargs``.

    References
    ----------
    Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, Sec. 3.1 (their Fig. 2
    uses the same rank correlation). Used in notebook 09.
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
    images, graph, classes = _explained(model, images, class_index)
    classes = np.where(classes < 0, np.argmax(_probabilities(model, images), axis=1), classes).astype(np.int32)
    trained = np.asarray(method(model, images, classes, **kwargs), np.float32)
    randomized = np.asarray(method(randomized_copy(model, seed), images, classes, **kwargs), np.float32)
    rho = []
    for a, b in zip(trained.reshape(len(images), -1), randomized.reshape(len(images), -1)):
        rho.append(0.0 if a.std() == 0 or b.std() == 0 else float(spearmanr(a, b)[0]))
    return {"spearman": np.asarray(rho, np.float32), "trained": trained, "randomized": randomized}



def drop_and_increase(Y, O) -> tuple:
    """Both Grad-CAM++ faithfulness scores at once: (Average Drop, Increase in Confidence).

    Parameters
    ----------
    Y, O
        As in :func:`average_drop`.

    Returns
    -------
    scores : (float, float)
        :func:`average_drop` and :func:`increase_in_confidence`, both in percent, [0, 100].

    Raises
    ------
    ValueError
        As :func:`average_drop`.

    References
    ----------
    Chattopadhay et al., "Grad-CAM++", WACV 2018, Sec. 5.1.1. Used in notebook 09,
    exercise 2 (the reference solution).
    """
    return average_drop(Y, O), increase_in_confidence(Y, O)


