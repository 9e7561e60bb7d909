"""Adversarial examples: the fast gradient sign method (FGSM) and adversarial training (notebook 08).

Activation maximization (notebook 08, section 5) follows the gradient of a score with
respect to the *pixels* to raise it. An adversarial example uses the same gradient, of the
loss this time, to hurt the prediction of a correctly classified image with a change too
small to see. Goodfellow, Shlens and Szegedy (ICLR 2015) take one step of size ``eps`` in
the direction of the gradient's sign, the largest change allowed when no pixel may move
by more than ``eps`` (an L-infinity budget)::

    x_adv = clip(x + eps * sign(grad_x J(theta, x, y)), 0, 1)

* :func:`loss_gradient`: grad_x J for a batch, J the cross-entropy of the logits.
* :func:`fgsm_step`: the step itself, in NumPy, given the gradient.
* :func:`fgsm`: both, for a Keras classifier.
* :func:`accuracy_under_attack`: accuracy on FGSM images at several ``eps`` (one gradient).
* :class:`AdversarialTrainer`: fine-tuning on the paper's mixed objective
  alpha J(x, y) + (1 - alpha) J(x_adv, y), x_adv regenerated at every step.

Conventions: images float32 in [0, 1], (N, H, W, C); ``eps`` on the same [0, 1] pixel
scale (8/255 = 0.031 is "8 grey levels"); models output logits (CONTRIBUTING). The
gradient is taken with the model in inference mode (``training=False``: batch norm uses its
moving statistics), the model that is attacked at test time.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from .validation import check_images, check_positive_int, class_ids


def _check_eps(eps, name: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) \
            or not math.isfinite(eps) or not 0 <= eps <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], on the scale of the [0, 1] pixels (e.g. 8/255 = 0.031 "
                         f"for 8 grey levels); got {eps!r}.")
    return float(eps)


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model classifier that outputs logits; got {type(model).__name__}.")
    last = model.layers[-1] if model.layers else None
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax) or activation in (keras.activations.softmax, keras.activations.sigmoid):
        raise ValueError(f"model {model.name!r} ends in a softmax or sigmoid; FGSM needs the logits (the course's "
                         "classifiers output logits: build the last Dense layer without an activation).")
    return model


def _check_labels(labels, n: int, num_classes: int | None = None):
    labels = class_ids(labels, num_classes)
    if len(labels) != n:
        raise ValueError(f"labels must hold one class per image: {len(labels)} labels for {n} images.")
    return labels


def _gradient(model, x, y):
    """grad_x of the summed cross-entropy (so each image gets the gradient of its own loss); tensors in, out."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    return tape.gradient(loss, x), logits


def _fgsm_tensor(model, x, y, eps):
    """The FGSM images of a batch, as a tensor (no checks): used by :class:`AdversarialTrainer` inside ``fit``."""
    grad, _ = _gradient(model, x, y)
    return tf.stop_gradient(tf.clip_by_value(x + eps * tf.sign(grad), 0.0, 1.0))


def loss_gradient(model, images, labels, batch_size: int = 256) -> np.ndarray:
    """The gradient of each image's cross-entropy loss with respect to its pixels, grad_x J(theta, x, y).

    J is the cross-entropy of the model's logits against the true class, computed with the
    model in inference mode. Each image's gradient is that of its own loss (the batch sum is
    differentiated), so it does not depend on ``batch_size``.

    Parameters
    ----------
    model : keras.Model
        A classifier taking float32 images (N, H, W, C) in [0, 1] and returning logits (N, K).
    images : float array of shape (N, H, W, C), values in [0, 1]
        The images to differentiate at.
    labels : int array of shape (N,), (N, 1) or one-hot (N, K)
        The true classes.
    batch_size : int
        Images per forward and backward pass, >= 1.

    Returns
    -------
    gradient : float32 ndarray of shape (N, H, W, C)
        dJ/dx per pixel, in loss units per unit of pixel intensity.

    Raises
    ------
    ValueError
        ``model`` not a Keras model or ending in a softmax or sigmoid (it must output logits);
        ``images`` not float32-compatible (N, H, W, C) in [0, 1]; labels not one per image
        or not classes of the model; ``batch_size`` < 1; an output that is not (N, K) logits.

    References
    ----------
    I. J. Goodfellow, J. Shlens and C. Szegedy, "Explaining and harnessing adversarial
    examples", ICLR 2015, Sec. 4 (the gradient in eq. 3). Used in notebook 08.
    """
    model = _check_model(model)
    images = check_images(images)
    batch_size = check_positive_int(batch_size, "batch_size")
    probe = model(tf.constant(images[:1]), training=False)  # one image: the output's shape, before any loss
    if not tf.is_tensor(probe) or len(probe.shape) != 2:
        shape = tuple(probe.shape) if tf.is_tensor(probe) else type(probe).__name__
        raise ValueError(f"model must output one logits tensor of shape (N, K); got {shape}.")
    labels = _check_labels(labels, len(images), int(probe.shape[-1]))
    out = []
    for start in range(0, len(images), batch_size):
        x = tf.constant(images[start:start + batch_size])
        y = tf.constant(labels[start:start + batch_size])
        out.append(_gradient(model, x, y)[0].numpy().astype(np.float32))
    return np.concatenate(out)


def fgsm_step(images, gradient, eps: float) -> np.ndarray:
    """One fast-gradient-sign step: clip(x + eps * sign(gradient), 0, 1).

    Every pixel moves by exactly ``eps`` (up where the loss rises with it, down where it
    falls, not at all where the gradient is 0), then the image is clipped back to [0, 1].

    Parameters
    ----------
    images : float array of shape (N, H, W, C), values in [0, 1]
        The clean images x.
    gradient : float array of the shape of ``images``
        grad_x J(theta, x, y) at ``images``, e.g. from :func:`loss_gradient`; finite.
    eps : float
        The L-infinity budget on the [0, 1] pixel scale, in [0, 1]; 0 returns the images.

    Returns
    -------
    adversarial : float32 ndarray of shape (N, H, W, C), values in [0, 1]
        No pixel differs from ``images`` by more than ``eps``.

    Raises
    ------
    ValueError
        ``images`` not (N, H, W, C) float in [0, 1]; ``gradient`` of another shape or not
        finite; ``eps`` not a number in [0, 1].

    References
    ----------
    Goodfellow, Shlens and Szegedy, ICLR 2015, Sec. 4: eta = eps sign(grad_x J(theta, x, y)),
    the perturbation of the fast gradient sign method, clipped here to valid images. Used in
    notebook 08 (the reference solution of its FGSM exercise).
    """
    images = check_images(images)
    gradient = np.asarray(gradient, dtype=np.float32)
    if gradient.shape != images.shape:
        raise ValueError(f"gradient must have the images' shape {images.shape}; got {gradient.shape}.")
    if not np.isfinite(gradient).all():
        raise ValueError("gradient contains NaN or Inf; check the model and the loss it was taken of.")
    eps = _check_eps(eps)
    return np.clip(images + np.float32(eps) * np.sign(gradient), 0.0, 1.0).astype(np.float32)


def fgsm(model, images, labels, eps: float, batch_size: int = 256) -> np.ndarray:
    """Adversarial examples by the fast gradient sign method: clip(x + eps sign(grad_x J(theta, x, y)), 0, 1).

    Parameters
    ----------
    model : keras.Model
        A classifier that outputs logits, as in :func:`loss_gradient`.
    images : float array of shape (N, H, W, C), values in [0, 1]
        The clean images.
    labels : int array of shape (N,), (N, 1) or one-hot (N, K)
        Their true classes (the attack raises the loss of the true class).
    eps : float
        The L-infinity budget on the [0, 1] pixel scale, in [0, 1].
    batch_size : int
        Images per gradient pass, >= 1.

    Returns
    -------
    adversarial : float32 ndarray of shape (N, H, W, C), values in [0, 1]

    Raises
    ------
    ValueError
        As :func:`loss_gradient` (model, images, labels, ``batch_size``) and :func:`fgsm_step`
        (``eps`` not in [0, 1]).

    References
    ----------
    I. J. Goodfellow, J. Shlens and C. Szegedy, "Explaining and harnessing adversarial
    examples", ICLR 2015, Sec. 4. Used in notebook 08.
    """
    eps = _check_eps(eps)
    return fgsm_step(images, loss_gradient(model, images, labels, batch_size), eps)


def accuracy_under_attack(model, images, labels, epsilons, batch_size: int = 256) -> np.ndarray:
    """Accuracy of ``model`` on FGSM images, one value per budget in ``epsilons``.

    The FGSM direction sign(grad_x J) does not depend on eps, so the gradient is computed
    once and each budget costs one prediction pass. eps = 0 gives the clean accuracy.

    Parameters
    ----------
    model : keras.Model
        A classifier that outputs logits, as in :func:`loss_gradient`.
    images : float array of shape (N, H, W, C), values in [0, 1]
        The clean test images.
    labels : int array of shape (N,), (N, 1) or one-hot (N, K)
        Their true classes.
    epsilons : sequence of float
        Budgets on the [0, 1] pixel scale, each in [0, 1]; at least one.
    batch_size : int
        Images per pass, >= 1.

    Returns
    -------
    accuracy : float64 ndarray of shape (len(epsilons),)
        The share of images still classified correctly after the attack at each budget.

    Raises
    ------
    ValueError
        As :func:`loss_gradient`; ``epsilons`` empty or holding a value outside [0, 1].

    References
    ----------
    Goodfellow, Shlens and Szegedy, ICLR 2015, Sec. 4 and 6 (error rate under attack against
    eps). Used in notebook 08.
    """
    epsilons = [_check_eps(e, "each of epsilons") for e in np.atleast_1d(np.asarray(epsilons, dtype=object))]
    if not epsilons:
        raise ValueError("epsilons must hold at least one budget, e.g. [0, 0.02, 0.05].")
    gradient = loss_gradient(model, images, labels, batch_size)
    images, labels = check_images(images), class_ids(labels)
    accuracy = []
    for eps in epsilons:
        logits = model.predict(fgsm_step(images, gradient, eps), batch_size=batch_size, verbose=0)
        accuracy.append(float((np.argmax(logits, axis=-1) == labels).mean()))
    return np.asarray(accuracy, dtype=np.float64)


class AdversarialTrainer(keras.Model):
    """Adversarial training: fit a classifier on alpha J(x, y) + (1 - alpha) J(x_adv, y).

    Wraps a classifier that outputs logits and shares its weights: fitting the trainer
    trains ``model``. In each ``train_step`` the FGSM images of the batch are made from the
    *current* weights (:func:`fgsm` at ``eps``, inference mode, no gradient through them),
    then one optimizer step descends the mixed objective of Goodfellow et al. (2015, eq. 3)
    on the clean and the adversarial batch. ``test_step`` attacks the validation batch the
    same way, so ``fit(..., validation_data=...)`` reports robustness as it trains. Logs
    ``loss`` (the mixed objective), ``accuracy`` (clean) and ``adv_accuracy`` (on the FGSM
    images), with ``val_`` twins. Compile with an optimizer only: the loss is built in.

    Parameters
    ----------
    model : keras.Model
        The classifier, outputs logits (N, K).
    eps : float
        The FGSM budget used in training, on the [0, 1] pixel scale, in [0, 1].
    alpha : float
        Weight of the clean loss, in [0, 1]; the paper uses 0.5.
    **kwargs
        Passed to ``keras.Model`` (e.g. ``name``).

    Returns
    -------
    trainer : keras.Model
        Call ``compile(optimizer=...)`` and ``fit`` on it; predictions are ``model``'s.

    Raises
    ------
    ValueError
        ``model`` not a Keras classifier with logits; ``eps`` or ``alpha`` not in [0, 1].

    References
    ----------
    Goodfellow, Shlens and Szegedy, ICLR 2015, Sec. 5, eq. 3:
    J~(theta, x, y) = alpha J(theta, x, y) + (1 - alpha) J(theta, x + eps sign(grad_x J(theta, x, y)), y).
    Used in notebook 08.
    """

    def __init__(self, model, eps: float, alpha: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.model = _check_model(model)
        self.eps = _check_eps(eps)
        self.alpha = _check_eps(alpha, "alpha")
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.trackers = {
            "loss": keras.metrics.Mean(name="loss"),
            "accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            "adv_accuracy": keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy"),
        }

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _objective(self, x, x_adv, y, training):
        clean = self.model(x, training=training)
        adv = self.model(x_adv, training=training)
        loss = self.alpha * self.loss_fn(y, clean) + (1.0 - self.alpha) * self.loss_fn(y, adv)
        if self.model.losses:  # weight decay or other layer penalties, as compile adds them
            loss = loss + tf.add_n(self.model.losses)
        return loss, clean, adv

    def _update(self, y, loss, clean, adv):
        self.trackers["loss"].update_state(loss)
        self.trackers["accuracy"].update_state(y, clean)
        self.trackers["adv_accuracy"].update_state(y, adv)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        x, y = data[0], data[1]
        x_adv = _fgsm_tensor(self.model, x, y, self.eps)  # from the current weights
        with tf.GradientTape() as tape:
            loss, clean, adv = self._objective(x, x_adv, y, training=True)
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply(grads, self.model.trainable_variables)
        return self._update(y, loss, clean, adv)

    def test_step(self, data):
        x, y = data[0], data[1]
        x_adv = _fgsm_tensor(self.model, x, y, self.eps)
        return self._update(y, *self._objective(x, x_adv, y, training=False))
