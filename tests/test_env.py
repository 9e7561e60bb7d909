import numpy as np
import pytest

import course_lib
from course_lib import env


def test_setup_returns_cpu_profile_without_gpu_and_is_repeatable():
    e1 = course_lib.setup(seed=3, verbose=False)
    import tensorflow as tf

    expected = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    assert e1.profile == expected
    a = np.random.rand(3), tf.random.uniform((3,)).numpy()
    course_lib.setup(seed=3, verbose=False)
    b = np.random.rand(3), tf.random.uniform((3,)).numpy()
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert e1.pick(cpu="small", gpu="big") == ("small" if expected == "cpu" else "big")
    assert "tensorflow" in e1.versions and "keras" in e1.versions


def test_setup_forced_profile_and_bad_arguments():
    assert course_lib.setup(profile="cpu", verbose=False).profile == "cpu"
    with pytest.raises(ValueError, match="profile must be one of"):
        course_lib.setup(profile="tpu", verbose=False)
    with pytest.raises(ValueError, match="non-negative integer"):
        course_lib.setup(seed=-1, verbose=False)


def test_version_check_names_what_to_install():
    with pytest.raises(ImportError, match=r"keras 3\.\d+.* too old.*pip install -r requirements.txt"):
        env.check_versions([("keras", ("keras",), "999.0")])
    with pytest.raises(ImportError, match="not-a-real-package is not installed"):
        env.check_versions([("nothing", ("not-a-real-package",), "1.0")])


def test_setup_prints_one_clean_line(capfd):
    e = course_lib.setup(seed=0)
    out, err = capfd.readouterr()
    # One line; on a GPU a second one says that op determinism is off and how to force it.
    assert out.startswith("course_lib.setup: profile=") and out.count("\n") == (1 if e.deterministic else 2)
    assert "oneDNN" not in out + err and "absl" not in out + err


def test_profile_variable_forces_the_profile_and_is_validated(monkeypatch):
    assert env.choose_profile(None, 0, environ={}) == "cpu"
    assert env.choose_profile(None, 1, environ={}) == "gpu"
    assert env.choose_profile(None, 0, environ={"COURSE_LIB_PROFILE": "gpu"}) == "gpu"
    assert env.choose_profile("cpu", 0, environ={"COURSE_LIB_PROFILE": "gpu"}) == "cpu"  # the argument wins
    with pytest.raises(ValueError, match=r"\$COURSE_LIB_PROFILE must be one of"):
        env.choose_profile(None, 0, environ={"COURSE_LIB_PROFILE": "tpu"})
    monkeypatch.setenv("COURSE_LIB_PROFILE", "gpu")
    assert course_lib.setup(verbose=False).profile == "gpu"
    monkeypatch.delenv("COURSE_LIB_PROFILE")
    import tensorflow as tf

    assert course_lib.setup(verbose=False).profile == ("gpu" if tf.config.list_physical_devices("GPU") else "cpu")


def test_determinism_is_off_by_default_on_a_gpu_and_can_be_forced():
    assert env.choose_determinism(None, 0) == (True, None)
    on, note = env.choose_determinism(None, 1)
    assert on is False and note == env.DETERMINISM_NOTE and "\n" not in note
    assert "deterministic=True" in note  # it says how to force it
    assert env.choose_determinism(True, 4) == (True, None)
    assert env.choose_determinism(False, 0) == (False, None)
    with pytest.raises(ValueError, match="deterministic must be True, False or None"):
        env.choose_determinism("yes", 0)
    with pytest.raises(ValueError, match="deterministic must be True, False or None"):
        course_lib.setup(deterministic=1, verbose=False)


def test_setup_sets_and_unsets_op_determinism():
    from tensorflow.python.framework import config as tf_config

    e = course_lib.setup(deterministic=False, verbose=False)
    assert e.deterministic is False and not tf_config.is_op_determinism_enabled()
    e = course_lib.setup(verbose=False)  # no GPU here: the default is on
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        assert e.deterministic is True and tf_config.is_op_determinism_enabled()
        assert e.replicas == 1 and env.choose_strategy([]) == "default"


def test_strategy_choice():
    assert env.choose_strategy([]) == "default"
    assert env.choose_strategy(["/gpu:0"]) == "default"
    assert env.choose_strategy(["/gpu:0", "/gpu:1"]) == "mirrored"


_MIRRORED_SCRIPT = r"""
import numpy as np
import tensorflow as tf
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
import course_lib
env = course_lib.setup(seed=0, devices=["/cpu:0", "/cpu:1"])
import keras
assert type(env.strategy).__name__ == "MirroredStrategy" and env.replicas == 2, env
assert tf.distribute.has_strategy()  # installed as the default: no `with scope()` below
inputs = keras.Input((4,))
model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
assert "Mirrored" in type(model.layers[-1].kernel.value).__name__, type(model.layers[-1].kernel.value)
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int64")
hist = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
assert np.isfinite(hist.history["loss"]).all()
print("MIRRORED OK", env.replicas)
"""


def test_two_devices_train_with_mirrored_strategy_set_in_setup():
    # A fresh process: logical devices must be configured before TensorFlow starts.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "MIRRORED OK 2" in out.stdout
    assert "MirroredStrategy over 2 devices" in out.stdout  # recorded on Env and printed by setup
