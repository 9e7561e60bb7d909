"""Showing maps: :func:`normalize`, :func:`overlay`, and :func:`resize_maps`, the one resize of course_lib.explain."""

from __future__ import annotations

import keras
import numpy as np

from ..validation import check_images


def resize_maps(maps, size):
    """Resize maps bilinearly (half-pixel centres, no antialiasing): the one resize of course_lib.explain.

    Parameters
    ----------
    maps : float tensor or array of shape (N, h, w) or (N, h, w, C)
    size : (H, W) ints
        The output's height and width in pixels.

    Returns
    -------
    resized : float32 tensor of shape (N, H, W) or (N, H, W, C)
        A backend tensor (``np.asarray`` makes it NumPy); works inside ``tf.function``.

    Notes
    -----
    ``keras.ops.image.resize(..., interpolation="bilinear")``, which on TensorFlow is
    ``tf.image.resize(method="bilinear")``. Used for every upsampled CAM, RISE's masks,
    :func:`overlay` and the faithfulness metrics (notebooks 07-09 through them).
    """
    flat = len(maps.shape) == 3
    x = keras.ops.cast(maps[..., None] if flat else maps, "float32")
    out = keras.ops.image.resize(x, tuple(int(s) for s in size), interpolation="bilinear")
    return out[..., 0] if flat else out


def normalize(maps):
    """Scale each map to [0, 1] by its own minimum and maximum.

    Parameters
    ----------
    maps : float array of shape (H, W), or (N, H, W, ...) for a batch
        Any units (raw CAMs, gradients, occlusion drops). A 2-D array is one map; an array
        of 3 or more axes is N maps, each scaled over all its axes but the first.

    Returns
    -------
    normalized : float32 ndarray of the shape of ``maps``, values in [0, 1]
        Each map m becomes (m - min m) / (max m - min m); a constant map becomes zeros (never NaN).

    Raises
    ------
    ValueError
        ``maps`` with fewer than 2 axes; ``maps`` containing NaN or Inf.

    Notes
    -----
    Used in notebooks 07 and 09, and by :func:`overlay` and :func:`explanation_confidence`.
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
    """Blend a heat-map, normalised and coloured by ``cmap``, over an image.

    Parameters
    ----------
    image : float array of shape (H, W, C), values in [0, 1]
        C = 1 (grey, repeated to RGB) or C >= 3 (the first three channels are shown).
    heatmap : float array of shape (h, w)
        Any units and any finite values (scaled by :func:`normalize`); resized bilinearly
        to (H, W) by :func:`resize_maps` when its size differs.
    alpha : float in [0, 1]
        Weight of the coloured heat-map: 0 shows the image, 1 the heat-map alone.
    cmap : str
        A matplotlib colormap name.

    Returns
    -------
    blended : float32 ndarray of shape (H, W, 3), values in [0, 1]
        (1 - alpha) * image + alpha * cmap(normalize(heatmap)).

    Raises
    ------
    ValueError
        ``image`` not one (H, W, C) float image in [0, 1]; ``heatmap`` not 2-D or not
        finite; ``alpha`` outside [0, 1]; ``cmap`` not a matplotlib colormap.

    Notes
    -----
    Display only (no paper). Used in notebook 11 and by ``viz.show_images`` (notebooks 07-09).
    """
    import matplotlib

    image = check_images(np.asarray(image)[None], "image")[0]
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be one 2-D map (h, w); got shape {heatmap.shape}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}.")
    if cmap not in matplotlib.colormaps:
        raise ValueError(f"cmap must be a matplotlib colormap name (e.g. 'jet', 'viridis'); got {cmap!r}.")
    if heatmap.shape != image.shape[:2]:
        heatmap = np.asarray(resize_maps(heatmap[None], image.shape[:2]))[0]
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    colour = matplotlib.colormaps[cmap](normalize(heatmap))[..., :3]
    return ((1.0 - alpha) * rgb + alpha * colour).astype(np.float32)


