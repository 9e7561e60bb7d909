"""The lecture decks: built once per session, checked for size, notes, legible figures, offline use,
consistency with course_lib and the notebooks, and opened in a real browser and as PDFs.

Cost (2-core CPU, idle): building every deck about 50-60 s of CPU (the figures, with the zoo's models),
opening each deck in headless Chromium about 1-2 s each, printing the two PDF decks below about
5 s each. ``SLIDES_PDF=all`` prints and checks every deck (as ``python slides/build.py --pdf`` does).
"""

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "slides"))
import build  # noqa: E402  (slides/build.py; needs markdown, installed by requirements.txt)

from course_lib import website  # noqa: E402

SOURCES = sorted((ROOT / "slides" / "src").glob("*.md"))
MIN_SLIDES, MAX_SLIDES = 25, 40  # a 60-90 minute lecture
NOTES_SHARE = 0.8  # content slides (with a ## heading) that carry speaker notes


def source(stem: str) -> str:
    return (ROOT / "slides" / "src" / f"{stem}.md").read_text(encoding="utf-8")


def sections(html: str) -> list:
    return re.findall(r'<section class="slide"[^>]*>(.*?)</section>', html, flags=re.S)


@pytest.fixture(scope="module")
def built():
    """Every deck, built by slides/build.py's build_deck, once for these tests and the website.

    course_lib.website keeps the built decks in its cache under a key of their sources,
    slides/build.py, slides/figures.py and course_lib, so the site shows exactly the decks
    checked here and the test command builds them once.
    """
    folder = website.built_decks(build.build_deck)
    return {src.stem: folder / f"{src.stem}.html" for src in SOURCES}


# ---------------------------------------------------------------------------------------- coverage

def test_there_is_a_deck_for_every_day():
    days = {int(m.group(1)) for p in SOURCES if (m := re.match(r"day(\d)", p.stem))}
    assert days == set(range(1, 7)), f"decks found for days {sorted(days)}"


def test_every_notebook_has_a_lecture():
    """Each notebook is the lab of some deck (named in the deck's first note)."""
    decks = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"notebooks/{nb.name}" in decks, f"no deck names {nb.name} as its lab"


def test_every_day_has_a_teaching_guide():
    for day in range(1, 7):
        guide = ROOT / "docs" / "teaching" / f"day{day}.md"
        assert guide.exists(), f"missing {guide.relative_to(ROOT)}"
        text = guide.read_text(encoding="utf-8").lower()
        for part in ("timing", "checkpoint", "slow"):
            assert part in text, f"{guide.name} says nothing about '{part}'"


# ---------------------------------------------------------------------------------------- each deck

@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_deck_is_a_lecture_with_notes(src, built):
    slides = sections(built[src.stem].read_text(encoding="utf-8"))
    assert MIN_SLIDES <= len(slides) <= MAX_SLIDES, f"{src.stem} has {len(slides)} slides"
    content = [s for s in slides if "<h2>" in s]
    with_notes = [s for s in content if '<div class="notes">' in s]
    assert len(with_notes) >= NOTES_SHARE * len(content), (
        f"{src.stem}: notes on {len(with_notes)} of {len(content)} content slides")


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_deck_is_self_contained_with_rendered_formulas(src, built):
    html = built[src.stem].read_text(encoding="utf-8")
    # Nothing is fetched at view time: no external scripts, styles, images or fonts.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the deck links to an external resource"
    assert "<script src" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'<img[^>]*\ssrc="([^"]*)"', html))
    # Every $...$ became MathML: no LaTeX command, escaped brace or dollar sign is left in the text.
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)>.*?</\1>", "", html, flags=re.S))
    leftovers = re.findall(r"\\[A-Za-z{}]+|\$|\{\{", text)
    assert not leftovers, f"unrendered LaTeX or value in {src.stem}: {leftovers[:5]}"
    assert html.count("data:image/png;base64,") >= 1, f"{src.stem} has no figure made by code"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_figures_are_large_and_legible(src, built):
    """Each figure spans at least half the slide; axis labels and titles reach body-text size, other
    text 80% of it, measured on a 1280 x 720 slide."""
    html = built[src.stem].read_text(encoding="utf-8")
    imgs = re.findall(r"<img[^>]*>", html)
    assert imgs
    for img in imgs:
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', img))
        name = attrs.get("alt", "?")
        assert float(attrs["data-width-fraction"]) >= build.MIN_FIGURE_FRACTION, f"{name}: too narrow"
        assert float(attrs["data-label-px"]) >= build.LABEL_MIN_PX - 0.05, f"{name}: axis labels too small"
        assert float(attrs["data-text-px"]) >= build.TEXT_MIN_PX - 0.05, f"{name}: text too small"


def test_small_text_is_enlarged_until_legible():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4))
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_xlabel("x", fontsize=4)
    ax.set_title("a title", fontsize=4)
    ax.legend(fontsize=3)
    ax.tick_params(labelsize=3)
    result = build.legible_png(fig)
    plt.close(fig)
    assert result["width_fraction"] == pytest.approx(0.88, abs=0.01)
    assert result["label_px"] >= build.LABEL_MIN_PX - 0.05 and result["text_px"] >= build.TEXT_MIN_PX - 0.05


def test_unknown_figure_and_bad_caption_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text("# Bad\n\n![x](fig:no_such_figure)\n")
    with pytest.raises(SystemExit, match="no figure function 'no_such_figure'"):
        build.build_deck(bad, tmp_path, {})
    bad.write_text("# Bad\n\n![values in [0, 1]](fig:sharpening)\n")
    with pytest.raises(SystemExit, match="no '\\]' in the caption"):
        build.build_deck(bad, tmp_path, {})


# ---------------------------------------------------------------------------------------- consistency

def test_weakly_supervised_localization_constants_match_course_lib():
    from course_lib import explain

    assert inspect.signature(explain.cam_to_box).parameters["threshold"].default == 0.2
    assert inspect.signature(explain.localization_accuracy).parameters["threshold"].default == 0.2
    assert inspect.signature(explain.localization_accuracy).parameters["iou_threshold"].default == 0.5
    cam = source("day5c_cam_gradcam")
    assert "20% of the map's maximum" in cam and r"$\mathrm{IoU} \ge 0.5$" in cam


def test_multitask_alpha_and_box_head_match_course_lib():
    import keras

    from course_lib import localization as loc

    labels, logits = np.array([1, 0]), np.array([[0.0, 2.0], [1.0, 0.0]])
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.9]])
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            loc.multitask_loss_np(labels, logits, boxes, boxes, alpha)
    assert np.isfinite(loc.multitask_loss_np(labels, logits, boxes, boxes, 0.5))
    inputs = keras.Input((16, 16, 3))
    backbone = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))
    model = loc.multitask_model(backbone, num_classes=3, alpha=0.5)
    assert model.get_layer("box").activation.__name__ == "sigmoid"
    deck = source("day5a_localization")
    assert r"0 < \alpha < 1" in deck and r"\alpha \in [0, 1]" not in deck
    assert "**four sigmoids**" in deck and "a linear box head" not in deck.replace("said \"fix: a linear box head\"", "")
    assert "IoU is strict" not in deck and "more forgiving than it sounds" in deck


def test_batch_norm_constants_match_keras_and_course_lib():
    import keras

    from course_lib import batchnorm

    layer = keras.layers.BatchNormalization()
    assert layer.epsilon == 1e-3 and layer.momentum == 0.99
    assert inspect.signature(batchnorm.BatchNorm).parameters["epsilon"].default == 1e-3
    assert inspect.signature(batchnorm.batchnorm_forward).parameters["eps"].default == 1e-3
    deck = source("day2_preprocessing_batchnorm")
    assert r"$\epsilon = 10^{-3}$" in deck and r"$\rho = 0.99$" in deck
    assert r"\gamma = \sqrt{\sigma_{\mathcal{B}}^2 + \epsilon}" in deck
    # gamma = sigma_B alone (the circulating slide's form) is only named as a correction
    assert not re.search(r"\$\\gamma = \\sigma_\{\\mathcal\{B\}\}\$", deck)


def test_dropout_definition_matches_keras_and_notebook_03():
    import keras

    rate = 0.25
    out = np.asarray(keras.layers.Dropout(rate, seed=0)(np.ones((20000,), np.float32), training=True))
    assert abs((out == 0).mean() - rate) < 0.02  # p is the probability of dropping
    assert np.allclose(out[out != 0], 1 / (1 - rate))  # survivors scaled by 1/(1-p)
    deck = source("day3_cnn_architectures")
    assert "**drop** each unit with probability $p$" in deck and "1/(1-p)" in deck
    assert "keep each unit with probability $p$" not in deck


def test_fixmatch_threshold_and_mixup_match_course_lib_and_notebook_10():
    from course_lib import semi_supervised

    assert inspect.signature(semi_supervised.fixmatch_unlabelled_loss).parameters["threshold"].default == 0.95
    assert inspect.signature(semi_supervised.SemiSupervisedTrainer).parameters["threshold"].default == 0.95
    deck = source("day6b_semi_supervised")
    assert r"$\tau = 0.95$" in deck
    notebook = json.loads((ROOT / "notebooks" / "10_semi_supervised.ipynb").read_text(encoding="utf-8"))
    prose = " ".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    assert "uses labels only" in prose  # notebook 10: mixup on labelled data only
    assert "## Mixup, on labelled data only" in deck and "applied across labelled and unlabelled batches" not in deck.replace(
        "said mixup is applied across labelled and unlabelled batches", "")


def test_label_smoothing_table_matches_course_lib():
    from course_lib import training

    others = training.smooth_labels(np.array([3]), 10, 0.1, spread="others")[0]
    uniform = training.smooth_labels(np.array([3]), 10, 0.1, spread="uniform")[0]
    deck = source("day4_training_tuning")
    assert f"| {others[3]:.3f} | {others[0]:.4f} |" in deck
    assert f"| {uniform[3]:.3f} | {uniform[0]:.4f} |" in deck


def test_worked_confusion_example_matches_course_lib():
    from course_lib import metrics

    y_true = np.array([1] * 20 + [0] * 10)
    y_pred = np.array([1] * 8 + [0] * 12 + [1] * 4 + [0] * 6)  # TP 8, FN 12, FP 4, TN 6
    values = [metrics.accuracy(y_true, y_pred), metrics.precision(y_true, y_pred), metrics.recall(y_true, y_pred),
              6 / 10, metrics.fbeta_score(y_true, y_pred, 1.0), metrics.fbeta_score(y_true, y_pred, 2.0)]
    row = re.search(r"\| 14/30 = (.*) \|\n", source("day5b_metrics")).group(0)
    found = [float(v) for v in re.findall(r"= (\d\.\d+)", row)]
    assert found == pytest.approx(values, abs=5e-4)


def test_cam_toy_matches_course_lib():
    from course_lib import explain

    x = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 1], [0, 0, 1, 0]], float)
    diag, anti = np.eye(2), np.fliplr(np.eye(2))
    f = np.stack([[[np.sum(x[2 * i:2 * i + 2, 2 * j:2 * j + 2] * k) for j in range(2)] for i in range(2)]
                  for k in (diag, anti)], -1)
    m_diag = explain.cam_weighted_sum(f, np.array([[1.0, -1.0], [-1.0, 1.0]]), 0)
    assert m_diag.tolist() == [[2, 2], [0, -2]] and m_diag.mean() == 0.5
    assert r"f_1 - f_2 = \begin{bmatrix}2&2\\0&-2\end{bmatrix}" in source("day5c_cam_gradcam")


def test_adversarial_slides_match_notebook_08():
    """The FGSM slides measure with notebook 08's budgets and quote the bars its last cell asserts."""
    import ast

    import figures  # slides/figures.py

    notebook = json.loads((ROOT / "notebooks" / "08_visualizing_cnns.ipynb").read_text(encoding="utf-8"))
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    code = ["".join(c["source"]) for c in cells]
    params = next(src for src, c in zip(code, cells) if "parameters" in c["metadata"].get("tags", []))
    values = {t.id: ast.literal_eval(n.value) for n in ast.parse(params).body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and t.id in ("EPSILONS", "ADV_EPS", "ADV_ALPHA")}
    assert values == {"EPSILONS": figures.FGSM_EPSILONS, "ADV_EPS": figures.FGSM_EPS, "ADV_ALPHA": 0.5}
    assert "N_ADV_TRAIN = env.pick(cpu=2048," in params
    checks = code[-1]
    for bar in ("attack_acc[0] - attack_acc[at] >= 0.40", "robust_acc[at] >= attack_acc[at] + 0.15",
                "robust_acc[0] >= 0.90"):
        assert bar in checks, bar
    deck = source("day5d_visualizing_cnns")
    for quoted in ("at least 40 points", "wins back at least 15", "clean accuracy stays at 90% or more",
                   r"\alpha = 0.5", r"at $\varepsilon = 0.02$", "2,048 images", "{{fgsm_summary}}",
                   "(fig:fgsm_example)", "(fig:fgsm_accuracy)"):
        assert quoted in deck, quoted


def test_no_stale_notes():
    for src in SOURCES:
        assert "when it lands" not in src.read_text(encoding="utf-8"), src.stem


# ---------------------------------------------------------------------------------------- browser, PDF

CHROMIUM = build.find_chromium()
NO_CHROMIUM = "no Chromium binary here: apt-get install chromium (Debian/Ubuntu), then run the tests again"
PDF_DECKS = SOURCES if os.environ.get("SLIDES_PDF") == "all" else [
    p for p in SOURCES if p.stem in ("day1_image_classification", "day5c_cam_gradcam")]


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_deck_opens_in_headless_chromium(src, built, tmp_path):
    flags = [CHROMIUM, *build.CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,720"]
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", built[src.stem].as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    n_slides = build.count_slides(built[src.stem])
    assert f'data-deck-ready="{n_slides}"' in dom, "the deck's script did not run to the end"
    assert "data-deck-error" not in dom, "a script error was raised"
    overflow = re.search(r'data-overflow="([^"]*)"', dom)
    assert overflow is not None, "the overflow check did not run"
    assert overflow.group(1) == "", f"slides {overflow.group(1)} do not fit on a 1280 x 720 screen"


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.parametrize("src", PDF_DECKS, ids=lambda p: p.stem)
def test_pdf_has_one_nonblank_page_per_slide(src, built):
    pdf = build.print_pdf(built[src.stem])
    assert "one per slide, none blank" in build.check_pdf(pdf, build.count_slides(built[src.stem]))


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_pdf_check_catches_a_missing_or_blank_page(tmp_path):
    deck = tmp_path / "tiny.md"
    deck.write_text("# Tiny\n\nA title slide.\n\n---\n\n&nbsp;\n")
    html = build.build_deck(deck, tmp_path, {})
    pdf = build.print_pdf(html)
    with pytest.raises(SystemExit, match="has 2 pages for 3 slides"):
        build.check_pdf(pdf, 3)
    with pytest.raises(SystemExit, match=r"blank pages \[2\]"):
        build.check_pdf(pdf, 2)
