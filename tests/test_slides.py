"""The lecture decks build, are self-contained, render their formulas, and open in a real browser."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "slides"))
import build  # noqa: E402  (slides/build.py; needs markdown, installed by requirements.txt)

SOURCES = sorted((ROOT / "slides" / "src").glob("*.md"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("decks")
    cache = {}
    return {src.stem: build.build_deck(src, out, cache) for src in SOURCES}


def test_there_is_a_deck_for_every_day():
    days = {int(m.group(1)) for p in SOURCES if (m := re.match(r"day(\d)", p.stem))}
    assert days == set(range(1, 7)), f"decks found for days {sorted(days)}"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_deck_is_self_contained_with_rendered_formulas(src, built):
    html = built[src.stem].read_text(encoding="utf-8")
    n_slides = html.count('<section class="slide"')
    assert n_slides >= 6, f"{src.stem} has only {n_slides} slides"
    # Nothing is fetched at view time: no external scripts, styles, images or fonts.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the deck links to an external resource"
    assert "<script src" not in html and "<link" not in html
    # Every $...$ became MathML: no LaTeX command or dollar sign is left in the text.
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)>.*?</\1>", "", html, flags=re.S))
    leftovers = re.findall(r"\\[A-Za-z]+|\$", text)
    assert not leftovers, f"unrendered LaTeX in {src.stem}: {leftovers[:5]}"
    assert "<math" in html, f"{src.stem} renders no formula"
    assert html.count("data:image/png;base64,") >= 1, f"{src.stem} has no figure made by code"


def test_unknown_figure_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text("# Bad\n\n![x](fig:no_such_figure)\n")
    with pytest.raises(SystemExit, match="no figure function 'no_such_figure'"):
        build.build_deck(bad, tmp_path, {})


CHROMIUM = build.find_chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary here: apt-get install chromium (Debian/Ubuntu), then run the tests again")
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_deck_opens_in_headless_chromium(src, built, tmp_path):
    page = built[src.stem].as_uri()
    flags = [CHROMIUM, *build.CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,720"]
    dom = subprocess.run([*flags, "--virtual-time-budget=3000", "--dump-dom", page],
                         capture_output=True, text=True, timeout=120).stdout
    n_slides = built[src.stem].read_text(encoding="utf-8").count('<section class="slide"')
    assert f'data-deck-ready="{n_slides}"' in dom, "the deck's script did not run to the end"
    assert "data-deck-error" not in dom, "a script error was raised"
    shot = ROOT / "slides" / "build" / "screenshots" / f"{src.stem}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*flags, f"--screenshot={shot}", page], capture_output=True, timeout=120)
    assert shot.exists(), "no screenshot was written"
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (720, 1280)
    # A blank page is one colour; a title slide has text in another colour.
    assert pixels.std() > 0.02 and (np.abs(pixels - pixels[5, 5]).sum(axis=-1) > 0.3).mean() > 0.002, "blank first slide"
