"""The model zoo (issue 17): every shipped model loads offline and scores what its card says.

The card's test metrics were measured by ``python -m course_lib.zoo retrain NAME`` right after
training. Here each model is loaded from the package (built from code + weights file) and
scored again on the same test split. Tolerance: 0.005 absolute (5 images in 1,000), for
float differences between CPUs / TensorFlow builds flipping a near-tie; on the machine that
trained it the numbers are identical.
"""

import json
import os
import shutil

import numpy as np
import pytest

import course_lib
from course_lib import zoo

course_lib.setup(verbose=False)

TOLERANCE = 0.005
TRAINED = [n for n in zoo.names() if os.path.exists(os.path.join(zoo.WEIGHTS_DIR, f"{n}.json"))]


def test_every_zoo_model_is_shipped():
    assert TRAINED == list(zoo.names()), f"untrained zoo models: {set(zoo.names()) - set(TRAINED)}"


def test_weights_fit_the_size_budget():
    total = sum(os.path.getsize(os.path.join(zoo.WEIGHTS_DIR, f)) for f in os.listdir(zoo.WEIGHTS_DIR))
    assert total <= 20e6, f"zoo weights and cards take {total / 1e6:.1f} MB; the budget is 20 MB"


def test_weights_are_package_data():
    """A pip install (Colab) must get the weights: pyproject declares them as package data."""
    import tomllib

    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb") as f:
        globs = tomllib.load(f)["tool"]["setuptools"]["package-data"]["course_lib"]
    assert "zoo_weights/*.h5" in globs and "zoo_weights/*.json" in globs


@pytest.mark.parametrize("name", zoo.names())
def test_card_states_data_seed_epochs_metrics_time_and_command(name):
    card = zoo.card(name)
    for key in ("data", "seed", "epochs", "test", "val", "train_seconds", "retrain", "history", "versions"):
        assert key in card, f"{name}'s card lacks {key!r}"
    assert card["retrain"] == f"python -m course_lib.zoo retrain {name}"
    assert card["data"]["n_train"] == zoo.SPECS[name]["data"]["n_train"]
    assert all(len(v) == card["epochs"] for v in card["history"].values()), "history must hold every epoch"
    assert 0.0 <= card["test"]["accuracy"] <= 1.0


@pytest.mark.parametrize("name", zoo.names())
def test_model_loads_and_reproduces_its_card_metrics(name):
    model = zoo.load(name)
    measured = zoo.evaluate(model, name, "test")
    recorded = zoo.card(name)["test"]
    assert set(measured) == set(recorded)
    for metric, value in recorded.items():
        assert measured[metric] == pytest.approx(value, abs=TOLERANCE), f"{name} {metric}"
    # Trained, not just loaded: the Clever Hans model is judged with its cue in place (without it, it
    # is meant to fail), every other model on its plain test split.
    key = "accuracy_with_cue" if zoo.SPECS[name]["data"].get("variant") == "spurious" else "accuracy"
    assert recorded[key] > 0.9, f"{name} is barely trained: {recorded}"


def test_classifiers_output_logits_of_the_right_shape():
    model = zoo.load("gap_cnn")
    test = zoo.dataset("gap_cnn", "test")
    out = np.asarray(model.predict(test.images[:8], verbose=0))
    assert out.shape == (8, 10) and np.isfinite(out).all()
    assert not np.allclose(out.sum(-1), 1.0), "zoo classifiers output logits, not probabilities"


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match="gap_cnn.*resnet_digits"):
        zoo.load("resnet50")
    with pytest.raises(ValueError, match="subset"):
        zoo.dataset("gap_cnn", "holdout")


@pytest.mark.parametrize("damage", ["truncate", "edit", "missing"])
def test_damaged_weights_name_the_file_and_the_retrain_command(tmp_path, monkeypatch, damage):
    for f in ("gap_cnn.weights.h5", "gap_cnn.json"):
        shutil.copy(os.path.join(zoo.WEIGHTS_DIR, f), tmp_path / f)
    weights = tmp_path / "gap_cnn.weights.h5"
    raw = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(raw[: len(raw) // 2])
    elif damage == "edit":
        weights.write_bytes(raw[:-64] + bytes(64))
    else:
        weights.unlink()
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"gap_cnn\.weights\.h5.*python -m course_lib\.zoo retrain gap_cnn"):
        zoo.load("gap_cnn")


def test_a_card_that_lies_about_its_file_is_caught(tmp_path, monkeypatch):
    for f in ("gap_cnn.weights.h5", "gap_cnn.json"):
        shutil.copy(os.path.join(zoo.WEIGHTS_DIR, f), tmp_path / f)
    card = json.loads((tmp_path / "gap_cnn.json").read_text())
    card["weights_sha256"] = "0" * 64
    (tmp_path / "gap_cnn.json").write_text(json.dumps(card))
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="sha256"):
        zoo.load("gap_cnn")


def test_warm_start_copies_matching_layers_and_keeps_a_new_head():
    from course_lib import models

    # The template's network: the zoo's ResNet-8 at another input size, with 5 classes and dropout.
    model = models.resnet(8, (32, 32, 3), 5, variant="cifar", width=16, dropout=0.1)
    report = zoo.warm_start(model, "resnet_digits")
    source = zoo.load("resnet_digits")
    assert len(report["kept"]) == 1, report["kept"]  # only the 5-class head
    for name in report["copied"]:
        for a, b in zip(model.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert len(report["copied"]) == len([layer for layer in source.layers if layer.weights]) - 1


def test_warm_start_refuses_an_unrelated_architecture():
    import keras

    inputs = keras.Input((8, 8, 1))
    other = keras.Model(inputs, keras.layers.Dense(3, name="something_else")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="no layer .* matches zoo model 'resnet_digits'"):
        zoo.warm_start(other, "resnet_digits")
