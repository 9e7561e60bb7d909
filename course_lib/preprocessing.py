"""Input normalization and data augmentation, fitted on training data only (Day 2).

Normalizers follow scikit-learn's API: ``fit`` learns statistics from the *training*
images, ``transform`` applies them to any split, ``inverse_transform`` maps back to
displayable images. They are the classic choices for CNN inputs:

* :class:`MeanImage`: subtract the mean training image, an (H, W, C) array
  (Krizhevsky, Sutskever & Hinton 2012, AlexNet).
* :class:`ChannelMean`: subtract one mean per colour channel, C numbers
  (Simonyan & Zisserman 2014, VGG).
* :class:`ChannelStandardizer`: subtract the per-channel mean and divide by the
  per-channel standard deviation, C + C numbers (He et al. 2016, ResNet).
* :class:`PCAWhitening` and :class:`ZCAWhitening`: decorrelate the pixels and give
  every direction unit variance (Bell & Sejnowski 1997; Krizhevsky 2009, "Learning
  multiple layers of features from tiny images", appendix A).

Each normalizer's ``keras_layer()`` returns the same computation as Keras layers
(``keras.layers.Normalization``, or ``Flatten -> Dense -> Reshape`` for the whitening
maps) so that a model carries its preprocessing into the saved ``.keras`` file.

:func:`augmentation_pipeline` builds random label-preserving transformations from
Keras preprocessing layers; :func:`train_val_datasets` applies them on tf.data to the
training split only. Used in notebook 02 (and by later notebooks for augmentation).
"""

from __future__ import annotations

import numpy as np

from .data import make_dataset
from .validation import check_images, check_positive_int

# Keras' Normalization divides by max(std, this); we use the same floor so that our
# NumPy transform and the Keras layer agree on constant channels too.
STD_FLOOR = 1e-7


class _Normalizer:
    """Shared fit / transform / inverse_transform plumbing; subclasses do the maths."""

    def fit(self, images):
        """Learn the statistics from training ``images`` (N, H, W, C) in [0, 1]; return self."""
        x = check_images(images, name="training images")
        if len(x) < 2:
            raise ValueError(f"fit needs at least 2 training images to estimate statistics; got {len(x)}.")
        self.input_shape_ = tuple(x.shape[1:])
        self._fit(x.astype(np.float64))
        return self

    def transform(self, images):
        """Normalize ``images`` with the statistics learned by :meth:`fit`."""
        self._check_fitted("transform")
        x = check_images(images)
        self._check_shape(x.shape, "transform")
        return self._transform(x.astype(np.float64)).astype(np.float32)

    def fit_transform(self, images):
        """``fit(images).transform(images)``: use on the training split only."""
        return self.fit(images).transform(images)

    def inverse_transform(self, values):
        """Undo :meth:`transform` (to display normalized images as images)."""
        self._check_fitted("inverse_transform")
        z = np.asarray(values, dtype=np.float64)
        self._check_inverse_shape(z.shape)
        return self._inverse(z).astype(np.float32)

    # -- checks -----------------------------------------------------------------
    def _check_fitted(self, what):
        if not hasattr(self, "input_shape_"):
            raise ValueError(
                f"{type(self).__name__} is not fitted: call fit(training_images) before {what}. "
                "Fit on the training split only, then transform every split."
            )

    def _check_shape(self, shape, what):
        if tuple(shape[1:]) != self.input_shape_:
            raise ValueError(
                f"{type(self).__name__} was fitted on images of shape {self.input_shape_} (H, W, C) but "
                f"{what} got {tuple(shape[1:])}. Resize the images to the training size, or fit a new normalizer."
            )

    def _check_inverse_shape(self, shape):
        if len(shape) != 4:
            raise ValueError(f"inverse_transform expects normalized images (N, H, W, C); got shape {shape}.")
        self._check_shape(shape, "inverse_transform")

    def __repr__(self):
        state = "fitted" if hasattr(self, "input_shape_") else "not fitted"
        return f"{type(self).__name__}({state})"


class MeanImage(_Normalizer):
    """Subtract the mean training image: x' = x - mean_image (AlexNet, Krizhevsky et al. 2012).

    ``mean_`` has the images' own shape (H, W, C): one number per pixel and channel.
    """

    def _fit(self, x):
        self.mean_ = x.mean(axis=0)

    def _transform(self, x):
        return x - self.mean_

    def _inverse(self, z):
        return z + self.mean_

    def keras_layer(self, name="mean_image"):
        """A ``keras.layers.Normalization`` over axes (H, W, C) holding the mean image."""
        import keras

        self._check_fitted("keras_layer")
        return keras.layers.Normalization(
            axis=(1, 2, 3), mean=self.mean_.astype(np.float32), variance=np.ones(self.input_shape_, np.float32),
            name=name,
        )


class ChannelMean(_Normalizer):
    """Subtract one mean per channel, computed over all training pixels (VGG, Simonyan & Zisserman 2014).

    ``mean_`` has shape (C,): three numbers for RGB images.
    """

    def _fit(self, x):
        self.mean_ = x.mean(axis=(0, 1, 2))

    def _transform(self, x):
        return x - self.mean_

    def _inverse(self, z):
        return z + self.mean_

    def keras_layer(self, name="channel_mean"):
        """A per-channel ``keras.layers.Normalization`` with variance 1 (subtracts only)."""
        import keras

        self._check_fitted("keras_layer")
        c = self.input_shape_[-1]
        return keras.layers.Normalization(axis=-1, mean=self.mean_.astype(np.float32),
                                          variance=np.ones(c, np.float32), name=name)


class ChannelStandardizer(_Normalizer):
    """Per-channel standardization x' = (x - mean_c) / std_c (ResNet, He et al. 2016).

    ``mean_`` and ``std_`` have shape (C,); ``std_`` is the population standard
    deviation over all training pixels, exactly what ``keras.layers.Normalization.adapt``
    computes, so :meth:`keras_layer` and ``adapt`` give the same layer.

    A channel with zero training variance is divided by ``max(std, 1e-7)``, as Keras'
    ``Normalization`` does, and :meth:`fit` warns (``UserWarning`` naming the channel).
    scikit-learn's ``StandardScaler`` (on ``x.reshape(-1, C)``, same mean and population
    std otherwise) differs there: it sets such a channel's ``scale_`` to 1, so new
    images give x - mean where this class gives (x - mean) * 1e7. Training images give 0
    in both.
    """

    def _fit(self, x):
        self.mean_, self.std_ = channel_stats(x)
        flat = np.flatnonzero(self.std_ < STD_FLOOR)
        if flat.size:
            import warnings

            warnings.warn(f"channel(s) {flat.tolist()} have zero variance in the training images (constant "
                          f"{self.mean_[flat].round(6).tolist()}); they are divided by {STD_FLOOR} as in "
                          "keras.layers.Normalization, so any other value on new images becomes huge "
                          "(sklearn's StandardScaler would divide by 1). Drop the channel or check the data.",
                          UserWarning, stacklevel=3)

    def _transform(self, x):
        return (x - self.mean_) / np.maximum(self.std_, STD_FLOOR)

    def _inverse(self, z):
        return z * np.maximum(self.std_, STD_FLOOR) + self.mean_

    def keras_layer(self, name="channel_standardizer"):
        """A per-channel ``keras.layers.Normalization`` holding ``mean_`` and ``std_**2``."""
        import keras

        self._check_fitted("keras_layer")
        return keras.layers.Normalization(axis=-1, mean=self.mean_.astype(np.float32),
                                          variance=(self.std_**2).astype(np.float32), name=name)


class _Whitening(_Normalizer):
    """Eigen-decomposition of the pixel covariance of the centred, flattened training images.

    With the thin SVD X_c = U S V^T of the (N, D) centred data, the covariance
    X_c^T X_c / (N - 1) has eigenvectors V (``components_``, rows) and eigenvalues
    S^2 / (N - 1) (``variances_``), the convention of ``sklearn.decomposition.PCA``.
    """

    def __init__(self, eps: float = 1e-2):
        if not np.isfinite(eps) or eps < 0:
            raise ValueError(f"eps must be a finite number >= 0; got {eps!r}.")
        self.eps = float(eps)

    def _eigen(self, x):
        flat = x.reshape(len(x), -1)
        self.mean_ = flat.mean(axis=0)
        _, s, vt = np.linalg.svd(flat - self.mean_, full_matrices=False)
        # Fix each eigenvector's sign (largest |entry| positive) so results are reproducible.
        signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
        return s**2 / (len(x) - 1), vt * signs[:, None]


class PCAWhitening(_Whitening):
    """PCA whitening: z = diag(1 / sqrt(lambda + eps)) V_k^T (x - mean), k features per image.

    Projects each flattened image onto the ``n_components`` leading eigenvectors of the
    training covariance and divides by the square root of their variance, so the
    features are uncorrelated with (close to) unit variance. With ``eps=0`` this is
    ``sklearn.decomposition.PCA(whiten=True)``. ``transform`` returns (N, k) features;
    ``inverse_transform`` maps them back to (approximate) images.
    """

    def __init__(self, n_components: int | None = None, eps: float = 1e-2):
        super().__init__(eps)
        self.n_components = None if n_components is None else check_positive_int(n_components, "n_components")

    def _fit(self, x):
        variances, vt = self._eigen(x)
        k = len(variances) if self.n_components is None else self.n_components
        if k > len(variances):
            raise ValueError(
                f"n_components={k} but {len(x)} images of {int(np.prod(x.shape[1:]))} values allow at most "
                f"{len(variances)}; use fewer components or more training images."
            )
        if self.eps == 0 and variances[k - 1] <= 1e-12:
            raise ValueError("a kept component has zero variance; with eps=0 whitening divides by 0. Use eps > 0 "
                             "or fewer n_components.")
        self.variances_, self.components_ = variances[:k], vt[:k]
        self.scale_ = np.sqrt(self.variances_ + self.eps)

    def _transform(self, x):
        return (x.reshape(len(x), -1) - self.mean_) @ self.components_.T / self.scale_

    def _inverse(self, z):
        flat = (z * self.scale_) @ self.components_ + self.mean_
        return flat.reshape((len(z),) + self.input_shape_)

    def _check_inverse_shape(self, shape):
        k = len(self.components_)
        if len(shape) != 2 or shape[1] != k:
            raise ValueError(f"inverse_transform expects PCA features of shape (N, {k}); got {shape}.")

    def keras_layer(self, name="pca_whitening"):
        """``Flatten -> Dense(k)`` (frozen) computing the same features inside a model."""
        self._check_fitted("keras_layer")
        kernel = self.components_.T / self.scale_
        return _frozen_linear(self.input_shape_, kernel, -self.mean_ @ kernel, None, name)


class ZCAWhitening(_Whitening):
    """ZCA whitening: z = W (x - mean) with W = V diag(1 / sqrt(lambda + eps)) V^T.

    The whitening that stays closest to the original image (Bell & Sejnowski 1997):
    PCA whitening rotated back to pixel space, so the output is again an image, with
    edges enhanced. Directions with no training variance (when D > N) are scaled by
    1 / sqrt(eps), the limit of the same formula, so ``eps`` must be > 0 then.
    """

    def _fit(self, x):
        variances, vt = self._eigen(x)
        keep = variances > 1e-12 * max(variances.max(), 1e-300)
        self.variances_, self.components_ = variances[keep], vt[keep]
        self.full_rank_ = len(self.variances_) == self.mean_.size
        if self.eps == 0 and not self.full_rank_:
            raise ValueError(
                f"the training covariance is singular ({len(self.variances_)} of {self.mean_.size} directions have "
                "variance); ZCA needs eps > 0 here (1e-2 is a common choice for images in [0, 1])."
            )

    def _apply(self, flat, power):
        """(flat) @ V diag((lambda + eps)^power) V^T, plus eps^power on the null space."""
        proj = flat @ self.components_.T
        out = (proj * (self.variances_ + self.eps) ** power) @ self.components_
        if not self.full_rank_:
            out += (flat - proj @ self.components_) * self.eps**power
        return out

    def _transform(self, x):
        flat = x.reshape(len(x), -1) - self.mean_
        return self._apply(flat, -0.5).reshape(x.shape)

    def _inverse(self, z):
        flat = self._apply(z.reshape(len(z), -1), 0.5) + self.mean_
        return flat.reshape(z.shape)

    def matrix(self):
        """The (D, D) whitening matrix W (symmetric), built explicitly (D = H * W * C)."""
        self._check_fitted("matrix")
        return self._apply(np.eye(self.mean_.size), -0.5)

    def keras_layer(self, name="zca_whitening"):
        """``Flatten -> Dense(D) -> Reshape`` (frozen) applying W inside a model."""
        self._check_fitted("keras_layer")
        w = self.matrix()
        return _frozen_linear(self.input_shape_, w, -self.mean_ @ w, self.input_shape_, name)


def _frozen_linear(input_shape, kernel, bias, output_shape, name):
    """A built, non-trainable ``keras.Sequential`` computing flatten(x) @ kernel + bias (reshaped)."""
    import keras

    layers = [keras.Input(shape=input_shape), keras.layers.Flatten(),
              keras.layers.Dense(kernel.shape[1], trainable=False, name=f"{name}_dense")]
    if output_shape is not None:
        layers.append(keras.layers.Reshape(output_shape))
    block = keras.Sequential(layers, name=name)
    block.get_layer(f"{name}_dense").set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return block


# ------------------------------------------------------------------ augmentation


def augmentation_pipeline(flip: str | None = "horizontal", rotation: float = 0.05, zoom: float = 0.1,
                          translation: float = 0.1, contrast: float = 0.1, seed: int = 0):
    """A ``keras.Sequential`` of random, label-preserving transformations for training images.

    Each argument is a Keras preprocessing layer's strength (0 or None leaves it out):
    ``flip`` ("horizontal", "vertical", "horizontal_and_vertical"), ``rotation`` (fraction
    of a full turn), ``zoom`` and ``translation`` (fraction of the image size), ``contrast``
    (factor range). Flips and rotations must not change the class: no flips for digits.
    Outputs stay in [0, 1] (reflective fill, clipped contrast). Random cropping and
    flipping are the augmentations of AlexNet (Krizhevsky et al. 2012). Used in notebook 02.
    """
    import keras

    flips = (None, "horizontal", "vertical", "horizontal_and_vertical")
    if flip not in flips:
        raise ValueError(f"flip must be one of {flips}; got {flip!r}.")
    for name, value in (("rotation", rotation), ("zoom", zoom), ("translation", translation), ("contrast", contrast)):
        if value is not None and not (0 <= value < 1):
            raise ValueError(f"{name} must be in [0, 1) (a fraction), or 0 / None to leave it out; got {value!r}.")
    steps = []
    if flip:
        steps.append(keras.layers.RandomFlip(flip, seed=seed))
    if rotation:
        steps.append(keras.layers.RandomRotation(rotation, fill_mode="reflect", seed=seed + 1))
    if zoom:
        steps.append(keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=seed + 2))
    if translation:
        steps.append(keras.layers.RandomTranslation(translation, translation, fill_mode="reflect", seed=seed + 3))
    if contrast:
        steps.append(keras.layers.RandomContrast(contrast, value_range=(0, 1), seed=seed + 4))
    if not steps:
        raise ValueError("every augmentation is switched off; pass at least one non-zero strength.")
    return keras.Sequential(steps, name="augmentation")


def train_val_datasets(x_train, y_train, x_val, y_val, augment=None, batch_size: int = 64, seed: int = 0):
    """Two tf.data pipelines: training (shuffled, ``augment``-ed) and validation (as is).

    Augmentation belongs to the training split only: validation and test images must be
    the real ones, or the measured accuracy is that of a different task. Built with
    :func:`course_lib.data.make_dataset`. Used in notebook 02.
    """
    train = make_dataset(x_train, y_train, batch_size=batch_size, shuffle=True, augment=augment, seed=seed)
    val = make_dataset(x_val, y_val, batch_size=batch_size, shuffle=False)
    return train, val


# ------------------------------------------------------------------ exercise references
# Notebook 01's and 02's exercises, for the student versions to fall back on until an
# exercise is answered (course_lib.exercises.answer_or_reference).


def adjust_contrast(images, factor: float) -> np.ndarray:
    """Contrast change about each image's own per-channel mean, clipped to [0, 1].

    ``clip(m + factor * (x - m), 0, 1)`` with m the mean over the pixels of one image and
    channel: what ``tf.image.adjust_contrast`` computes, then clipped. ``images`` (N, H, W, C);
    float32 of the same shape. Notebook 01, exercise 2.
    """
    images = check_images(images)
    mean = images.mean(axis=(1, 2), keepdims=True)
    return np.clip(mean + factor * (images - mean), 0.0, 1.0).astype(np.float32)


def channel_stats(images):
    """Per-channel mean and population std over all images and pixels: two (C,) float64 arrays.

    The statistics :class:`ChannelStandardizer` fits (ResNet's per-channel
    standardization, He et al. 2016). Notebook 02, exercise 1.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C); got shape {images.shape}.")
    return images.mean(axis=(0, 1, 2)), images.std(axis=(0, 1, 2))


def standardize(images, mean, std) -> np.ndarray:
    """(images - mean) / std channel by channel (the last axis), float64, no floor on std.

    Apply the *training* split's :func:`channel_stats` to every split. Notebook 02, exercise 1.
    """
    return (np.asarray(images, dtype=np.float64) - mean) / std
