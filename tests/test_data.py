import gzip
import pickle

import numpy as np
import pytest

from course_lib import data


# ---------------------------------------------------------------- offline real data
def test_load_digits_real_and_scaled():
    x, y = data.load_digits()
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32
    assert 0.0 == x.min() and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


def test_load_faces_is_balanced_binary():
    x, y = data.load_faces()
    assert x.shape == (200, 25, 25, 1) and x.dtype == np.float32
    assert y.sum() == 100 and 0 <= x.min() and x.max() <= 1


@pytest.mark.parametrize("name", data.PHOTOS)
def test_photos_load_offline(name):
    img = data.load_photo(name)
    assert img.ndim == 3 and img.shape[-1] == 3 and img.dtype == np.float32
    assert 0 <= img.min() and img.max() <= 1
    assert data.load_photo(name, size=32).shape == (32, 32, 3)


def test_textures_and_unknown_names():
    assert data.load_texture("brick").shape == (512, 512)
    with pytest.raises(ValueError, match="unknown photo 'dog'; choose one of: astronaut"):
        data.load_photo("dog")
    with pytest.raises(ValueError, match="unknown texture"):
        data.load_texture("wood")


# ---------------------------------------------------------------- cluttered digits
def test_cluttered_digits_shapes_boxes_and_determinism():
    a = data.make_cluttered_digits(64, seed=5)
    b = data.make_cluttered_digits(64, seed=5)
    c = data.make_cluttered_digits(64, seed=6)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (64, 48, 48, 3) and a.images.dtype == np.float32
    assert 0 <= a.images.min() and a.images.max() <= 1
    assert a.boxes.shape == (64, 4)
    assert (a.boxes[:, 2] > a.boxes[:, 0]).all() and (a.boxes[:, 3] > a.boxes[:, 1]).all()
    assert (a.boxes >= 0).all() and (a.boxes <= 1).all()
    assert set(np.unique(a.labels)) <= set(range(10)) and len(a) == 64


def test_cluttered_digit_box_contains_the_bright_digit():
    d = data.make_cluttered_digits(32, seed=1, n_clutter=0)
    size = d.images.shape[1]
    for img, box in zip(d.images, d.boxes):
        x0, y0, x1, y1 = np.round(box * size).astype(int)
        inside = img[y0:y1, x0:x1].max(axis=-1)
        # The digit is drawn in a bright colour on a dim background (max 0.55).
        assert inside.max() > 0.7
        outside = img.max(axis=-1).copy()
        outside[y0:y1, x0:x1] = 0
        assert outside.max() <= 0.6


def test_two_instance_and_spurious_variants():
    two = data.make_cluttered_digits(16, variant="two_instances", image_size=64, digit_size=(14, 24))
    assert two.boxes.shape == (16, 2, 4)
    for b in two.boxes:  # the two instances never overlap
        assert b[0, 2] <= b[1, 0] or b[1, 2] <= b[0, 0] or b[0, 3] <= b[1, 1] or b[1, 3] <= b[0, 1]
    # Large digits for two instances at 48 px (as notebook 07 uses them) are placed.
    assert data.make_cluttered_digits(300, variant="two_instances", digit_size=(12, 22), seed=4).boxes.shape == (300, 2, 4)
    sp = data.make_cluttered_digits(200, variant="spurious", cue="label", seed=2)
    # With cue="label" the cue's position is a function of the label.
    left = np.round(sp.cue_boxes[:, 0], 4)
    for c in range(10):
        assert len(np.unique(left[sp.labels == c])) == 1
    rnd = data.make_cluttered_digits(200, variant="spurious", cue="random", seed=2)
    assert len(np.unique(np.round(rnd.cue_boxes[rnd.labels == 3, 0], 4))) > 1
    none = data.make_cluttered_digits(10, variant="spurious", cue="none")
    assert not none.cue_boxes.any()


def test_subsets_use_disjoint_source_digits():
    _, _, pools = data._digit_pools()
    assert not set(pools["train"]) & set(pools["test"])
    assert not set(pools["train"]) & set(pools["val"])
    assert not set(pools["val"]) & set(pools["test"])
    splits = data.cluttered_digits_splits(20, 10, 10, variant="spurious")
    assert splits["test"].cue_boxes is not None and len(splits["val"]) == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n=0), "n must be a positive integer"),
        (dict(n=-5), "n must be a positive integer"),
        (dict(n=4, image_size=0), "image_size must be a positive integer"),
        (dict(n=4, subset="training"), "unknown subset 'training'"),
        (dict(n=4, variant="double"), "unknown variant"),
        (dict(n=4, digit_size=(30, 60)), "does not fit a 48px image"),
        (dict(n=4, variant="two_instances", digit_size=(14, 24)), "does not fit a 48px image"),
        (dict(n=4, n_clutter=-1), "n_clutter must be >= 0"),
    ],
)
def test_cluttered_digits_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.make_cluttered_digits(**kwargs)


# -------------------------------------------------------------------- online loaders
def _write_idx(path, array):
    codes = {1: 0x0801, 3: 0x0803}
    header = codes[array.ndim].to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_online_loaders_read_real_format_files(tmp_path):
    rng = np.random.default_rng(0)
    # mnist.npz as keras.datasets stores it
    x_tr = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    y_tr = rng.integers(0, 10, 12, dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_tr[:5], y_test=y_tr[:5])
    (xa, ya), (xb, yb) = data.load_online("mnist", cache_dir=str(tmp_path))
    assert xa.shape == (12, 28, 28, 1) and xa.dtype == np.float32 and xb.shape == (5, 28, 28, 1)
    np.testing.assert_allclose(xa[..., 0], x_tr / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ya, y_tr)

    # Fashion-MNIST: four gzipped IDX files
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    _write_idx(folder / "train-labels-idx1-ubyte.gz", y_tr)
    _write_idx(folder / "train-images-idx3-ubyte.gz", x_tr)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", y_tr[:3])
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", x_tr[:3])
    (xa, ya), (xb, yb) = data.load_online("fashion_mnist", cache_dir=str(tmp_path))
    np.testing.assert_allclose(xa[..., 0] * 255.0, x_tr, atol=1e-3)
    assert xb.shape == (3, 28, 28, 1) and list(yb) == list(y_tr[:3])

    # CIFAR-10: pickled batches of (N, 3072) channel-first rows
    cifar = tmp_path / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    imgs = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": imgs.transpose(0, 3, 1, 2).reshape(6, -1), b"labels": [0, 1, 2, 3, 4, 5]}
        with open(cifar / name, "wb") as f:
            pickle.dump(batch, f)
    (xa, ya), (xb, yb) = data.load_online("cifar10", cache_dir=str(tmp_path))
    assert xa.shape == (30, 32, 32, 3) and xb.shape == (6, 32, 32, 3)
    np.testing.assert_allclose(xb * 255.0, imgs, atol=1e-3)
    # Same reading as Keras' own CIFAR batch parser.
    from keras.src.datasets.cifar import load_batch

    kx, ky = load_batch(str(cifar / "test_batch"))
    np.testing.assert_array_equal(kx.transpose(0, 2, 3, 1), imgs)


def test_online_loader_offline_names_the_alternative(tmp_path, monkeypatch):
    import keras.src.datasets.mnist as kmnist

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://...: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(kmnist, "get_file", no_network)
    with pytest.raises(data.DatasetUnavailableError, match=r"load_digits\(\)"):
        data.load_online("mnist", cache_dir=str(tmp_path))


@pytest.mark.parametrize("name", sorted(data.ONLINE))
def test_offline_error_is_one_actionable_line(tmp_path, monkeypatch, name):
    def no_network(*args, **kwargs):  # a multi-line, very long error, as urllib can raise
        raise OSError("URL fetch failure on https://example.invalid/\n  [Errno -3] Temporary failure\n" + "x" * 500)

    monkeypatch.setattr(data, "_download", no_network)
    with pytest.raises(data.DatasetUnavailableError) as info:
        data.load_online(name, cache_dir=str(tmp_path))
    message = str(info.value)
    assert "\n" not in message and len(message) < 800, message
    assert str(tmp_path) in message  # where the files were looked for
    assert "Connect to the internet" in message and "profile='cpu'" in message  # what to do
    assert data.ONLINE[name] in message  # the offline dataset to use instead


def test_online_loader_bad_name():
    with pytest.raises(ValueError, match="unknown online dataset 'imagenet'"):
        data.load_online("imagenet")


# ---------------------------------------------------------------- splits, pipelines
def test_train_val_test_split_is_stratified_and_disjoint():
    x, y = data.load_digits()
    (xa, ya), (xb, yb), (xc, yc) = data.train_val_test_split(x, y, fractions=(0.6, 0.2, 0.2), stratify=y)
    assert len(ya) + len(yb) + len(yc) == len(y)
    assert abs(len(ya) / len(y) - 0.6) < 0.01
    full = np.bincount(y) / len(y)
    for part in (ya, yb, yc):
        assert np.abs(np.bincount(part, minlength=10) / len(part) - full).max() < 0.02


@pytest.mark.parametrize("fractions", [(0.5, 0.2, 0.2), (0.7, 0.3, 0.0), (1.2, -0.1, -0.1), (0.5, 0.5)])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="summing to 1"):
        data.train_val_test_split(np.arange(100), fractions=fractions)


def test_split_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="same length"):
        data.train_val_test_split(np.arange(10), np.arange(9))


def test_stratified_kfold_covers_everything_once():
    _, y = data.load_digits()
    folds = data.stratified_kfold(y, k=5)
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen) == list(range(len(y)))
    for tr, va in folds:
        assert not set(tr) & set(va)
    with pytest.raises(ValueError, match="at least 2"):
        data.stratified_kfold(y, k=1)
    with pytest.raises(ValueError, match="every class"):
        data.stratified_kfold([0, 0, 1], k=2)


def test_make_dataset_batches_and_augments_training_data():
    import keras

    x, y = data.load_digits()
    ds = data.make_dataset(x[:100], y[:100], batch_size=32, shuffle=True, augment=keras.layers.RandomTranslation(0.2, 0.2, seed=0))
    batches = list(ds)
    assert [int(b[0].shape[0]) for b in batches] == [32, 32, 32, 4]
    aug = np.concatenate([b[0].numpy() for b in batches])
    assert aug.shape == (100, 8, 8, 1) and not np.allclose(np.sort(aug.ravel()), np.sort(x[:100].ravel()))
    plain = np.concatenate([b.numpy() for b in data.make_dataset(x[:10], batch_size=4)])
    np.testing.assert_array_equal(plain, x[:10])
    multi = next(iter(data.make_dataset(x[:8], {"cls": y[:8], "box": np.zeros((8, 4))}, batch_size=8)))
    assert set(multi[1]) == {"cls", "box"}


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((8, 8)), "4-D array"),
        (np.zeros((4, 8, 8)), r"images\[\.\.\., None\]"),
        (np.zeros((2, 8, 8, 1), np.uint8), "floating point"),
        (np.full((2, 8, 8, 1), 255.0), r"must lie in \[0, 1\]"),
        (np.full((2, 8, 8, 1), np.nan), "NaN"),
    ],
)
def test_bad_images_get_clear_errors(images, message):
    with pytest.raises(ValueError, match=message):
        data.make_dataset(images, batch_size=2)


def test_bad_batch_size_and_lengths():
    x = np.zeros((4, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        data.make_dataset(x, batch_size=0)
    with pytest.raises(ValueError, match="same length"):
        data.make_dataset(x, np.zeros(3), batch_size=2)


@pytest.mark.parametrize("shape", ["ids", "column", "onehot"])
def test_splits_read_label_shapes_alike(shape):
    # Labels of shape (N,), (N, 1) and one-hot (N, K) stratify identically (issue 16, kind 5).
    y = np.repeat(np.arange(3), 20)
    given = {"ids": y, "column": y[:, None], "onehot": np.eye(3, dtype=np.float32)[y]}[shape]
    for (a, b) in zip(data.stratified_kfold(y, k=4), data.stratified_kfold(given, k=4)):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    idx = np.arange(len(y))
    ref = data.train_val_test_split(idx, stratify=y, seed=1)
    got = data.train_val_test_split(idx, stratify=given, seed=1)
    for r, g in zip(ref, got):
        assert np.array_equal(r[0], g[0])
        assert np.bincount(y[g[0]], minlength=3).min() > 0


def test_splits_still_take_strings_and_refuse_soft_targets():
    names = np.array(["cat", "dog"] * 10)
    train, val, test = data.train_val_test_split(np.arange(20), stratify=names, seed=0)
    assert sorted(set(names[train[0]])) == ["cat", "dog"]
    with pytest.raises(ValueError, match=r"shape \(20, 2\) are not one-hot"):
        data.stratified_kfold(np.full((20, 2), 0.5), k=2)


def test_group_split_keeps_each_group_on_one_side():
    import math

    rng = np.random.default_rng(0)
    groups = np.r_[np.zeros(50, int), rng.integers(1, 30, size=150)]
    for seed in range(4):
        train, test = data.group_split(groups, 0.2, seed=seed)
        assert np.array_equal(np.sort(np.r_[train, test]), np.arange(len(groups)))
        assert not set(groups[train]) & set(groups[test])
        assert len(set(groups[test])) == math.ceil(0.2 * len(np.unique(groups)))  # GroupShuffleSplit's rule
    with pytest.raises(ValueError, match="at least two distinct groups"):
        data.group_split(np.zeros(10), 0.2)
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
        data.group_split(groups, 1.0)
