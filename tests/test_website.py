"""The course website (issue 21): built offline in one command, nothing executed twice,
every internal link resolving, nothing loaded from the network, and real pages checked in
headless Chromium.

This file runs last (``conftest.py`` sorts it there): by then the test command has executed
every student version, and ``conftest.py`` has kept each one with its outputs, so the build
below reads them from the cache instead of executing them again.
"""

import ast
import json
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from course_lib import publish, website

ROOT = Path(__file__).resolve().parents[1]
STUDENTS = sorted(p.stem for p in (ROOT / "student").glob("[0-9][0-9]_*.ipynb"))
DECKS = sorted(p.stem for p in (ROOT / "slides" / "src").glob("*.md"))
MODULES = sorted(p.stem for p in (ROOT / "course_lib").glob("*.py") if not p.stem.startswith("_")) + ["explain"]
NO_CHROMIUM = "no Chromium binary here: apt-get install chromium (Debian/Ubuntu), then run the tests again"


def _chromium():
    try:
        return website._find_chromium()
    except FileNotFoundError:
        return None


# ------------------------------------------------------------------------ the parts, on small inputs


def _tiny_notebook(tmp_path, source='print("hello from the kernel")', name="01_tiny.ipynb"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A tiny lesson\n\n[![Open in Colab](https://colab.research.google."
                                              "com/assets/colab-badge.svg)](https://colab.research.google.com/github/"
                                              "a/b/blob/main/student/01_tiny.ipynb)\n\nWhy, then how."),
                nbformat.v4.new_code_cell("PUBLIC_TESTS = {}  # the otter set-up cell\n"
                                            "class grader:\n    check = staticmethod(len)"),
                nbformat.v4.new_code_cell(source),
                nbformat.v4.new_code_cell('grader.check("q1_x")'),
                nbformat.v4.new_raw_cell("# ASSIGNMENT CONFIG")]
    path = tmp_path / name
    nbformat.write(nb, str(path))
    return path


def test_a_page_gets_local_badges_and_hides_the_graders_plumbing(tmp_path):
    nb = nbformat.read(str(_tiny_notebook(tmp_path)), as_version=4)
    # A tqdm progress bar drawn as a Jupyter widget: its script would come from a CDN.
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc"}, "text/plain": "RISE: 0%"}),
        nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    # A cell ending with ';' shows its figure, not its value (nbval records the value anyway).
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    value = nbformat.v4.new_output("execute_result", data={"text/plain": "<matplotlib.legend.Legend at 0x7f>"},
                                   execution_count=3)
    nb.cells.insert(3, nbformat.v4.new_code_cell("plt.plot(x)\nplt.legend();  # quiet", outputs=[figure, value]))
    nb.cells.insert(4, nbformat.v4.new_code_cell("x = 1\nx  # shown", outputs=[value]))
    page = website.stage_notebook(nb, "01_tiny", "owner/course")
    assert [o["output_type"] for o in page.cells[2].outputs] == ["display_data"], "the ';' cell keeps its figure only"
    assert [o["output_type"] for o in page.cells[3].outputs] == ["execute_result"], "a cell without ';' keeps its value"
    assert not website._ends_with_semicolon("s = 'a;'  # ends with ; in a string")
    assert website._ends_with_semicolon("for i in range(2):\n    f(i);\n")
    assert "widgets" not in page.metadata
    assert [o.get("text") for o in page.cells[1].outputs] == ["kept\n"], "only the widget output goes"
    text = json.dumps(page.cells)
    assert "colab.research.google.com/assets" not in text, "the remote badge image must be replaced"
    title = page.cells[0].source
    assert "../images/colab-badge.svg" in title
    assert "https://colab.research.google.com/github/owner/course/blob/main/student/01_tiny.ipynb" in title
    assert "https://colab.research.google.com/github/owner/course/blob/main/notebooks/01_tiny.ipynb" in title
    assert not any("PUBLIC_TESTS" in c.source for c in page.cells), "the otter set-up cell is not part of the lesson"
    assert not any(c.cell_type == "raw" for c in page.cells)
    check = next(c for c in page.cells if c.source.startswith("grader.check"))
    assert check.metadata["tags"] == ["remove-output"]
    assert nb.cells[1].source.startswith("PUBLIC_TESTS"), "staging must not change the cached notebook"


def test_the_cache_key_follows_the_notebook_the_library_and_nothing_else(tmp_path):
    nb = _tiny_notebook(tmp_path)
    lib = tmp_path / "lib.py"
    lib.write_text("x = 1\n")
    key = website.executed_key(nb, [lib])
    assert website.executed_key(nb, [lib]) == key, "the same inputs must give the same key"
    lib.write_text("x = 2\n")
    assert website.executed_key(nb, [lib]) != key, "a changed course_lib file must invalidate the page"
    lib.write_text("x = 1\n")
    nb.write_text(nb.read_text().replace("hello", "hullo"))
    assert website.executed_key(nb, [lib]) != key, "a changed notebook must invalidate the page"
    # The real key covers every file of course_lib, the zoo's weights included, but not this builder.
    files = {p.relative_to(ROOT).as_posix() for p in website._course_lib_files()}
    assert {"course_lib/explain/cam.py", "course_lib/zoo.py"} <= files
    assert any(f.startswith("course_lib/zoo_weights/") and f.endswith(".h5") for f in files)
    assert "course_lib/website.py" not in files


def test_an_executed_notebook_is_cached_and_read_back_without_running(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COURSE_LIB_PROFILE", "cpu")
    path = _tiny_notebook(tmp_path)
    nb, cached = website.executed(path)
    assert not cached
    assert nb.cells[2].outputs[0]["text"] == "hello from the kernel\n"
    again, cached = website.executed(path)
    assert cached and again.cells[2].outputs == nb.cells[2].outputs
    # A truncated cache file is executed again, never shown.
    stored = next((tmp_path / "cache" / "website" / "executed").glob("01_tiny-*.ipynb"))
    stored.write_text(stored.read_text()[:50])
    _, cached = website.executed(path)
    assert not cached
    # Nothing is kept from a gpu-profile run: the site shows the laptop's cpu run.
    monkeypatch.setenv("COURSE_LIB_PROFILE", "gpu")
    assert website.store_executed(path, nb) is None


def test_a_failing_notebook_is_a_clear_error_not_a_page(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_LIB_CACHE", str(tmp_path / "cache"))
    path = _tiny_notebook(tmp_path, source="1 / 0", name="02_broken.ipynb")
    with pytest.raises(RuntimeError, match=r"02_broken.ipynb failed while building its page: ZeroDivisionError.*\n.*python -m pytest"):
        website.executed(path)
    assert not list((tmp_path / "cache" / "website" / "executed").glob("02_broken-*"))


def test_building_into_any_folder_deletes_nothing_beside_it(tmp_path, monkeypatch):
    """The staged sources live in website/_build/work, never next to ``--out`` (a sibling 'src' survives)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "mine.txt").write_text("a student's own folder")
    calls = []
    monkeypatch.setattr(website, "stage", lambda work, log=print: calls.append(work))
    monkeypatch.setattr(website.subprocess, "run",
                        lambda cmd, **kw: calls.append(cmd) or SimpleNamespace(returncode=0, stderr=""))
    assert website.build(tmp_path / "html", log=lambda message: None) == tmp_path / "html"
    assert (tmp_path / "src" / "mine.txt").read_text() == "a student's own folder"
    assert calls[0] == website.WORK and str(website.WORK / "src") in calls[1] and str(tmp_path / "html") in calls[1]
    assert website.WORK.is_relative_to(ROOT / "website" / "_build")


def _page(folder, name, body):
    (folder / name).write_text(f"<html><head></head><body><main>{body}</main></body></html>", encoding="utf-8")


def test_the_link_check_catches_every_kind_of_fault(tmp_path):
    (tmp_path / "sub").mkdir()
    _page(tmp_path, "index.html", '<a href="sub/a.html#here">ok</a> <a href="https://arxiv.org/abs/1610.02391">paper</a>'
                                  '<a href="#top" id="top">self</a>')
    _page(tmp_path / "sub", "a.html", '<p id="here">x</p><a href="../index.html">home</a>')
    assert website.check_site(tmp_path) == []
    _page(tmp_path / "sub", "b.html", '<a href="missing.html">a</a> <a href="../index.html#nowhere">b</a>'
                                      '<img src="https://example.org/x.png"> <img src="gone.png">'
                                      '<script src="//cdn.example.org/mathjax.js"></script>'
                                      '<link rel="stylesheet" href="https://fonts.example.org/css">')
    (tmp_path / "style.css").write_text("@font-face { src: url('https://fonts.example.org/a.woff2') }")
    problems = "\n".join(website.check_site(tmp_path))
    for fault in ("links to missing.html, which is not in the site", "../index.html#nowhere: no element with that id",
                  "loads https://example.org/x.png from the network", "loads gone.png, which is not in the site",
                  "loads //cdn.example.org/mathjax.js from the network", "loads https://fonts.example.org/css from",
                  "style.css loads https://fonts.example.org/a.woff2 from the network"):
        assert fault in problems, f"the link check missed: {fault}\n{problems}"


@pytest.mark.skipif(_chromium() is None, reason=NO_CHROMIUM)
def test_the_browser_check_catches_raw_math_broken_images_and_remote_requests(tmp_path):
    _page(tmp_path, "bad.html", r'<p>The loss $L = -\log p$ was never typeset.</p><img src="nothere.png">'
                                '<img src="https://example.org/logo.png"><script>console.error("boom")</script>')
    _page(tmp_path, "good.html", "<p>No formula here, and <code>$HOME</code> is code.</p>")
    found = website.browser_check(tmp_path, pages=["bad.html", "good.html"])
    bad = "\n".join(found["bad.html"])
    for fault in ("formula not rendered", "image did not load", "remote request: https://example.org/logo.png",
                  "console error: boom"):
        assert fault in bad, f"the browser check missed: {fault}\n{bad}"
    assert found["good.html"] == []
    assert (tmp_path / "_screenshots" / "bad.png").stat().st_size > 1000


def _text_after_a_field_section(doc):
    """The paragraph a numpydoc docstring has after a Returns / Yields / Raises section.

    Sphinx's napoleon reads such a paragraph as one more returned value or exception
    (``:raises Used in notebook 07.:``), so the API reference would print it wrongly.
    """
    lines = doc.splitlines()
    heads = [i for i in range(len(lines) - 1) if re.fullmatch(r"-{3,}", lines[i + 1].strip())
             and len(lines[i + 1].strip()) == len(lines[i].strip()) and lines[i].strip()]
    if not heads or lines[heads[-1]].strip() not in ("Returns", "Yields", "Raises"):
        return None
    title = lines[heads[-1]].strip()
    for j in range(heads[-1] + 2, len(lines)):
        line = lines[j]
        if line.strip() and not lines[j - 1].strip() and not line.startswith(" "):
            entry = (re.fullmatch(r"[A-Z]\w*(Error|Exception|Warning)", line.strip()) if title == "Raises"
                     else re.match(r"^[\w, ]+ : ", line))
            if not entry:
                return line.strip()
    return None


def test_no_docstring_has_free_text_after_a_returns_or_raises_section():
    found = []
    for path in sorted((ROOT / "course_lib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node):
                text = _text_after_a_field_section(ast.get_docstring(node))
                if text:
                    found.append(f"{path.relative_to(ROOT)}:{node.name}: {text[:60]!r} (put it under a Notes section)")
    assert not found, "\n".join(found)


def test_the_docstring_check_sees_the_fault():
    doc = textwrap.dedent("""\
        Summary.

        Raises
        ------
        ValueError
            When wrong.

        Used in notebook 07.
        """)
    assert _text_after_a_field_section(doc) == "Used in notebook 07."
    assert _text_after_a_field_section(doc.replace("Used in", "Notes\n-----\nUsed in")) is None


# -------------------------------------------------------------------------------- the real site


@pytest.fixture(scope="module")
def site(request):
    """The site, built once by the one command's function, into the real build folder."""
    log = []
    out = website.build(website.OUT, log=log.append)
    ran_here = {Path(str(item.fspath)).stem for item in request.session.items
                if str(item.fspath).endswith(".ipynb") and Path(str(item.fspath)).parent.name == "student"}
    return {"out": out, "log": log, "ran_here": ran_here}


def test_nothing_the_tests_executed_is_executed_again(site):
    """The pages of the notebooks this test run executed come from its cache, not a second run."""
    log = "\n".join(site["log"])
    for stem in sorted(site["ran_here"]):
        assert f"website: {stem}: cache" in log, (
            f"{stem} ran in this test session but the site build executed it again:\n{log}")


def test_every_notebook_is_a_page_with_its_outputs_and_badges(site):
    repo = publish.repository()
    for stem in STUDENTS:
        page = site["out"] / "notebooks" / f"{stem}.html"
        assert page.exists(), f"no page for {stem}"
        html = page.read_text(encoding="utf-8")
        assert html.count('class="cell_output') >= 3, f"{stem}: the page shows (almost) no outputs"
        assert re.search(r'<img[^>]+src="[^"]*_images/[^"]+\.png"', html), f"{stem}: no figure on the page"
        assert publish.colab_url(repo, f"student/{stem}.ipynb") in html
        assert publish.colab_url(repo, f"notebooks/{stem}.ipynb") in html
        assert "Traceback" not in html, f"{stem}: an error is shown on the page"


def test_the_home_page_carries_the_day_plan_and_search(site):
    html = (site["out"] / "index.html").read_text(encoding="utf-8")
    for stem in STUDENTS:
        assert f'href="notebooks/{stem}.html"' in html, f"the home page does not link {stem}"
    for deck in DECKS:  # the README's day table names every deck
        assert f'href="slides/{deck}.html"' in html, f"the home page does not link the deck {deck}"
    assert "search" in html.lower() and (site["out"] / "searchindex.js").exists()


def test_decks_and_api_reference_are_in_the_site(site):
    for deck in DECKS:
        assert (site["out"] / "slides" / f"{deck}.html").exists(), f"deck {deck} missing from the site"
    for module in MODULES:
        page = site["out"] / "api" / f"{module}.html"
        assert page.exists(), f"no API page for course_lib.{module}"
    explain = (site["out"] / "api" / "explain.html").read_text(encoding="utf-8")
    for name in ("grad_cam", "grad_cam_plus_plus", "occlusion", "rise", "cam_to_box"):
        assert f'id="course_lib.explain.{name}"' in explain, f"explain.{name} is not documented"
    assert "Selvaraju" in explain, "the docstrings' references must reach the page"


def test_every_internal_link_resolves_and_nothing_is_loaded_from_the_network(site):
    problems = website.check_site(site["out"])
    assert not problems, "\n".join(problems[:30])


@pytest.mark.skipif(_chromium() is None, reason=NO_CHROMIUM)
def test_pages_open_in_headless_chromium(site):
    found = website.browser_check(site["out"])
    assert set(found) >= {"index.html", "api/explain.html", "slides/day5c_cam_gradcam.html"}
    assert sum(p.startswith("notebooks/") for p in found) == len(website.DAY_PAGES)
    problems = [f"{page}: {p}" for page, ps in found.items() for p in ps]
    assert not problems, "\n".join(problems[:30])
    shots = list((site["out"] / "_screenshots").glob("*.png"))
    assert len(shots) >= len(found), "every checked page leaves a screenshot in the build folder"
