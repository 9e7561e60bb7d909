"""Datasets of the course: real data that works offline, a generated localization set, real online loaders.

Offline (shipped inside scikit-learn and scikit-image, so CI and a laptop without
network can use them):

* :func:`load_digits`: 1,797 real handwritten digits, 8x8, 10 classes (UCI / sklearn).
* :func:`load_faces`: 200 grey 25x25 images, 100 faces (LFW) and 100 non-faces.
* :func:`load_photo` and :func:`load_texture`: real photos and textures.
* :func:`make_cluttered_digits`: real digits pasted on real textures with clutter,
  with the ground-truth box kept as a label (the card is ``data/cluttered_digits.md``).

Online (for Colab and GPU users): :func:`load_online` reads MNIST, Fashion-MNIST and
CIFAR-10 from the Keras cache and downloads them with ``keras.datasets`` when missing.

Splits and pipelines: :func:`train_val_test_split`, :func:`stratified_kfold`,
:func:`make_dataset` (tf.data: shuffle, augment, batch, prefetch).

Conventions: images are float32 in [0, 1], shape (N, H, W, C); labels are int64;
boxes are (x_min, y_min, x_max, y_max) normalised by the image width and height.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zipfile
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .validation import check_images, check_positive_int, class_ids

# --------------------------------------------------------------------------- checks


def _check_name(name, options, what: str) -> str:
    if name not in options:
        raise ValueError(f"unknown {what} {name!r}; choose one of: {', '.join(sorted(options))}.")
    return name


# ---------------------------------------------------------------- offline real data


def load_digits():
    """Return the 1,797 real handwritten digits of scikit-learn as images.

    Returns ``(images, labels)``: float32 (1797, 8, 8, 1) in [0, 1] (the 0..16 ink
    counts divided by 16) and int64 labels 0..9. Used in notebooks 01, 02, 06.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    images = (d.images / 16.0).astype(np.float32)[..., None]
    return images, d.target.astype(np.int64)


def load_faces():
    """Return scikit-image's LFW subset: 100 faces then 100 non-faces, grey 25x25.

    Returns ``(images, labels)``: float32 (200, 25, 25, 1) in [0, 1] and int64
    labels, 1 for a face and 0 for a non-face. A real binary task (notebook 06).
    """
    from skimage import data as skdata

    images = skdata.lfw_subset().astype(np.float32)[..., None]
    labels = np.r_[np.ones(100), np.zeros(100)].astype(np.int64)
    return np.clip(images, 0.0, 1.0), labels


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")
TEXTURES = ("grass", "gravel", "brick")


def load_photo(name: str, size: int | None = None) -> np.ndarray:
    """Return a real RGB photo as float32 (H, W, 3) in [0, 1].

    ``name`` is one of :data:`PHOTOS` (skimage's astronaut, chelsea the cat, coffee,
    rocket; scikit-learn's china and flower). With ``size``, returns the largest
    centre square resized to ``size`` x ``size``, handy as a model's input.
    """
    _check_name(name, PHOTOS, "photo")
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    else:
        from skimage import data as skdata

        img = getattr(skdata, name)()
    img = img.astype(np.float32) / 255.0
    if size is not None:
        size = check_positive_int(size, "size")
        h, w = img.shape[:2]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        from skimage.transform import resize

        img = resize(img[top : top + s, left : left + s], (size, size), anti_aliasing=True).astype(np.float32)
    return img


@lru_cache(maxsize=None)
def load_texture(name: str) -> np.ndarray:
    """Return one of skimage's real grey textures (:data:`TEXTURES`) as float32 (512, 512) in [0, 1]."""
    _check_name(name, TEXTURES, "texture")
    from skimage import data as skdata

    tex = getattr(skdata, name)().astype(np.float32) / 255.0
    tex.setflags(write=False)
    return tex


# ------------------------------------------------------------- cluttered digits


CLASS_NAMES = tuple(str(i) for i in range(10))
SUBSETS = ("train", "val", "test")
VARIANTS = ("single", "two_instances", "spurious")
CUES = ("label", "random", "none")


@dataclass
class ClutteredDigits:
    """A generated localization set (see ``data/cluttered_digits.md``).

    ``images`` float32 (N, S, S, 3) in [0, 1]; ``labels`` int64 (N,); ``boxes``
    float32 (N, 4), or (N, 2, 4) for the two-instance variant, normalised
    (x_min, y_min, x_max, y_max); ``cue_boxes`` (N, 4) for the spurious variant
    (all zeros where no cue was drawn), else None.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    cue_boxes: np.ndarray | None = None
    class_names: tuple = CLASS_NAMES

    def __len__(self):
        return len(self.labels)


@lru_cache(maxsize=1)
def _digit_pools():
    """Fixed, disjoint, stratified pools of source digits: 60% train, 20% val, 20% test.

    Keeping the pools apart means no digit image appears in two subsets, so test
    accuracy measures generalisation to digit images the model has not seen. It is not a
    split by writer: scikit-learn's digits (the test part of UCI optdigits, 13 writers)
    record no writer per image, so one person's handwriting may appear in every pool.
    """
    from sklearn.model_selection import train_test_split

    images, labels = load_digits()
    idx = np.arange(len(labels))
    tr, rest = train_test_split(idx, test_size=0.4, stratify=labels, random_state=12345)
    va, te = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=12345)
    ink = images[..., 0]
    return ink, labels, {"train": np.sort(tr), "val": np.sort(va), "test": np.sort(te)}


def _bright_colour(rng) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.85, 1.0)), np.float32)


# Why the generator keeps its own resize (issue 16 asked for one resize in course_lib): the
# cluttered digits must stay the same bit for bit, because the notebooks' bars, the dataset
# cache and the model zoo's cards rest on them. course_lib.explain.resize_maps (TF's bilinear
# resize, float32) changes them: all 19 sets tried (3 variants x 3 seeds x 2 subsets, one
# 64 px set) differed, by up to 7.3e-07. scipy.ndimage.zoom(order=1, grid_mode=True,
# mode="nearest") reproduced every resize of the generator we tried (every digit at 4-99 px
# and 3 million fragment crops under scipy 1.17.1, a sample under the floor, 1.11.4), as did
# skimage.transform.resize(order=1) on the 19 sets, but only by rounding luck: on random
# float32 arrays 76 of 200 resizes differ from this one in the last bit, and the cache key
# does not include scipy's version. This NumPy code gives the same bits everywhere. The
# note is a comment, not the docstring, because this function's source is part of the cache key
# (_GENERATOR_PARTS), which inspect.getsource reads without the comments above it.
def _resize(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of a 2-D array (pixel centres aligned, edges clamped), in NumPy."""
    h, w = a.shape
    ys = np.clip((np.arange(out_h) + 0.5) * h / out_h - 0.5, 0, h - 1)
    xs = np.clip((np.arange(out_w) + 0.5) * w / out_w - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = a[y0][:, x0] * (1 - wx) + a[y0][:, x1] * wx
    bottom = a[y1][:, x0] * (1 - wx) + a[y1][:, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


@lru_cache(maxsize=None)
def _texture_scales(name: str) -> tuple:
    """A texture at scales 1, 1/2, 1/3 and 1/4 (block means), computed once."""
    tex = load_texture(name)
    out = []
    for f in (1, 2, 3, 4):
        n = (tex.shape[0] // f) * f
        out.append(tex[:n, :n].reshape(n // f, f, n // f, f).mean(axis=(1, 3)).astype(np.float32))
    return tuple(out)


def _background(rng, size: int) -> np.ndarray:
    """A dim, tinted random crop of a real texture at a random scale, (size, size, 3)."""
    scales = _texture_scales(TEXTURES[rng.integers(len(TEXTURES))])
    tex = scales[rng.integers(len(scales))]
    top, left = rng.integers(0, tex.shape[0] - size, size=2)
    patch = tex[top : top + size, left : left + size]
    tint = 0.5 + 0.5 * rng.random(3).astype(np.float32)
    lo, hi = rng.uniform(0.05, 0.2), rng.uniform(0.35, 0.55)
    return (lo + (hi - lo) * patch)[..., None].astype(np.float32) * tint


def _paste(canvas, alpha, colour, top, left):
    h, w = alpha.shape
    region = canvas[top : top + h, left : left + w]
    a = alpha[..., None]
    canvas[top : top + h, left : left + w] = region * (1.0 - a) + colour * a


def _ink_box(alpha, top, left, size, thresh=0.25):
    rows = np.flatnonzero((alpha > thresh).any(axis=1))
    cols = np.flatnonzero((alpha > thresh).any(axis=0))
    return np.array([left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1], np.float32) / size


def _overlap(box_a, box_b, margin=0.0):
    return not (
        box_a[2] + margin <= box_b[0] or box_b[2] + margin <= box_a[0]
        or box_a[3] + margin <= box_b[1] or box_b[3] + margin <= box_a[1]
    )


def _scaled_digit(ink, px, rng):
    alpha = _resize(ink, px, px)
    return np.clip(alpha * rng.uniform(1.0, 1.3), 0.0, 1.0).astype(np.float32)


def _place(rng, size, px, avoid, tries=50):
    """Top-left corner for a px-sized square that avoids the boxes in ``avoid`` (pixels)."""
    for _ in range(tries):
        top, left = rng.integers(0, size - px + 1, size=2)
        box = (left, top, left + px, top + px)
        if not any(_overlap(box, b, margin=1) for b in avoid):
            return int(top), int(left)
    return None


# ------------------------------------------------------------------ the set cache

#: The generator's building blocks: their source text is part of the cache key, so a cache
#: written by an older generator is never reused (see :func:`_cache_key`).
_GENERATOR_PARTS = ("_digit_pools", "_bright_colour", "_resize", "_texture_scales", "_background", "_paste",
                    "_ink_box", "_overlap", "_scaled_digit", "_place", "_generate_cluttered_digits")


def cache_dir() -> str:
    """Where generated sets are cached: ``$COURSE_LIB_CACHE``, else ``<keras cache>/course_lib``.

    The same policy as ``keras.datasets`` (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``,
    see :func:`keras_cache_dir`). The folder is safe to delete; ``COURSE_LIB_CACHE=off``
    turns the cache off. Used by :func:`make_cluttered_digits`.
    """
    return os.environ.get("COURSE_LIB_CACHE") or os.path.join(keras_cache_dir(), "course_lib")


def _cache_key(kind: str, args: dict) -> str:
    """sha256 of the arguments, the generator's source and the versions of the data it reads."""
    import hashlib
    import inspect
    import json

    import skimage
    import sklearn

    h = hashlib.sha256()
    h.update(json.dumps({"kind": kind, "args": args}, sort_keys=True, default=str).encode())
    for name in _GENERATOR_PARTS:
        h.update(inspect.getsource(globals()[name]).encode())
    h.update(f"numpy {np.__version__} sklearn {sklearn.__version__} skimage {skimage.__version__}".encode())
    return h.hexdigest()


def _cached(kind: str, args: dict, make):
    """``make()``'s dict of arrays, read from the cache when its key matches, else made and stored.

    A file whose stored key differs (an older generator, another version) or that cannot be
    read (truncated) is regenerated and replaced, never reused. Writes are atomic (a temporary
    file renamed), so two notebooks running at once cannot read half a file.
    """
    folder = cache_dir()
    if folder.lower() in ("off", "0", "none"):
        return make()
    key = _cache_key(kind, args)
    path = os.path.join(folder, f"{kind}-{key[:20]}.npz")
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["cache_key"]) == key:
                return {k: f[k] for k in f.files if k != "cache_key"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # missing, truncated or foreign: make it again
    arrays = make()
    try:
        import tempfile

        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, cache_key=np.array(key), **{k: v for k, v in arrays.items() if v is not None})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError:  # a read-only home: work without the cache
        pass
    return arrays


def clear_cache() -> int:
    """Delete every cached set in :func:`cache_dir`; returns how many files were removed."""
    folder, removed = cache_dir(), 0
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.endswith((".npz", ".tmp")):
                os.remove(os.path.join(folder, name))
                removed += 1
    return removed


def make_cluttered_digits(
    n: int,
    subset: str = "train",
    image_size: int = 48,
    variant: str = "single",
    digit_size: tuple = (16, 28),
    n_clutter: int = 4,
    cue: str = "label",
    seed: int = 0,
) -> ClutteredDigits:
    """Generate ``n`` cluttered-digit images with their class and ground-truth box.

    Each image: a dim, tinted crop of a real texture (skimage grass / gravel / brick);
    one real handwritten digit from the ``subset``'s pool (see :func:`_digit_pools`),
    bilinearly scaled to ``digit_size`` pixels and drawn in a bright random colour;
    ``n_clutter`` fragments of other digits (a 3x3 to 5x5 crop, same scale) placed
    away from the object. The box is the tight box of the digit's ink.

    Variants: ``"two_instances"`` draws two digits of the same class (boxes (N, 2, 4));
    ``"spurious"`` adds a small magenta square whose horizontal position encodes the
    label when ``cue="label"`` (use for training), sits at a random position when
    ``cue="random"``, or is absent with ``cue="none"`` (use for testing).
    Deterministic: the same arguments give the same images. Used in notebooks 03-11.

    Each set is made once per argument set and cached on disk (:func:`cache_dir`, the
    Keras datasets' folder policy); the cache key includes the generator's source, so a
    changed generator never reads an old file. Delete the folder, or call
    :func:`clear_cache`, at any time.
    """
    n = check_positive_int(n, "n")
    image_size = check_positive_int(image_size, "image_size")
    _check_name(subset, SUBSETS, "subset")
    _check_name(variant, VARIANTS, "variant")
    _check_name(cue, CUES, "cue")
    if n_clutter < 0:
        raise ValueError(f"n_clutter must be >= 0; got {n_clutter}.")
    lo, hi = digit_size
    if not (4 <= lo <= hi):
        raise ValueError(f"digit_size must be (min, max) with 4 <= min <= max; got {digit_size}.")
    # Two digits must fit side by side with a pixel between them.
    max_px = image_size // 2 - 1 if variant == "two_instances" else image_size - 2
    if hi > max_px:
        raise ValueError(
            f"digit_size max {hi} does not fit a {image_size}px image for variant {variant!r} "
            f"(at most {max_px}); make image_size larger or digit_size smaller."
        )
    args = dict(n=n, subset=subset, image_size=image_size, variant=variant, digit_size=[int(lo), int(hi)],
                n_clutter=int(n_clutter), cue=cue, seed=int(seed))
    out = _cached("cluttered_digits", args, lambda: _generate_cluttered_digits(**args))
    return ClutteredDigits(out["images"], out["labels"], out["boxes"], out.get("cue_boxes"))


def _generate_cluttered_digits(n, subset, image_size, variant, digit_size, n_clutter, cue, seed) -> dict:
    """The generator behind :func:`make_cluttered_digits` (arguments already checked); a dict of arrays."""
    lo, hi = digit_size
    ink, all_labels, pools = _digit_pools()
    pool = pools[subset]
    rng = np.random.default_rng([seed, SUBSETS.index(subset), VARIANTS.index(variant)])
    images = np.empty((n, image_size, image_size, 3), np.float32)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    n_obj = 2 if variant == "two_instances" else 1
    boxes = np.zeros((n, n_obj, 4), np.float32)
    cue_boxes = np.zeros((n, 4), np.float32) if variant == "spurious" else None
    by_class = {c: pool[all_labels[pool] == c] for c in range(10)}
    cue_px = max(3, image_size // 12)
    for i in range(n):
        canvas = _background(rng, image_size)
        taken = []
        if variant == "spurious" and cue != "none":
            slot = labels[i] if cue == "label" else rng.integers(10)
            left = int(round(slot * (image_size - cue_px) / 9))
            top = 0 if slot % 2 == 0 else image_size - cue_px  # alternate top / bottom edge
            canvas[top : top + cue_px, left : left + cue_px] = (1.0, 0.0, 1.0)
            taken.append((left, top, left + cue_px, top + cue_px))
            cue_boxes[i] = np.array(taken[-1], np.float32) / image_size
        for k in range(n_obj):
            for _attempt in range(20):
                px = int(rng.integers(lo, hi + 1))
                spot = _place(rng, image_size, px, taken)
                if spot is not None:
                    break
            else:  # rare: the first digit sits so that no random spot is free; search every spot
                px = lo
                free = [(t, left) for t in range(image_size - px + 1) for left in range(image_size - px + 1)
                        if not any(_overlap((left, t, left + px, t + px), b, margin=1) for b in taken)]
                if not free:
                    raise ValueError(f"could not place {n_obj} digits of {digit_size} px in a {image_size}px image; "
                                     "use a smaller digit_size or a larger image_size.")
                spot = free[int(rng.integers(len(free)))]
            alpha = _scaled_digit(ink[rng.choice(by_class[int(labels[i])])], px, rng)
            _paste(canvas, alpha, _bright_colour(rng), *spot)
            boxes[i, k] = _ink_box(alpha, spot[0], spot[1], image_size)
            taken.append((spot[1], spot[0], spot[1] + px, spot[0] + px))
        scale = (lo + hi) / 16.0
        for _ in range(n_clutter):
            src = ink[rng.choice(pool)]
            fh, fw = rng.integers(3, 6, size=2)
            r0, c0 = rng.integers(0, 8 - fh + 1), rng.integers(0, 8 - fw + 1)
            frag = _resize(src[r0 : r0 + fh, c0 : c0 + fw], max(2, int(fh * scale)), max(2, int(fw * scale)))
            frag = np.clip(frag, 0, 1).astype(np.float32)
            spot = _place(rng, image_size, max(frag.shape), taken)
            if spot is not None:
                _paste(canvas, frag * 0.9, _bright_colour(rng), *spot)
        images[i] = np.clip(canvas, 0.0, 1.0)
    out_boxes = boxes[:, 0] if n_obj == 1 else boxes
    return {"images": images, "labels": labels, "boxes": out_boxes, "cue_boxes": cue_boxes}


def cluttered_digits_splits(n_train: int, n_val: int, n_test: int, seed: int = 0, **kwargs) -> dict:
    """Train / validation / test sets of :func:`make_cluttered_digits` from disjoint digit pools.

    Returns ``{"train": ClutteredDigits, "val": ..., "test": ...}``; ``kwargs`` go to
    :func:`make_cluttered_digits` (variant, image_size, cue, ...). For the spurious
    variant the validation and test sets default to ``cue="random"``.
    """
    out = {}
    for subset, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        kw = dict(kwargs)
        if kw.get("variant") == "spurious" and subset != "train":
            kw.setdefault("cue", "random")
        out[subset] = make_cluttered_digits(n, subset=subset, seed=seed, **kw)
    return out


# -------------------------------------------------------------- online loaders

ONLINE = {
    "mnist": "offline, use course_lib.data.load_digits() (real 8x8 handwritten digits)",
    "fashion_mnist": "offline, use course_lib.data.load_digits() or make_cluttered_digits()",
    "cifar10": "offline, use course_lib.data.make_cluttered_digits() (colour images with clutter)",
}


#: Class names of the online datasets, in label order.
ONLINE_CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


class DatasetUnavailableError(RuntimeError):
    """An online dataset is not in the cache and could not be downloaded."""


def offline_message(name: str, err: BaseException, folder: str) -> str:
    """The one-line message of :class:`DatasetUnavailableError`: what failed and the three ways out."""
    reason = " ".join(f"{type(err).__name__}: {err}".split())  # one line, whatever the network error printed
    reason = reason if len(reason) <= 160 else reason[:157] + "..."
    return (
        f"{name} is not in the Keras cache ({folder}) and could not be downloaded ({reason}). "
        f"Connect to the internet and run the cell again, or copy the files keras.datasets.{name}.load_data() "
        f"downloads into that folder; offline, {ONLINE[name]}, or run the notebook's small version with "
        f"course_lib.setup(profile='cpu')."
    )


def keras_cache_dir() -> str:
    """The folder where ``keras.datasets`` caches downloads: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


_FASHION = ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")


def _cached_paths(name, cache):
    if name == "mnist":
        return [os.path.join(cache, "mnist.npz")]
    if name == "fashion_mnist":
        return [os.path.join(cache, "fashion-mnist", f) for f in _FASHION]
    folder = os.path.join(cache, "cifar-10-batches-py-target", "cifar-10-batches-py")
    return [os.path.join(folder, f"data_batch_{i}") for i in range(1, 6)] + [os.path.join(folder, "test_batch")]


def _read_cached(name, paths):
    if name == "mnist":
        with np.load(paths[0]) as f:
            return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
    if name == "fashion_mnist":
        y_tr, x_tr, y_te, x_te = (_read_idx(p) for p in paths)
        return (x_tr, y_tr), (x_te, y_te)
    xs, ys = [], []
    for p in paths:
        with open(p, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        xs.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(batch[b"labels"], np.int64))
    return (np.concatenate(xs[:-1]), np.concatenate(ys[:-1])), (xs[-1], ys[-1])


def _download(name):
    import keras

    return getattr(keras.datasets, name).load_data()


def load_online(name: str, cache_dir: str | None = None):
    """Load MNIST, Fashion-MNIST or CIFAR-10 as the course's float images.

    Reads the files from the Keras cache (``cache_dir``, default :func:`keras_cache_dir`)
    in the format ``keras.datasets`` stores them; when they are missing, downloads them
    with ``keras.datasets.<name>.load_data()``. Offline, raises
    :class:`DatasetUnavailableError` naming the offline dataset to use instead.

    Returns ``((x_train, y_train), (x_test, y_test))`` with float32 (N, H, W, C) images
    in [0, 1] and int64 labels (flattened).
    """
    _check_name(name, ONLINE, "online dataset")
    paths = _cached_paths(name, cache_dir or keras_cache_dir())
    if all(os.path.exists(p) for p in paths):
        (x_tr, y_tr), (x_te, y_te) = _read_cached(name, paths)
    else:
        try:
            (x_tr, y_tr), (x_te, y_te) = _download(name)
        except Exception as err:  # network errors come in many types (URLError, OSError, ...)
            raise DatasetUnavailableError(offline_message(name, err, os.path.dirname(paths[0]))) from None

    def _prep(x, y):
        x = np.asarray(x, np.float32) / 255.0
        return (x[..., None] if x.ndim == 3 else x), np.asarray(y, np.int64).reshape(-1)

    return _prep(x_tr, y_tr), _prep(x_te, y_te)


# ------------------------------------------------------------ splits and pipelines


def _groups(labels, name: str) -> np.ndarray:
    """What to stratify on: a (N,) array as it is, (N, 1) ids or one-hot (N, K) rows as ids."""
    arr = np.asarray(labels)
    return class_ids(arr, name=name) if arr.ndim == 2 else arr if arr.ndim == 1 else class_ids(arr, name=name)


def train_val_test_split(*arrays, fractions=(0.7, 0.15, 0.15), stratify=None, seed: int = 0):
    """Split arrays into train / validation / test parts, stratified by ``stratify`` (labels).

    Returns ``(train, val, test)``, each a tuple with one slice per input array, e.g.
    ``(x_tr, y_tr), (x_va, y_va), (x_te, y_te) = train_val_test_split(x, y, stratify=y)``.
    ``fractions`` must be three positive numbers summing to 1. ``stratify``: (N,) labels
    of any kind, (N, 1) ids or one-hot (N, K) rows (all stratify alike).
    """
    from sklearn.model_selection import train_test_split

    if not arrays:
        raise ValueError("train_val_test_split needs at least one array.")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"all arrays must have the same length; got {[len(a) for a in arrays]}.")
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f <= 0).any() or abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"fractions must be three positive numbers (train, val, test) summing to 1; got {tuple(fractions)} "
            f"(sum {f.sum():.4g})."
        )
    idx = np.arange(n)
    strat = None if stratify is None else _groups(stratify, "stratify")
    tr, rest = train_test_split(idx, train_size=f[0], stratify=strat, random_state=seed)
    va, te = train_test_split(
        rest, train_size=f[1] / (f[1] + f[2]), stratify=None if strat is None else strat[rest], random_state=seed
    )
    return tuple(tuple(np.asarray(a)[part] for a in arrays) for part in (tr, va, te))


def group_split(groups, test_fraction: float = 0.2, seed: int = 0) -> tuple:
    """Split indices so that no group (a person, an object, a scene) has images on both sides.

    ``groups``: (N,) group id of each image. A random ``ceil(test_fraction * G)`` of the G
    groups go to the test side, every image of a group with it (scikit-learn's
    ``GroupShuffleSplit``, which this calls). Returns ``(train_idx, test_idx)``, sorted int
    arrays that together hold every index once. Raises ValueError for fewer than two groups
    or a fraction outside (0, 1). The reference of notebook 11's group-split exercise.
    """
    from sklearn.model_selection import GroupShuffleSplit

    groups = np.asarray(groups)
    if groups.ndim != 1 or len(np.unique(groups)) < 2:
        raise ValueError(f"groups must be a (N,) array with at least two distinct groups; got shape {groups.shape} "
                         f"with {len(np.unique(groups))} group(s).")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}.")
    splitter = GroupShuffleSplit(n_splits=1, test_size=float(test_fraction), random_state=seed)
    train_idx, test_idx = next(splitter.split(np.zeros(len(groups)), groups=groups))
    return np.sort(train_idx), np.sort(test_idx)


def stratified_kfold(labels, k: int = 5, seed: int = 0):
    """Return ``k`` (train_idx, val_idx) pairs; each fold keeps the class proportions.

    ``labels``: (N,) of any values scikit-learn can stratify on (ids, strings, booleans),
    or (N, 1) ids, or one-hot (N, K) (read by :func:`class_ids`).
    """
    from sklearn.model_selection import StratifiedKFold

    k = check_positive_int(k, "k")
    labels = _groups(labels, "labels")
    if k < 2:
        raise ValueError(f"k must be at least 2 for k-fold cross-validation; got {k}.")
    smallest = np.bincount(np.unique(labels, return_inverse=True)[1]).min()
    if smallest < k:
        raise ValueError(f"k={k} folds need at least {k} examples of every class; the smallest class has {smallest}.")
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in folds.split(np.zeros(len(labels)), labels)]


def make_dataset(images, targets=None, batch_size: int = 64, shuffle: bool = False, augment=None, seed: int = 0):
    """A tf.data pipeline: (shuffle) -> batch -> (augment) -> prefetch.

    ``targets`` may be an array or a dict of arrays (multitask heads). ``augment`` is a
    callable on a batch of images (e.g. a ``keras.Sequential`` of random preprocessing
    layers); it is called with ``training=True`` when it accepts it. Apply augmentation
    to training data only. Geometric augmentations do not move boxes: use them for
    classification targets only.
    """
    import tensorflow as tf

    images = check_images(images)
    batch_size = check_positive_int(batch_size, "batch_size")
    if targets is not None:
        lengths = [len(v) for v in (targets.values() if isinstance(targets, dict) else [targets])]
        if any(length != len(images) for length in lengths):
            raise ValueError(f"images ({len(images)}) and targets ({lengths}) must have the same length.")
    ds = tf.data.Dataset.from_tensor_slices(images if targets is None else (images, targets))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:

        def _aug(x, *rest):
            try:
                x = augment(x, training=True)
            except TypeError:
                x = augment(x)
            return (x, *rest) if rest else x

        ds = ds.map(_aug, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
