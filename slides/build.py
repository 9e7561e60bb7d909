"""Build the lecture decks: Markdown sources -> self-contained HTML files (and PDFs).

    python slides/build.py              # every deck in slides/src/ -> slides/build/*.html
    python slides/build.py day2 --pdf   # one deck, plus a PDF printed by headless Chromium

A deck is a Markdown file in ``slides/src/``; slides are separated by a line ``---``.
The first line ``# Title`` is the deck's title. Formulas are LaTeX between ``$...$``
(inline) or ``$$...$$`` (display), converted to MathML, which browsers render
natively, so no script or font is fetched. A figure is written ``![caption](fig:name)``
and is drawn at build time by the function ``name`` in ``slides/figures.py`` (with
course_lib and the course data), then embedded as a PNG. Lines starting with ``Note:``
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
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC, OUT = HERE / "src", HERE / "build"
FIGURE = re.compile(r"!\[([^\]]*)\]\(fig:([A-Za-z_][A-Za-z0-9_]*)\)")
DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<!\\)\$")

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
html, body {{ margin: 0; height: 100%; background: #222; font-family: "Segoe UI", Helvetica, Arial, sans-serif; }}
.slide {{ display: none; box-sizing: border-box; width: 100vw; height: 100vh; padding: 4vh 6vw;
         background: #fdfdfb; color: #1b1b1b; font-size: 2.6vh; line-height: 1.45; overflow: hidden; }}
.slide.active {{ display: flex; flex-direction: column; }}
.slide h1 {{ font-size: 5.2vh; margin: 18vh 0 2vh; color: #123e6b; }}
.slide h2 {{ font-size: 4vh; margin: 0 0 2vh; color: #123e6b; border-bottom: 2px solid #d6e2ef; padding-bottom: .6vh; }}
.slide img {{ max-width: 100%; max-height: 52vh; object-fit: contain; display: block; margin: 1vh auto; }}
.slide figure {{ margin: 0; text-align: center; }} .slide figcaption {{ font-size: 2vh; color: #555; }}
.slide code {{ background: #eef2f6; padding: 0 .3em; border-radius: 3px; font-size: .9em; }}
.slide pre {{ background: #eef2f6; padding: 1vh 1.5vw; border-radius: 5px; font-size: 2vh; overflow: hidden; }}
.slide table {{ border-collapse: collapse; margin: 1vh 0; font-size: 2.2vh; }}
.slide th, .slide td {{ border-bottom: 1px solid #ccd; padding: .4vh 1vw; text-align: left; }}
.slide math[display="block"] {{ font-size: 3vh; margin: 1.5vh 0; }}
.slide .notes {{ display: none; }} body.notes .slide .notes {{ display: block; font-size: 1.9vh; color: #555;
         border-top: 1px dashed #aaa; margin-top: auto; padding-top: 1vh; }}
.footer {{ position: fixed; right: 2vw; bottom: 1.5vh; font-size: 1.8vh; color: #777; }}
@media print {{ .slide {{ display: flex !important; flex-direction: column; page-break-after: always;
               width: 100%; height: 100vh; }} .footer {{ display: none; }} @page {{ size: 16in 9in; margin: 0; }} }}
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
  show((parseInt(location.hash.slice(1), 10) || 1) - 1);
  document.documentElement.dataset.deckReady = String(slides.length);
}})();
</script>
</body></html>
"""


def to_mathml(latex: str, display: bool) -> str:
    """LaTeX -> MathML with latex2mathml (rendered natively by browsers, no script)."""
    from latex2mathml.converter import convert

    return convert(latex.strip(), display="block" if display else "inline")


def figure_png(name: str, cache: dict) -> str:
    """Draw figure ``name`` from slides/figures.py and return it as a base64 data URI."""
    if name not in cache:
        sys.path.insert(0, str(HERE))
        import figures  # slides/figures.py

        fn = getattr(figures, name, None)
        if fn is None:
            raise SystemExit(f"slides: no figure function {name!r} in slides/figures.py")
        import matplotlib.pyplot as plt

        fig = fn()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        cache[name] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return cache[name]


def render_slide(text: str, figures_cache: dict) -> str:
    """One slide's Markdown -> HTML: figures and math first (kept away from Markdown), then Markdown."""
    import markdown

    notes = [line[5:].strip() for line in text.splitlines() if line.startswith("Note:")]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("Note:"))
    stash = []

    def keep(fragment):
        stash.append(fragment)
        return f"\x00{len(stash) - 1}\x00"

    body = FIGURE.sub(lambda m: keep(f'<figure><img alt="{html.escape(m.group(1))}" src="{figure_png(m.group(2), figures_cache)}">'
                                     f"<figcaption>{html.escape(m.group(1))}</figcaption></figure>"), body)
    body = DISPLAY_MATH.sub(lambda m: keep(to_mathml(m.group(1), True)), body)
    body = INLINE_MATH.sub(lambda m: keep(to_mathml(m.group(1), False)), body)
    out = markdown.markdown(body, extensions=["tables", "fenced_code"])
    out = re.sub(r"<p>\x00(\d+)\x00</p>", lambda m: stash[int(m.group(1))], out)
    out = re.sub(r"\x00(\d+)\x00", lambda m: stash[int(m.group(1))], out)
    if notes:
        out += '<div class="notes">' + " ".join(html.escape(n) for n in notes) + "</div>"
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
                   check=True, capture_output=True, timeout=120)
    return pdf


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
                print(f"printed {pdf}")


if __name__ == "__main__":
    main()
