"""Plot helpers shared by the notebooks: image grids (with optional boxes) and training curves.

Every function returns the matplotlib Figure, titled and labelled, so a notebook can
show it and a slide build can save it. Used in every notebook.
"""

from __future__ import annotations

import numpy as np


def _titles(values, name):
    """Strings as they are; numbers as class ids (N,) from (N,), (N, 1) or one-hot (N, K)."""
    if values is None or np.asarray(values).dtype.kind in "USO":
        return values
    from .validation import class_ids

    return class_ids(values, name=name)


def show_images(images, labels=None, class_names=None, predictions=None, boxes=None, ncols: int = 8,
                title: str | None = None, size: float = 1.6):
    """Show a grid of images with their labels (and predictions, and boxes) as titles.

    ``images`` (N, H, W, C) or (N, H, W) in [0, 1]; ``labels`` / ``predictions`` class
    ids (N,), (N, 1) or one-hot (N, K) (read by ``validation.class_ids``, shown through
    ``class_names`` when given) or strings; a wrong prediction is titled in red.
    ``boxes`` (N, 4) or (N, K, 4) normalised (x_min, y_min, x_max, y_max) are drawn in white.
    """
    import matplotlib.pyplot as plt

    labels, predictions = _titles(labels, "labels"), _titles(predictions, "predictions")
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C); got shape {images.shape}.")
    n = len(images)
    if n == 0:
        raise ValueError("images is empty: nothing to show.")
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if title else 0)), squeeze=False)

    def name(v):
        return class_names[int(v)] if class_names is not None and not isinstance(v, str) else str(v)

    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        text, colour = "", "black"
        if labels is not None:
            text = name(labels[i])
        if predictions is not None:
            text = f"{text} / {name(predictions[i])}" if text else name(predictions[i])
            if labels is not None and name(labels[i]) != name(predictions[i]):
                colour = "red"
        ax.set_title(text, fontsize=9, color=colour)
        if boxes is not None:
            h, w = img.shape[:2]
            for b in np.asarray(boxes[i], dtype=float).reshape(-1, 4):
                ax.add_patch(plt.Rectangle((b[0] * w - 0.5, b[1] * h - 0.5), (b[2] - b[0]) * w, (b[3] - b[1]) * h,
                                           fill=False, edgecolor="white", linewidth=1.2))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history, metrics=None, title: str | None = None):
    """Plot training and validation curves, one panel per metric (loss first).

    ``history`` is a ``keras.callbacks.History`` or its ``.history`` dict. ``metrics``
    defaults to every key that does not start with ``val_``.
    """
    import matplotlib.pyplot as plt

    hist = getattr(history, "history", history)
    if not isinstance(hist, dict) or not hist:
        raise ValueError("history must be a keras History or a non-empty dict of per-epoch lists.")
    keys = list(metrics) if metrics is not None else [k for k in hist if not k.startswith("val_") and k != "learning_rate"]
    missing = [k for k in keys if k not in hist]
    if missing:
        raise ValueError(f"history has no {missing}; available: {sorted(hist)}.")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        epochs = np.arange(1, len(hist[key]) + 1)
        ax.plot(epochs, hist[key], "o-", ms=3, label="training")
        if f"val_{key}" in hist:
            ax.plot(epochs, hist[f"val_{key}"], "s-", ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def bar_table(values: dict, ylabel: str, title: str, reference: float | None = None, fmt: str = "{:.1%}"):
    """A bar chart of ``{name: value}`` with each value written above its bar (and an optional reference line)."""
    import matplotlib.pyplot as plt

    if not values:
        raise ValueError("values is empty: nothing to plot.")
    names, vals = list(values), [float(v) for v in values.values()]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 * len(names)), 3.4))
    bars = ax.bar(names, vals, color="tab:blue")
    for bar, v in zip(bars, vals):
        ax.annotate(fmt.format(v), (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    if reference is not None:
        ax.axhline(reference, color="tab:red", ls="--", lw=1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def filter_grid(kernel, ncols: int = 8, title: str | None = None, size: float = 0.9):
    """Show the filters of a first convolution layer, each scaled to [0, 1] on its own.

    ``kernel`` is a Conv2D kernel (kh, kw, in_channels, filters): with 3 input channels
    each filter is shown in colour, otherwise its channel mean in grey. Per-filter
    scaling shows each filter's pattern (as in Krizhevsky et al. 2012, Fig. 3), not
    its magnitude. Used in notebook 08.
    """
    k = np.asarray(kernel, dtype=np.float32)
    if k.ndim != 4:
        raise ValueError(f"kernel must be a 4-D Conv2D kernel (kh, kw, in, filters); got shape {k.shape}.")
    if k.shape[2] != 3:
        k = k.mean(axis=2)  # (kh, kw, filters): grey
    return show_images(scale_filters(k).astype(np.float32), ncols=ncols, title=title, size=size)


def scale_filters(kernel) -> np.ndarray:
    """Per-filter min-max scaling of a conv kernel, filters first: (filters, ...) in [0, 1], float64.

    ``kernel`` has the filters on its last axis (Keras' (kh, kw, in, filters)); each
    filter is mapped to [0, 1] on its own (a constant filter gives 0), which shows its
    pattern, not its magnitude (Krizhevsky et al. 2012, Fig. 3). Used by
    :func:`filter_grid`; notebook 08, exercise 1.
    """
    k = np.moveaxis(np.asarray(kernel, dtype=np.float64), -1, 0)
    axes = tuple(range(1, k.ndim))
    lo = k.min(axis=axes, keepdims=True)
    span = k.max(axis=axes, keepdims=True) - lo
    return np.where(span > 0, (k - lo) / np.where(span > 0, span, 1.0), 0.0)


def activation_grid(activations, ncols: int = 8, max_maps: int = 32, title: str | None = None, size: float = 1.2):
    """Show the feature maps of one image, (h, w, channels), one panel per channel.

    Each map is shown with its own colour range (viridis); the panel title is the
    channel index and its maximum. Used in notebook 08.
    """
    import matplotlib.pyplot as plt

    a = np.asarray(activations, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"activations must be (h, w, channels) for one image; got shape {a.shape}.")
    n = min(a.shape[-1], max_maps)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if title else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(a[..., i], cmap="viridis")
            ax.set_title(f"{i}: {a[..., i].max():.2g}", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def heatmap_grid(images, rows: dict, titles=None, boxes=None, title: str = ""):
    """Heat-maps side by side: one column per image, one row per method, with a colour bar.

    ``rows`` maps a row name to maps (N, H, W), each drawn over its image relative to
    its own max (``course_lib.explain.overlay``); ``None`` shows the images alone.
    ``titles``: one per column; ``boxes`` (N, 4) or (N, K, 4) normalised (x_min, y_min,
    x_max, y_max), drawn in green. Used in notebooks 07 and 09 and the day-5/6 slides.
    """
    import matplotlib.pyplot as plt

    from .explain.display import overlay

    images = np.asarray(images)
    if images.ndim != 4 or not rows:
        raise ValueError(f"need images (N, H, W, C) and at least one row; got {images.shape} and {len(rows)} rows.")
    n, h, w = images.shape[:3]
    for name, maps in rows.items():
        if maps is not None and len(maps) != n:
            raise ValueError(f"row {name!r} has {len(maps)} maps for {n} images.")
    fig, axes = plt.subplots(len(rows), n, figsize=(1.9 * n + 0.8, 1.9 * len(rows)), squeeze=False)
    for r, (name, maps) in enumerate(rows.items()):
        for i, ax in enumerate(axes[r]):
            ax.imshow(overlay(images[i], maps[i], alpha=0.55) if maps is not None else images[i])
            ax.set_xticks([]), ax.set_yticks([])
            for b in [] if boxes is None else np.asarray(boxes[i], float).reshape(-1, 4):
                ax.add_patch(plt.Rectangle((b[0] * w - 0.5, b[1] * h - 0.5), (b[2] - b[0]) * w, (b[3] - b[1]) * h,
                                           fill=False, edgecolor="lime", linewidth=1.2))
            if r == 0 and titles is not None:
                ax.set_title(titles[i], fontsize=9)
        axes[r][0].set_ylabel(name, fontsize=9)
    fig.colorbar(plt.cm.ScalarMappable(cmap="jet", norm=plt.Normalize(0, 1)), ax=axes, fraction=0.02,
                 label="map / its max")
    fig.suptitle(title)
    return fig
