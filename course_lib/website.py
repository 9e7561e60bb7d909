"""The course as a website: every notebook with its outputs, the decks, the API reference.

One command builds it, offline, into ``website/_build/html``::

    python -m course_lib.website             # build (executes only notebooks not run since they changed)
    python -m course_lib.website --check     # build, then check every link and open pages in Chromium
    python -m course_lib.website --out DIR   # build somewhere else

The tool is Sphinx with MyST-NB (the engine of Jupyter Book 1) and the Sphinx Book
Theme: Markdown and notebooks in, a static site out, Sphinx's own offline search, and
the API reference from the docstrings (``autodoc`` + ``napoleon``, which read the
numpydoc sections course_lib is written in). This module only prepares the inputs and
checks the result; it does not render anything itself.

**Nothing runs twice.** A notebook page shows the student version as the test command
executed it (``python -m pytest``: ``conftest.py`` hands each notebook that ran to the
end to :func:`store_executed`, in :func:`cache_dir`). The cache key is the sha256 of the notebook, every file
of ``course_lib`` (code and zoo weights) and the versions of Python, TensorFlow, Keras
and NumPy, so editing a notebook or ``course_lib`` makes the page execute again (with
nbclient, in the cpu profile) on the next build, and nothing else does. The decks are
cached the same way (key: the deck sources, the slide builder and ``course_lib``).

**Offline.** MathJax 3 comes from the ``sphinx-mathjax-offline`` package, the theme's fonts and scripts are bundled with it, and
the Colab badge is a local SVG; :func:`check_site` fails on any page that would load a
remote script, style sheet, font or image, and on any internal link that does not
resolve. :func:`browser_check` opens pages in headless Chromium with every network
request blocked.

Used by: the instructors (README, "The course as a website"), ``tests/test_website.py``,
``conftest.py``.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import html
import html.parser
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

from . import publish

ROOT = Path(__file__).resolve().parent.parent
SITE_SRC = ROOT / "website"            # conf.py, the home page template, static files
OUT = SITE_SRC / "_build" / "html"
WORK = SITE_SRC / "_build" / "work"     # the staged sources, the decks and Sphinx's doctrees
STUDENT_DIR = ROOT / "student"
NOTEBOOKS_DIR = ROOT / "notebooks"
DECKS_SRC = ROOT / "slides" / "src"

# Each day's page that the browser check opens (the first notebook of the day in the README).
DAY_PAGES = {"1": "01", "2": "02", "3": "03", "4": "04", "5": "07", "6": "11"}


# ------------------------------------------------------------------------------- the cache


def cache_dir() -> Path:
    """``<course_lib's cache>/website``: :func:`course_lib.data.cache_dir`, the generated sets' folder."""
    from .data import cache_dir as course_cache

    base = course_cache()
    if base == "off":  # the generated-set cache can be switched off; the site needs one
        base = str(SITE_SRC / "_build")
    return Path(base) / "website"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [sys.version.split()[0]]
    for dist in ("tensorflow", "keras", "numpy"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} -")
    return ", ".join(parts)


def _tree_digest(paths):
    """sha256 over the files' names (relative to the repository) and contents."""
    h = hashlib.sha256()
    for path in sorted(Path(p).resolve() for p in paths):
        h.update(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name).encode())
        h.update(path.read_bytes())
    return h


def _course_lib_files() -> list[Path]:
    pkg = ROOT / "course_lib"
    # All of it, code and zoo weights, but this module: it builds pages and never runs in a notebook.
    return [p for p in pkg.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and p.suffix != ".pyc" and p.name != "website.py"]


def executed_key(notebook, lib_files=None) -> str:
    """Cache key of an executed notebook: its bytes, all of course_lib (``lib_files``), the versions."""
    h = _tree_digest([notebook, *(_course_lib_files() if lib_files is None else lib_files)])
    h.update(_versions().encode())
    return h.hexdigest()[:32]


def _executed_path(notebook, key: str | None = None) -> Path:
    key = key or executed_key(notebook)
    return cache_dir() / "executed" / f"{Path(notebook).stem}-{key}.ipynb"


def cpu_profile_here() -> bool:
    """True where an automatic ``course_lib.setup()`` picks the cpu profile (no NVIDIA GPU)."""
    chosen = os.environ.get("COURSE_LIB_PROFILE")
    return chosen == "cpu" or (not chosen and shutil.which("nvidia-smi") is None)


def store_executed(notebook, nb, cpu: bool | None = None) -> Path | None:
    """Keep an executed copy of ``notebook`` (an nbformat node with outputs) for the site.

    Called by ``conftest.py`` for each student version nbval ran to the end without an
    error. Only a cpu-profile run is kept (``cpu=None``: this process's profile, see
    :func:`cpu_profile_here`). Returns the cached file, or None when not stored.
    """
    if not (cpu_profile_here() if cpu is None else cpu):
        return None
    path = _executed_path(notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(f"{Path(notebook).stem}-*.ipynb"):
        old.unlink()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)
    return path


def executed(notebook, timeout: int = 900) -> tuple[nbformat.NotebookNode, bool]:
    """The executed notebook from the cache, or executed now (nbclient, cpu profile) and cached.

    Returns ``(notebook node, from_cache)``. Raises RuntimeError naming the notebook and
    the failing cell when execution fails (the site never shows a broken page).
    """
    import nbclient

    path = _executed_path(notebook)
    if path.exists():
        try:
            return nbformat.read(str(path), as_version=4), True
        except Exception:  # a truncated or foreign file: execute again
            path.unlink()
    nb = nbformat.read(str(notebook), as_version=4)
    env = {**os.environ, "COURSE_LIB_PROFILE": "cpu", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}  # as in Jupyter
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(Path(notebook).parent)}})
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        raise RuntimeError(f"{notebook} failed while building its page: {err.ename}: {err.evalue}\n"
                           f"run python -m pytest {notebook} to see the whole error") from None
    finally:
        os.environ.clear()
        os.environ.update(saved)
    store_executed(notebook, nb, cpu=True)
    return nb, False


# ------------------------------------------------------------------------------ the pages

def _badges(repo: str, stem: str) -> str:
    student = publish.colab_url(repo, f"student/{stem}.ipynb")
    master = publish.colab_url(repo, f"notebooks/{stem}.ipynb")
    gh = f"https://github.com/{repo}/blob/main"
    return (f"[![Open in Colab](../images/colab-badge.svg)]({student}) "
            f"the student version, with the exercises for you to do ([on GitHub]({gh}/student/{stem}.ipynb)); "
            f"the solutions: [Colab]({master}), [GitHub]({gh}/notebooks/{stem}.ipynb).\n\n"
            "This page shows the student version as the course's tests executed it on a laptop CPU "
            "(the cpu profile), exercises unanswered: the cells after an exercise use `course_lib`'s "
            "reference answer.")


_REMOTE_BADGE = re.compile(r"\[!\[Open in Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
                           r"\([^)\s]*\)\s*")


def _ends_with_semicolon(source: str) -> bool:
    """IPython's rule for a quiet cell: its last line of code ends with ``;`` (comments aside).

    nbval runs cells without IPython's history, where IPython 9 no longer sees the ``;``, so
    a cell ending in ``plt.legend();`` or ``viz.show(...);`` records its value anyway (a
    second copy of a figure, a ``<matplotlib.legend.Legend at 0x...>`` line).
    """
    import io
    import tokenize

    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
                  if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER,
                                    tokenize.INDENT, tokenize.DEDENT)]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source.rstrip().endswith(";")
    return bool(tokens) and tokens[-1].string == ";"


def stage_notebook(nb, stem: str, repo: str) -> nbformat.NotebookNode:
    """The page's notebook: badges under the title, the grader's plumbing hidden.

    The remote Colab badge of the notebook's own first cell is replaced by the page's
    local one; the Otter set-up cell is removed, and the output of each
    ``grader.check(...)`` cell (an unanswered exercise's failed check) is hidden. A cell
    ending with ``;`` shows no value (as in Jupyter), and progress-bar widgets are dropped.
    """
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.metadata.pop("widgets", None)    # progress-bar widgets: their script would come from a CDN
    cells = []
    badge_done = False
    for cell in nb.cells:
        tags = list(cell.metadata.get("tags", []))
        if cell.cell_type == "markdown":
            cell.source = _REMOTE_BADGE.sub("", cell.source)
            if not badge_done and cell.source.lstrip().startswith("# "):
                cell.source = cell.source.rstrip() + "\n\n" + _badges(repo, stem) + "\n"
                badge_done = True
        elif cell.cell_type == "code":
            quiet = _ends_with_semicolon(cell.source)
            cell.outputs = [o for o in cell.get("outputs", [])
                            if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})
                            and not (quiet and o.get("output_type") == "execute_result")]
            src = cell.source.lstrip()
            if "PUBLIC_TESTS" in src and "otter" in src:
                continue                                   # the grader's set-up cell
            if src.startswith("grader.check("):
                tags.append("remove-output")
        elif cell.cell_type == "raw":
            continue
        if tags:
            cell.metadata["tags"] = sorted(set(tags))
        cells.append(cell)
    nb.cells = cells
    return nb


def _readme_days() -> list[list[str]]:
    """The README's day table as rows of cells (the one source of the day plan)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The days", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]


def home_page(repo: str) -> str:
    """``index.md``: the README's introduction and its day table, with the site's links."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    intro = readme.split("## Start", 1)[0].split("\n", 1)[1].strip()
    lines = ["| day | lesson | what it teaches | open in Colab | solutions | lecture deck |", "|---|---|---|---|---|---|"]
    stems = []
    for day, nb_cell, teaches, _colab, _sol, deck in _readme_days():
        stem = re.search(r"student/([\w]+)\.ipynb", nb_cell).group(1)
        name = re.search(r"\[([^\]]+)\]", nb_cell).group(1)
        deck_stem = re.search(r"slides/src/(\w+)\.md", deck).group(1)
        stems.append(stem)
        colab = f"[![Open in Colab](images/colab-badge.svg)]({publish.colab_url(repo, f'student/{stem}.ipynb')})"
        sol = f"[Colab]({publish.colab_url(repo, f'notebooks/{stem}.ipynb')})"
        lines.append(f"| {day} | [{name}](notebooks/{stem}.ipynb) | {teaches} | {colab} | {sol} "
                     f"| <a href=\"slides/{deck_stem}.html\">slides</a> |")
    toc = "\n".join(f"notebooks/{s}" for s in stems)
    return (f"# Image classification, localization and explainability with Keras 3\n\n{intro}\n\n"
            "## The days\n\nEach lesson page shows the notebook with its figures and results as it "
            "runs on a laptop CPU. Open it in Colab (the student version) to run it yourself; "
            f"the repository is [{repo}](https://github.com/{repo}).\n\n" + "\n".join(lines) + "\n\n"
            "The lecture decks are listed on [their own page](decks.md); the helper package is "
            "documented in the [API reference](api/index.md).\n\n"
            f"```{{toctree}}\n:hidden:\n:caption: Lessons\n\n{toc}\n```\n\n"
            "```{toctree}\n:hidden:\n:caption: More\n\ndecks\napi/index\n```\n")


def api_pages(dest: Path) -> list[str]:
    """One page per course_lib module (autodoc reads the docstrings), and an index."""
    import pkgutil

    import course_lib

    names = sorted(m.name for m in pkgutil.iter_modules(course_lib.__path__))
    (dest / "api").mkdir(parents=True, exist_ok=True)
    for name in names:
        (dest / "api" / f"{name}.md").write_text(
            f"# course_lib.{name}\n\n```{{eval-rst}}\n.. automodule:: course_lib.{name}\n"
            "   :members:\n   :imported-members:\n```\n" if name == "explain" else
            f"# course_lib.{name}\n\n```{{eval-rst}}\n.. automodule:: course_lib.{name}\n   :members:\n```\n",
            encoding="utf-8")
    toc = "\n".join(names)
    summaries = {}
    for name in names:
        spec = importlib.util.find_spec(f"course_lib.{name}")
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        summaries[name] = (ast.get_docstring(tree) or "").strip().split("\n")[0]
    (dest / "api" / "index.md").write_text(
        "# API reference: course_lib\n\n`course_lib` is the course's helper package: small functions, each "
        "saying which paper and equation it follows and which notebook uses it. One module per topic:\n\n"
        + "\n".join(f"- [`course_lib.{n}`]({n}.md): {summaries[n]}" for n in names)
        + f"\n\n```{{toctree}}\n:hidden:\n\n{toc}\n```\n", encoding="utf-8")
    return names


def _decks_key() -> str:
    files = [*DECKS_SRC.glob("*.md"), ROOT / "slides" / "build.py", ROOT / "slides" / "figures.py",
             *_course_lib_files()]
    h = _tree_digest([f for f in files if f.exists()])
    h.update(_versions().encode())
    return h.hexdigest()[:32]


def built_decks(build_deck=None) -> Path:
    """The folder of built HTML decks, from the cache or built now (``slides/build.py``).

    ``build_deck(src, out_dir, figures_cache)`` defaults to slides/build.py's; the
    slide tests pass theirs so that the decks they check are the ones the site shows.
    """
    folder = cache_dir() / f"decks-{_decks_key()}"
    sources = sorted(DECKS_SRC.glob("*.md"))
    if (folder / "COMPLETE").exists():
        return folder
    if build_deck is None:  # slides/build.py, loaded by path (PyPI's "build" is another module)
        import importlib.util

        spec = importlib.util.spec_from_file_location("slides_build", ROOT / "slides" / "build.py")
        slides_build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(slides_build)
        build_deck = slides_build.build_deck
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    figures: dict = {}
    for src in sources:
        build_deck(src, tmp, figures)
    (tmp / "COMPLETE").write_text("\n".join(s.stem for s in sources))
    for old in folder.parent.glob("decks-*"):
        # Older builds, once no other build can still be reading them; never a folder in the making.
        if ".tmp" not in old.name and old != folder and time.time() - old.stat().st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another build (the slide tests, say) finished the same decks first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "COMPLETE").exists():
            raise
    return folder


def decks_page(folder: Path) -> str:
    """``decks.md``: each built deck by its title, with its day and the notebook it goes with."""
    days = {re.search(r"slides/src/(\w+)\.md", row[5]).group(1): (row[0], re.search(r"\[([^\]]+)\]", row[1]).group(1))
            for row in _readme_days()}
    rows = ["| day | lecture deck | lab notebook |", "|---|---|---|"]
    for deck in sorted(folder.glob("*.html")):
        found = re.search(r"<title>(.*?)</title>", deck.read_text(encoding="utf-8"), re.S)
        title = html.unescape(found.group(1).strip()) if found else deck.stem
        day, lab = days.get(deck.stem, ("", ""))
        # Plain HTML links: the decks are static files (html_extra_path), not Sphinx documents.
        rows.append(f'| {day} | <a href="slides/{deck.stem}.html">{html.escape(title)}</a> | {lab} |')
    return ("# Lecture decks\n\nOne deck per lecture, made from `slides/src/*.md` by `python slides/build.py`. "
            "A deck opens full screen in the browser: arrow keys or a click move between slides, `n` shows the "
            "speaker notes, and it prints one slide per page. The browser's Back button returns here.\n\n"
            + "\n".join(rows) + "\n")


def stage(work: Path = WORK, log=print) -> dict:
    """Write the site's sources into ``work/src`` (and the decks into ``work/extra``).

    Both folders are made anew: pass only a folder of the site build's own (the default,
    ``website/_build/work``), never one that holds anything else.
    """
    repo = publish.repository()
    dest = work / "src"
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "notebooks").mkdir(parents=True)
    (dest / "images").mkdir()
    shutil.copy(SITE_SRC / "static" / "colab-badge.svg", dest / "images" / "colab-badge.svg")
    ran = {}
    for student in sorted(STUDENT_DIR.glob("[0-9][0-9]_*.ipynb")):
        t0 = time.perf_counter()
        nb, cached = executed(student)
        ran[student.stem] = "cache" if cached else f"executed in {time.perf_counter() - t0:.0f} s"
        log(f"website: {student.stem}: {ran[student.stem]}")
        nbformat.write(stage_notebook(nb, student.stem, repo), str(dest / "notebooks" / student.name))
    (dest / "index.md").write_text(home_page(repo), encoding="utf-8")
    decks = built_decks()
    extra = work / "extra"                             # copied as is into the site (html_extra_path)
    shutil.rmtree(extra, ignore_errors=True)
    (extra / "slides").mkdir(parents=True)
    for p in decks.iterdir():
        if p.suffix in (".html", ".png", ".svg", ".css", ".js"):
            shutil.copy(p, extra / "slides" / p.name)
    (dest / "decks.md").write_text(decks_page(decks), encoding="utf-8")
    api_pages(dest)
    return ran


def build(out: Path = OUT, log=print) -> Path:
    """Stage the sources in ``website/_build/work`` and run Sphinx into ``out`` (warnings are errors).

    Returns ``out``. Sphinx adds to ``out``; nothing outside ``website/_build`` is deleted.
    """
    out = Path(out)
    stage(WORK, log=log)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(SITE_SRC), "-W", "--keep-going", "-q",
           "-D", f"html_extra_path={WORK / 'extra'}", "-d", str(WORK / "doctrees"), str(WORK / "src"), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COURSE_LIB_QUIET": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"sphinx failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    log(f"website: sphinx {time.perf_counter() - t0:.0f} s -> {out}")
    return out


# ------------------------------------------------------------------------------ the checks


class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.loads, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("img", "script", "iframe", "source", "video", "audio") and a.get("src"):
            self.loads.append(a["src"])
        if tag == "link" and a.get("href") and set((a.get("rel") or "").split()) & {
                "stylesheet", "icon", "preload", "prefetch", "modulepreload", "preconnect", "manifest"}:
            self.loads.append(a["href"])


def check_site(out: Path = OUT) -> list[str]:
    """Every problem of the built site: internal links that do not resolve, remote loads.

    Checks every ``href`` and ``src`` of every HTML page: a relative link must name a
    file of the site (and, with ``#id``, an element of that page); nothing a page loads
    (images, scripts, style sheets, fonts in CSS) may come from the network. Links *to*
    other sites (papers, Colab) are allowed: following them is the reader's choice.
    """
    out = Path(out)
    problems, pages = [], {}
    for page in out.rglob("*.html"):
        if "_static" in page.relative_to(out).parts:
            continue  # the themes' Jinja template fragments (webpack-macros.html), never served as pages
        parser = _Refs()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        pages[page.resolve()] = parser
    for css in out.rglob("*.css"):
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", css.read_text(encoding="utf-8", errors="replace")):
            if urlsplit(url).scheme in ("http", "https") or url.startswith("//"):
                problems.append(f"{css.relative_to(out)} loads {url} from the network")
    for page, parser in pages.items():
        rel = page.relative_to(out.resolve())
        for url in parser.loads:
            if urlsplit(url).scheme in ("http", "https") or url.startswith("//"):
                problems.append(f"{rel} loads {url} from the network")
            elif not urlsplit(url).scheme:
                target = (page.parent / unquote(urlsplit(url).path)).resolve()
                if not target.exists():
                    problems.append(f"{rel} loads {url}, which is not in the site")
        for url in parser.links:
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//"):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel} links to {url}, which is not in the site")
            elif parts.fragment and target.suffix == ".html" and target in pages \
                    and unquote(parts.fragment) not in pages[target].ids:
                problems.append(f"{rel} links to {url}: no element with that id")
    return problems


def browser_check(out: Path = OUT, pages=None, chromium=None) -> dict:
    """Open pages in headless Chromium (Playwright), served from localhost, the network cut off.

    For each page: no console error, no failed or remote request, no raw ``$...$`` or
    ``\\(...\\)`` left (MathJax rendered every formula), every image loaded (natural width
    > 0), and on a notebook page at least one figure. Screenshots go to
    ``out/_screenshots``. Returns ``{page: list of problems}``.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    out = Path(out).resolve()
    chromium = chromium or _find_chromium()
    # Served from this machine as a web server would serve it (GitHub Pages, say): a page opened
    # from disk (file://) works too, but Chromium then refuses some same-folder requests (MathJax's
    # font probe, search summaries) with console errors that no reader of the served site sees.
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}/"
    if pages is None:
        pages = ["index.html", *[f"notebooks/{_stem(n)}.html" for n in DAY_PAGES.values()],
                 "api/explain.html", "slides/day5c_cam_gradcam.html", "search.html?q=Grad-CAM"]
    shots = out / "_screenshots"
    shots.mkdir(exist_ok=True)
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})  # every request is routed below
        for rel in pages:
            problems = []
            page = context.new_page()
            page.on("console", lambda m, pr=problems: pr.append(f"console {m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e, pr=problems: pr.append(f"page error: {e}"))
            page.on("requestfailed", lambda r, pr=problems: pr.append(f"request failed: {r.url} {r.failure}"))

            page.route("**/*", _blocker(problems, origin))
            path, _, query = rel.partition("?")
            response = page.goto(origin + rel, wait_until="load")
            if response is None or response.status != 200:
                problems.append(f"the page did not load: HTTP {response and response.status}")
            # A page with formulas waits for MathJax 3 to load and typeset them all.
            try:
                page.wait_for_function("() => !document.querySelector('.math') || "
                                       "(window.MathJax && MathJax.startup && MathJax.startup.promise)", timeout=60000)
                page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise.then(() => true) : true")
            except PlaywrightError as err:
                problems.append(f"MathJax did not load or typeset: {str(err).splitlines()[0]}")
            if path == "search.html":
                page.wait_for_selector("#search-results li, ul.search li", timeout=30000)
                if page.locator("ul.search li").count() == 0:
                    problems.append("search found nothing for Grad-CAM")
            page.wait_for_timeout(300)
            raw = page.evaluate(r"""() => {
                const main = document.querySelector('main') || document.body;
                const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
                const bad = [];
                for (let n = walker.nextNode(); n; n = walker.nextNode()) {
                    const p = n.parentElement;
                    if (p.closest('pre, code, script, style, .MathJax_Preview, textarea')) continue;
                    if (/\$[^$\s][^$]*\$|\\\(|\\\[/.test(n.textContent)) bad.push(n.textContent.slice(0, 80));
                }
                return bad;
            }""")
            problems += [f"formula not rendered: {t!r}" for t in raw[:5]]
            images = page.evaluate("() => Array.from(document.images).map(i => [i.src, i.complete && "
                                   "i.naturalWidth > 0])")
            problems += [f"image did not load: {src}" for src, ok in images if not ok]
            if path.startswith("notebooks/"):
                figures = page.evaluate("() => document.querySelectorAll('.cell_output img').length")
                if figures == 0:
                    problems.append("a notebook page with no figure")
            name = path.replace("/", "_").replace(".html", "")
            page.screenshot(path=str(shots / f"{name}.png"), full_page=False)
            results[rel] = problems
            page.close()
        browser.close()
    server.shutdown()
    server.server_close()
    return results


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log on the test's output
        pass


def _blocker(problems: list, origin: str):
    """A Playwright route handler: the site's own files load; any other request is recorded and aborted."""
    def route(r):
        if r.request.url.startswith(origin):
            return r.continue_()
        problems.append(f"remote request: {r.request.url}")
        return r.abort()
    return route


def _stem(number: str) -> str:
    return next(STUDENT_DIR.glob(f"{number}_*.ipynb")).stem


def _find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no Chromium binary here: apt-get install chromium (Debian/Ubuntu)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Build the course website (offline) into a folder.")
    ap.add_argument("--out", default=str(OUT), help=f"output folder (default {OUT.relative_to(ROOT)})")
    ap.add_argument("--check", action="store_true", help="then check links and open pages in headless Chromium")
    args = ap.parse_args(argv)
    out = build(Path(args.out))
    print(f"website: open {out / 'index.html'}")
    if not args.check:
        return 0
    problems = check_site(out)
    for page, found in browser_check(out).items():
        problems += [f"{page}: {p}" for p in found]
    for p in problems:
        print("website:", p)
    print(f"website: {'no problem found' if not problems else f'{len(problems)} problems'}; "
          f"screenshots in {out / '_screenshots'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
