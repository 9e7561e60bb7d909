import numpy as np
import pytest

from course_lib import viz


def test_show_images_titles_predictions_and_boxes():
    imgs = np.random.default_rng(0).random((5, 16, 16, 3)).astype(np.float32)
    fig = viz.show_images(imgs, labels=[0, 1, 2, 3, 4], predictions=[0, 1, 2, 3, 0], class_names=list("abcde"),
                          boxes=np.tile([0.1, 0.1, 0.5, 0.5], (5, 1)), ncols=3, title="t")
    axes = fig.axes
    assert len(axes) == 6  # 2 rows x 3 columns, last one empty
    assert axes[0].get_title() == "a / a" and axes[4].get_title() == "e / a"
    assert axes[4].title.get_color() == "red" and len(axes[0].patches) == 1


def test_plot_history_and_errors():
    hist = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]}
    fig = viz.plot_history(hist)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError, match="history has no"):
        viz.plot_history(hist, metrics=["auc"])
    with pytest.raises(ValueError, match="non-empty"):
        viz.plot_history({})
    with pytest.raises(ValueError, match="must be"):
        viz.show_images(np.zeros((2, 2)))


def test_bar_table_writes_values():
    fig = viz.bar_table({"clean": 0.98, "rotated": 0.6}, "accuracy", "robustness", reference=0.98)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["98.0%", "60.0%"]


def test_filter_grid_scales_each_filter_to_unit_range():
    kernel = np.random.default_rng(0).normal(size=(5, 5, 3, 6)) * np.arange(1, 7)  # magnitudes differ
    fig = viz.filter_grid(kernel, ncols=3)
    arrays = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(arrays) == 6
    for a in arrays:
        assert abs(float(np.min(a))) < 1e-6 and abs(float(np.max(a)) - 1.0) < 1e-6
    grey = viz.filter_grid(np.ones((3, 3, 1, 2)))  # constant filters: no division by zero
    assert all(np.isfinite(ax.images[0].get_array()).all() for ax in grey.axes if ax.images)
    with pytest.raises(ValueError, match="4-D Conv2D kernel"):
        viz.filter_grid(np.zeros((3, 3, 2)))


def test_activation_grid_limits_maps_and_checks_rank():
    fig = viz.activation_grid(np.random.default_rng(0).random((6, 6, 40)), max_maps=10, ncols=5)
    assert sum(1 for ax in fig.axes if ax.images) == 10
    with pytest.raises(ValueError, match="one image"):
        viz.activation_grid(np.zeros((2, 6, 6, 4)))


def test_heatmap_grid_overlays_each_map_on_its_image():
    rng = np.random.default_rng(1)
    imgs = rng.random((3, 12, 12, 3)).astype(np.float32)
    maps = np.zeros((3, 12, 12), np.float32)
    maps[:, 2:5, 7:10] = 1.0
    boxes = np.tile(np.float32([0.5, 0.25, 0.75, 0.5]), (3, 1))
    fig = viz.heatmap_grid(imgs, {"a": maps, "image": None}, titles=["x", "y", "z"], boxes=boxes, title="t")
    panels = fig.axes[:6]  # 2 rows x 3 images, then the colour bar
    assert len(fig.axes) == 7 and [ax.get_title() for ax in panels[:3]] == ["x", "y", "z"]
    shown = panels[0].images[0].get_array()
    assert shown.shape == (12, 12, 3) and not np.allclose(shown, imgs[0])  # the map is blended in
    np.testing.assert_allclose(panels[3].images[0].get_array(), imgs[0])  # None: the image alone
    (box,) = panels[0].patches
    assert box.get_xy() == (5.5, 2.5) and box.get_width() == 3 and box.get_height() == 3
    with pytest.raises(ValueError, match="row 'a' has 2 maps for 3 images"):
        viz.heatmap_grid(imgs, {"a": maps[:2]})
    with pytest.raises(ValueError, match="at least one row"):
        viz.heatmap_grid(imgs, {})
