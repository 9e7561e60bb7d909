"""Figures of the lecture decks, drawn at build time from course_lib and the course data.

Each function returns a matplotlib Figure; a deck asks for one with ``![caption](fig:name)``.
A deck asks for a number or table rows measured at build time with ``{{name}}``: the
functions that return text (``gap_accuracy``, ``resnet_rows``, ``cam_ours_rows``, ...).
They use only offline data and small, fast computations. Work shared by several figures
(the digits split, the faces scores, the ResNet counts, the GAP CNN of the CAM figures) is
computed once per build and kept in ``_CACHE``. The GAP CNN comes from the course's model
zoo (``course_lib.zoo``, model "gap_cnn") when the zoo is in the tree; until then it is
trained here (about 45 s of CPU, half of the build). Nothing here is pasted from elsewhere.
"""

import numpy as np


def cluttered_examples():
    """Day 1 / 5: cluttered digits with their ground-truth boxes."""
    from course_lib import data, viz

    d = data.make_cluttered_digits(12, subset="train", seed=1)
    return viz.show_images(d.images, d.labels, boxes=d.boxes, ncols=6, size=1.5,
                           title="cluttered digits: real digits on real textures, with boxes")


def six_challenges():
    """Day 1: the challenges shown on one real photo (chelsea the cat)."""
    import matplotlib.pyplot as plt
    from scipy import ndimage

    from course_lib import data

    cat = data.load_photo("chelsea", size=160)
    rng = np.random.default_rng(0)
    occluded = cat.copy()
    occluded[40:110, 50:120] = 0.1
    dx, dy = (ndimage.gaussian_filter(rng.uniform(-1, 1, cat.shape[:2]), 6) * 60 for _ in range(2))
    yy, xx = np.meshgrid(np.arange(160), np.arange(160), indexing="ij")
    warped = np.stack([ndimage.map_coordinates(cat[..., c], [yy + dy, xx + dx], order=1, mode="reflect")
                       for c in range(3)], -1)
    texture = data.load_texture("gravel")[:160, :160, None]
    cluttered = np.clip(0.55 * cat + 0.45 * texture, 0, 1)
    panels = {"original": cat, "viewpoint: 35°": np.clip(ndimage.rotate(cat, 35, reshape=False, mode="nearest"), 0, 1),
              "light x0.35": cat * 0.35, "elastic warp": np.clip(warped, 0, 1),
              "occlusion": occluded, "clutter": cluttered}
    fig, axes = plt.subplots(2, 3, figsize=(11.5, 7))
    for ax, (name, img) in zip(axes.flat, panels.items()):
        ax.imshow(img)
        ax.set_title(name)
        ax.axis("off")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- shared helpers

_CACHE = {}


def _cached(key, build):
    """Compute ``build()`` once per build and reuse it (several figures share a model or data)."""
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def _shown(img):
    """Rescale any real-valued image to [0, 1] for display (min-max over the whole image)."""
    img = np.asarray(img, np.float64)
    return (img - img.min()) / max(img.max() - img.min(), 1e-12)


# ---------------------------------------------------------------------------- day 2

def _photos(size=64):
    from course_lib import data

    return np.stack([data.load_photo(name, size=size) for name in data.PHOTOS])


def normalizations_photo():
    """Day 2: one photo under the normalizations of AlexNet, VGG and ResNet, fitted on the course photos."""
    import matplotlib.pyplot as plt

    from course_lib import data, preprocessing

    photos = _photos(96)
    cat = photos[data.PHOTOS.index("chelsea")][None]
    panels = {"original": cat[0]}
    for name, norm in (("mean image\n(AlexNet)", preprocessing.MeanImage()),
                       ("channel mean\n(VGG)", preprocessing.ChannelMean()),
                       ("mean and std\n(ResNet)", preprocessing.ChannelStandardizer())):
        panels[name] = norm.fit(photos).transform(cat)[0]
    fig, axes = plt.subplots(1, 4, figsize=(12, 4))
    for k, (ax, (name, img)) in enumerate(zip(axes, panels.items())):
        # the same display mapping for every panel of a kind: 0 shown as mid-grey
        ax.imshow(img if k == 0 else np.clip(0.5 + img / (4.0 if k == 3 else 1.0), 0, 1))
        ax.set_title(name)
        ax.set_xlabel(f"[{img.min():.2f}, {img.max():.2f}]")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def zca_patches():
    """Day 2: ZCA whitening of 8x8 colour patches of the course photos: edges are what is left."""
    import matplotlib.pyplot as plt

    from course_lib import preprocessing

    photos = _photos(96)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(photos), 3000)
    ys, xs = rng.integers(0, 96 - 8, (2, 3000))
    patches = np.stack([photos[i, y:y + 8, x:x + 8] for i, y, x in zip(idx, ys, xs)])
    zca = preprocessing.ZCAWhitening(eps=1e-3).fit(patches)
    white = zca.transform(patches[:8])
    fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
    for k in range(8):
        axes[0, k].imshow(patches[k], interpolation="nearest")
        axes[1, k].imshow(_shown(white[k]), interpolation="nearest")
        axes[0, k].axis("off")
        axes[1, k].axis("off")
    axes[0, 0].set_title("8x8 patches", fontsize=9, loc="left")
    axes[1, 0].set_title("after ZCA whitening (fitted on 3,000 patches)", fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def bn_histograms():
    """Day 2: a layer's skewed activations before and after the batch-norm transform (course_lib.batchnorm)."""
    import matplotlib.pyplot as plt

    from course_lib import batchnorm

    rng = np.random.default_rng(0)
    x = np.stack([rng.gamma(2.0, 3.0, 256) + 5, rng.normal(-4, 0.5, 256)], -1)
    y, _ = batchnorm.batchnorm_forward(x, gamma=np.ones(2), beta=np.zeros(2))
    y2, _ = batchnorm.batchnorm_forward(x, gamma=np.array([2.0, 0.5]), beta=np.array([1.0, -1.0]))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    for ax, vals, title in zip(axes, (x, y, y2), ("input (batch of 256)", r"normalized $\hat x$",
                                                   r"$\gamma \hat x + \beta$")):
        ax.hist(vals[:, 0], 30, alpha=0.6, label="channel 1")
        ax.hist(vals[:, 1], 30, alpha=0.6, label="channel 2")
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    return fig


def bn_running_average():
    """Day 2: batch means jump from batch to batch; the running average (train -> inference) smooths them."""
    import matplotlib.pyplot as plt

    from course_lib import batchnorm

    rng = np.random.default_rng(1)
    steps, true_mean = 300, 3.0
    batch_means = []
    for _ in range(steps):
        _, cache = batchnorm.batchnorm_forward(rng.normal(true_mean, 2.0, (32, 1)), np.ones(1), np.zeros(1))
        batch_means.append(float(cache["mean"][0]))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot(batch_means, ".", ms=3, color="0.6", label="batch mean (used in training)")
    for momentum in (0.9, 0.99):
        run, trace = 0.0, []
        for m in batch_means:
            run = momentum * run + (1 - momentum) * m
            trace.append(run)
        ax.plot(trace, label=f"running mean, momentum {momentum} (used at inference)")
    ax.axhline(true_mean, color="k", ls="--", lw=1, label="population mean")
    ax.set_xlabel("training step")
    ax.set_ylabel("channel mean")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("batches of 32; the running averages start at 0 as in Keras")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- day 3

def _resnet_table():
    from course_lib import models

    rows = {}
    for depth in (18, 34, 50, 101, 152):
        m = models.resnet(depth, input_shape=(224, 224, 3))
        trainable = sum(int(np.prod(w.shape)) for w in m.trainable_weights)  # the paper's / torchvision's count
        rows[f"ResNet-{depth}"] = (trainable, models.count_flops(m))
    return rows


def resnet_table():
    """Day 3: parameters and multiply-adds of ResNet-18..152 at 224x224, counted on models built by course_lib."""
    import matplotlib.pyplot as plt

    rows = _cached("resnet_table", _resnet_table)
    names = list(rows)
    params = np.array([rows[n][0] for n in names]) / 1e6
    flops = np.array([rows[n][1] for n in names]) / 1e9
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, vals, label, fmt in ((axes[0], params, "trainable parameters (M)", "{:.1f}M"),
                                 (axes[1], flops, "multiply-adds per image (G)", "{:.2f}G")):
        bars = ax.bar(names, vals, color=["#6a9fd4"] * 2 + ["#d48a6a"] * 3)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v, fmt.format(v), ha="center", va="bottom")
        ax.set_ylim(0, 1.18 * vals.max())
        ax.set_ylabel(label)
        ax.tick_params(axis="x", rotation=30)
    axes[0].set_title("blue: basic blocks")
    axes[1].set_title("orange: bottleneck blocks")
    fig.tight_layout()
    return fig


def residual_shapes():
    """Day 3: a bottleneck block built by course_lib, drawn with each layer's output shape."""
    import keras
    import matplotlib.pyplot as plt

    from course_lib import models

    x = keras.Input((56, 56, 256))
    block = keras.Model(x, models.bottleneck_block(x, 64, name="b"))
    chain = [("input x", (56, 56, 256))]
    for layer in block.layers[1:]:
        if layer.name.endswith(("_1_conv", "_2_conv", "_3_conv")) or layer.name.endswith(("_add", "_out")):
            w = layer.get_weights()
            params = sum(int(np.prod(a.shape)) for a in w)
            kernel = f"{w[0].shape[0]}x{w[0].shape[1]} conv" if w else layer.__class__.__name__
            chain.append((f"{layer.name}: {kernel}" + (f", {params:,} weights" if w else ""),
                          tuple(layer.output.shape[1:])))
    fig, ax = plt.subplots(figsize=(8, 4.2))
    n = len(chain)
    for i, (label, shape) in enumerate(chain):
        y = n - 1 - i
        ax.add_patch(plt.Rectangle((0.1, y - 0.35), 0.62, 0.7, fc="#e3edf7", ec="#123e6b"))
        ax.text(0.41, y, f"{label}\n-> {shape}", ha="center", va="center", fontsize=9)
        if i:
            ax.annotate("", (0.41, y + 0.35), (0.41, y + 0.65), arrowprops=dict(arrowstyle="<-"))
    ax.annotate("", (0.72, 1), (0.72, n - 1), arrowprops=dict(arrowstyle="->", color="#c0392b",
                                                              connectionstyle="arc3,rad=-0.5", lw=1.5))
    ax.text(0.93, (n) / 2, "identity\nshortcut\n(0 weights)", color="#c0392b", fontsize=9, ha="center")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(-0.6, n - 0.4)
    ax.axis("off")
    ax.set_title("bottleneck block, conv2 stage of ResNet-50 (course_lib.models.bottleneck_block)", fontsize=10)
    return fig


def separable_cost():
    """Day 3: cost of a depthwise-separable conv over a standard one, counted on Keras layers vs 1/N + 1/k^2."""
    import keras
    import matplotlib.pyplot as plt

    from course_lib import models

    ns = [8, 16, 32, 64, 128, 256]
    fig, ax = plt.subplots(figsize=(7, 3.3))
    for k in (3, 5):
        measured = []
        for n in ns:
            x = keras.Input((14, 14, 64))
            std = keras.Model(x, keras.layers.Conv2D(n, k, padding="same", use_bias=False)(x))
            sep = keras.Model(x, keras.layers.SeparableConv2D(n, k, padding="same", use_bias=False)(x))
            measured.append(models.count_flops(sep) / models.count_flops(std))
        ax.plot(ns, measured, "o", label=f"counted on Keras layers, k={k}")
        ax.plot(ns, [1 / n + 1 / k**2 for n in ns], "-", label=f"1/N + 1/k² , k={k}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("output channels N")
    ax.set_ylabel("separable / standard multiply-adds")
    ax.legend(fontsize=8)
    ax.set_title("14x14x64 input: a 3x3 separable conv costs ~1/8 to 1/9 of a standard one", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- day 4

def lr_schedules():
    """Day 4: constant, step decay and warm-up + cosine learning rates (course_lib.training schedules)."""
    from course_lib import training

    steps, per_epoch = 30 * 50, 50
    return training.plot_schedule({"constant 0.1": lambda s: 0.1,
                                   "step decay (x0.1 every 10 epochs)": training.StepDecay(0.1, 10 * per_epoch, 0.1),
                                   "warm-up 2 epochs + cosine": training.WarmupCosine(0.1, steps, 2 * per_epoch)},
                                  steps, steps_per_epoch=per_epoch, title="learning-rate schedules over 30 epochs")


def optimizer_paths():
    """Day 4: SGD, momentum and Adam (Keras optimizers) on an ill-conditioned quadratic bowl."""
    import keras
    import matplotlib.pyplot as plt
    import tensorflow as tf

    from course_lib import training

    def loss(w):
        return 0.5 * (w[0] ** 2 + 25.0 * w[1] ** 2)

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    g = np.linspace(-2.2, 2.2, 120)
    xx, yy = np.meshgrid(g, np.linspace(-1.2, 1.2, 80))
    ax.contour(xx, yy, 0.5 * (xx**2 + 25 * yy**2), levels=15, colors="0.8", linewidths=0.7)
    for name, lr in (("sgd", 0.07), ("momentum", 0.02), ("adam", 0.1)):
        w = keras.Variable(np.array([-2.0, 1.0], np.float32))
        opt = training.make_optimizer(name, learning_rate=lr)
        path = [w.numpy().copy()]
        for _ in range(60):
            with tf.GradientTape() as tape:
                value = loss(w)
            opt.apply_gradients([(tape.gradient(value, w), w)])
            path.append(w.numpy().copy())
        path = np.array(path)
        ax.plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1, label=f"{name} (lr {lr}): loss {float(loss(path[-1])):.1e}")
    ax.plot(0, 0, "k*", ms=10)
    ax.set_xlabel("$w_1$")
    ax.set_ylabel("$w_2$ (25x steeper)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("60 steps from (-2, 1) on $L = (w_1^2 + 25 w_2^2)/2$", fontsize=10)
    fig.tight_layout()
    return fig


def _digits_split():
    from course_lib import data

    x, y = data.load_digits()
    return data.train_val_test_split(x, y, fractions=(0.6, 0.2, 0.2), stratify=y, seed=0)


def overfit_curves():
    """Day 4: on 100 digits a 4-unit MLP underfits and a 512-unit MLP overfits (curves by training.plot_runs).

    The MLPs are scikit-learn's (Adam, one full batch per epoch): the same picture as a Keras MLP,
    at a fraction of the build time.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import log_loss
    from sklearn.neural_network import MLPClassifier

    from course_lib import training

    split = _cached("digits_split", _digits_split)
    (xtr, ytr), (xva, yva) = split[0], split[1]
    xtr, ytr = xtr[:100].reshape(100, -1), ytr[:100]
    xva = xva.reshape(len(xva), -1)
    histories = {}
    for name, units in (("4 hidden units", 4), ("512 hidden units", 512)):
        mlp = MLPClassifier((units,), learning_rate_init=1e-2, batch_size=100, max_iter=1, warm_start=True,
                            random_state=0)
        hist = {"loss": [], "val_loss": []}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(50):
                mlp.fit(xtr, ytr)
                hist["loss"].append(log_loss(ytr, mlp.predict_proba(xtr), labels=range(10)))
                hist["val_loss"].append(log_loss(yva, mlp.predict_proba(xva), labels=range(10)))
        histories[name] = hist
    return training.plot_runs(histories, metric="loss",
                              title="100 training digits, 50 epochs (dashed: training, solid: validation)")


# ---------------------------------------------------------------------------- day 5: localization

def iou_examples():
    """Day 5: one true box (white) and predicted boxes (yellow) moved by more and more: their IoU."""
    from course_lib import data, localization

    d = data.make_cluttered_digits(6, subset="test", seed=3)
    true = d.boxes
    w = true[:, 2] - true[:, 0]
    shifts = np.array([0.0, 0.15, 0.3, 0.5, 0.8, 1.1])
    pred = true.copy()
    pred[:, [0, 2]] += (shifts * w)[:, None]
    pred[3, 1] -= 0.06  # one box also too tall
    return localization.show_boxes(d.images, true, pred, labels=d.labels, predictions=d.labels, ncols=6, size=1.9,
                                   title="the same box shifted right by 0, 15, 30, 50, 80, 110% of its width")


def iou_vs_shift():
    """Day 5: IoU as a box slides sideways or grows: it drops fast, and is 0 once the boxes stop overlapping."""
    import matplotlib.pyplot as plt

    from course_lib import localization

    box = np.array([[0.3, 0.3, 0.5, 0.6]])
    shifts = np.linspace(0, 1.5, 61)
    slid = np.repeat(box, len(shifts), 0)
    slid[:, [0, 2]] += shifts[:, None] * 0.2
    scales = np.linspace(1, 3, 61)
    grown = np.stack([0.4 - 0.1 * scales, 0.45 - 0.15 * scales, 0.4 + 0.1 * scales, 0.45 + 0.15 * scales], -1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    axes[0].plot(shifts, localization.iou(np.repeat(box, len(shifts), 0), slid))
    axes[0].set_xlabel("horizontal shift / box width")
    axes[1].plot(scales, localization.iou(np.repeat(box, len(scales), 0), grown), color="C1")
    axes[1].plot(scales, 1 / scales**2, "k:", label="1/s² (same centre)")
    axes[1].set_xlabel("predicted box side / true side (same centre)")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.axhline(0.5, color="0.5", ls="--", lw=1)
        ax.set_ylabel("IoU")
        ax.text(ax.get_xlim()[1], 0.52, "IoU = 0.5 ", ha="right", fontsize=8, color="0.4")
    fig.suptitle("course_lib.localization.iou: a 1/3 shift already falls to IoU 0.5", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- day 5: metrics

def _faces_scores():
    """Gaussian naive Bayes (Day 1's baseline) on half the faces, scored on the other half (log-odds)."""
    from sklearn.model_selection import train_test_split
    from sklearn.naive_bayes import GaussianNB

    from course_lib import data

    x, y = data.load_faces()
    x = x.reshape(len(x), -1)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.5, stratify=y, random_state=0)
    log_p = GaussianNB().fit(xtr, ytr).predict_log_proba(xte)
    return yte, log_p[:, 1] - log_p[:, 0]


def faces_roc_pr():
    """Day 5: ROC and PR curves of naive Bayes on faces vs non-faces (course_lib.metrics plots)."""
    import matplotlib.pyplot as plt

    from course_lib import metrics

    yte, scores = _cached("faces_scores", _faces_scores)
    rng = np.random.default_rng(0)
    curves = {"naive Bayes": (yte, scores), "random scores": (yte, rng.normal(size=len(yte)))}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9))
    metrics.plot_roc(curves, title="ROC: 100 test images (50 faces)", ax=axes[0])
    metrics.plot_pr(curves, title="precision-recall, same scores", ax=axes[1])
    fig.tight_layout()
    return fig


def threshold_tradeoff():
    """Day 5: precision, recall and F1 of the naive Bayes faces classifier as the decision threshold moves."""
    import matplotlib.pyplot as plt

    from course_lib import metrics

    yte, scores = _cached("faces_scores", _faces_scores)
    ts = np.linspace(np.quantile(scores, 0.02), np.quantile(scores, 0.98), 80)
    rows = []
    for t in ts:
        pred = (scores >= t).astype(int)
        p = metrics.precision(yte, pred) if pred.sum() else 1.0
        rows.append((p, metrics.recall(yte, pred), metrics.fbeta_score(yte, pred, 1.0) if pred.sum() else 0.0))
    rows = np.array(rows)
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for k, name in enumerate(("precision", "recall", "F1")):
        ax.plot(ts, rows[:, k], label=name)
    ax.axvline(0, color="0.5", ls="--", lw=1)
    ax.text(0, 0.05, " default threshold (log-odds 0)", fontsize=8, color="0.4")
    ax.set_xlabel("threshold on the log-odds")
    ax.legend(fontsize=8)
    ax.set_title("raising the threshold trades recall for precision", fontsize=10)
    fig.tight_layout()
    return fig


def _confusion_with_rates(y_true, y_pred, title):
    """A confusion matrix next to the per-class precision and recall read off it (a slide-wide figure)."""
    import matplotlib.pyplot as plt

    from course_lib import metrics

    cm = metrics.confusion_matrix(y_true, y_pred, num_classes=10)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.1, 1]})
    metrics.plot_confusion_matrix(cm, title=title, ax=axes[1])
    precision = np.diag(cm) / np.maximum(cm.sum(axis=0), 1)
    recall = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    k = np.arange(10)
    axes[0].bar(k - 0.2, precision, 0.4, label="precision (column)")
    axes[0].bar(k + 0.2, recall, 0.4, label="recall (row)")
    axes[0].set_xticks(k)
    axes[0].set_xlabel("class")
    axes[0].set_ylabel("per-class rate")
    axes[0].set_ylim(0, 1.25)
    axes[0].legend(loc="upper center", ncol=2)
    fig.tight_layout()
    return fig


def digits_confusion():
    """Day 5: the 10-class confusion matrix of a logistic regression on the test digits."""
    from sklearn.linear_model import LogisticRegression

    from course_lib import metrics

    (xtr, ytr), _, (xte, yte) = _cached("digits_split", _digits_split)
    model = LogisticRegression(max_iter=3000).fit(xtr.reshape(len(xtr), -1), ytr)
    pred = model.predict(xte.reshape(len(xte), -1))
    return _confusion_with_rates(yte, pred, f"logistic regression: {metrics.accuracy(yte, pred):.1%} "
                                            f"of {len(yte)} test digits")


# ---------------------------------------------------------------------------- day 5: CAM

def _zoo_available() -> bool:
    """True once ``course_lib/zoo.py`` (the course's model zoo) is in the tree."""
    from pathlib import Path

    import course_lib

    return (Path(course_lib.__file__).parent / "zoo.py").exists()


def _zoo_model(name: str):
    """``(model, test split, card)`` of zoo model ``name``, or None while the zoo or its weights are absent."""
    if not _zoo_available():
        return None
    from course_lib import zoo

    try:
        card = zoo.card(name)
    except FileNotFoundError:  # the zoo is there but this model's weights are not trained yet
        return None
    test = zoo.splits(name)["test"] if hasattr(zoo, "splits") else zoo.dataset(name, "test")
    return zoo.load(name), test, card


def _card_text(name: str, card: dict) -> str:
    n_train = card.get("data", {}).get("n_train")
    size = f"{n_train:,} images, " if n_train else ""
    return f'course_lib.zoo model "{name}" ({size}{card["epochs"]} epochs; card: test accuracy {card["test"]["accuracy"]:.3f})'


def _gap_cnn():
    """The GAP CNN of every CAM / Grad-CAM figure and its test split, as a dict.

    From the model zoo (``zoo.load("gap_cnn")`` and its test split) when it exists; otherwise a
    small GAP CNN trained here on 2,000 cluttered digits for 8 epochs (the architecture of
    notebook 07: four conv-BN-ReLU blocks, GAP, one Dense layer).
    """
    found = _zoo_model("gap_cnn")
    if found is not None:
        model, test, card = found
        source = _card_text("gap_cnn", card)
    else:
        model, test = _train_gap_cnn()
        source = "a GAP CNN trained at build time (2,000 cluttered digits, 8 epochs; no zoo weights found)"
    accuracy = float((model.predict(test.images, verbose=0).argmax(-1) == test.labels).mean())
    return {"model": model, "test": test, "accuracy": accuracy, "source": source}


def _small_cnn():
    """Notebook 08's network (zoo "small_cnn": a 5x5 conv1, then 3x3 convs) with its layer names; the
    GAP CNN stands in while the zoo has no small_cnn."""
    found = _zoo_model("small_cnn")
    if found is not None:
        model, test, card = found
        return {"model": model, "test": test, "source": _card_text("small_cnn", card), "conv1": "conv1",
                "relu": [f"conv{i}_relu" for i in range(1, 5)]}
    g = _gap()
    return {"model": g["model"], "test": g["test"], "source": g["source"], "conv1": "conv1",
            "relu": [f"relu{i}" for i in range(1, 5)]}


def _train_gap_cnn():
    import keras

    from course_lib import data

    keras.utils.set_random_seed(0)
    splits = data.cluttered_digits_splits(2000, 200, 200, digit_size=(16, 28))
    inputs = keras.Input((48, 48, 3))
    x = keras.layers.Rescaling(2.0, offset=-1.0)(inputs)
    for i, filters in enumerate((16, 32, 64, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i <= 2:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="gap_cnn")
    epochs = 8  # about 45 s of CPU: the largest cost of the build; notebook 07 trains longer
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, epochs * int(np.ceil(2000 / 64)))
    model.compile(keras.optimizers.Adam(schedule), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    tr, va = splits["train"], splits["val"]
    model.fit(tr.images, tr.labels, validation_data=(va.images, va.labels), epochs=epochs, batch_size=64, verbose=0)
    return model, splits["test"]


def _gap():
    return _cached("gap_cnn", _gap_cnn)


def gap_accuracy():
    """Text: test accuracy of the CAM figures' model."""
    return f"{_gap()['accuracy']:.0%}"


def gap_source():
    """Text: where the CAM figures' model comes from (the zoo, or trained at build time)."""
    return _gap()["source"]


def features_source():
    """Text: where notebook 08's network in the slides comes from."""
    return _cached("small_cnn", _small_cnn)["source"]


def gap_n_test():
    return f"{len(_gap()['test'].labels):,}"


def gap_confusion():
    """Day 5: confusion matrix of the GAP CNN on its test split (what the CAM figures explain)."""
    g = _gap()
    pred = g["model"].predict(g["test"].images, verbose=0).argmax(-1)
    return _confusion_with_rates(g["test"].labels, pred, f"GAP CNN: {g['accuracy']:.0%} of {len(pred)} test images")


def _cam_ours():
    from course_lib import explain

    g = _gap()
    t = g["test"]
    return {method: explain.localization_accuracy(g["model"], t.images, t.labels, t.boxes, method=method)
            for method in ("cam", "grad_cam", "grad_cam_plus_plus")}


def cam_ours_rows():
    """Table rows: top-1 and GT-known localization error of our GAP CNN at the paper's 20% threshold."""
    names = {"cam": "CAM", "grad_cam": "Grad-CAM", "grad_cam_plus_plus": "Grad-CAM++"}
    rows = []
    for method, r in _cached("cam_ours", _cam_ours).items():
        rows.append(f"| ours: {names[method]}, GAP CNN, cluttered digits | "
                    f"{100 * (1 - r['localization_accuracy']):.1f} | {100 * (1 - r['gt_known_localization_accuracy']):.1f} "
                    f"| {100 * (1 - r['classification_accuracy']):.1f} |")
    return "\n".join(rows)


def cam_gradcam_overlays():
    """Day 5: CAM, Grad-CAM and Grad-CAM++ of the predicted class on six test images (course_lib.explain)."""
    from course_lib import explain, viz

    g = _gap()
    model, test = g["model"], g["test"]
    imgs = test.images[:6]
    pred = model.predict(imgs, verbose=0).argmax(-1)
    rows = {"CAM": explain.cam(model, imgs), "Grad-CAM": explain.grad_cam(model, imgs),
            "Grad-CAM++": explain.grad_cam_plus_plus(model, imgs)}
    titles = [f"label {y} / pred {p}" for y, p in zip(test.labels[:6], pred)]
    return viz.heatmap_grid(imgs, rows, titles, test.boxes[:6],
                            "maps of the predicted class at the last conv layer "
                            "(green: true box, never seen in training)")


def gradcam_two_instances():
    """Day 5: two digits of the same class: Grad-CAM vs Grad-CAM++ (Chattopadhay et al. 2018)."""
    from course_lib import data, explain, viz

    model = _gap()["model"]
    two = data.make_cluttered_digits(5, subset="test", variant="two_instances", digit_size=(12, 22), seed=5)
    rows = {"Grad-CAM": explain.grad_cam(model, two.images, class_index=two.labels),
            "Grad-CAM++": explain.grad_cam_plus_plus(model, two.images, class_index=two.labels)}
    return viz.heatmap_grid(two.images, rows, [f"two {y}s" for y in two.labels], two.boxes,
                            "two instances of the class: maps of the true class")


# ---------------------------------------------------------------------------- day 6

def beyond_gradcam():
    """Day 6: saliency, guided backprop, guided Grad-CAM and occlusion on the same model and images."""
    import matplotlib.pyplot as plt

    from course_lib import explain

    g = _gap()
    model, test = g["model"], g["test"]
    imgs = test.images[:3]
    sal = explain.saliency(model, imgs)
    gb = explain.guided_backprop(model, imgs)
    ggc = explain.guided_grad_cam(model, imgs)
    occ = explain.occlusion(model, imgs, patch=8, stride=4)
    fig, axes = plt.subplots(3, 5, figsize=(11, 6.6))
    for i in range(3):
        panels = [("image", imgs[i]), ("saliency", explain.normalize(np.abs(sal[i]).max(-1)[None])[0]),
                  ("guided\nbackprop", _shown(gb[i])), ("guided\nGrad-CAM", _shown(ggc[i])),
                  ("occlusion", explain.overlay(imgs[i], occ[i], alpha=0.55))]
        for ax, (name, panel) in zip(axes[i], panels):
            ax.imshow(panel, cmap="gray" if np.ndim(panel) == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name)
    fig.tight_layout()
    return fig


def rise_map():
    """Day 6: RISE (Petsiuk et al. 2018) with course_lib.explain.rise: 600 random masks, no gradient."""
    from course_lib import explain, viz

    g = _gap()
    model, test = g["model"], g["test"]
    imgs = test.images[:5]
    pred = model.predict(imgs, verbose=0).argmax(-1)
    maps = explain.rise(model, imgs, n_masks=600, grid=6, p=0.5, progress=False)
    grad = explain.grad_cam(model, imgs)
    rows = {"RISE (600 masks)": maps - maps.min(axis=(1, 2), keepdims=True), "Grad-CAM": grad}
    fig = viz.heatmap_grid(imgs, rows,
                           [f"pred {c}" for c in pred], test.boxes[:5], "RISE needs no gradient, only 600 forward passes")
    return fig


def fixmatch_views():
    """Day 6: FixMatch's weak and strong views of the same cluttered digits (course_lib.semi_supervised augmentations)."""
    import matplotlib.pyplot as plt

    from course_lib import data, semi_supervised

    d = data.make_cluttered_digits(6, subset="train", seed=2)
    weak = semi_supervised.weak_augmentation(flip=False, seed=0)(d.images, training=True)
    strong = semi_supervised.strong_augmentation(flip=False, seed=0)(d.images, training=True)
    fig, axes = plt.subplots(3, 6, figsize=(9, 4.7))
    for r, (name, imgs) in enumerate((("original", d.images), ("weak", np.asarray(weak)),
                                      ("strong", np.asarray(strong)))):
        for i in range(6):
            axes[r, i].imshow(np.clip(imgs[i], 0, 1))
            axes[r, i].set_xticks([])
            axes[r, i].set_yticks([])
        axes[r, 0].set_ylabel(name)
    fig.suptitle("weak: shift; strong: shift, rotation, zoom, contrast, cutout")
    fig.tight_layout()
    return fig


def sharpening():
    """Day 6: MixMatch's sharpening p^(1/T) / sum p^(1/T) at three temperatures (course_lib.semi_supervised.sharpen)."""
    import matplotlib.pyplot as plt

    from course_lib import semi_supervised

    p = np.array([[0.05, 0.35, 0.1, 0.3, 0.2]])
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.6), sharey=True)
    for ax, t in zip(axes, (1.0, 0.5, 0.25, 0.1)):
        q = np.asarray(semi_supervised.sharpen(p, temperature=t))[0]
        ax.bar(range(5), q, color="#6a9fd4")
        ax.set_title(f"T = {t}: max {q.max():.2f}", fontsize=10)
        ax.set_xlabel("class")
    axes[0].set_ylabel("probability")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- day 1: baselines

def _baselines():
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    (xtr, ytr), _, (xte, yte) = _cached("digits_split", _digits_split)
    xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    models = {"k-NN (k=3)": KNeighborsClassifier(3), "naive Bayes": GaussianNB(),
              "logistic regression": LogisticRegression(max_iter=3000), "SVM (RBF)": SVC()}
    return {name: float((m.fit(xtr, ytr).predict(xte) == yte).mean()) for name, m in models.items()}, len(yte)


def baselines_digits():
    """Day 1: test accuracy of the classic baselines on scikit-learn's 8x8 digits (scikit-learn defaults)."""
    from course_lib import viz

    scores, n = _cached("baselines", _baselines)
    fig = viz.bar_table(scores, "test accuracy", f"8x8 digits, {n} test images, no tuning")
    fig.axes[0].set_ylim(0, 1.12)
    fig.axes[0].tick_params(axis="x", rotation=0)
    fig.set_size_inches(9, 3.6)
    return fig


# ---------------------------------------------------------------------------- day 3: tables

RESNET_PAPER_GFLOPS = {"ResNet-18": 1.8, "ResNet-34": 3.6, "ResNet-50": 3.8, "ResNet-101": 7.6, "ResNet-152": 11.3}
"""He et al. (2016), Table 1, last row: FLOPs (multiply-adds) at 224x224."""


MOBILENET_V2_PAPER = {0.35: ("60.3%", "59M", "1.7M"), 1.0: ("72.0%", "300M", "3.4M"), 1.4: ("74.7%", "585M", "6.9M")}
"""Sandler et al. (2018) and the released checkpoints, 224x224: top-1, multiply-adds, parameters."""


def mobilenet_rows():
    """Table rows: MobileNetV2's published numbers next to course_lib's counts at the same width."""
    from course_lib import models

    out = []
    for alpha, (top1, macs, params) in MOBILENET_V2_PAPER.items():
        m = models.mobilenet_v2(alpha, input_shape=(224, 224, 3))
        out.append(f"| {alpha} | {top1} | {macs} | {models.count_flops(m) / 1e6:.0f}M | {params} | "
                   f"{m.count_params() / 1e6:.2f}M |")
    return "\n".join(out)


def resnet_rows():
    """Table rows: the paper's FLOPs next to the parameters and multiply-adds counted on course_lib's models."""
    rows = _cached("resnet_table", _resnet_table)
    return "\n".join(f"| {name} | {RESNET_PAPER_GFLOPS[name]} | {flops / 1e9:.2f} | {params / 1e6:.1f}M |"
                     for name, (params, flops) in rows.items())


# ---------------------------------------------------------------------------- day 5: visualizing CNNs

def first_layer_filters():
    """Day 5 (notebook 08): the 16 first-layer filters of the GAP CNN, each scaled to [0, 1]."""
    import matplotlib.pyplot as plt

    from course_lib import viz

    f = _cached("small_cnn", _small_cnn)
    kernel = f["model"].get_layer(f["conv1"]).get_weights()[0]
    rng = np.random.default_rng(0)
    panels = [viz.scale_filters(kernel), viz.scale_filters(rng.normal(size=kernel.shape))]
    fig, axes = plt.subplots(2, 16, figsize=(11, 2.4))
    for r, filters in enumerate(panels):
        for k in range(16):
            axes[r, k].imshow(filters[k], interpolation="nearest")
            axes[r, k].set_xticks([])
            axes[r, k].set_yticks([])
        axes[r, 0].set_ylabel("trained" if r == 0 else "random", rotation=0, ha="right", va="center")
    fig.suptitle(f"the {kernel.shape[0]}x{kernel.shape[1]}x3 filters of conv1")
    fig.tight_layout()
    return fig


def activations_by_layer():
    """Day 5 (notebook 08): one image's maps after each block: smaller, sparser, more specific with depth."""
    import matplotlib.pyplot as plt

    from course_lib import explain

    g = _cached("small_cnn", _small_cnn)
    img = g["test"].images[:1]
    layers = g["relu"]
    fig, axes = plt.subplots(4, 7, figsize=(11, 6.6))
    for r, layer in enumerate(layers):
        acts = explain.layer_activations(g["model"], img, layer)[0]
        strongest = np.argsort(-acts.max(axis=(0, 1)))[:6]
        axes[r, 0].imshow(img[0])
        zero = float((acts == 0).mean())
        axes[r, 0].set_ylabel(f"{layer}, {acts.shape[0]}x{acts.shape[1]}\n{zero:.0%} zeros", rotation=0,
                              ha="right", va="center")
        for c, ch in enumerate(strongest, start=1):
            axes[r, c].imshow(acts[..., ch], cmap="viridis")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("the 6 strongest channels of each block for one test image")
    fig.tight_layout()
    return fig


def max_patches():
    """Day 5 (notebook 08): the test patches that excite three relu4 channels most."""
    import matplotlib.pyplot as plt

    from course_lib import explain

    g = _cached("small_cnn", _small_cnn)
    imgs, last = g["test"].images[:1000], g["relu"][-1]
    acts = explain.layer_activations(g["model"], imgs, last)
    channels = np.argsort(-acts.max(axis=(0, 1, 2)))[:3]
    fig, axes = plt.subplots(3, 6, figsize=(10, 5.4))
    for r, ch in enumerate(channels):
        patches, values, idx = explain.max_activating_patches(g["model"], imgs, last, int(ch), k=6)
        for c in range(6):
            axes[r, c].imshow(np.clip(patches[c], 0, 1))
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            axes[r, c].set_title(f"digit {g['test'].labels[idx[c]]}")
        axes[r, 0].set_ylabel(f"channel {ch}", rotation=0, ha="right", va="center")
    fig.suptitle(f"{last}: receptive field {patches.shape[1]}x{patches.shape[2]} of the 48x48 input")
    fig.tight_layout()
    return fig


def class_am():
    """Day 5 (notebook 08): activation maximization of three class logits, 100 steps, L2 prior."""
    import matplotlib.pyplot as plt

    from course_lib import explain

    model = _cached("small_cnn", _small_cnn)["model"]
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.4))
    for ax, c in zip(axes[:3], (0, 3, 7)):
        img, scores = explain.activation_maximization(model, c, steps=100, lr=0.05, l2=1e-3)
        ax.imshow(img)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"class {c}: logit {scores[-1]:.0f}")
        axes[3].plot(scores, label=f"class {c}")
    axes[3].set_xlabel("step")
    axes[3].set_ylabel("class logit")
    axes[3].legend()
    fig.tight_layout()
    return fig


#: Notebook 08, section 7: its parameters EPSILONS and ADV_EPS (tests/test_slides.py checks they agree).
FGSM_EPSILONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
FGSM_EPS = 0.02


def _fgsm():
    """FGSM on notebook 08's network and test split, as the lab measures it (course_lib.adversarial)."""
    from course_lib import adversarial

    g = _cached("small_cnn", _small_cnn)
    model, test = g["model"], g["test"]
    accuracy = adversarial.accuracy_under_attack(model, test.images, test.labels, FGSM_EPSILONS)
    x_adv = adversarial.fgsm(model, test.images, test.labels, FGSM_EPS)
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=test.images.shape)  # the lab's control
    noisy = np.clip(test.images + FGSM_EPS * signs, 0, 1).astype("float32")
    noise = float((model.predict(noisy, verbose=0).argmax(-1) == test.labels).mean())
    return {"model": model, "test": test, "accuracy": accuracy, "x_adv": x_adv, "noise": noise}


def fgsm_summary():
    """Text: test accuracy of notebook 08's network, clean, under FGSM at FGSM_EPS and under random signs."""
    f = _cached("fgsm", _fgsm)
    at = FGSM_EPSILONS.index(FGSM_EPS)
    return (f"Measured at build time: at ε = {FGSM_EPS} ({FGSM_EPS * 255:.0f} of 255 grey levels) the test accuracy falls from "
            f"{f['accuracy'][0]:.1%} to {f['accuracy'][at]:.1%}; random signs of the same size: {f['noise']:.1%}")


def fgsm_example():
    """Day 5 (notebook 08): one test image the attack flips, its FGSM perturbation (magnified) and the adversarial image."""
    import matplotlib.pyplot as plt

    f = _cached("fgsm", _fgsm)
    model, test, x_adv = f["model"], f["test"], f["x_adv"]
    clean, adv = (model.predict(x, verbose=0) for x in (test.images, x_adv))
    flipped = np.flatnonzero((clean.argmax(-1) == test.labels) & (adv.argmax(-1) != test.labels))
    i = int(flipped[0]) if len(flipped) else 0

    def top(logits):
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return f"{p.argmax()} ({p.max():.0%})"

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.0))
    delta = np.clip((x_adv[i] - test.images[i]) / (2 * FGSM_EPS) + 0.5, 0, 1)
    for ax, img, title in zip(axes, (test.images[i], delta, x_adv[i]),
                              (f"clean: {top(clean[i])}", f"perturbation x{1 / (2 * FGSM_EPS):.0f}",
                               f"adversarial: {top(adv[i])}")):
        ax.imshow(img)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def fgsm_accuracy():
    """Day 5 (notebook 08): test accuracy of its network under FGSM against the budget eps."""
    import matplotlib.pyplot as plt

    f = _cached("fgsm", _fgsm)
    fig, ax = plt.subplots(figsize=(13, 2.2))
    ax.plot(FGSM_EPSILONS, f["accuracy"], "o-", label="FGSM")
    ax.axhline(f["noise"], color="k", ls=":", label=f"random signs, ε = {FGSM_EPS}")
    ax.set_xlabel("budget ε (pixel scale [0, 1])")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="center right")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- day 6: sanity check, mixup

def sanity_maps():
    """Day 6: Grad-CAM on the trained model and on a weight-randomized copy (Adebayo et al. 2018)."""
    from course_lib import explain, viz

    g = _gap()
    imgs = g["test"].images[:5]
    result = explain.sanity_check(g["model"], imgs, method="grad_cam")
    rows = {"trained": result["trained"], "randomized weights": result["randomized"]}
    titles = [f"rank corr. {r:.2f}" for r in result["spearman"]]
    return viz.heatmap_grid(imgs, rows, titles, g["test"].boxes[:5], "Grad-CAM before and after randomizing every kernel")


def mixup_examples():
    """Day 6: mixup of labelled digits (training.mixup_batch) at three values of lambda."""
    import matplotlib.pyplot as plt

    from course_lib import training

    (xtr, ytr), _, _ = _cached("digits_split", _digits_split)
    a, b = xtr[:1], xtr[1:2]
    onehot = np.eye(10, dtype=np.float32)[ytr[:2]]
    fig, axes = plt.subplots(1, 5, figsize=(12, 3.4))
    for ax, lam in zip(axes, (1.0, 0.8, 0.5, 0.2, 0.0)):
        x, y = training.mixup_batch(np.concatenate([a, b]), onehot, np.array([lam, lam]), np.array([1, 0]))
        ax.imshow(np.asarray(x)[0, ..., 0], cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        top = np.argsort(-np.asarray(y)[0])[:2]
        ax.set_title(f"λ = {lam}\n" + " + ".join(f"{np.asarray(y)[0, k]:.1f}·'{k}'" for k in top if np.asarray(y)[0, k] > 0))
    fig.tight_layout()
    return fig


N_FAITHFULNESS = 20


def _faithfulness():
    """Average Drop, Increase in Confidence, deletion / insertion AUC (16 steps) of three maps on 20 test images."""
    from course_lib import explain

    g = _gap()
    imgs, labels = g["test"].images[:N_FAITHFULNESS], g["test"].labels[:N_FAITHFULNESS]
    maps = {"Grad-CAM": explain.grad_cam(g["model"], imgs, class_index=labels),
            "Grad-CAM++": explain.grad_cam_plus_plus(g["model"], imgs, class_index=labels),
            "RISE (400 masks)": explain.rise(g["model"], imgs, class_index=labels, n_masks=400, grid=6,
                                             progress=False)}
    rows = {}
    for name, m in maps.items():
        Y, O, _ = explain.explanation_confidence(g["model"], imgs, m, class_index=labels)
        curves = explain.deletion_insertion(g["model"], imgs, m, class_index=labels, n_steps=16)
        rows[name] = (explain.average_drop(Y, O), explain.increase_in_confidence(Y, O),
                      float(np.mean(curves["deletion_auc"])), float(np.mean(curves["insertion_auc"])))
    return rows


def faithfulness_rows():
    """Table rows: our GAP CNN's faithfulness numbers, computed at build time (true class, 20 test images)."""
    return "\n".join(f"| ours: {name}, GAP CNN, {N_FAITHFULNESS} digits | {ad:.1f} | {ic:.1f} | {dl:.3f} | {ins:.3f} |"
                     for name, (ad, ic, dl, ins) in _cached("faithfulness", _faithfulness).items())


def _card(name: str) -> dict:
    from course_lib import zoo

    return zoo.card(name)


def digits_cards():
    """Text: the zoo cards' test accuracy of notebook 03's two digit models (read at build time)."""
    r, m = _card("resnet_digits"), _card("mobilenet_v2_digits")
    return (f"ResNet-8 {r['test']['accuracy']:.1%} after {r['epochs']} epochs, MobileNetV2 (width 0.5) "
            f"{m['test']['accuracy']:.1%} after {m['epochs']} epochs, test accuracy")


def resnet_card():
    """Text: the zoo card of notebook 04's ResNet-8."""
    r = _card("resnet_digits")
    return f"test accuracy {r['test']['accuracy']:.1%} (card)"


def multitask_rows():
    """Table rows: the test scores on the zoo card of notebook 05's multitask model."""
    t = _card("multitask")["test"]
    names = {"accuracy": "class accuracy", "mean_iou": "mean IoU", "iou50": "boxes with IoU >= 0.5",
             "correct_and_iou50": "right class and IoU >= 0.5"}
    return "\n".join(f"| {names.get(k, k)} | {v:.3f} |" for k, v in t.items())
