"""Weakly supervised object localization: from a class map to a box, and how well the boxes fit (notebook 07)."""

from __future__ import annotations

import numpy as np

from ..validation import check_images, class_ids
from ..localization import box_iou as _iou_tensor
from ._interpreter import _check_classes, _graph, _select_output
from .cam import METHODS, _class_maps


_EIGHT_CONNECTED = np.ones((3, 3), bool)


def cam_to_box(maps, threshold=0.2):
    """Box around a heat-map's largest blob above a fraction of its maximum.

    Keep the pixels above ``threshold`` x the map's max, take the largest connected component
    (8-connected, ``scipy.ndimage.label``) and return its bounding box. A pixel column c
    spans [c/W, (c+1)/W], so a blob touching both edges gives [0, 1].

    Parameters
    ----------
    maps : float array of shape (H, W), or (N, H, W)
        Heat-maps in any units (raw or normalised).
    threshold : float in [0, 1)
        Fraction of each map's maximum.

    Returns
    -------
    boxes : float32 ndarray of shape (4,) for one map, (N, 4) for N maps
        (x_min, y_min, x_max, y_max) normalised by the map's width and height, in [0, 1]. A
        map with no positive (or no finite) maximum gives the whole image [0, 0, 1, 1].

    Raises
    ------
    ValueError
        ``maps`` not 2-D or 3-D; ``threshold`` outside [0, 1).

    References
    ----------
    Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016, Sec. 3
    (20% of the map's max, the box of the largest connected component). Used in notebooks
    07 and 09.
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
        labels, count = ndimage.label(m > threshold * top, structure=_EIGHT_CONNECTED)
        largest = 1 + int(np.argmax(np.bincount(labels.ravel(), minlength=count + 1)[1:]))  # first of equals
        rows, cols = ndimage.find_objects(labels, max_label=largest)[largest - 1]
        boxes.append([cols.start / w, rows.start / h, cols.stop / w, rows.stop / h])
    boxes = np.asarray(boxes, np.float32)
    return boxes[0] if single else boxes


def box_iou(a, b):
    """Intersection over union of boxes, broadcast over leading axes.

    Parameters
    ----------
    a, b : float arrays of shapes (..., 4) that broadcast
        Boxes (x_min, y_min, x_max, y_max), normalised to [0, 1] or in pixels (both alike).

    Returns
    -------
    iou : float64 ndarray of the broadcast shape without the last axis, in [0, 1]
        0 for disjoint boxes and for two empty boxes; an inverted box (x_max < x_min)
        counts as empty.

    Raises
    ------
    ValueError
        When a box does not end in 4 coordinates.

    References
    ----------
    The Jaccard index ``|A n B| / |A u B|`` of two boxes, the overlap criterion of PASCAL VOC
    (Everingham et al., IJCV 2010, the detection criterion). The NumPy face of
    ``course_lib.localization.box_iou`` (one IoU for the course), computed in float64. Used
    in notebooks 07 and 09 and by :func:`localization_accuracy`.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ValueError(f"boxes must end in 4 coordinates (x_min, y_min, x_max, y_max); got {a.shape}, {b.shape}.")
    return np.asarray(_iou_tensor(a, b, dtype="float64"), np.float64)


def box_mass_share(maps, boxes):
    """Share of each map's positive mass that lies inside its box.

    Parameters
    ----------
    maps : float array of shape (N, H, W)
        Heat-maps in any units; negative values count as 0.
    boxes : float array of shape (N, 4)
        One box per map, (x_min, y_min, x_max, y_max) normalised to [0, 1]. A pixel counts
        when its centre ((col + 0.5) / W, (row + 0.5) / H) lies in the box, edges included.

    Returns
    -------
    share : float32 ndarray of shape (N,), values in [0, 1]
        0 for a map with no positive value.

    Raises
    ------
    ValueError
        ``maps`` not 3-D, or ``boxes`` not (N, 4) with one box per map.

    Notes
    -----
    A course measure (no paper): does the model look at the digit or at a cue? Used in
    notebooks 07 and 11.
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


def localization_accuracy(model, images, labels, boxes, method="grad_cam", threshold=0.2, iou_threshold=0.5,
                          layer=None, batch_size=64, output=None) -> dict:
    """Weakly supervised localization scores, by the CAM paper's protocol.

    For each image: the map of its true class by ``method``, :func:`cam_to_box` at
    ``threshold``, and the IoU with the ground-truth box (the best over the K boxes when
    ``boxes`` is (N, K, 4)).

    Parameters
    ----------
    model, images, layer, batch_size, output
        As in :func:`grad_cam`.
    labels : int array of shape (N,) or (N, 1), or one-hot (N, K)
        The true classes, in [0, classes).
    boxes : float array of shape (N, 4) or (N, K, 4)
        Ground-truth boxes (x_min, y_min, x_max, y_max) normalised to [0, 1].
    method : str
        "cam", "grad_cam", "grad_cam_plus_plus" or "layer_cam".
    threshold : float in [0, 1)
        As in :func:`cam_to_box`.
    iou_threshold : float
        The IoU a box needs to count as found (0.5 in the paper).

    Returns
    -------
    scores : dict
        ``classification_accuracy``, ``localization_accuracy`` (top-1: class right *and*
        IoU >= ``iou_threshold``, the complement of the paper's top-1 localization error),
        ``gt_known_localization_accuracy`` (IoU >= ``iou_threshold`` whatever the
        prediction) and ``mean_iou``: floats in [0, 1]; ``iou``: float32 ndarray (N,).

    Raises
    ------
    ValueError
        As :func:`grad_cam`; an unknown ``method``; ``labels`` not class ids or one-hot, not
        one per image, or out of the model's classes; ``boxes`` not (N, 4) or (N, K, 4);
        ``threshold`` outside [0, 1).

    References
    ----------
    Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016, Sec. 3
    (ILSVRC's localization protocol: IoU >= 0.5 with a ground-truth box). Used in notebooks
    07 and 09.
    """
    model = _select_output(model, output)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    images = check_images(images)
    labels = class_ids(labels)  # (N,), (N, 1) or one-hot (N, K)
    boxes = np.asarray(boxes, np.float32)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have one class per image (N = {len(images)}); got {len(labels)}.")
    if boxes.shape[0] != len(images) or boxes.shape[-1] != 4 or boxes.ndim not in (2, 3):
        raise ValueError(f"boxes must be (N, 4) or (N, K, 4) with N = {len(images)}; got shape {boxes.shape}.")
    graph = _graph(model, images)
    labels = _check_classes(labels, len(images), graph.n_classes)
    maps, _, logits = _class_maps(method, model, images, labels, layer, True, batch_size)
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
    """Share of maps whose :func:`cam_to_box` box reaches ``iou_threshold``, for each threshold.

    The CAM paper fixed the threshold at 20% of the map's max for GoogLeNet on ImageNet.
    Choe et al. show that the best threshold differs between models and methods, and that
    comparisons are only fair when each method's threshold is chosen on a held-out split
    with boxes. This is their box accuracy as a function of the threshold; its maximum is
    their MaxBoxAcc. Choose the threshold on the validation set, then score the test set at it.

    Parameters
    ----------
    maps : float array of shape (N, H, W)
        Heat-maps in any units.
    boxes : float array of shape (N, 4) or (N, K, 4)
        Ground-truth boxes, normalised (the best of the K counts).
    thresholds : float or float array of shape (T,)
        Fractions of each map's max, each in [0, 1).
    iou_threshold : float
        The IoU a box needs to count (0.5 for MaxBoxAcc).

    Returns
    -------
    accuracy : float32 ndarray of shape (T,), values in [0, 1]

    Raises
    ------
    ValueError
        ``maps`` not 3-D; ``boxes`` not (N, 4) or (N, K, 4); a threshold outside [0, 1).

    References
    ----------
    Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right", CVPR
    2020, Sec. 4 (BoxAcc and MaxBoxAcc). Used in notebook 07.
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



def map_to_box(heatmap, threshold: float = 0.2) -> np.ndarray:
    """Box of one map's largest 8-connected blob above ``threshold`` x its max.

    Parameters
    ----------
    heatmap : float array of shape (H, W)
    threshold : float in [0, 1)
        Fraction of the map's max.

    Returns
    -------
    box : float32 ndarray of shape (4,)
        (x_min, y_min, x_max, y_max) normalised to [0, 1], as :func:`cam_to_box`.

    Raises
    ------
    ValueError
        ``heatmap`` not 2-D; ``threshold`` outside [0, 1).

    References
    ----------
    Zhou et al. (2016), Sec. 3. Used in notebook 07, exercise 3 (the reference solution).
    """
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be one (H, W) map; got shape {heatmap.shape}.")
    return cam_to_box(heatmap, threshold)


