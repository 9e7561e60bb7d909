"""Build the lecture decks: Markdown sources -> self-contained HTML files (and PDFs).

    python slides/build.py              # every deck in slides/src/ -> slides/build/*.html
    python slides/build.py --pdf        # and one PDF per deck, printed by headless Chromium and checked:
                                        # one page per slide, no blank page (needs poppler-utils)
    python slides/build.py day2_preprocessing_batchnorm --pdf   # one deck

A deck is a Markdown file in ``slides/src/``; slides are separated by a line ``---``.
The first line ``# Title`` is the deck's title. Formulas are LaTeX between ``$...$``
(inline) or ``$$...$$`` (display), converted to MathML, which browsers render
natively, so no script or font is fetched. A figure is written ``![caption](fig:name)``
and is drawn at build time by the function ``name`` in ``slides/figures.py`` (with
course_lib and the course data), then embedded as a PNG whose text is enlarged until it is
readable on the slide (``legible_png``). ``{{name}}`` is replaced by the text ``name()`` in
``slides/figures.py`` returns: numbers and table rows measured at build time, never typed in. Lines starting with ``Note:``
are speaker notes (hidden; shown with the key ``n``). The HTML embeds its CSS, script
and images: it opens offline, from a USB stick, with no CDN.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC, OUT = HERE / "src", HERE / "build"
VALUE = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}")
FIGURE = re.compile(r"!\[([^\]]*)\]\(fig:([A-Za-z_][A-Za-z0-9_]*)\)")
DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<!\\)\$")

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
:root {{ --vh: 1vh; --vw: 1vw; }}
@media print {{ :root {{ --vh: 0.09in; --vw: 0.16in; }} }}
html, body {{ margin: 0; height: 100%; background: #222; font-family: "Segoe UI", Helvetica, Arial, sans-serif; }}
.slide {{ display: none; box-sizing: border-box; width: calc(100 * var(--vw)); height: calc(100 * var(--vh)); padding: calc(4 * var(--vh)) calc(6 * var(--vw));
         background: #fdfdfb; color: #1b1b1b; font-size: calc(3.2 * var(--vh)); line-height: 1.35; overflow: hidden; }}
.slide.active {{ display: flex; flex-direction: column; }}
.slide h1 {{ font-size: calc(5.2 * var(--vh)); margin: calc(18 * var(--vh)) 0 calc(2 * var(--vh)); color: #123e6b; }}
.slide h2 {{ font-size: calc(4.6 * var(--vh)); margin: 0 0 calc(1.5 * var(--vh)); color: #123e6b; border-bottom: 2px solid #d6e2ef; padding-bottom: calc(.6 * var(--vh)); }}
.slide img {{ max-width: calc(88 * var(--vw)); max-height: calc(62 * var(--vh)); height: auto; object-fit: contain; display: block; margin: calc(.5 * var(--vh)) auto; }}
.slide figure {{ margin: 0; text-align: center; }} .slide figcaption {{ font-size: calc(2.3 * var(--vh)); color: #555; }}
.slide code {{ background: #eef2f6; padding: 0 .3em; border-radius: 3px; font-size: .9em; }}
.slide pre {{ background: #eef2f6; padding: calc(1 * var(--vh)) calc(1.5 * var(--vw)); border-radius: 5px; font-size: calc(2.6 * var(--vh)); overflow: hidden; }}
.slide table {{ border-collapse: collapse; margin: calc(1 * var(--vh)) 0; font-size: calc(2.7 * var(--vh)); }}
.slide th, .slide td {{ border-bottom: 1px solid #ccd; padding: calc(.4 * var(--vh)) calc(1 * var(--vw)); text-align: left; }}
.slide math[display="block"] {{ font-size: calc(3.4 * var(--vh)); margin: calc(1.5 * var(--vh)) 0; }}
.slide .notes {{ display: none; }} body.notes .slide .notes {{ display: block; font-size: calc(1.9 * var(--vh)); color: #555;
         border-top: 1px dashed #aaa; margin-top: auto; padding-top: calc(1 * var(--vh)); }}
.footer {{ position: fixed; right: calc(2 * var(--vw)); bottom: calc(1.5 * var(--vh)); font-size: calc(1.8 * var(--vh)); color: #777; }}
@media print {{ html, body {{ height: auto; }} .slide {{ display: flex !important; flex-direction: column; break-after: page;
               width: 100%; height: calc(100 * var(--vh)); }} .slide:last-of-type {{ break-after: auto; }}
               .footer {{ display: none; }} @page {{ size: 16in 9in; margin: 0; }} }}
</style></head>
<body>
{slides}
<div class="footer" id="footer"></div>
<script>
(function () {{
  window.addEventListener("error", function (e) {{ document.documentElement.dataset.deckError = String(e.message); }});
  var slides = document.querySelectorAll(".slide"), current = 0;
  function show(i) {{
    current = Math.max(0, Math.min(slides.length - 1, i));
    slides.forEach(function (s, k) {{ s.classList.toggle("active", k === current); }});
    document.getElementById("footer").textContent = (current + 1) + " / " + slides.length;
    if (location.hash !== "#" + (current + 1)) history.replaceState(null, "", "#" + (current + 1));
  }}
  document.addEventListener("keydown", function (e) {{
    if (["ArrowRight", "PageDown", " ", "Enter"].indexOf(e.key) >= 0) show(current + 1);
    else if (["ArrowLeft", "PageUp", "Backspace"].indexOf(e.key) >= 0) show(current - 1);
    else if (e.key === "Home") show(0); else if (e.key === "End") show(slides.length - 1);
    else if (e.key === "n") document.body.classList.toggle("notes");
  }});
  document.addEventListener("click", function (e) {{ show(current + (e.clientX > innerWidth / 3 ? 1 : -1)); }});
  // Slides whose content does not fit (cut off by overflow: hidden), checked once at load.
  window.addEventListener("load", function () {{
    var overflow = [];
    slides.forEach(function (s, k) {{
      var was = s.classList.contains("active");
      s.classList.add("active");
      if (s.scrollHeight > s.clientHeight + 2 || s.scrollWidth > s.clientWidth + 2) overflow.push(k + 1);
      if (!was) s.classList.remove("active");
    }});
    document.documentElement.dataset.overflow = overflow.join(",");
  }});
  show((parseInt(location.hash.slice(1), 10) || 1) - 1);
  document.documentElement.dataset.deckReady = String(slides.length);
}})();
</script>
</body></html>
"""


def to_mathml(latex: str, display: bool) -> str:
    """LaTeX -> MathML with latex2mathml (rendered natively by browsers, no script)."""
    from latex2mathml.converter import convert

    # latex2mathml's bmatrix brackets do not stretch in browsers; \left[ ... \right] ones do
    latex = latex.replace(r"\begin{bmatrix}", r"\left[\begin{matrix}").replace(r"\end{bmatrix}", r"\end{matrix}\right]")
    return convert(latex.strip(), display="block" if display else "inline")


# Sizes are checked on a reference screen: a 1280 x 720 slide (16:9), where body text is 3.2vh.
REF_W, REF_H = 1280, 720
BODY_PX = 0.032 * REF_H
FIG_MAX_W, FIG_MAX_H = 0.88 * REF_W, 0.62 * REF_H   # the CSS limits of a figure (88vw, 62vh)
MIN_FIGURE_FRACTION = 0.5     # a main figure spans at least half the slide's width
LABEL_MIN_PX = BODY_PX        # axis labels and titles: at least body-text size
TEXT_MIN_PX = 0.8 * BODY_PX   # tick labels, legends, annotations: at least 80% of it
DPI = 110


def _display_width(w_px: int, h_px: int) -> float:
    """Width (reference pixels) at which the CSS shows a w x h PNG: as large as 88vw x 62vh allows."""
    return min(FIG_MAX_W, FIG_MAX_H * w_px / h_px)


def _texts(fig):
    """Every visible, non-empty text of a figure, as (text, kind): kind "label" for axis labels and
    titles (held to body-text size), "text" for tick labels, legends and annotations."""
    out = []
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None:
        out.append((suptitle, "label"))
    out += [(t, "text") for t in fig.texts if t is not suptitle]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        out += [(ax.xaxis.label, "label"), (ax.yaxis.label, "label")]
        out += [(t, "label") for t in (ax.title, ax._left_title, ax._right_title)]
        out += [(t, "text") for t in ax.get_xticklabels() + ax.get_yticklabels()]
        out += [(t, "text") for t in ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            out += [(t, "text") for t in legend.get_texts()]
    return [(t, kind) for t, kind in out if t.get_visible() and t.get_text().strip()]


def _png(fig) -> tuple[bytes, int, int]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    data = buf.getvalue()
    width, height = struct.unpack(">II", data[16:24])   # the PNG header's IHDR chunk
    return data, width, height


def legible_png(fig) -> dict:
    """Render ``fig`` so that, shown as large as a slide allows, its text is readable from the back
    of the room: raise every text below the minimum (axis labels and titles to body-text size, other
    text to 80% of it), re-layout, and repeat until the sizes hold. Return the PNG and its measured
    sizes on the reference slide: ``width_fraction`` of the slide, smallest ``label_px`` / ``text_px``."""
    import warnings

    for attempt in range(5):
        data, w, h = _png(fig)
        px_per_pt = DPI / 72 * _display_width(w, h) / w
        small = [(t, need) for t, kind in _texts(fig)
                 if t.get_fontsize() * px_per_pt < (need := LABEL_MIN_PX if kind == "label" else TEXT_MIN_PX)]
        if not small or attempt == 4:
            break
        for t, need in small:
            t.set_fontsize(1.04 * need / px_per_pt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # re-layout only figures made of subplots: tight_layout would push subplots over hand-placed axes
            # (colour bars added with add_axes)
            if fig.get_layout_engine() is None and all(ax.get_subplotspec() is not None for ax in fig.axes):
                fig.tight_layout()
    sizes = {kind: min((t.get_fontsize() * px_per_pt for t, k in _texts(fig) if k == kind), default=float("inf"))
             for kind in ("label", "text")}
    return {"data": data, "width": w, "height": h, "width_fraction": _display_width(w, h) / REF_W,
            "label_px": sizes["label"], "text_px": sizes["text"]}


def _figures_module():
    sys.path.insert(0, str(HERE))
    import figures  # slides/figures.py

    return figures


def figure_png(name: str, cache: dict) -> dict:
    """Draw figure ``name`` from slides/figures.py, made legible (:func:`legible_png`); cached by name."""
    if name not in cache:
        fn = getattr(_figures_module(), name, None)
        if fn is None:
            raise SystemExit(f"slides: no figure function {name!r} in slides/figures.py")
        import matplotlib.pyplot as plt

        fig = fn()
        cache[name] = legible_png(fig)
        plt.close(fig)
    return cache[name]


def figure_html(caption: str, name: str, cache: dict) -> str:
    fig = figure_png(name, cache)
    uri = "data:image/png;base64," + base64.b64encode(fig["data"]).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="{uri}" width="{fig["width"]}" height="{fig["height"]}" style="width: calc({100 * fig["width_fraction"]:.1f} * var(--vw))" '
            f'data-width-fraction="{fig["width_fraction"]:.3f}" data-label-px="{fig["label_px"]:.1f}" '
            f'data-text-px="{fig["text_px"]:.1f}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def value_text(name: str, cache: dict) -> str:
    """Text computed at build time by ``name()`` in slides/figures.py (a number or a table's rows)."""
    key = ("value", name)
    if key not in cache:
        fn = getattr(_figures_module(), name, None)
        if fn is None:
            raise SystemExit(f"slides: no value function {name!r} in slides/figures.py")
        cache[key] = str(fn())
    return cache[key]


def render_slide(text: str, figures_cache: dict) -> str:
    """One slide's Markdown -> HTML: figures and math first (kept away from Markdown), then Markdown."""
    import markdown

    notes = [line[5:].strip() for line in text.splitlines() if line.startswith("Note:")]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("Note:"))
    stash = []

    def keep(fragment):
        stash.append(fragment)
        return f"\x00{len(stash) - 1}\x00"

    body = VALUE.sub(lambda m: value_text(m.group(1), figures_cache), body)
    body = FIGURE.sub(lambda m: keep(figure_html(m.group(1), m.group(2), figures_cache)), body)
    if "(fig:" in body:
        line = next(line for line in body.splitlines() if "(fig:" in line)
        raise SystemExit(f"slides: a figure is not written ![caption](fig:name) (no ']' in the caption): {line!r}")
    body = DISPLAY_MATH.sub(lambda m: keep(to_mathml(m.group(1), True)), body)
    body = INLINE_MATH.sub(lambda m: keep(to_mathml(m.group(1), False)), body)
    out = markdown.markdown(body, extensions=["tables", "fenced_code"])
    out = re.sub(r"<p>\x00(\d+)\x00</p>", lambda m: stash[int(m.group(1))], out)
    out = re.sub(r"\x00(\d+)\x00", lambda m: stash[int(m.group(1))], out)
    if notes:
        out += '<div class="notes">' + "".join(f"<p>{html.escape(n)}</p>" for n in notes) + "</div>"
    return out


def build_deck(path: Path, out_dir: Path = OUT, figures_cache: dict | None = None) -> Path:
    """Build one deck; return the path of its HTML file."""
    text = path.read_text(encoding="utf-8")
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), path.stem)
    parts = [p.strip() for p in re.split(r"^---\s*$", text, flags=re.M) if p.strip()]
    cache = {} if figures_cache is None else figures_cache
    slides = "\n".join(f'<section class="slide" id="s{i + 1}">\n{render_slide(p, cache)}\n</section>'
                       for i, p in enumerate(parts))
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{path.stem}.html"
    out.write_text(TEMPLATE.format(title=html.escape(title), slides=slides), encoding="utf-8")
    return out


def find_chromium() -> str | None:
    """Path of a Chromium / Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def print_pdf(html_path: Path) -> Path | None:
    """Print a built deck to PDF with headless Chromium (one slide per page); None without Chromium."""
    chromium = find_chromium()
    if chromium is None:
        print("slides: no Chromium found, skipping the PDF (install Debian's 'chromium' package)")
        return None
    pdf = html_path.with_suffix(".pdf")
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={html_path.parent / '.chromium'}",
                    "--no-pdf-header-footer", f"--print-to-pdf={pdf}", html_path.as_uri()],
                   check=True, capture_output=True, timeout=300)
    return pdf


def count_slides(html_path: Path) -> int:
    return html_path.read_text(encoding="utf-8").count('<section class="slide"')


def blank_pages(pdf: Path) -> list[int]:
    """1-based numbers of the PDF's pages that are one flat colour (rendered small with poppler's pdftoppm)."""
    import tempfile

    import numpy as np
    from matplotlib import image

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["pdftoppm", "-r", "12", "-png", str(pdf), f"{tmp}/p"], check=True, capture_output=True, timeout=300)
        pages = sorted(Path(tmp).glob("p-*.png"), key=lambda p: int(p.stem.split("-")[-1]))
        blank = []
        for k, page in enumerate(pages, start=1):
            pixels = image.imread(page)[..., :3]
            if (np.abs(pixels - pixels[1, 1]).sum(axis=-1) > 0.3).mean() < 0.002:
                blank.append(k)
    return blank


def check_pdf(pdf: Path, n_slides: int) -> str:
    """Raise SystemExit unless the PDF has one page per slide and no blank page (needs poppler-utils)."""
    if shutil.which("pdfinfo") is None or shutil.which("pdftoppm") is None:
        raise SystemExit("slides: checking a PDF needs poppler-utils (apt-get install poppler-utils)")
    info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    if pages != n_slides:
        raise SystemExit(f"slides: {pdf.name} has {pages} pages for {n_slides} slides")
    blank = blank_pages(pdf)
    if blank:
        raise SystemExit(f"slides: {pdf.name} has blank pages {blank}")
    return f"{pages} pages, one per slide, none blank"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("decks", nargs="*", help="deck names (file stems in slides/src), default: all")
    parser.add_argument("--pdf", action="store_true", help="also print each deck to PDF with headless Chromium")
    parser.add_argument("--out", default=str(OUT), help="output folder (default slides/build)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import course_lib  # noqa: F401  (quiet TensorFlow logs before figures import it)

    sources = sorted(SRC.glob("*.md"))
    if args.decks:
        wanted = set(args.decks)
        unknown = wanted - {p.stem for p in sources}
        if unknown:
            raise SystemExit(f"slides: unknown deck(s) {sorted(unknown)}; available: {[p.stem for p in sources]}")
        sources = [p for p in sources if p.stem in wanted]
    cache: dict = {}
    for src in sources:
        out = build_deck(src, Path(args.out), cache)
        print(f"built {out}")
        if args.pdf:
            pdf = print_pdf(out)
            if pdf:
                print(f"printed {pdf}: {check_pdf(pdf, count_slides(out))}")


if __name__ == "__main__":
    main()
