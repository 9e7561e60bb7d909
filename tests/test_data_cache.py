"""The cluttered-digit cache (issue 17): made once per argument set, never stale, safe to delete."""

import os

import numpy as np
import pytest

from course_lib import data

ARGS = dict(n=40, subset="val", image_size=24, digit_size=(9, 15), n_clutter=2, seed=3)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_LIB_CACHE", str(tmp_path))
    return tmp_path


def _fresh(monkeypatch, **kw):
    with monkeypatch.context() as m:
        m.setenv("COURSE_LIB_CACHE", "off")
        return data.make_cluttered_digits(**{**ARGS, **kw})


def test_cached_set_equals_a_fresh_one_bit_for_bit(cache, monkeypatch):
    first = data.make_cluttered_digits(**ARGS)
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].endswith(".npz")
    second = data.make_cluttered_digits(**ARGS)  # read back
    fresh = _fresh(monkeypatch)
    for got in (first, second):
        np.testing.assert_array_equal(got.images, fresh.images)
        np.testing.assert_array_equal(got.labels, fresh.labels)
        np.testing.assert_array_equal(got.boxes, fresh.boxes)
        assert got.images.dtype == np.float32 and got.labels.dtype == np.int64 and got.cue_boxes is None


@pytest.mark.parametrize("variant, extra", [("two_instances", {"digit_size": (6, 10)}),
                                            ("spurious", {"cue": "label"})])
def test_variants_round_trip_with_their_extra_arrays(cache, monkeypatch, variant, extra):
    kw = {"variant": variant, **extra}
    data.make_cluttered_digits(**{**ARGS, **kw})
    again, fresh = data.make_cluttered_digits(**{**ARGS, **kw}), _fresh(monkeypatch, **kw)
    np.testing.assert_array_equal(again.boxes, fresh.boxes)
    if variant == "spurious":
        np.testing.assert_array_equal(again.cue_boxes, fresh.cue_boxes)


def test_every_argument_is_part_of_the_key(cache):
    data.make_cluttered_digits(**ARGS)
    for change in ({"seed": 4}, {"n": 41}, {"subset": "test"}, {"n_clutter": 3}, {"digit_size": (9, 14)}):
        data.make_cluttered_digits(**{**ARGS, **change})
    assert len(os.listdir(cache)) == 6


def test_a_changed_generator_never_reads_the_old_file(cache, monkeypatch):
    data.make_cluttered_digits(**ARGS)
    key_before = data._cache_key("cluttered_digits", {"x": 1})

    def _paste(canvas, alpha, colour, top, left):  # a "new version" of a generator part
        canvas[top : top + alpha.shape[0], left : left + alpha.shape[1]] = colour

    monkeypatch.setattr(data, "_paste", _paste)
    assert data._cache_key("cluttered_digits", {"x": 1}) != key_before
    changed = data.make_cluttered_digits(**ARGS)
    assert len(os.listdir(cache)) == 2, "the new generator must write its own file"
    monkeypatch.undo()
    monkeypatch.setenv("COURSE_LIB_CACHE", "off")
    assert not np.array_equal(changed.images, data.make_cluttered_digits(**ARGS).images)


@pytest.mark.parametrize("damage", ["truncate", "foreign_key"])
def test_a_damaged_or_foreign_file_is_regenerated(cache, monkeypatch, damage):
    data.make_cluttered_digits(**ARGS)
    (path,) = [cache / f for f in os.listdir(cache)]
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    else:  # same file name, a key written by another generator
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        arrays["cache_key"], arrays["images"] = np.array("0" * 64), np.zeros_like(arrays["images"])
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    got = data.make_cluttered_digits(**ARGS)
    np.testing.assert_array_equal(got.images, _fresh(monkeypatch).images)


def test_clear_cache_and_off(cache, monkeypatch):
    data.make_cluttered_digits(**ARGS)
    assert data.clear_cache() == 1 and os.listdir(cache) == []
    monkeypatch.setenv("COURSE_LIB_CACHE", "off")
    data.make_cluttered_digits(**ARGS)
    assert os.listdir(cache) == []


def test_default_folder_follows_the_keras_cache_policy(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_LIB_CACHE", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert data.cache_dir() == os.path.join(str(tmp_path), "datasets", "course_lib")
