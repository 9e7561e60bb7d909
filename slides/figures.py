"""Figures of the lecture decks, drawn at build time from course_lib and the course data.

Each function returns a matplotlib Figure; a deck asks for one with ``![caption](fig:name)``.
They use only offline data and small, fast computations (a deck builds in about a minute
on a laptop CPU). Nothing here is pasted from elsewhere.
"""

import numpy as np


def cluttered_examples():
    """Day 1 / 5: cluttered digits with their ground-truth boxes."""
    from course_lib import data, viz

    d = data.make_cluttered_digits(12, subset="train", seed=1)
    return viz.show_images(d.images, d.labels, boxes=d.boxes, ncols=6, size=1.5,
                           title="cluttered digits: real digits on real textures, with boxes")


def six_challenges():
    """Day 1: the challenges shown on one real photo (chelsea the cat)."""
    import matplotlib.pyplot as plt
    from scipy import ndimage

    from course_lib import data

    cat = data.load_photo("chelsea", size=160)
    rng = np.random.default_rng(0)
    occluded = cat.copy()
    occluded[40:110, 50:120] = 0.1
    dx, dy = (ndimage.gaussian_filter(rng.uniform(-1, 1, cat.shape[:2]), 6) * 60 for _ in range(2))
    yy, xx = np.meshgrid(np.arange(160), np.arange(160), indexing="ij")
    warped = np.stack([ndimage.map_coordinates(cat[..., c], [yy + dy, xx + dx], order=1, mode="reflect")
                       for c in range(3)], -1)
    texture = data.load_texture("gravel")[:160, :160, None]
    cluttered = np.clip(0.55 * cat + 0.45 * texture, 0, 1)
    panels = {"original": cat, "viewpoint (rotated 35°)": np.clip(ndimage.rotate(cat, 35, reshape=False, mode="nearest"), 0, 1),
              "illumination (x0.35)": cat * 0.35, "deformation (elastic)": np.clip(warped, 0, 1),
              "occlusion": occluded, "background clutter": cluttered}
    fig, axes = plt.subplots(1, 6, figsize=(13, 2.6))
    for ax, (name, img) in zip(axes, panels.items()):
        ax.imshow(img)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig
