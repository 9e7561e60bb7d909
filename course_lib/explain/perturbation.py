"""Black-box explanations by perturbing the input: :func:`occlusion` (notebook 07) and RISE (notebook 09)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..validation import check_positive_int
from ._interpreter import _build_logits, _cached, _explained, _probabilities, _select_output
from .display import resize_maps


def _starts(size, patch, stride):
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:  # make the last patch touch the border
        starts.append(size - patch)
    return starts


def occlusion(model, images, class_index=None, patch=8, stride=4, fill=0.5, batch_size=256, output=None):
    """Occlusion sensitivity: the drop of the class logit when a grey square hides each place.

    Slide a ``patch`` x ``patch`` square of value ``fill`` with step ``stride`` (the last
    square of a row or column touches the border); each pixel gets the mean of
    S_c(x) - S_c(x occluded) over the squares covering it. With ``stride <= patch`` every
    pixel is covered, so no map has a hole (0/0). The class is each image's top class on the
    unoccluded image unless given. All occluded copies of an image go through the model in
    batches of ``batch_size``.

    Parameters
    ----------
    model, images, class_index, output
        As in :func:`grad_cam`.
    patch : int
        Side of the square in pixels, in [1, min(H, W)].
    stride : int
        Step between squares in pixels, in [1, patch].
    fill : float in [0, 1]
        The grey level of the square.
    batch_size : int
        Occluded copies per compiled call, >= 1.

    Returns
    -------
    maps : float32 ndarray of shape (N, H, W)
        Signed, in logits: positive where hiding the pixel lowers S_c (evidence for the class).

    Raises
    ------
    ValueError
        As :func:`grad_cam` (model, ``images``, ``class_index``, ``output``); ``patch``,
        ``stride`` or ``batch_size`` not a positive int; ``patch`` larger than the images;
        ``stride`` > ``patch`` (pixels never occluded); ``fill`` outside [0, 1].

    References
    ----------
    Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
    Sec. 4.2 (occlusion sensitivity). Used in notebooks 07 and 09.
    """
    model = _select_output(model, output)
    images, graph, classes = _explained(model, images, class_index)
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



def rise_masks(n_masks, image_shape, grid=8, p=0.5, seed=0):
    """RISE's random masks: upsampled random binary grids, shifted by a random sub-cell offset.

    Each mask: a ``grid`` x ``grid`` binary grid, each cell 1 with probability ``p``,
    upsampled bilinearly (:func:`resize_maps`) to (grid + 1) * ceil(H / grid) by
    (grid + 1) * ceil(W / grid) pixels, then cropped to (H, W) at a random offset in
    [0, ceil(H / grid)) x [0, ceil(W / grid)), so the soft cells do not all sit on the same
    lattice.

    Parameters
    ----------
    n_masks : int
        Number of masks, >= 1.
    image_shape : (H, W) ints, or any sequence starting with them
        The images' height and width in pixels.
    grid : int
        Cells per side, in [1, min(H, W)].
    p : float in (0, 1]
        Probability that a cell is kept (1).
    seed : int
        Seed of ``np.random.default_rng``.

    Returns
    -------
    masks : float32 ndarray of shape (n_masks, H, W), values in [0, 1]

    Raises
    ------
    ValueError
        ``n_masks`` or ``grid`` not a positive int; ``grid`` > min(H, W); ``p`` outside (0, 1].

    References
    ----------
    Petsiuk, Das and Saenko, "RISE", BMVC 2018, Sec. 3.2 (mask generation). Used by
    :func:`rise` and in notebook 09.
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
    big = np.asarray(resize_maps(cells, ((grid + 1) * ch, (grid + 1) * cw)))[..., 0]
    dy, dx = rng.integers(0, ch, n_masks), rng.integers(0, cw, n_masks)
    return np.stack([big[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n_masks)]).astype(np.float32)



def rise(model, images, class_index=None, n_masks=2000, grid=8, p=0.5, seed=0, memory_mb=64, progress=True,
         output=None):
    """RISE saliency maps: the mean of random masks weighted by the class probability on the masked image.

    S(x) = 1 / (E[M] n_masks) sum_i f_c(x * M_i) M_i, with f_c the softmax probability of
    class c (the sigmoid probability for a sigmoid or one-logit output), masks from
    :func:`rise_masks` (the same masks for every image) and E[M] = ``p``. Black box: only
    forward passes. The masked copies go through the model in chunks of at most
    ``memory_mb`` MiB of input, with a tqdm progress bar over the chunks. The class is each
    image's top class unless given.

    Parameters
    ----------
    model, images, class_index, output
        As in :func:`grad_cam`.
    n_masks, grid, p, seed
        As in :func:`rise_masks`.
    memory_mb : float
        Memory budget of one chunk of masked float32 images, in MiB; finite, > 0.
    progress : bool
        Show the tqdm progress bar.

    Returns
    -------
    maps : float32 ndarray of shape (N, H, W)
        >= 0, in units of class probability (a pixel whose masks all score 1 gets about 1).

    Raises
    ------
    ValueError
        As :func:`grad_cam` (model, ``images``, ``class_index``, ``output``); as
        :func:`rise_masks` (``n_masks``, ``grid``, ``p``); ``memory_mb`` not finite and > 0.

    References
    ----------
    Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models", BMVC 2018, eq. 6. Used in notebook 09.
    """
    from tqdm.auto import tqdm

    model = _select_output(model, output)
    images, graph, classes = _explained(model, images, class_index)
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



def rise_estimate(scores, masks, p: float) -> np.ndarray:
    """RISE saliency from given scores: sum_i S_i M_i / (p N), the estimator of eq. 6.

    Parameters
    ----------
    scores : float array of shape (N,)
        The class score (probability) on each masked image.
    masks : float array of shape (N, H, W)
        The masks (:func:`rise_masks`), values in [0, 1].
    p : float in (0, 1]
        The masks' keep probability.

    Returns
    -------
    saliency : float64 ndarray of shape (H, W)
        In the units of ``scores``.

    Raises
    ------
    ValueError
        Not one score per mask; ``p`` outside (0, 1].

    References
    ----------
    Petsiuk, Das and Saenko, "RISE", BMVC 2018, eq. 6. Used in notebook 09, exercise 1 (the
    reference solution; :func:`rise` does this in batches).
    """
    scores, masks = np.asarray(scores, float), np.asarray(masks, float)
    if len(scores) != len(masks) or not 0 < p <= 1:
        raise ValueError(f"one score per mask and p in (0, 1]; got {scores.shape}, {masks.shape}, p={p}.")
    return np.tensordot(scores, masks, axes=1) / (p * len(scores))


