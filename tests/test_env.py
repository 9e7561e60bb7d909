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
    course_lib.setup(seed=0)
    out, err = capfd.readouterr()
    assert out.startswith("course_lib.setup: profile=") and out.count("\n") == 1
    assert "oneDNN" not in out + err and "absl" not in out + err
