"""Semi-supervised learning: the helpers of Day 6 (notebook 10).

Few labelled images, many unlabelled ones. The unlabelled images enter the loss through
one extra term:

* Building blocks: :func:`labelled_unlabelled_split`, :func:`sharpen` (MixMatch),
  :func:`entropy_loss`, :func:`consistency_loss`, :func:`pseudo_labels`,
  :func:`fixmatch_unlabelled_loss`, the augmentations :func:`weak_augmentation`,
  :func:`strong_augmentation` (with :class:`Cutout`) and the input stream :func:`ssl_dataset`.
* :class:`SemiSupervisedTrainer`: one ``train_step`` for every method of :data:`SSL_METHODS`
  (mixup itself, :func:`course_lib.training.mixup_batch`, lives with the other regularizers).
* The Gaussian-mixture baseline: :func:`gmm_e_step`, :func:`gmm_m_step`, :class:`SemiSupervisedGMM`.
* Exercise references of notebook 10: :func:`confident_pseudo_labels`, :func:`sharpen_np`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .validation import check_positive_int, class_ids
from .training import mixup_batch

#  Few labelled images, many unlabelled ones (notebook 10). The unlabelled images enter the
# loss through one extra term, weighted by ``weight``:
#   entropy minimization (Grandvalet & Bengio 2005), consistency regularization (the
#   Pi-model of Laine & Aila 2017 / Sajjadi et al. 2016), pseudo-labels (Lee 2013) and
#   FixMatch (Sohn et al. 2020); mixup (Zhang et al. 2018, :func:`course_lib.training.mixup_batch`) uses labels only.
# MixMatch's sharpening (Berthelot et al. 2019) and a generative baseline (a Gaussian
# mixture fitted by EM on labelled and unlabelled features) complete the section.

SSL_METHODS = ("supervised", "entropy", "consistency", "mixup", "pseudo_label", "fixmatch")


def labelled_unlabelled_split(labels, per_class: int, seed: int = 0):
    """Indices of ``per_class`` labelled examples of every class, and of all the others (unlabelled).

    Returns ``(labelled_idx, unlabelled_idx)``, disjoint, together all of ``labels``. The
    labels of the unlabelled part are then simply not used for training: the usual way
    to simulate the semi-supervised setting on a labelled set (Oliver et al. 2018).
    Used in notebook 10.
    """
    per_class = check_positive_int(per_class, "per_class")
    labels = class_ids(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() <= per_class:
        raise ValueError(f"per_class={per_class} labelled examples need more than {per_class} examples of every class "
                         f"(some must stay unlabelled); class {classes[counts.argmin()]} has {counts.min()}.")
    rng = np.random.default_rng(seed)
    labelled = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes])
    labelled = np.sort(labelled)
    return labelled, np.setdiff1d(np.arange(len(labels)), labelled)


def _check_probabilities(probs, name="probs"):
    p = keras.ops.convert_to_tensor(probs, "float32")
    if len(p.shape) != 2:
        raise ValueError(f"{name} must be (batch, classes) class probabilities; got shape {tuple(p.shape)}.")
    if not tf.executing_eagerly():
        return p
    arr = keras.ops.convert_to_numpy(p)
    if not np.isfinite(arr).all() or (arr < 0).any() or not np.allclose(arr.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(f"{name} must hold probabilities: non-negative rows summing to 1 "
                         "(apply keras.ops.softmax to logits first).")
    return p


def sharpen(probs, temperature: float = 0.5):
    """Temperature sharpening of MixMatch (Berthelot et al. 2019, eq. 7).

    :math:`\\mathrm{Sharpen}(p, T)_k = p_k^{1/T} / \\sum_j p_j^{1/T}`. ``T = 1`` leaves
    ``p`` unchanged; ``T -> 0`` tends to the one-hot vector of the most probable class
    (a hard pseudo-label); MixMatch uses ``T = 0.5``. Computed as
    ``softmax(log p / T)``, which is the same formula without overflow for small ``T``.
    ``probs`` is (B, K), rows summing to 1. Used in notebook 10.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number (T -> 0 gives one-hot); got {temperature!r}.")
    p = _check_probabilities(probs)
    return keras.ops.softmax(keras.ops.log(p) / float(temperature), axis=-1)


def entropy_loss(logits):
    """Mean entropy of the predicted class distributions (Grandvalet & Bengio 2005).

    :math:`\\frac1B \\sum_b H(p_b) = -\\frac1B \\sum_b \\sum_k p_{bk} \\log p_{bk}` with
    :math:`p_b = \\mathrm{softmax}(z_b)`. Minimizing it on unlabelled images pushes the
    decision boundary away from them (low-density separation). Used in notebook 10.
    """
    logp = keras.ops.log_softmax(keras.ops.convert_to_tensor(logits, "float32"), axis=-1)
    return -keras.ops.mean(keras.ops.sum(keras.ops.exp(logp) * logp, axis=-1))


def consistency_loss(logits_a, logits_b):
    """Squared distance between two predictions of the same images: the Pi-model term.

    :math:`\\frac1B \\sum_b \\lVert p(y \\mid \\tilde x_b) - p(y \\mid \\hat x_b) \\rVert_2^2`, where
    :math:`\\tilde x_b, \\hat x_b` are two random augmentations of :math:`x_b` (Laine & Aila
    2017; Sajjadi et al. 2016). ``logits_a`` is treated as the target (no gradient flows
    through it), which keeps the term from collapsing both predictions. Used in notebook 10.
    """
    pa = keras.ops.stop_gradient(keras.ops.softmax(logits_a, axis=-1))
    pb = keras.ops.softmax(logits_b, axis=-1)
    return keras.ops.mean(keras.ops.sum(keras.ops.square(pa - pb), axis=-1))


def pseudo_labels(probs, threshold: float = 0.0):
    """Hard pseudo-labels and the confidence mask: ``argmax p`` and :math:`\\mathbb 1(\\max p \\ge \\tau)`.

    Returns ``(labels, mask)``: int32 (B,) and float32 (B,), 1 where the model is at least
    ``threshold`` sure. ``threshold=0`` keeps every prediction (Lee 2013); FixMatch uses
    0.95. Used by :func:`fixmatch_unlabelled_loss` (notebook 10).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1]; got {threshold!r}.")
    p = _check_probabilities(probs)
    labels = keras.ops.cast(keras.ops.argmax(p, axis=-1), "int32")
    mask = keras.ops.cast(keras.ops.max(p, axis=-1) >= threshold, "float32")
    return labels, mask


def fixmatch_unlabelled_loss(logits_weak, logits_strong, threshold: float = 0.95):
    """FixMatch's unlabelled loss (Sohn et al. 2020, eq. 4) and the fraction of images it uses.

    :math:`\\ell_u = \\frac{1}{\\mu B} \\sum_b \\mathbb 1(\\max q_b \\ge \\tau)\\, H(\\hat q_b, p(y \\mid \\mathcal A(u_b)))`:
    :math:`q_b` is the prediction on the *weakly* augmented image (no gradient), :math:`\\hat q_b`
    its one-hot argmax (the pseudo-label), and the cross-entropy is taken against the
    prediction on the *strongly* augmented image :math:`\\mathcal A(u_b)`. The mean runs
    over all :math:`\\mu B` unlabelled images, so the loss is exactly zero when no
    prediction reaches the threshold :math:`\\tau`. Returns ``(loss, mask_rate)``.
    Used by :class:`SemiSupervisedTrainer` (notebook 10).
    """
    probs = keras.ops.softmax(keras.ops.stop_gradient(keras.ops.convert_to_tensor(logits_weak, "float32")), axis=-1)
    labels, mask = pseudo_labels(probs, threshold)
    ce = keras.losses.sparse_categorical_crossentropy(labels, logits_strong, from_logits=True)
    return keras.ops.mean(mask * ce), keras.ops.mean(mask)


@keras.saving.register_keras_serializable(package="course_lib")
class Cutout(keras.layers.Layer):
    """Cutout (DeVries & Taylor 2017): fill one random ``size`` x ``size`` square per image with ``fill``.

    The square's centre is uniform over the image, so the square may be partly outside.
    Active only in training (``training=True``), like Keras' own random layers. Part of
    :func:`strong_augmentation` (FixMatch's strong augmentation ends with Cutout).
    """

    def __init__(self, size: int, fill: float = 0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.size = check_positive_int(size, "size")
        self.fill = float(fill)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        shape = keras.ops.shape(images)
        b, h, w = shape[0], shape[1], shape[2]
        cy = keras.random.randint((b, 1, 1), 0, h, seed=self.seed_generator)
        cx = keras.random.randint((b, 1, 1), 0, w, seed=self.seed_generator)
        rows = keras.ops.reshape(keras.ops.arange(h), (1, -1, 1))
        cols = keras.ops.reshape(keras.ops.arange(w), (1, 1, -1))
        half = self.size // 2
        inside = (keras.ops.abs(rows - cy) <= half) & (keras.ops.abs(cols - cx) <= half)
        if self.size % 2 == 0:  # an even square spans [c - half, c + half)
            inside = inside & (rows - cy < half) & (cols - cx < half)
        inside = keras.ops.cast(keras.ops.expand_dims(inside, -1), images.dtype)
        return images * (1.0 - inside) + self.fill * inside

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "fill": self.fill, "seed": self.seed}


def weak_augmentation(max_shift: float = 0.125, flip: bool = True, seed: int = 0):
    """FixMatch's weak augmentation: a random horizontal flip and a shift of up to ``max_shift``.

    ``max_shift`` is a fraction of the image size (the paper: 12.5%, i.e. 4 of 32 pixels),
    with reflected borders. ``flip=False`` for images whose mirror is another class or no
    class at all (digits, text; the paper drops the flip for SVHN). A ``keras.Sequential``
    of Keras' random layers, active in training only. Used in notebook 10.
    """
    if not 0.0 <= max_shift < 1.0:
        raise ValueError(f"max_shift must be a fraction of the image size in [0, 1); got {max_shift!r}.")
    steps = [keras.layers.RandomFlip("horizontal", seed=seed)] if flip else []
    steps.append(keras.layers.RandomTranslation(max_shift, max_shift, fill_mode="reflect", seed=seed + 1))
    return keras.Sequential(steps, name="weak_augmentation")


def strong_augmentation(max_shift: float = 0.25, rotation: float = 0.08, zoom: float = 0.2,
                        contrast: float = 0.5, cutout: int = 3, flip: bool = True, seed: int = 0):
    """A strong augmentation in the spirit of RandAugment + Cutout (Cubuk et al. 2020; Sohn et al. 2020).

    Flip (optional), a shift of up to ``max_shift``, a rotation of up to ``rotation`` turns,
    a zoom of up to ``zoom``, a contrast change of up to ``contrast``, then a
    ``cutout`` x ``cutout`` Cutout square (0: none). Every transform is applied at a
    random strength to every image, which distorts it far more than
    :func:`weak_augmentation` while (for these ranges) keeping its class. A
    ``keras.Sequential``, active in training only. Used in notebook 10.
    """
    for name, value in (("max_shift", max_shift), ("rotation", rotation), ("zoom", zoom), ("contrast", contrast)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1); got {value!r}.")
    if isinstance(cutout, bool) or not isinstance(cutout, (int, np.integer)) or cutout < 0:
        raise ValueError(f"cutout must be a square size in pixels >= 0 (0: no cutout); got {cutout!r}.")
    steps = [keras.layers.RandomFlip("horizontal", seed=seed)] if flip else []
    steps.append(keras.layers.RandomTranslation(max_shift, max_shift, fill_mode="constant", seed=seed + 1))
    if rotation > 0:
        steps.append(keras.layers.RandomRotation(rotation, fill_mode="constant", seed=seed + 2))
    if zoom > 0:
        steps.append(keras.layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 3))
    if contrast > 0:
        steps.append(keras.layers.RandomContrast(contrast, value_range=(0.0, 1.0), seed=seed + 4))
    if cutout > 0:
        steps.append(Cutout(int(cutout), seed=seed + 5))
    return keras.Sequential(steps, name="strong_augmentation")


def ssl_dataset(x_labelled, y_labelled, x_unlabelled, batch_size: int = 32, mu: int = 7, seed: int = 0):
    """An endless tf.data stream of ``((x_l, y_l), x_u)``: B labelled and :math:`\\mu B` unlabelled images.

    Both parts are repeated and shuffled independently, so the few labelled images cycle
    many times while the unlabelled ones pass about once per :math:`\\mu B`-sized sweep (the
    FixMatch batch: B = 64, :math:`\\mu` = 7 in the paper). Fit it with
    ``steps_per_epoch``. Every iterator of the stream yields the same sequence, so several
    ``fit`` calls on one stream are reproducible. Used with :class:`SemiSupervisedTrainer`
    (notebook 10).
    """
    from .validation import check_images

    x_labelled = check_images(x_labelled, "x_labelled")
    x_unlabelled = check_images(x_unlabelled, "x_unlabelled")
    y_labelled = class_ids(y_labelled, name="y_labelled")  # (N,), (N, 1) or one-hot -> ids (N,)
    if len(y_labelled) != len(x_labelled):
        raise ValueError(f"x_labelled ({len(x_labelled)}) and y_labelled ({len(y_labelled)}) must have the same length.")
    if x_labelled.shape[1:] != x_unlabelled.shape[1:]:
        raise ValueError(f"labelled images {x_labelled.shape[1:]} and unlabelled images {x_unlabelled.shape[1:]} "
                         "must have the same shape.")
    batch_size = check_positive_int(batch_size, "batch_size")
    mu = check_positive_int(mu, "mu")
    lab = tf.data.Dataset.from_tensor_slices((x_labelled, y_labelled.astype(np.int32)))
    # repeat() first, then ONE seeded shuffle of the endless stream that every new iterator
    # starts afresh: shuffle().repeat() with reshuffle_each_iteration=True shares its seed
    # state across iterators, so a second fit() on the same stream got an order that
    # depended on how far the first one's prefetch had read ahead (a timing race).
    lab = lab.repeat().shuffle(len(x_labelled), seed=seed, reshuffle_each_iteration=False).batch(batch_size)
    unl = tf.data.Dataset.from_tensor_slices(x_unlabelled)
    unl = unl.repeat().shuffle(len(x_unlabelled), seed=seed + 1, reshuffle_each_iteration=False).batch(mu * batch_size)
    return tf.data.Dataset.zip((lab, unl)).prefetch(tf.data.AUTOTUNE)


def _sparse_labels(y):
    """Labels (B,), (B, 1) or one-hot (B, K) as int32 ids (B,) inside a train / test step (static shapes)."""
    if len(y.shape) == 2 and y.shape[-1] == 1:
        return keras.ops.cast(keras.ops.reshape(y, (-1,)), "int32")
    if len(y.shape) == 2:
        return keras.ops.cast(keras.ops.argmax(y, axis=-1), "int32")
    if len(y.shape) != 1:
        raise ValueError(f"labels must be class ids (B,) or (B, 1), or one-hot (B, K); got shape {tuple(y.shape)}.")
    return keras.ops.cast(y, "int32")


@keras.saving.register_keras_serializable(package="course_lib")
class SemiSupervisedTrainer(keras.Model):
    """One training loop for the semi-supervised methods of notebook 10, written out in ``train_step``.

    Wraps a classifier (images -> logits) and shares its weights. It is fitted on
    :func:`ssl_dataset` batches ``((x_l, y_l), x_u)``; the loss is

    :math:`L = \\frac1B \\sum_b H(y_b, p(y \\mid \\alpha(x_b))) + w_t\\, \\ell_u`,

    the supervised cross-entropy on weakly augmented (:math:`\\alpha`) labelled images plus
    the unlabelled term of ``method``:

    * ``"supervised"``: none (the baseline: same augmentation, same steps);
    * ``"entropy"``: :func:`entropy_loss` of the predictions on :math:`\\alpha(u)`;
    * ``"consistency"``: :func:`consistency_loss` between two weak augmentations of :math:`u`;
    * ``"pseudo_label"``: cross-entropy with the argmax of the prediction on :math:`\\alpha(u)`
      (Lee 2013; every prediction, no threshold);
    * ``"fixmatch"``: :func:`fixmatch_unlabelled_loss` of :math:`\\alpha(u)` and the strongly
      augmented :math:`\\mathcal A(u)`, with threshold :math:`\\tau` = ``threshold``;
    * ``"mixup"``: no unlabelled term; the labelled batch is mixed with a permutation of
      itself (:func:`mixup_batch`, :math:`\\lambda \\sim \\mathrm{Beta}(\\alpha, \\alpha)` with
      :math:`\\alpha` = ``mixup_alpha``).

    :math:`w_t` = ``weight`` times a linear ramp from 0 over the first ``ramp_up_steps``
    steps (Lee 2013 and Laine & Aila 2017 ramp it up: early predictions are poor
    targets); FixMatch needs none (``ramp_up_steps=0``). All images of a step go through
    the classifier in one batch. Logs ``loss``, ``supervised_loss``, ``unlabelled_loss``,
    ``mask_rate`` (share of unlabelled images used) and ``accuracy`` (not for mixup: a mixed
    image has no single label to score). Evaluation
    (validation data, ``evaluate``) is plain cross-entropy and accuracy. Notebook 10.
    """

    def __init__(self, model, method: str = "fixmatch", weight: float = 1.0, threshold: float = 0.95,
                 weak=None, strong=None, mixup_alpha: float = 0.5, ramp_up_steps: int = 0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise ValueError(f"model must be a keras.Model (images -> logits); got {type(model).__name__}.")
        if method not in SSL_METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(SSL_METHODS)}.")
        if not weight >= 0:
            raise ValueError(f"weight (of the unlabelled term) must be >= 0; got {weight!r}.")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1]; got {threshold!r}.")
        if not mixup_alpha > 0:
            raise ValueError(f"mixup_alpha must be positive (the Beta(alpha, alpha) parameter); got {mixup_alpha!r}.")
        if isinstance(ramp_up_steps, bool) or not isinstance(ramp_up_steps, (int, np.integer)) or ramp_up_steps < 0:
            raise ValueError(f"ramp_up_steps must be an integer >= 0; got {ramp_up_steps!r}.")
        self.model = model
        self.method, self.weight, self.threshold = method, float(weight), float(threshold)
        self.mixup_alpha, self.ramp_up_steps = float(mixup_alpha), int(ramp_up_steps)
        self.weak = weak if weak is not None else weak_augmentation(seed=seed)
        self.strong = strong if strong is not None else strong_augmentation(seed=seed + 10)
        self.seed_generator = keras.random.SeedGenerator(seed + 20)
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("loss", "supervised_loss", "unlabelled_loss", "mask_rate")}
        self.trackers["accuracy"] = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _ramp(self):
        if self.ramp_up_steps == 0:
            return 1.0
        step = keras.ops.cast(self.optimizer.iterations, "float32")
        return keras.ops.minimum(1.0, step / float(self.ramp_up_steps))

    def _views(self, xl, xu):
        """The augmented batches the method needs: labelled first, then the unlabelled views."""
        views = [self.weak(xl, training=True)]
        if self.method in ("entropy", "pseudo_label"):
            views.append(self.weak(xu, training=True))
        elif self.method == "consistency":
            views += [self.weak(xu, training=True), self.weak(xu, training=True)]
        elif self.method == "fixmatch":
            views += [self.weak(xu, training=True), self.strong(xu, training=True)]
        return views

    def _ssl_losses(self, xl, yl, xu):
        yl = _sparse_labels(yl)
        views = self._views(xl, xu)
        n = [keras.ops.shape(v)[0] for v in views]
        targets = keras.ops.one_hot(yl, self.model.output_shape[-1])
        if self.method == "mixup":
            b = n[0]
            lam = keras.random.beta((b,), self.mixup_alpha, self.mixup_alpha, seed=self.seed_generator)
            perm = keras.ops.argsort(keras.random.uniform((b,), seed=self.seed_generator))
            views[0], targets = mixup_batch(views[0], targets, lam, perm)
        logits = self.model(keras.ops.concatenate(views, axis=0), training=True)
        parts, start = [], 0
        for size in n:
            parts.append(logits[start:start + size])
            start = start + size
        sup = keras.ops.mean(keras.losses.categorical_crossentropy(targets, parts[0], from_logits=True))
        mask_rate = keras.ops.convert_to_tensor(0.0)
        if self.method == "entropy":
            unl = entropy_loss(parts[1])
        elif self.method == "consistency":
            unl = consistency_loss(parts[1], parts[2])
        elif self.method == "pseudo_label":
            unl, mask_rate = fixmatch_unlabelled_loss(parts[1], parts[1], threshold=0.0)
        elif self.method == "fixmatch":
            unl, mask_rate = fixmatch_unlabelled_loss(parts[1], parts[2], threshold=self.threshold)
        else:
            unl = keras.ops.convert_to_tensor(0.0)
        loss = sup + self.weight * self._ramp() * unl
        if self.losses:
            loss = loss + keras.ops.sum(keras.ops.stack(self.losses))
        return loss, sup, unl, mask_rate, parts[0]

    def train_step(self, data):
        (xl, yl), xu = data
        with tf.GradientTape() as tape:
            loss, sup, unl, mask_rate, logits_l = self._ssl_losses(xl, yl, xu)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        for key, value in (("loss", loss), ("supervised_loss", sup), ("unlabelled_loss", unl), ("mask_rate", mask_rate)):
            self.trackers[key].update_state(value)
        logs = {k: m.result() for k, m in self.trackers.items()}
        if self.method == "mixup":  # mixed images have no single label to score: no training accuracy
            logs.pop("accuracy")
        else:
            self.trackers["accuracy"].update_state(_sparse_labels(yl), logits_l)
            logs["accuracy"] = self.trackers["accuracy"].result()
        return logs

    def test_step(self, data):
        x, y = data[0], _sparse_labels(data[1])
        logits = self.model(x, training=False)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        self.trackers["loss"].update_state(loss)
        self.trackers["accuracy"].update_state(y, logits)
        return {"loss": self.trackers["loss"].result(), "accuracy": self.trackers["accuracy"].result()}


# --------------------------------------------------------- generative baseline: Gaussian mixture + EM


def _check_features(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"{name} must be a finite 2-D array (samples, features); got shape {x.shape}. "
                         "Flatten images or reduce them with sklearn.decomposition.PCA first.")
    return x


def gmm_e_step(x, weights, means, covariances):
    """E step: the responsibility of each mixture component for each sample.

    :math:`\\gamma_{ji} = \\alpha_i\\, \\mathcal N(x_j \\mid \\mu_i, \\Sigma_i) / \\sum_{l} \\alpha_l\\, \\mathcal N(x_j \\mid \\mu_l, \\Sigma_l)`
    (Zhou 2016, *Machine Learning*, eq. 13.5; Dempster, Laird & Rubin 1977). ``x`` is
    (N, D), ``weights`` (K,), ``means`` (K, D), ``covariances`` (K, D, D). Computed in
    log space (``scipy.special.logsumexp``) so far-away samples do not underflow to 0/0.
    Returns (N, K), rows summing to 1. Used by :class:`SemiSupervisedGMM` (notebook 10).
    """
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    x = _check_features(x, "x")
    weights, means, covariances = np.asarray(weights, float), np.asarray(means, float), np.asarray(covariances, float)
    k, d = means.shape
    if weights.shape != (k,) or covariances.shape != (k, d, d) or x.shape[1] != d:
        raise ValueError(f"shapes do not match: x {x.shape}, weights {weights.shape}, means {means.shape}, "
                         f"covariances {covariances.shape}; expected (N, D), (K,), (K, D), (K, D, D).")
    log_joint = np.stack([np.log(weights[i]) + multivariate_normal.logpdf(x, means[i], covariances[i])
                          for i in range(k)], axis=1).reshape(len(x), k)
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def gmm_m_step(x_labelled, y_labelled, x_unlabelled, responsibilities, num_classes: int, reg_covar: float = 1e-3):
    """M step of semi-supervised EM: one Gaussian per class from labelled *and* unlabelled samples.

    A labelled sample counts fully for its class; an unlabelled sample :math:`x_j` counts
    :math:`\\gamma_{ji}` for class :math:`i`. With :math:`l_i` labelled samples of class i and
    :math:`m` samples in all (Zhou 2016, eqs. 13.6-13.8):

    * :math:`\\mu_i = \\big(\\sum_{u} \\gamma_{ji} x_j + \\sum_{y_j = i} x_j\\big) / \\big(\\sum_u \\gamma_{ji} + l_i\\big)`;
    * :math:`\\Sigma_i` = the same weighted mean of :math:`(x_j - \\mu_i)(x_j - \\mu_i)^T`, plus
      ``reg_covar`` on the diagonal (as ``sklearn.mixture.GaussianMixture`` adds, so that
      :math:`\\Sigma_i` stays invertible);
    * :math:`\\alpha_i = (\\sum_u \\gamma_{ji} + l_i) / m`.

    Returns ``(weights, means, covariances)``. Used by :class:`SemiSupervisedGMM` (notebook 10).
    """
    x_labelled = _check_features(x_labelled, "x_labelled")
    x_unlabelled = _check_features(x_unlabelled, "x_unlabelled") if len(x_unlabelled) else \
        np.zeros((0, x_labelled.shape[1]))
    resp = np.asarray(responsibilities, dtype=np.float64).reshape(len(x_unlabelled), num_classes)
    onehot = np.eye(num_classes)[class_ids(y_labelled, num_classes, "y_labelled")]
    x = np.concatenate([x_labelled, x_unlabelled])
    r = np.concatenate([onehot, resp])  # labelled rows: one-hot; unlabelled rows: gamma
    counts = r.sum(axis=0)
    if (counts <= 0).any():
        raise ValueError(f"class {int(np.argmin(counts))} has no labelled sample and no responsibility: "
                         "every class needs at least one labelled example.")
    means = r.T @ x / counts[:, None]
    covariances = np.empty((num_classes, x.shape[1], x.shape[1]))
    for i in range(num_classes):
        diff = x - means[i]
        covariances[i] = (r[:, i, None] * diff).T @ diff / counts[i] + reg_covar * np.eye(x.shape[1])
    return counts / len(x), means, covariances


class SemiSupervisedGMM:
    """A generative semi-supervised classifier: one Gaussian per class, fitted by EM.

    All data, labelled or not, is assumed drawn from the mixture
    :math:`p(x) = \\sum_i \\alpha_i \\mathcal N(x \\mid \\mu_i, \\Sigma_i)`, component :math:`i` being
    class :math:`i`; the unknown labels of the unlabelled samples are the missing data of
    EM (Miller & Uyar 1997; Nigam et al. 2000; Zhou 2016, section 13.2). ``fit`` starts
    from the labelled samples alone (the M step with no unlabelled data), then alternates
    :func:`gmm_e_step` on the unlabelled samples and :func:`gmm_m_step` for ``n_iter``
    iterations, recording the log-likelihood (which EM never decreases) in
    ``log_likelihood_``. ``predict_proba`` is the E step (Bayes' rule). scikit-learn
    style. Used in notebook 10.
    """

    def __init__(self, num_classes: int, n_iter: int = 20, reg_covar: float = 1e-3):
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.n_iter = int(n_iter)
        if self.n_iter < 0:
            raise ValueError(f"n_iter must be >= 0 (0: labelled samples only); got {n_iter!r}.")
        if not reg_covar > 0:
            raise ValueError(f"reg_covar must be positive (it keeps covariances invertible); got {reg_covar!r}.")
        self.reg_covar = float(reg_covar)

    def _log_likelihood(self, x_labelled, y_labelled, x_unlabelled):
        from scipy.special import logsumexp
        from scipy.stats import multivariate_normal

        def log_joint(x):
            return np.stack([np.log(self.weights_[i]) + multivariate_normal.logpdf(x, self.means_[i], self.covariances_[i])
                             for i in range(self.num_classes)], axis=1).reshape(len(x), self.num_classes)

        ll = log_joint(x_labelled)[np.arange(len(x_labelled)), y_labelled].sum()
        if len(x_unlabelled):
            ll += logsumexp(log_joint(x_unlabelled), axis=1).sum()
        return float(ll)

    def fit(self, x_labelled, y_labelled, x_unlabelled):
        x_labelled = _check_features(x_labelled, "x_labelled")
        x_unlabelled = _check_features(x_unlabelled, "x_unlabelled")
        y_labelled = class_ids(y_labelled, self.num_classes, "y_labelled")
        if len(y_labelled) != len(x_labelled):
            raise ValueError(f"x_labelled ({len(x_labelled)}) and y_labelled ({len(y_labelled)}) must have the same length.")
        if x_unlabelled.shape[1] != x_labelled.shape[1]:
            raise ValueError(f"labelled ({x_labelled.shape[1]}) and unlabelled ({x_unlabelled.shape[1]}) samples "
                             "must have the same number of features.")
        empty = np.zeros((0, self.num_classes))
        self.weights_, self.means_, self.covariances_ = gmm_m_step(
            x_labelled, y_labelled, x_unlabelled[:0], empty, self.num_classes, self.reg_covar)
        self.log_likelihood_ = [self._log_likelihood(x_labelled, y_labelled, x_unlabelled)]
        for _ in range(self.n_iter):
            resp = gmm_e_step(x_unlabelled, self.weights_, self.means_, self.covariances_)
            self.weights_, self.means_, self.covariances_ = gmm_m_step(
                x_labelled, y_labelled, x_unlabelled, resp, self.num_classes, self.reg_covar)
            self.log_likelihood_.append(self._log_likelihood(x_labelled, y_labelled, x_unlabelled))
        return self

    def predict_proba(self, x):
        if not hasattr(self, "means_"):
            raise ValueError("this SemiSupervisedGMM is not fitted yet: call fit(x_labelled, y_labelled, x_unlabelled).")
        return gmm_e_step(x, self.weights_, self.means_, self.covariances_)

    def predict(self, x):
        return self.predict_proba(x).argmax(axis=1)


# ------------------------------------------------------------------ exercise references
# Notebook 10's exercises, for the student versions to fall back on until an exercise is
# answered (course_lib.exercises.answer_or_reference).


def confident_pseudo_labels(probs, tau: float):
    """``(labels, mask)`` as NumPy: argmax class per row, 1.0 where max p >= tau else 0.0.

    :func:`pseudo_labels` (FixMatch's confidence mask, Sohn et al. 2020, eq. 4) with
    int64 labels and float64 mask. Notebook 10, exercise 1.
    """
    labels, mask = pseudo_labels(np.asarray(probs, np.float32), tau)
    return np.asarray(labels).astype(np.int64), np.asarray(mask).astype(np.float64)


def sharpen_np(p, T: float) -> np.ndarray:
    """MixMatch's Sharpen(p, T) = p**(1/T) / sum_j p_j**(1/T) row by row, float64 NumPy.

    Berthelot et al. (2019), eq. 7, computed like :func:`sharpen` as softmax(log p / T)
    so small T cannot overflow. Notebook 10, exercise 2.
    """
    p = np.asarray(p, np.float64)
    if p.ndim != 2 or (p < 0).any():
        raise ValueError(f"p must be (B, K) probabilities; got shape {p.shape}.")
    if not T > 0:
        raise ValueError(f"T must be positive; got {T!r}.")
    with np.errstate(divide="ignore"):
        z = np.log(p) / T
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
