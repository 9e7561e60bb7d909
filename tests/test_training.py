"""Tests of course_lib.training: each helper against Keras / scikit-learn or a hand computation."""

import os

import numpy as np
import pytest

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib import training  # noqa: E402

# ------------------------------------------------------------------------------ fixtures


def _blobs(n=160, seed=0):
    """A linearly separable 3-class problem on 4x4x1 'images' in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.uniform(0.0, 0.3, (n, 4, 4, 1)).astype(np.float32)
    for c in range(3):
        x[y == c, c, :, 0] += 0.6  # class c lights up row c
    return x, y.astype(np.int64)


def _tiny_model(lr=0.05, dropout=0.0, compile=True):
    inputs = keras.Input((4, 4, 1))
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dropout(dropout)(h)
    outputs = keras.layers.Dense(3)(h)
    model = keras.Model(inputs, outputs)
    if compile:
        model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], run_eagerly=True)  # eager: no tracing, faster for a tiny model
    return model


def _tiny_cnn(num_classes=3):
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(4, 3, padding="same")(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(h))


# ---------------------------------------------------------------------------- optimizers


def test_momentum_matches_the_heavy_ball_formula():
    opt = training.make_optimizer("momentum", learning_rate=0.1, momentum=0.9)
    w = keras.Variable(1.0)
    ref_w, ref_v = 1.0, 0.0
    for _ in range(5):  # loss w^2 / 2, gradient w
        opt.apply_gradients([(keras.ops.convert_to_tensor(float(w.numpy())), w)])
        ref_v = 0.9 * ref_v - 0.1 * ref_w
        ref_w = ref_w + ref_v
        assert float(w.numpy()) == pytest.approx(ref_w, rel=1e-5, abs=1e-6)  # float32


def test_make_optimizer_kinds_and_weight_decay():
    assert isinstance(training.make_optimizer("adam", 1e-3), keras.optimizers.Adam)
    assert training.make_optimizer("nesterov").nesterov
    assert training.make_optimizer("sgd").momentum == 0.0
    assert training.make_optimizer("adamw").weight_decay == pytest.approx(0.004)
    # decoupled weight decay with a zero gradient: w <- w - lr * wd * w
    opt = training.make_optimizer("sgd", 0.1, weight_decay=0.5)
    w = keras.Variable(2.0)
    opt.apply_gradients([(keras.ops.convert_to_tensor(0.0), w)])
    assert float(w.numpy()) == pytest.approx(2.0 - 0.1 * 0.5 * 2.0, rel=1e-6)


def test_make_optimizer_errors():
    with pytest.raises(ValueError, match="unknown optimizer"):
        training.make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="learning_rate must be a positive"):
        training.make_optimizer("adam", learning_rate=-1)
    with pytest.raises(ValueError, match="momentum must be in"):
        training.make_optimizer("momentum", momentum=1.5)
    with pytest.raises(ValueError, match="weight_decay must be"):
        training.make_optimizer("sgd", weight_decay=-0.1)


# ------------------------------------------------------------------------ training loop


def test_train_learns_logs_checkpoints_and_restores_best(tmp_path):
    x, y = _blobs()
    xv, yv = _blobs(60, seed=1)
    model = _tiny_model()
    ckpt, log = tmp_path / "best.keras", tmp_path / "log.csv"
    hist = training.train(model, (x, y), (xv, yv), epochs=8, batch_size=32, checkpoint=str(ckpt), log=str(log),
                          patience=3)
    assert max(hist.history["val_accuracy"]) > 0.9
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert ckpt.exists()
    lines = log.read_text().strip().splitlines()
    assert len(lines) == len(hist.history["loss"]) + 1 and "val_loss" in lines[0]
    # the checkpoint holds the best epoch's model: its val loss is the minimum of the curve
    best = keras.models.load_model(ckpt)
    val_loss = best.evaluate(xv, yv, verbose=0)[0]
    assert val_loss == pytest.approx(min(hist.history["val_loss"]), rel=1e-4)
    # early stopping restored the best weights into the model too
    assert model.evaluate(xv, yv, verbose=0)[0] == pytest.approx(val_loss, rel=1e-4)


def test_tensorboard_logs_or_says_what_to_install(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ValueError, match="needs the tensorboard package"):
            training.course_callbacks(tensorboard=str(tmp_path / "tb"))
    else:
        cbs = training.course_callbacks(tensorboard=str(tmp_path / "tb"))
        assert isinstance(cbs[-1], keras.callbacks.TensorBoard)


def test_train_accepts_datasets_and_prints_one_line_per_epoch(capsys):
    x, y = _blobs()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    val = tf.data.Dataset.from_tensor_slices(_blobs(40, seed=2)).batch(32)
    hist = training.train(_tiny_model(), ds, val, epochs=2, patience=None)
    out = capsys.readouterr().out
    assert len(hist.history["loss"]) == 2
    assert out.count("Epoch ") == 2 and out.count("val_loss") == 2  # verbose=2: one line per epoch


def test_train_errors(tmp_path):
    x, y = _blobs(20)
    with pytest.raises(ValueError, match="not compiled"):
        training.train(_tiny_model(compile=False), (x, y), (x, y), epochs=1)
    with pytest.raises(ValueError, match="val_data is required"):
        training.train(_tiny_model(), (x, y), None, epochs=1)
    with pytest.raises(ValueError, match="same length"):
        training.train(_tiny_model(), (x, y[:5]), (x, y), epochs=1)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        training.train(_tiny_model(), (x, y), (x, y), epochs=0)
    with pytest.raises(ValueError, match="must be a validation metric"):
        training.train(_tiny_model(), (x, y), (x, y), epochs=1, monitor="accuracy")
    with pytest.raises(ValueError, match="ending in '.keras'"):
        training.course_callbacks(checkpoint=str(tmp_path / "m.h5"))
    with pytest.raises(ValueError, match="ending in '.csv'"):
        training.course_callbacks(log=str(tmp_path / "log.txt"))
    with pytest.raises(ValueError, match="must be \\(images, labels\\)"):
        training.train(_tiny_model(), x, (x, y), epochs=1)


def test_plot_runs_one_axis_two_lines_per_run():
    h = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.8]}
    fig = training.plot_runs({"sgd": h, "adam": {"loss": [0.9, 0.2], "val_loss": [1.0, 0.4]}})
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 4
    with pytest.raises(ValueError, match="has no 'accuracy'"):
        training.plot_runs({"sgd": h}, metric="accuracy")
    with pytest.raises(ValueError, match="non-empty dict"):
        training.plot_runs({})


# ----------------------------------------------------------------------------- schedules


def test_step_decay_equals_keras_staircase_exponential_decay():
    ours = training.StepDecay(0.1, step_size=30, drop=0.5)
    ref = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=30, decay_rate=0.5, staircase=True)
    np.testing.assert_allclose(training.schedule_values(ours, 200), training.schedule_values(ref, 200), rtol=1e-6)


@pytest.mark.parametrize("warmup,final", [(0, 0.0), (20, 0.0), (20, 0.01)])
def test_warmup_cosine_equals_keras_cosine_decay(warmup, final):
    peak, total = 0.2, 120
    ours = training.WarmupCosine(peak, total_steps=total, warmup_steps=warmup, final_learning_rate=final)
    if warmup:
        ref = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=total - warmup, alpha=final / peak,
                                                     warmup_target=peak, warmup_steps=warmup)
    else:
        ref = keras.optimizers.schedules.CosineDecay(peak, decay_steps=total, alpha=final / peak)
    values = training.schedule_values(ours, total + 10)
    np.testing.assert_allclose(values, training.schedule_values(ref, total + 10), rtol=1e-5, atol=1e-7)
    assert values.max() == pytest.approx(peak, rel=1e-6) and values[-1] == pytest.approx(final, abs=1e-7)


def test_schedule_survives_a_keras_checkpoint(tmp_path):
    model = _tiny_model()
    model.compile(training.make_optimizer("momentum", training.WarmupCosine(0.1, 50, 5)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    lr = loaded.optimizer._learning_rate
    assert isinstance(lr, training.WarmupCosine) and lr.get_config() == model.optimizer._learning_rate.get_config()


def test_plot_schedule_and_schedule_errors():
    fig = training.plot_schedule({"step": training.StepDecay(0.1, 10), "cosine": training.WarmupCosine(0.1, 40, 4)},
                                 steps=40, steps_per_epoch=10)
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_xlabel() == "epoch"
    with pytest.raises(ValueError, match="warmup_steps must be"):
        training.WarmupCosine(0.1, total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="final_learning_rate must be"):
        training.WarmupCosine(0.1, total_steps=10, final_learning_rate=0.5)
    with pytest.raises(ValueError, match="drop must be in"):
        training.StepDecay(0.1, 10, drop=0.0)
    with pytest.raises(ValueError, match="step_size must be a positive"):
        training.StepDecay(0.1, 0)
    with pytest.raises(ValueError, match="schedule must be"):
        training.schedule_values(0.1, 5)


# ------------------------------------------------------------------------ regularization


def test_label_smoothing_matches_keras_loss():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 32)
    logits = rng.normal(size=(32, 5)).astype(np.float32)
    eps = 0.1
    ref = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=eps)(np.eye(5)[labels], logits)
    ours = keras.losses.CategoricalCrossentropy(from_logits=True)(training.smooth_labels(labels, 5, eps), logits)
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)


def test_label_smoothing_slide_form():
    q = training.smooth_labels(np.array([2, 0]), 4, 0.3, spread="others")
    np.testing.assert_allclose(q[0], [0.1, 0.1, 0.7, 0.1], rtol=1e-6)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="epsilon must be in"):
        training.smooth_labels([0, 1], 3, 1.0)
    with pytest.raises(ValueError, match="labels must lie in"):
        training.smooth_labels(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="integer class ids"):
        training.smooth_labels(np.array([0.5]), 3)
    with pytest.raises(ValueError, match="spread must be"):
        training.smooth_labels(np.array([0]), 3, spread="half")


def test_mixup_batch_is_the_convex_combination():
    rng = np.random.default_rng(0)
    x = rng.random((6, 3, 3, 2)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 6)]
    lam = rng.random(6).astype(np.float32)
    perm = rng.permutation(6)
    mx, my = training.mixup_batch(x, y, lam, perm)
    np.testing.assert_allclose(mx.numpy(), lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[perm],
                               rtol=1e-6)
    np.testing.assert_allclose(my.numpy(), lam[:, None] * y + (1 - lam[:, None]) * y[perm], rtol=1e-6)


def test_mixup_dataset_mixes_pairs_and_draws_beta():
    n, k = 512, 10
    x = np.repeat(np.arange(n, dtype=np.float32)[:, None, None, None] / n, 2, axis=1)  # image i holds value i/n
    y = np.arange(n) % k
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(128)
    mixed = training.mixup(ds, alpha=0.4, num_classes=k, seed=3)
    lams = []
    for mx, my in mixed:
        mx, my = mx.numpy(), my.numpy()
        assert mx.shape == (128, 2, 1, 1) and my.shape == (128, k)
        np.testing.assert_allclose(my.sum(axis=1), 1.0, rtol=1e-5)
        assert mx.min() >= 0 and mx.max() <= 1
        lams.append(my.max(axis=1))  # max(lam, 1 - lam) when the two labels differ (or 1 when they agree)
    lam_max = np.concatenate(lams)
    # Beta(0.4, 0.4) is U-shaped: E[max(l, 1-l)] = 0.5 + E|l - 0.5| is about 0.80, not 0.5 or 1
    assert 0.7 < lam_max.mean() < 0.9
    # repeatable for a seed (global seed set), new draws in the next epoch
    keras.utils.set_random_seed(0)
    first = [b[1].numpy() for b in training.mixup(ds, alpha=0.4, num_classes=k, seed=3)]
    keras.utils.set_random_seed(0)
    again = training.mixup(ds, alpha=0.4, num_classes=k, seed=3)
    np.testing.assert_array_equal(first[0], next(iter(again))[1].numpy())
    assert not np.array_equal(first[0], next(iter(again))[1].numpy())


def test_mixup_accepts_float64_one_hot_targets():
    x, y = _blobs(16)
    onehot = keras.utils.to_categorical(y, 3)  # float64, as Keras returns it
    ds = tf.data.Dataset.from_tensor_slices((x, onehot)).batch(8)
    mx, my = next(iter(training.mixup(ds, alpha=1.0)))
    assert my.dtype == tf.float32 and my.shape == (8, 3)
    np.testing.assert_allclose(my.numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_mixup_errors():
    x, y = _blobs(20)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    with pytest.raises(ValueError, match="pass num_classes"):
        training.mixup(ds, 0.2)
    with pytest.raises(ValueError, match="alpha must be a positive"):
        training.mixup(ds, 0.0, num_classes=3)
    with pytest.raises(ValueError, match="Batch the dataset"):
        training.mixup(tf.data.Dataset.from_tensor_slices((x[:, 0, 0, 0], y)), 0.2, num_classes=3)
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        training.mixup((x, y), 0.2, num_classes=3)
    with pytest.raises(ValueError, match="\\(images, targets\\) pairs"):
        training.mixup(tf.data.Dataset.from_tensor_slices(x).batch(4), 0.2)


# -------------------------------------------------------------------------- diagnosing


def test_diagnose_fit_verdicts():
    under = {"accuracy": [0.3, 0.5], "val_accuracy": [0.3, 0.5], "loss": [2, 1.5], "val_loss": [2, 1.6]}
    over = {"accuracy": [0.8, 1.0], "val_accuracy": [0.7, 0.72], "loss": [0.5, 0.01], "val_loss": [0.8, 1.2]}
    good = {"accuracy": [0.9, 0.98], "val_accuracy": [0.9, 0.96], "loss": [0.3, 0.1], "val_loss": [0.3, 0.15]}
    assert training.diagnose_fit(under).verdict == "underfitting"
    d = training.diagnose_fit(over)
    assert d.verdict == "overfitting" and d.best_epoch == 1 and d.gap == pytest.approx(0.28)
    assert training.diagnose_fit(good).verdict == "good fit"
    with pytest.raises(ValueError, match="history has no 'val_accuracy'"):
        training.diagnose_fit({"accuracy": [0.5]})
    with pytest.raises(ValueError, match="non-empty"):
        training.diagnose_fit({})


# ---------------------------------------------------------------- hyperparameter search


def test_grid_and_random_configs_match_scikit_learn():
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    space = {"learning_rate": [1e-3, 1e-2], "dropout": [0.0, 0.5, 0.2]}
    assert training.grid_configs(space) == list(ParameterGrid(space))
    assert training.random_configs(space, 4, seed=1) == list(ParameterSampler(space, 4, random_state=1))
    with pytest.raises(ValueError, match="non-empty list"):
        training.grid_configs({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="non-empty dict"):
        training.random_configs({}, 3)


def test_search_ranks_by_validation_and_refuses_test_choices():
    x, y = _blobs()
    xv, yv = _blobs(60, seed=1)
    configs = training.grid_configs({"lr": [1e-6, 0.05]})
    result = training.search(lambda lr: _tiny_model(lr), configs, (x, y), (xv, yv), epochs=4, batch_size=32)
    table = result.table
    assert list(table.columns[:2]) == ["lr", "val_accuracy"] and len(table) == 2
    assert table["val_accuracy"].is_monotonic_decreasing
    assert result.best_config == {"lr": 0.05}  # a learning rate of 1e-6 cannot learn in 4 epochs
    assert result.best_model.evaluate(xv, yv, verbose=0)[1] > 0.9  # the model of the best row comes back
    by_loss = training.search(lambda lr: _tiny_model(lr), configs, (x, y), (xv, yv), epochs=1, monitor="val_loss")
    assert by_loss.table["val_loss"].is_monotonic_increasing and by_loss.best_config == {"lr": 0.05}
    with pytest.raises(ValueError, match="must be a validation metric"):
        training.search(lambda lr: _tiny_model(lr), configs, (x, y), (xv, yv), epochs=1, monitor="test_accuracy")
    with pytest.raises(ValueError, match="val_data is the training data"):
        training.search(lambda lr: _tiny_model(lr), configs, (x, y), (x.copy(), y), epochs=1)
    with pytest.raises(ValueError, match="non-empty list of dicts"):
        training.search(lambda lr: _tiny_model(lr), [], (x, y), (xv, yv), epochs=1)
    with pytest.raises(ValueError, match="not compiled"):
        training.search(lambda lr: _tiny_model(lr, compile=False), configs, (x, y), (xv, yv), epochs=1)


# --------------------------------------------------------------------- transfer learning


def test_backbone_transfer_classifier_and_unfreeze_top():
    clf = _tiny_cnn()
    backbone = training.backbone_from_classifier(clf)
    assert backbone.output_shape == (None, 4)
    model = training.transfer_classifier(backbone, num_classes=2)
    assert model.output_shape == (None, 2) and not backbone.trainable
    assert len(model.trainable_weights) == 2  # only the new Dense head
    # the backbone runs in inference mode: its BN statistics do not move while the head trains
    bn = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)][0]
    before = bn.moving_mean.numpy().copy()
    n_trainable = training.unfreeze_top(backbone, 3)  # the last three layers with weights: BN, Conv2D, BN
    assert n_trainable == 1 and backbone.layers[-3].trainable  # only the Conv2D: BN layers stay frozen
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    model.fit(rng.random((16, 8, 8, 3)).astype(np.float32) * 5, rng.integers(0, 2, 16), epochs=1, verbose=0)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)
    with pytest.raises(ValueError, match="no global pooling layer"):
        training.backbone_from_classifier(_tiny_model())
    with pytest.raises(ValueError, match="only"):
        training.unfreeze_top(backbone, 50)
    with pytest.raises(ValueError, match="dropout must be in"):
        training.transfer_classifier(backbone, 2, dropout=1.0)


def test_imagenet_weights_never_download_silently(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(training.PretrainedWeightsUnavailable, match="pretrain a backbone on another course dataset"):
        training.imagenet_mobilenet_v2((96, 96, 3), alpha=0.35, allow_download=False)

    def offline(*args):
        raise OSError("network is unreachable\n  [Errno 101] (a second line)")

    monkeypatch.setattr(training, "_build_imagenet_mobilenet_v2", offline)
    with pytest.raises(training.PretrainedWeightsUnavailable, match="OSError: network is unreachable.*Offline") as info:
        training.imagenet_mobilenet_v2((96, 96, 3), alpha=0.35)
    assert "\n" not in str(info.value) and "Connect to the internet" in str(info.value)  # one line, says what to do
    with pytest.raises(ValueError, match="alpha in"):
        training.imagenet_mobilenet_v2((96, 96, 3), alpha=0.3)
    with pytest.raises(ValueError, match="Resize the images"):
        training.imagenet_mobilenet_v2((32, 32, 3))


def test_imagenet_wrapper_takes_unit_range_images(monkeypatch):
    """With the download stood in by the same architecture without weights, the wrapper's plumbing is checked."""
    import keras.applications

    monkeypatch.setattr(training, "_build_imagenet_mobilenet_v2",
                        lambda shape, alpha, include_top=False: keras.applications.MobileNetV2(
                            input_shape=shape, alpha=alpha, include_top=False, weights=None, pooling="avg"))
    monkeypatch.setattr(os.path, "exists", lambda p: True)
    backbone = training.imagenet_mobilenet_v2((96, 96, 3), alpha=0.35)
    assert backbone.output_shape == (None, 1280)
    n = training.unfreeze_top(backbone, 10)
    leaves = [layer for layer in training._leaf_layers(backbone) if layer.weights][-10:]
    assert n == sum(not isinstance(layer, keras.layers.BatchNormalization) for layer in leaves)


def _fabricate_mobilenet_v2_weights(home, alpha, rows, include_top):
    """keras.applications' weight file, saved from a random model in its legacy .h5 layout (as tests/test_gpu_profile.py)."""
    import h5py
    import keras.applications
    from keras.src.legacy.saving import legacy_h5_format

    path = training._imagenet_weights_file(alpha, rows, include_top)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model = keras.applications.MobileNetV2(input_shape=(rows, rows, 3), alpha=alpha, include_top=include_top,
                                           weights=None, classifier_activation=None)
    rng = np.random.default_rng(1)  # move every weight off its initial value, so a loaded file is told from a fresh model
    for w in model.weights:
        v = w.numpy() + rng.normal(0, 0.05, w.shape).astype(np.float32)
        w.assign(np.abs(v) + 0.5 if "variance" in w.path else v)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return model


def test_imagenet_classifier_loads_cached_weights_and_outputs_logits(monkeypatch, tmp_path):
    """include_top=True: the 1000-class head from the cached with-top file, as logits, explainable by Grad-CAM."""
    from keras.src.backend import config as keras_config

    from course_lib import explain

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras_config, "keras_home", lambda: str(tmp_path))  # Keras read $KERAS_HOME at import
    with pytest.raises(training.PretrainedWeightsUnavailable, match="no offline stand-in") as info:
        training.imagenet_mobilenet_v2((96, 96, 3), alpha=0.35, allow_download=False, include_top=True)
    assert "\n" not in str(info.value) and "classifier" in str(info.value)
    source = _fabricate_mobilenet_v2_weights(str(tmp_path), 0.35, 96, include_top=True)
    assert os.path.basename(training._imagenet_weights_file(0.35, 96, True)) == \
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96.h5"
    # the no-top file is still missing: asking for the backbone must not pick up the classifier's weights
    with pytest.raises(training.PretrainedWeightsUnavailable, match="pretrain a backbone"):
        training.imagenet_mobilenet_v2((96, 96, 3), alpha=0.35, allow_download=False)

    model = training.imagenet_mobilenet_v2((96, 96, 3), alpha=0.35, allow_download=False, include_top=True)
    assert model.name == "imagenet_mobilenet_v2_classifier" and model.output_shape == (None, 1000)
    rng = np.random.default_rng(0)
    x = rng.random((2, 96, 96, 3)).astype(np.float32)
    logits = np.asarray(model(x))
    # the cached weights were loaded (same numbers as the model they were saved from, fed [-1, 1] images) ...
    expected = np.asarray(source(x * 2 - 1))
    assert np.abs(expected).max() > 0.1  # a test that can fail: a fresh model gives other numbers
    np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-4)
    # ... and the head outputs logits, not probabilities
    assert model.layers[-1].get_layer("predictions").activation is keras.activations.linear
    maps = explain.grad_cam(model, x)
    assert maps.shape == (2, 96, 96) and maps.dtype == np.float32 and np.isfinite(maps).all()
    with pytest.raises(ValueError, match="Resize the images"):
        training.imagenet_mobilenet_v2((100, 100, 3), include_top=True)


def test_imagenet_class_name():
    assert training.imagenet_class_name(281) == "281 tabby cat"
    assert training.imagenet_class_name(np.int64(917)) == "class 917"
    assert set(training.IMAGENET_CAT_CLASSES) == {281, 282, 283, 284, 285}
    assert all(0 <= i < 1000 for i in training.IMAGENET_CLASS_NAMES)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        training.imagenet_class_name(1000)
