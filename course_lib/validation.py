"""The shared validators of course_lib: checks at a module's boundary, with clear errors.

Every module validates its inputs where they enter and raises a ``ValueError`` that
says what was wrong and what to do; the checks that several modules share live here:

* :func:`check_images`: a batch of float32 images in [0, 1], shape (N, H, W, C).
* :func:`check_positive_int`: a positive integer (sizes, counts, steps).
* :func:`class_ids`: labels (N,), (N, 1) or one-hot (N, K) read as int64 class ids.

``course_lib.data`` re-exports them (``data.check_images`` and the rest keep working).
Checks that one module alone needs stay private in that module.
"""

from __future__ import annotations

import numpy as np


def check_images(images, name: str = "images", channels: int | None = None) -> np.ndarray:
    """Validate a batch of images at a course_lib boundary and return it as float32.

    Parameters
    ----------
    images : array-like of shape (N, H, W, C)
        Floating-point images with values in [0, 1] (the course convention).
    name : str
        The argument's name, used in the error message.
    channels : int or None
        If given, the required size of the last (channel) axis.

    Returns
    -------
    images : float32 ndarray of shape (N, H, W, C)
        The same values (no copy when already float32).

    Raises
    ------
    ValueError
        ``images`` not 4-D (with the fix for a missing channel or batch axis), not
        floating point (with the 1/255 fix), outside [0, 1], containing NaN or Inf, or
        with another number of channels than ``channels``.

    Notes
    -----
    Used by every course_lib module that takes images (notebooks 01-11).
    """
    arr = np.asarray(images)
    if arr.ndim != 4:
        hint = " Add a channel axis with images[..., None]." if arr.ndim == 3 else ""
        hint += " Add a batch axis with images[None]." if arr.ndim == 3 and arr.shape[-1] in (1, 3) else ""
        raise ValueError(f"{name} must be a 4-D array (N, H, W, C); got shape {arr.shape}.{hint}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"{name} must be floating point in [0, 1]; got dtype {arr.dtype}. "
            "Convert with images.astype('float32') / 255 for 8-bit images."
        )
    if arr.size and (np.nanmin(arr) < 0.0 or np.nanmax(arr) > 1.0):
        raise ValueError(
            f"{name} must lie in [0, 1]; got values in [{float(np.nanmin(arr)):.3g}, {float(np.nanmax(arr)):.3g}]. "
            "Scale 8-bit images by 1/255; keep normalisation inside the model."
        )
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf values.")
    if channels is not None and arr.shape[-1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s) (last axis); got shape {arr.shape}.")
    return arr.astype(np.float32, copy=False)


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an int if it is a positive integer.

    Parameters
    ----------
    value : int or numpy integer
        A size, count or number of steps. ``bool`` is refused, although it is an int.
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    value : int
        ``value`` as a Python int, > 0.

    Raises
    ------
    ValueError
        ``value`` is not an integer, is a bool, or is <= 0.

    Notes
    -----
    Used across course_lib (sizes, counts, steps) in notebooks 01-11.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def class_ids(labels, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Integer class ids, int64 (N,), from labels of shape (N,), (N, 1) or one-hot (N, K).

    The three shapes the course meets: MNIST's (N,), CIFAR-10's (N, 1) and one-hot
    (N, K) rows (exactly one 1, the rest 0, any numeric dtype). The one place where every
    label-taking helper of ``course_lib`` reads labels.

    Parameters
    ----------
    labels : array-like of shape (N,), (N, 1) or (N, K)
        Integer class ids, or one-hot rows.
    num_classes : int or None
        If given: ids must lie in [0, num_classes), and one-hot rows must have K = num_classes.
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    ids : int64 ndarray of shape (N,)

    Raises
    ------
    ValueError
        A non-numeric or bool dtype; rows that are not one-hot (soft targets, scores);
        K != num_classes; float ids; ids outside [0, num_classes); any other shape
        (for example (N, H, W)), named in the message.

    Notes
    -----
    Used by the training, metrics, localization and explain helpers (notebooks 01-11).
    """
    arr = np.asarray(labels)
    shape = arr.shape
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must be integer class ids (N,) or (N, 1), or one-hot (N, K); got dtype {arr.dtype}.")
    if arr.ndim == 2 and shape[1] > 1:
        onehot = np.all((arr == 0) | (arr == 1)) and np.all(arr.sum(axis=1) == 1)
        if not onehot:
            raise ValueError(f"{name} of shape {shape} are not one-hot (one 1 per row, the rest 0): soft targets or "
                             "scores are not labels. Pass class ids (N,) or one-hot rows.")
        if num_classes is not None and shape[1] != num_classes:
            raise ValueError(f"{name} are one-hot with {shape[1]} columns but num_classes is {num_classes}.")
        return arr.argmax(axis=1).astype(np.int64)
    if arr.ndim == 2 and shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be class ids (N,) or (N, 1), or one-hot (N, K); got shape {shape}.")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} of shape {shape} must be integer class ids; got dtype {arr.dtype} (values such as "
                         f"{arr[:3].tolist()}). Convert whole numbers with .astype(int); threshold scores first.")
    if arr.size and (arr.min() < 0 or (num_classes is not None and arr.max() >= num_classes)):
        upper = "" if num_classes is None else f", {num_classes}"
        raise ValueError(f"{name} must lie in [0{upper}); got values in [{arr.min()}, {arr.max()}].")
    return arr.astype(np.int64)
