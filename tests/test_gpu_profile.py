"""The gpu profile runs, proved without a GPU.

No GPU is needed: this test forces the gpu profile (``COURSE_LIB_PROFILE=gpu``), points
``KERAS_HOME`` at a temporary folder holding small *fabricated* files in the real
formats of the Keras cache (``mnist.npz``, Fashion-MNIST's gzipped IDX files,
CIFAR-10's pickled batches, keras.applications' MobileNetV2 ImageNet weights, without and with the 1000-class
top, saved from a randomly initialised model under the file names Keras looks for), and executes each
notebook's cells tagged ``gpu-path`` (setup, parameters, data loading, model
construction, the first training cell) in a fresh kernel. One cell is injected right
after the ``parameters`` cell, papermill style, to shrink the sizes (a few dozen
images, one epoch); nothing else differs from what a student runs on a GPU: the same
cells, with the data they would download already in the cache.
"""

import gzip
import json
import os
import pickle

import nbformat
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
TAG = "gpu-path"

#: Per notebook: the overrides injected after its ``parameters`` cell, and a check run
#: after the last ``gpu-path`` cell (that the gpu branch was the one taken).
SHRINK = {
    "01_image_classification_basics": dict(
        set="N_IMAGES = 120; EPOCHS = 1; SVM_CS = (1.0,); KNN_KS = (1,)",
        check='assert DATASET == "mnist" and images.shape[1:] == (28, 28, 1), images.shape\n'
              'assert len(history.history["loss"]) == 1',
    ),
    "02_preprocessing_and_batchnorm": dict(
        set="N_TRAIN = 40; N_VAL = 20; AUG_EPOCHS = 1; BN_EPOCHS = 1; CURVE_EPOCHS = 1; LEAK_REPEATS = 1",
        check='assert len(aug_histories["augmentation"]["loss"]) == 1',
    ),
    "03_cnn_architectures": dict(
        set="N_TRAIN = 60; N_VAL = N_TEST = 20; LIVE_EPOCHS = 1; LATENCY_REPEATS = 1",
        check='assert DATASET == "cifar10" and x_train.shape[1:] == (32, 32, 3), x_train.shape\n'
              'assert ZOO_MODELS is None  # the gpu profile trains both networks here, not from the zoo\n'
              'assert all(len(h["loss"]) == 1 for h in histories.values()) and len(test_acc) == 2',
    ),
    "04_training_and_tuning": dict(
        set="N_TRAIN = 60; N_VAL = N_TEST = 20; EPOCHS_RESNET = 1; EPOCHS_PRETRAIN = 1",
        check='assert DATASET == "cifar10" and x_train.shape[1:] == (32, 32, 3), x_train.shape\n'
              'assert len(resnet_run.history["loss"]) == 1\n'
              'assert backbone.name == "imagenet_backbone"  # the ImageNet MobileNetV2 weights came from the cache',
    ),
    "05_localization_multitask": dict(
        set="N_TRAIN = N_BOX = N_SWEEP = 40; N_VAL = N_TEST = 20; EPOCHS = EPOCHS_BOX = 1",
        check="assert len(history_box.history['loss']) == 1",
    ),
    "06_evaluation_metrics": dict(
        set="FACE_EPOCHS = 1; DIGIT_EPOCHS = 1; CV_EPOCHS = 1",
        check="assert len(test_clean) > 0",
    ),
    "07_cam_and_gradcam": dict(
        set="N_TRAIN = 40; N_VAL = N_TEST = 20; N_TWO = 10; N_HANS_TRAIN = 40; EPOCHS = EPOCHS_HANS = 1\n"
            "N_DECODER = 40; DECODER_EPOCHS = 1\n"
            "IMAGENET_ALPHA, IMAGENET_SIZE = 0.35, 96",
        check="assert RETRAIN and len(history['loss']) == 1  # the gpu profile trains here, not from the zoo\n"
              "assert len(decoder_history['loss']) == 1 and DECODER_WIDTH == 64  # section 13: the gpu decoder\n"
              "assert decoder.output_shape == (None, IMAGE_SIZE, IMAGE_SIZE, 3)\n"
              "assert imagenet_model.output_shape == (None, 1000)  # section 15: the with-top weights came from the cache\n"
              "assert all(m.shape == (4, 96, 96) for m in photo_maps.values())",
    ),
    "08_visualizing_cnns": dict(
        set="N_TRAIN = 40; N_VAL = 20; EPOCHS = 1; AM_STEPS = 2; N_ADV_TRAIN = 40; ADV_EPOCHS = 1\n"
            "IMAGENET_ALPHA, IMAGENET_SIZE = 0.35, 96; IMAGENET_AM_STEPS = 2",
        check="assert RETRAIN and len(history['loss']) == 1  # the gpu profile trains here, not from the zoo\n"
              "assert imagenet_filters.shape == (3, 3, 3, 16)  # section 6: Conv1 of the cached MobileNetV2 (alpha 0.35)\n"
              "assert am_image.shape == (96, 96, 3) and len(am_scores) == 2\n"
              "assert len(adv_history['val_adv_accuracy']) == 1 and robust_acc.shape == attack_acc.shape == (len(EPSILONS),)",
    ),
    "09_beyond_gradcam": dict(
        set="N_TRAIN = 40; N_VAL = N_TEST = 20; N_EVAL = 4; EPOCHS = 1; N_GAIN = 40; GAIN_EPOCHS = 1\n"
            "IMAGENET_ALPHA, IMAGENET_SIZE = 0.35, 96; IMAGENET_MASKS = 50",
        check="assert RETRAIN and len(history['loss']) == 1  # the gpu profile trains here, not from the zoo\n"
              "assert imagenet_model.output_shape == (None, 1000)  # section 8: the with-top weights came from the cache\n"
              "assert photo_maps['RISE'].shape == (4, 96, 96) and photo_faith['RISE']['insertion'].shape == (4, N_STEPS + 1)",
    ),
    "10_semi_supervised": dict(
        set="WARM_STEPS = 4; STEPS = 6; EPOCHS = 2",
        check="assert len(histories) >= 1",
    ),
    "11_project_template": dict(
        set="N_IMAGES = 120; EPOCHS = 1",
        check='assert DATASET == "cifar10" and x_train.shape[1:] == (32, 32, 3), x_train.shape\n'
              'assert len(history.history["loss"]) == 1',
    ),
}


# ------------------------------------------------------------------ the fabricated cache
def _write_idx(path, array):
    codes = {1: 0x0801, 3: 0x0803}
    header = codes[array.ndim].to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fabricate_keras_cache(home, n_train=100, n_test=40, seed=0):
    """Write small MNIST, Fashion-MNIST, CIFAR-10 and MobileNetV2-weights files into ``home`` as Keras stores them."""
    rng = np.random.default_rng(seed)
    datasets = os.path.join(home, "datasets")
    os.makedirs(datasets, exist_ok=True)
    # Labels cycle through the ten classes, so stratified splits of a few dozen images work.
    y_tr, y_te = np.arange(n_train) % 10, np.arange(n_test) % 10
    grey_tr = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    grey_te = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    np.savez(os.path.join(datasets, "mnist.npz"), x_train=grey_tr, y_train=y_tr.astype(np.uint8),
             x_test=grey_te, y_test=y_te.astype(np.uint8))
    fashion = os.path.join(datasets, "fashion-mnist")
    os.makedirs(fashion, exist_ok=True)
    for name, array in [("train-labels-idx1-ubyte.gz", y_tr), ("train-images-idx3-ubyte.gz", grey_tr),
                        ("t10k-labels-idx1-ubyte.gz", y_te), ("t10k-images-idx3-ubyte.gz", grey_te)]:
        _write_idx(os.path.join(fashion, name), array)
    cifar = os.path.join(datasets, "cifar-10-batches-py-target", "cifar-10-batches-py")
    os.makedirs(cifar, exist_ok=True)
    per_batch = n_train // 5
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        rows = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)  # channel-first rows, as CIFAR stores them
        with open(os.path.join(cifar, name), "wb") as f:
            pickle.dump({b"data": rows, b"labels": [int(v) for v in np.arange(n) % 10]}, f)
    fabricate_mobilenet_v2_weights(home)
    return home


#: keras.applications.MobileNetV2 weights the notebooks' gpu path loads: (alpha, rows, include_top).
#: Notebook 04's backbone has no top; 07-09 explain the whole classifier (their IMAGENET_ALPHA / _SIZE shrunk to these).
WEIGHTS = [(0.35, 96, False), (0.35, 96, True)]


def fabricate_mobilenet_v2_weights(home, which=WEIGHTS):
    """Save a randomly initialised MobileNetV2's weights in the legacy .h5 layout under keras.applications' file name."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    models = os.path.join(home, "models")
    os.makedirs(models, exist_ok=True)
    for alpha, rows, top in which:
        suffix = "" if top else "_no_top"
        path = os.path.join(models, f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}{suffix}.h5")
        model = keras.applications.MobileNetV2(input_shape=(rows, rows, 3), alpha=alpha, include_top=top, weights=None)
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    return fabricate_keras_cache(str(tmp_path_factory.mktemp("keras_home")))


def test_fabricated_cache_is_what_the_real_loaders_read(keras_home, monkeypatch):
    """The fabricated files are in the real formats: course_lib and keras.applications read them."""
    monkeypatch.setenv("KERAS_HOME", keras_home)
    import course_lib

    course_lib.setup(verbose=False)
    from keras.src.backend import config as keras_config

    from course_lib import data, training

    monkeypatch.setattr(keras_config, "keras_home", lambda: keras_home)  # Keras read $KERAS_HOME at import

    for name, shape in [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))]:
        (x_tr, y_tr), (x_te, y_te) = data.load_online(name)
        assert x_tr.shape[1:] == shape and len(x_tr) == 100 and len(x_te) == 40 and set(y_tr) == set(range(10))
    model = training.imagenet_mobilenet_v2((96, 96, 3), alpha=0.35, allow_download=False)
    assert model(np.zeros((1, 96, 96, 3), np.float32)).shape == (1, 1280)
    classifier = training.imagenet_mobilenet_v2((96, 96, 3), alpha=0.35, allow_download=False, include_top=True)
    assert classifier(np.zeros((1, 96, 96, 3), np.float32)).shape == (1, 1000)


# ------------------------------------------------------------------ the notebooks' gpu path
def gpu_path_notebook(path, overrides, check):
    """The notebook's ``gpu-path`` cells, with the shrinking cell after ``parameters`` and the check at the end."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and TAG in c.metadata.get("tags", [])]
    assert cells, f"{os.path.basename(path)} has no cell tagged {TAG!r}"
    params = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert params, f"{os.path.basename(path)}: the 'parameters' cell must be tagged {TAG!r} too"
    shrink = nbformat.v4.new_code_cell(
        "# injected by tests/test_gpu_profile.py: the gpu profile's cells at test sizes\n"
        f'assert env.profile == "gpu", env.profile\n{overrides}')
    done = nbformat.v4.new_code_cell(check + '\nprint("GPU PATH OK")')
    nb.cells = cells[: params[0] + 1] + [shrink] + cells[params[0] + 1 :] + [done]
    return nb


@pytest.mark.parametrize("name", sorted(SHRINK))
def test_gpu_profile_path_runs(name, keras_home, monkeypatch, tmp_path):
    from nbclient import NotebookClient

    monkeypatch.setenv("COURSE_LIB_PROFILE", "gpu")
    monkeypatch.setenv("KERAS_HOME", keras_home)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a GPU machine still proves the path without using the GPU
    spec = SHRINK[name]
    nb = gpu_path_notebook(os.path.join(NOTEBOOKS, name + ".ipynb"), spec["set"], spec["check"])
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "GPU PATH OK" in outputs
    setup_out = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "profile='gpu'" in setup_out


def test_every_notebook_has_a_gpu_path():
    names = sorted(f[:-6] for f in os.listdir(NOTEBOOKS) if f.endswith(".ipynb"))
    assert names == sorted(SHRINK), "add the new notebook to SHRINK and tag its gpu-path cells"
    for name in names:
        nb = json.load(open(os.path.join(NOTEBOOKS, name + ".ipynb")))
        tagged = [c for c in nb["cells"] if TAG in c.get("metadata", {}).get("tags", [])]
        assert any("course_lib.setup(" in "".join(c["source"]) for c in tagged), f"{name}: setup cell not tagged"

