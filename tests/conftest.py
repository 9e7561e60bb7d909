"""Shared fixtures. Importing course_lib first keeps TensorFlow's start-up logs quiet."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import course_lib  # noqa: E402,F401  (sets TF log variables before any test imports TensorFlow)
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
