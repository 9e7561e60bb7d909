"""Sphinx configuration of the course website; built by ``python -m course_lib.website``.

The sources are staged by course_lib.website into website/_build/src (notebooks with
their outputs, the home page, the API pages); this file only configures Sphinx.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

project = "Image classification, localization and explainability with Keras 3"
author = "the course's authors"
copyright = "the course's authors, MIT licence"

extensions = [
    "myst_nb",               # Markdown and notebooks (the engine of Jupyter Book)
    "sphinx.ext.autodoc",    # the API reference from the docstrings
    "sphinx.ext.napoleon",   # ... written in the numpydoc format
    "sphinx.ext.mathjax",
]

# The notebooks arrive executed (course_lib.website's cache); Sphinx never runs them.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "misc.highlighting_failure"]

# Offline: MathJax 3 (tex-chtml, its fonts included) from the sphinx-mathjax-offline package,
# which copies it into _static/mathjax and points mathjax_path at it.
extensions.append("sphinx-mathjax-offline")
html_static_path = [str(Path(__file__).parent / "static")]

autodoc_member_order = "bysource"
autodoc_typehints = "none"          # the numpydoc Parameters section gives the types
autodoc_mock_imports = []
napoleon_google_docstring = True   # env.setup and a few others use Args:
napoleon_numpy_docstring = True
napoleon_use_rtype = False

html_theme = "sphinx_book_theme"
html_title = "Keras 3: classification, localization, explainability"
html_theme_options = {
    "home_page_in_toc": True,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_css_files = ["course.css"]
html_favicon = "static/favicon.svg"
html_context = {"default_mode": "light"}  # the theme's light / dark switch starts from light
html_last_updated_fmt = None
# Search results without page summaries: the summaries are fetched with fetch(), which a
# browser refuses for file:// pages (a site opened from disk, offline, must work too).
html_show_search_summary = False
exclude_patterns = ["**.ipynb_checkpoints"]
