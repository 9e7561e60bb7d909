"""course_lib: the small helper library of the course.

One module per topic, flat (d2l style): ``env`` (the setup call at the top of every
notebook), ``validation`` (the shared input checks), ``data``, ``viz``, and, as the
days arrive, ``preprocessing``, ``batchnorm``, ``models``, ``training``,
``semi_supervised``, ``localization``, ``metrics``, ``explain`` and ``grading`` (with
``sandbox``, where it runs each submitted notebook sealed off).

Importing ``course_lib`` does not import TensorFlow. It only sets TensorFlow's
logging variables (when you have not set them yourself), so that the C++ start-up
noise (oneDNN notices, absl warnings) stays out of notebook outputs. Call
:func:`course_lib.setup` before importing ``tensorflow`` or ``keras``.
"""

import os as _os

# Must happen before TensorFlow is imported anywhere, so it lives at package import.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ logs: errors only
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # no oneDNN notice, bitwise-repeatable CPU maths
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from .env import setup  # noqa: E402  (light: imports TensorFlow only when called)

__version__ = "0.1.0"
__all__ = ["setup", "__version__"]
