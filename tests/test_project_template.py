"""The project template (notebooks/11_project_template.ipynb) on a folder of images the test writes.

Two levels: the notebook's own loading function (taken from the notebook, so the test
checks the code students copy) on good and bad folders, and one end-to-end papermill run
of the whole notebook with ``DATA_DIR`` pointing at the folder. The run is short (tiny
folder, 2 epochs), so it checks the pipeline (loading, split, training, metrics, Grad-CAM,
README, checkpoint), not how well the model learns: that is asserted by the notebook's
own run on the offline dataset (``MIN_TEST_ACCURACY`` in its parameters cell).
"""

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "11_project_template.ipynb"
CLASSES = ("circle", "square", "triangle")


def _shape_image(kind, rng, size=(40, 30)):
    """A noisy RGB picture of one shape (width 40, height 30: not square, not the model's size)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy, r = rng.uniform(12, 28), rng.uniform(10, 20), rng.uniform(6, 9)
    if kind == "circle":
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    elif kind == "square":
        mask = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
    else:
        mask = (yy - cy >= -r) & (yy - cy <= r) & (abs(xx - cx) <= (yy - cy + r) / 2)
    img = rng.uniform(0, 60, size=(h, w, 3))
    img[mask] = rng.uniform(150, 255, size=3)
    return Image.fromarray(img.astype(np.uint8))


def write_folder(root, per_class=12, classes=CLASSES, seed=0):
    """root/<class>/<i>.png for each class, plus a stray text file at the root."""
    rng = np.random.default_rng(seed)
    for kind in classes:
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            _shape_image(kind, rng).save(root / kind / f"{i:03d}.png")
    (root / "notes.txt").write_text("not an image, not a class")
    return root


@pytest.fixture(scope="module")
def load_image_folder():
    """The notebook's own load_image_folder, executed from its code cell."""
    import nbformat

    import course_lib

    course_lib.setup(seed=0, verbose=False)
    import keras

    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "def load_image_folder" in c.source]
    assert len(cells) == 1, "the notebook must define load_image_folder in one code cell"
    namespace = {"keras": keras, "np": np, "pathlib": pathlib, "IMAGE_SIZE": 32}
    exec(cells[0], namespace)
    return namespace["load_image_folder"]


def test_loader_reads_the_class_folders(tmp_path, load_image_folder):
    folder = write_folder(tmp_path / "images", per_class=5)
    images, labels, classes = load_image_folder(folder, image_size=24)
    assert classes == list(CLASSES)
    assert images.shape == (15, 24, 24, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5
    assert np.bincount(labels).tolist() == [5, 5, 5]
    # the file order is kept: the first image of class 0 is circle/000.png, resized
    first = np.asarray(Image.open(folder / "circle" / "000.png").resize((24, 24), Image.BILINEAR), np.float32) / 255
    assert np.abs(images[0] - first).mean() < 0.05


def test_loader_rejects_bad_folders(tmp_path, load_image_folder):
    with pytest.raises(ValueError, match="is not a folder"):
        load_image_folder(tmp_path / "missing")
    one = write_folder(tmp_path / "one_class", per_class=4, classes=("cat",))
    with pytest.raises(ValueError, match="at least two class subfolders"):
        load_image_folder(one)
    flat = tmp_path / "flat"
    flat.mkdir()
    _shape_image("circle", np.random.default_rng(0)).save(flat / "a.png")
    with pytest.raises(ValueError, match="at least two class subfolders"):
        load_image_folder(flat)
    few = write_folder(tmp_path / "few", per_class=2, classes=("a", "b"))
    with pytest.raises(ValueError, match="at least 3 images"):
        load_image_folder(few)


def test_notebook_runs_end_to_end_on_a_folder(tmp_path):
    import papermill

    folder = write_folder(tmp_path / "images", per_class=12)
    out_dir = tmp_path / "project"
    papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "executed.ipynb"), cwd=str(NOTEBOOK.parent), kernel_name="python3",
        progress_bar=False,
        parameters={"DATA_DIR": str(folder), "OUTPUT_DIR": str(out_dir), "EPOCHS": 2, "N_EXPLAIN": 4,
                    "RESNET_DEPTH": 8, "IMAGE_SIZE": 32, "BATCH": 8, "START": "scratch",
                    "MIN_TEST_ACCURACY": 0.0},  # 25 training images, 2 epochs: the pipeline, not the learning
    )
    results = json.loads((out_dir / "results.json").read_text())
    assert results["classes"] == list(CLASSES)
    sizes = results["split_sizes"]
    assert sum(sizes.values()) == 36 and min(sizes.values()) >= 3
    cm = np.array(results["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == sizes["test"]
    assert results["grad_cam_shape"] == [4, 32, 32]
    readme = (out_dir / "README.md").read_text()
    assert "circle, square, triangle" in readme and f"{results['test_accuracy']:.1%}" in readme
    assert "from scratch" in readme and "put the images in `data/`" in readme  # Reproduce: the student's own folder
    assert (out_dir / "checkpoints" / "best.keras").exists()
    assert "*.keras" in (out_dir / ".gitignore").read_text()
    assert (out_dir / "figures" / "grad_cam.png").exists()
