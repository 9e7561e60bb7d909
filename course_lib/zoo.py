"""The course's model zoo: small models trained once, by the course's own script, on its offline data.

A lesson about *explaining* or *evaluating* a model should not spend its minutes
training one. Each zoo model is built by a function in this module, trained by
:func:`train` on a cluttered-digit set (:func:`course_lib.data.cluttered_digits_splits`)
for as long as its lesson needs, and shipped as a weights file inside the package
(``course_lib/zoo_weights/NAME.weights.h5``) with a card (``NAME.json``: data, seed,
epochs, test metrics, training time, the full training history and the one command
that retrains it).

>>> from course_lib import zoo
>>> zoo.names()                      # what there is
>>> model = zoo.load("gap_cnn")      # built from code, weights read from the package: ~1 s, offline
>>> test = zoo.dataset("gap_cnn", "test")   # the exact split its card's metrics were measured on
>>> zoo.card("gap_cnn")["test"]      # {'accuracy': ...}

Retrain one model deterministically (same TensorFlow build, CPU)::

    python -m course_lib.zoo retrain gap_cnn

Used in notebooks 03, 04, 05, 07, 08, 09, 11 and by ``slides/figures.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time

import numpy as np

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "zoo_weights")

#: Cluttered-digit sets of the zoo (arguments of data.cluttered_digits_splits). The val / test
#: sets equal the notebooks' own (each subset is generated from its own seed), so a notebook
#: that loads a zoo model scores it on the images it would have used anyway.
_DIGITS_48 = dict(n_train=10000, n_val=1000, n_test=1000, seed=0, image_size=48, digit_size=(14, 26))  # 07, 09
_DIGITS_48_LARGE = dict(n_train=8000, n_val=500, n_test=1000, seed=0, image_size=48, digit_size=(16, 28))  # 05
_DIGITS_48_08 = dict(n_train=8000, n_val=500, n_test=500, seed=0, image_size=48, digit_size=(16, 28))  # 08
_DIGITS_24 = dict(n_train=6000, n_val=500, n_test=1000, seed=0, image_size=24, digit_size=(9, 15))  # 03, 04
_SPURIOUS_48 = dict(n_train=3000, n_val=300, n_test=300, seed=0, image_size=48, digit_size=(14, 26),
                    variant="spurious", cue="label")  # 07
_MOBILENET_ROWS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2))  # Table 2's first four rows

#: name -> what it is, which lesson uses it, how it is built, the data and the training recipe.
SPECS = {
    "gap_cnn": dict(
        about="Conv-BN-ReLU x4 (16-32-64-64), global average pooling, Dense(10) logits: the CAM / Grad-CAM classifier",
        used_in="notebooks 07, 09, 11 and the slides", build=("gap_cnn", {"pooling": "avg"}),
        data=_DIGITS_48, epochs=12, batch_size=64, learning_rate=2e-3),
    "gmp_cnn": dict(
        about="the same network with global max pooling (the GAP vs GMP comparison of notebook 07)",
        used_in="notebook 07", build=("gap_cnn", {"pooling": "max"}),
        data=_DIGITS_48, epochs=12, batch_size=64, learning_rate=2e-3),
    "clever_hans_cnn": dict(
        about="gap_cnn trained where a magenta square's position encodes the label (the Clever Hans model)",
        used_in="notebook 07", build=("gap_cnn", {"pooling": "avg"}),
        data=_SPURIOUS_48, epochs=6, batch_size=64, learning_rate=2e-3),
    "small_cnn": dict(
        about="5x5 conv1 then 3x3 convs (16-32-64-64), BN, GAP, Dense(10): the network notebook 08 visualizes",
        used_in="notebook 08", build=("small_cnn", {}),
        data=_DIGITS_48_08, epochs=10, batch_size=64, learning_rate=3e-3),
    "resnet_digits": dict(
        about="CIFAR-style ResNet-8 (width 16) on 24x24 cluttered digits, random shifts of up to 10%",
        used_in="notebooks 03 and 04", build=("resnet_digits", {}),
        data=_DIGITS_24, epochs=12, batch_size=64, learning_rate=3e-3, augment="shift"),
    "mobilenet_v2_digits": dict(
        about="MobileNetV2 (width 0.5, Table 2's first four rows, BN momentum 0.9) on the same data as resnet_digits",
        used_in="notebook 03", build=("mobilenet_v2_digits", {}),
        data=_DIGITS_24, epochs=10, batch_size=64, learning_rate=3e-3, augment="shift"),
    "multitask": dict(
        about="CoordConv backbone (16-32-64-64) with a class head and a sigmoid box head, alpha = 0.5",
        used_in="notebook 05 (its backbone warm-starts the alpha sweep)", build=("multitask", {"alpha": 0.5}),
        data=_DIGITS_48_LARGE, epochs=24, batch_size=64, learning_rate=2e-3, task="localize"),
}


def names() -> tuple:
    """The zoo's model names, sorted."""
    return tuple(sorted(SPECS))


def _check_name(name) -> str:
    if name not in SPECS:
        raise ValueError(f"unknown zoo model {name!r}; the zoo has: {', '.join(names())}.")
    return name


def retrain_command(name: str) -> str:
    """The one shell command that retrains ``name`` and rewrites its weights and card."""
    return f"python -m course_lib.zoo retrain {_check_name(name)}"


# ----------------------------------------------------------------------------- builders


def gap_cnn(pooling: str = "avg", widths=(16, 32, 64, 64), image_size: int = 48, num_classes: int = 10,
            name: str | None = None):
    """Conv-BN-ReLU per width (max pooling after blocks 1 and 2, so a 12x12 last map at 48 px), global
    ``"avg"`` or ``"max"`` pooling, Dense logits. Input: float32 images (N, S, S, 3) in [0, 1].

    The classifier of notebooks 07 and 09 (CAM needs global average pooling, Zhou et al., CVPR 2016).
    """
    import keras

    if pooling not in ("avg", "max"):
        raise ValueError(f"pooling must be 'avg' or 'max'; got {pooling!r}.")
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)  # [0, 1] -> [-1, 1]
    for i, filters in enumerate(widths, start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i <= 2:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    pool = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
    x = pool(name="gap" if pooling == "avg" else "gmp")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or ("gap_cnn" if pooling == "avg" else "gmp_cnn"))


def small_cnn(image_size: int = 48, num_classes: int = 10, name: str = "small_cnn"):
    """Notebook 08's network: conv1 5x5 (16 filters, big enough to look at), then 3x3 convs 32-64-64,
    each Conv-BN-ReLU, max pooling after the first three, GAP, Dense logits."""
    import keras

    def block(x, filters, kernel, layer_name):
        x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=layer_name)(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{layer_name}_bn")(x)
        return keras.layers.ReLU(name=f"{layer_name}_relu")(x)

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    for i, (filters, kernel) in enumerate(((16, 5), (32, 3), (64, 3), (64, 3)), start=1):
        x = block(x, filters, kernel, f"conv{i}")
        if i <= 3:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name=name)


def resnet_digits(image_size: int = 24, name: str = "resnet8"):
    """:func:`course_lib.models.resnet` depth 8, CIFAR variant, width 16 (notebooks 03 and 04)."""
    from . import models

    return models.resnet(8, (image_size, image_size, 3), 10, variant="cifar", width=16)


def mobilenet_v2_digits(image_size: int = 24):
    """:func:`course_lib.models.mobilenet_v2` width 0.5, CIFAR strides, the first four rows of Table 2,
    BN momentum 0.9 (notebook 03)."""
    from . import models

    return models.mobilenet_v2(0.5, (image_size, image_size, 3), 10, variant="cifar", bn_momentum=0.9,
                               settings=_MOBILENET_ROWS)


def coordconv_backbone(widths=(16, 32, 64, 64), image_size: int = 48, name: str = "backbone"):
    """Notebook 05's backbone: x/y coordinate channels (CoordConv, Liu et al. 2018), 3x3 conv + ReLU per
    width with 2x2 max pooling after the first three, x/y channels again. Output (N, 6, 6, widths[-1] + 2)."""
    import keras

    from . import localization as loc

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(inputs)
    x = loc.AddCoords(name="coords_in")(x)
    for i, width in enumerate(widths):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if i < 3:
            x = keras.layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = loc.AddCoords(name="coords_out")(x)
    return keras.Model(inputs, x, name=name)


def multitask(alpha: float = 0.5, learning_rate=2e-3, compile: bool = False):
    """:func:`course_lib.localization.multitask_model` on :func:`coordconv_backbone` (notebook 05)."""
    from . import localization as loc

    return loc.multitask_model(coordconv_backbone(), num_classes=10, alpha=alpha, learning_rate=learning_rate,
                               compile=compile)


def build(name: str):
    """The untrained network of zoo model ``name`` (the same code :func:`load` fills with weights)."""
    fn, kwargs = SPECS[_check_name(name)]["build"]
    return globals()[fn](**kwargs)


# ----------------------------------------------------------------------------- data


def dataset(name: str, subset: str = "test", cue: str | None = None):
    """The ``subset`` ("train", "val" or "test") of the cluttered-digit set zoo model ``name`` was trained
    and scored on: a :class:`course_lib.data.ClutteredDigits` (made once, then read from the cache).

    For the spurious-cue model the validation and test sets carry the cue at a random place
    (``cue="random"``, as :func:`course_lib.data.cluttered_digits_splits` makes them); pass
    ``cue="label"`` or ``"none"`` for the same images' other versions."""
    from . import data

    spec = dict(SPECS[_check_name(name)]["data"])
    if subset not in ("train", "val", "test"):
        raise ValueError(f"subset must be 'train', 'val' or 'test'; got {subset!r}.")
    n = spec.pop(f"n_{subset}")
    for key in ("n_train", "n_val", "n_test"):
        spec.pop(key, None)
    if spec.get("variant") == "spurious" and subset != "train":
        spec["cue"] = "random"  # as data.cluttered_digits_splits: the cue tracks the label in training only
    if cue is not None:
        spec["cue"] = cue
    return data.make_cluttered_digits(n, subset=subset, **spec)


# ----------------------------------------------------------------------------- cards and weights


def _paths(name: str) -> tuple:
    return (os.path.join(WEIGHTS_DIR, f"{name}.weights.h5"), os.path.join(WEIGHTS_DIR, f"{name}.json"))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card(name: str) -> dict:
    """The model card of ``name``: data, seed, epochs, test metrics, training seconds, versions, the
    retrain command and the per-epoch ``history`` (dict of lists, as ``keras.callbacks.History``)."""
    _, card_path = _paths(_check_name(name))
    if not os.path.exists(card_path):
        raise FileNotFoundError(f"zoo model {name!r} has no card at {card_path}; train it with: "
                                f"{retrain_command(name)}")
    with open(card_path) as f:
        return json.load(f)


def load(name: str):
    """Zoo model ``name`` with its trained weights, uncompiled, ready for inference and explanation.

    Raises ValueError for an unknown name (listing the names), and RuntimeError naming the file
    and the retrain command when the weights are missing, truncated or not the card's (sha256).
    """
    weights, _ = _paths(_check_name(name))
    info = card(name)
    problem = None
    if not os.path.exists(weights):
        problem = "is missing"
    elif _sha256(weights) != info.get("weights_sha256"):
        problem = "does not match its card's sha256 (truncated or edited)"
    if problem is None:
        model = build(name)
        try:
            model.load_weights(weights)
            return model
        except Exception as err:  # h5py / Keras errors on a damaged file
            problem = f"could not be read ({type(err).__name__}: {str(err)[:120]})"
    raise RuntimeError(f"the weights file of zoo model {name!r}, {weights}, {problem}. Reinstall course_lib, "
                       f"or retrain the model with: {retrain_command(name)}")


def warm_start(model, name: str) -> dict:
    """Copy zoo model ``name``'s trained weights into ``model``, layer by layer, matched by layer name.

    A layer gets the zoo layer's weights when a layer of the same name exists there with
    weights of the same shapes; any other layer keeps its initialisation (typically a new
    head for another number of classes). Convolution weights do not depend on the input
    size, so a network built for 32x32 images starts from a zoo model trained on 24x24 ones.
    Returns ``{"copied": [layer names], "kept": [layer names]}`` (layers with weights only).
    Raises ValueError when no layer matches (a different architecture). Used in notebook 11.
    """
    source = {layer.name: layer for layer in load(name).layers}
    copied, kept = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        match = source.get(layer.name)
        if match is not None and [w.shape for w in match.weights] == [w.shape for w in layer.weights]:
            layer.set_weights(match.get_weights())
            copied.append(layer.name)
        else:
            kept.append(layer.name)
    if not copied:
        raise ValueError(f"no layer of {model.name!r} matches zoo model {name!r} by name and shape; build the model "
                         f"with the zoo model's builder ({SPECS[name]['build'][0]}) to warm-start it.")
    return {"copied": copied, "kept": kept}


# ----------------------------------------------------------------------------- training and scoring


def evaluate(model, name: str, subset: str = "test") -> dict:
    """Metrics of ``model`` on zoo model ``name``'s ``subset``: accuracy; for the localization model also
    mean IoU, the share of boxes with IoU >= 0.5 and of images right on both (localization_report)."""
    from . import localization as loc

    split = dataset(name, subset)
    if SPECS[name].get("task") == "localize":
        report = loc.localization_report(model, split.images, split.labels, split.boxes)
        return {k: round(float(report[k]), 4) for k in ("accuracy", "mean_iou", "iou50", "correct_and_iou50")}
    logits = model.predict(split.images, batch_size=256, verbose=0)
    out = {"accuracy": round(float((np.argmax(logits, -1) == split.labels).mean()), 4)}
    if SPECS[name]["data"].get("variant") == "spurious":  # the Clever Hans model: also with the cue in place
        with_cue = dataset(name, subset, cue="label")
        logits = model.predict(with_cue.images, batch_size=256, verbose=0)
        out["accuracy_with_cue"] = round(float((np.argmax(logits, -1) == with_cue.labels).mean()), 4)
    return out


def _fit(name: str, model, train_set, val_set, spec: dict, verbose: int):
    import keras

    from . import data

    steps = spec["epochs"] * int(np.ceil(len(train_set) / spec["batch_size"]))
    schedule = keras.optimizers.schedules.CosineDecay(spec["learning_rate"], decay_steps=steps)
    if spec.get("task") == "localize":
        model = multitask(alpha=SPECS[name]["build"][1]["alpha"], learning_rate=schedule, compile=True)
        targets = {"class": train_set.labels, "box": train_set.boxes}
        val = (val_set.images, {"class": val_set.labels, "box": val_set.boxes})
        history = model.fit(train_set.images, targets, validation_data=val, epochs=spec["epochs"],
                            batch_size=spec["batch_size"], verbose=verbose)
        return model, history
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    augment = None
    if spec.get("augment") == "shift":
        augment = keras.Sequential([keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=0)])
    train_ds = data.make_dataset(train_set.images, train_set.labels, spec["batch_size"], shuffle=True,
                                 augment=augment)
    history = model.fit(train_ds, validation_data=(val_set.images, val_set.labels), epochs=spec["epochs"],
                        verbose=verbose)
    return model, history


def train(name: str, seed: int = 0, verbose: int = 2):
    """Train zoo model ``name`` from scratch by its recipe (Adam, cosine decay to 0, validation every epoch);
    returns ``(model, history_dict, seconds)``. Deterministic for a given TensorFlow build: seeds and op
    determinism are set here. Used by ``python -m course_lib.zoo retrain`` and by the notebooks' retrain switch."""
    from . import env

    spec = SPECS[_check_name(name)]
    env.set_seeds(seed, deterministic=True)
    model = build(name)
    train_set, val_set = dataset(name, "train"), dataset(name, "val")
    start = time.perf_counter()
    model, history = _fit(name, model, train_set, val_set, spec, verbose)
    seconds = time.perf_counter() - start
    hist = {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()}
    return model, hist, seconds


def retrain(name: str, seed: int = 0) -> dict:
    """Train ``name`` (:func:`train`), save its weights into the package and write its card; returns the card."""
    import keras
    import tensorflow as tf

    model, hist, seconds = train(name, seed)
    weights, card_path = _paths(name)
    os.makedirs(WEIGHTS_DIR, exist_ok=True)
    model.save_weights(weights)
    spec = SPECS[name]
    info = {
        "name": name, "about": spec["about"], "used_in": spec["used_in"],
        "architecture": {"builder": f"course_lib.zoo.{spec['build'][0]}", "arguments": spec["build"][1],
                         "parameters": int(model.count_params())},
        "data": {"generator": "course_lib.data.cluttered_digits_splits", **spec["data"]},
        "seed": seed, "epochs": spec["epochs"], "batch_size": spec["batch_size"],
        "optimizer": f"Adam, cosine decay from {spec['learning_rate']} to 0",
        "augment": spec.get("augment", "none"),
        "val": evaluate(model, name, "val"), "test": evaluate(model, name, "test"),
        "train_seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU" if not tf.config.list_physical_devices("GPU")
        else f"{platform.machine()}, GPU",
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
        "retrain": retrain_command(name),
        "weights_sha256": _sha256(weights), "weights_bytes": os.path.getsize(weights),
        "history": hist,
    }
    with open(card_path, "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    return info


def _main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course_lib.zoo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the models, their test metrics and sizes")
    re_ = sub.add_parser("retrain", help="retrain models from scratch and rewrite their weights and cards")
    re_.add_argument("models", nargs="+", help=f"names ({', '.join(names())}) or 'all'")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in names():
            try:
                c = card(name)
                print(f"{name:22s} test {c['test']}  {c['weights_bytes'] / 1e6:.2f} MB  {c['train_seconds']:.0f} s")
            except FileNotFoundError:
                print(f"{name:22s} not trained yet: {retrain_command(name)}")
        return 0
    todo = names() if args.models == ["all"] else [_check_name(m) for m in args.models]
    from . import env

    env.quiet_logs()
    for name in todo:
        info = retrain(name)
        print(f"{name}: test {info['test']} in {info['train_seconds']:.0f} s -> {_paths(name)[0]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
