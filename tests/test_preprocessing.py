"""Normalizers against NumPy / scikit-learn / Keras, their Keras layers, and the augmentation pipeline."""

import numpy as np
import pytest

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from course_lib import data  # noqa: E402
from course_lib import preprocessing as P  # noqa: E402


@pytest.fixture(scope="module")
def images():
    return data.make_cluttered_digits(120, image_size=12, digit_size=(6, 9), n_clutter=2, seed=0).images


@pytest.fixture(scope="module")
def other_images():
    return data.make_cluttered_digits(30, image_size=12, digit_size=(6, 9), n_clutter=2, seed=1).images


ALL = [P.MeanImage, P.ChannelMean, P.ChannelStandardizer, P.PCAWhitening, P.ZCAWhitening]


def test_mean_image_and_channel_statistics(images, other_images):
    mi = P.MeanImage().fit(images)
    np.testing.assert_allclose(mi.mean_, images.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(mi.transform(other_images), other_images - images.mean(axis=0), atol=1e-6)
    cm = P.ChannelMean().fit(images)
    assert cm.mean_.shape == (3,)
    np.testing.assert_allclose(cm.transform(images).mean(axis=(0, 1, 2)), 0.0, atol=1e-6)
    cs = P.ChannelStandardizer().fit(images)
    z = cs.transform(images)
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1.0, atol=1e-5)
    # the test split uses the *training* statistics: its own mean is not forced to 0
    assert np.abs(cs.transform(other_images).mean(axis=(0, 1, 2))).max() > 1e-3


def test_channel_standardizer_equals_adapted_keras_normalization(images):
    cs = P.ChannelStandardizer().fit(images)
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(images)
    np.testing.assert_allclose(np.ravel(norm.mean), cs.mean_, rtol=1e-5)
    np.testing.assert_allclose(np.ravel(norm.variance), cs.std_**2, rtol=1e-4)
    np.testing.assert_allclose(norm(images).numpy(), cs.transform(images), atol=1e-4)


def test_channel_standardizer_zero_variance_warns_and_differs_from_sklearn_as_documented(images, other_images):
    """Issue 16, kind 6: Keras' division by 1e-7 is kept, with a warning; StandardScaler divides by 1."""
    import warnings

    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when every channel varies
        P.ChannelStandardizer().fit(images)
    flat = images.copy()
    flat[..., 1] = 0.25
    with pytest.warns(UserWarning, match=r"channel\(s\) \[1\] have zero variance .*constant \[0.25\].*1e-07"):
        cs = P.ChannelStandardizer().fit(flat)
    sk = StandardScaler().fit(flat.reshape(-1, 3).astype(np.float64))
    np.testing.assert_allclose(cs.mean_, sk.mean_, rtol=1e-12)
    np.testing.assert_allclose(cs.std_[[0, 2]], sk.scale_[[0, 2]], rtol=1e-12)  # the varying channels agree
    assert cs.std_[1] == 0.0 and sk.scale_[1] == 1.0  # the documented difference
    np.testing.assert_allclose(cs.transform(flat)[..., 1], 0.0)  # training images: 0 in both
    new = other_images.copy()
    new[..., 1] = 0.5
    np.testing.assert_allclose(cs.transform(new)[..., 1], (0.5 - 0.25) / 1e-7, rtol=1e-5)
    np.testing.assert_allclose(sk.transform(new.reshape(-1, 3))[:, 1], 0.5 - 0.25, rtol=1e-12)
    norm = keras.layers.Normalization(axis=-1)  # and Keras, adapted on the same images, divides by 1e-7 too
    norm.adapt(flat)
    np.testing.assert_allclose(norm(new).numpy()[..., 1], cs.transform(new)[..., 1], rtol=1e-3)


def test_pca_whitening_equals_sklearn(images, other_images):
    ours = P.PCAWhitening(n_components=40, eps=0.0).fit(images)
    ref = PCA(n_components=40, whiten=True, svd_solver="full").fit(images.reshape(len(images), -1).astype("float64"))
    a = ours.transform(other_images)
    b = ref.transform(other_images.reshape(len(other_images), -1))
    signs = np.sign((a * b).sum(axis=0))  # eigenvectors are defined up to sign
    np.testing.assert_allclose(a * signs, b, atol=1e-4)
    np.testing.assert_allclose(ours.variances_, ref.explained_variance_, rtol=1e-6)
    z = ours.transform(images)  # on the training data: unit variance, uncorrelated
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(40), atol=1e-4)


def test_zca_whitens_and_stays_an_image():
    x, _ = data.load_digits()
    x = x[:600]
    zca = P.ZCAWhitening(eps=1e-6).fit(x)  # 64 pixels, 600 images
    z = zca.transform(x)
    assert z.shape == x.shape
    flat = z.reshape(len(z), -1)
    cov = np.cov(flat, rowvar=False)
    live = zca.variances_.size  # pixels that are always 0 stay 0: compare on the live subspace
    eig = np.linalg.eigvalsh(cov)[-live:]
    # each direction's variance becomes lambda / (lambda + eps): 1 where lambda >> eps
    expected = np.sort(zca.variances_ / (zca.variances_ + zca.eps))
    np.testing.assert_allclose(eig, expected, atol=1e-5)
    assert (expected[zca.variances_[::-1] > 1e-3] > 0.999).all()
    w = zca.matrix()
    np.testing.assert_allclose(w, w.T, atol=1e-10)  # symmetric: the "zero-phase" property


def test_zca_equals_pca_whitening_rotated_back(images):
    zca = P.ZCAWhitening(eps=1e-2).fit(images)
    pca = P.PCAWhitening(eps=1e-2).fit(images)
    z_pca = pca.transform(images).astype("float64")
    rotated = (z_pca @ pca.components_).reshape(images.shape)
    # equal on the data's own subspace (the training images have no null-space component)
    np.testing.assert_allclose(zca.transform(images), rotated, atol=1e-4)


@pytest.mark.parametrize("cls", ALL)
def test_inverse_transform_round_trip(cls, images, other_images):
    norm = cls().fit(images)
    back = norm.inverse_transform(norm.transform(other_images))
    if cls is P.PCAWhitening:  # all components kept, but the test images leave the training span
        back = norm.inverse_transform(norm.transform(images))
        np.testing.assert_allclose(back, images, atol=1e-4)
    else:
        np.testing.assert_allclose(back, other_images, atol=1e-4)


@pytest.mark.parametrize("cls", ALL)
def test_keras_layer_matches_and_survives_saving(cls, images, other_images, tmp_path):
    norm = cls().fit(images)
    inp = keras.Input(images.shape[1:])
    model = keras.Model(inp, norm.keras_layer()(inp))
    expected = norm.transform(other_images)
    np.testing.assert_allclose(model.predict(other_images, verbose=0), expected, atol=1e-4)
    model.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(back.predict(other_images, verbose=0), expected, atol=1e-4)


@pytest.mark.parametrize("cls", ALL)
def test_transform_before_fit_and_wrong_shape_raise(cls, images):
    with pytest.raises(ValueError, match="not fitted: call fit\\(training_images\\) before transform"):
        cls().transform(images)
    with pytest.raises(ValueError, match="not fitted"):
        cls().inverse_transform(images)
    norm = cls().fit(images)
    with pytest.raises(ValueError, match="fitted on images of shape \\(12, 12, 3\\).*got \\(12, 12, 1\\)"):
        norm.transform(images[..., :1])
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        norm.transform(images * 255)
    with pytest.raises(ValueError, match="at least 2 training images"):
        cls().fit(images[:1])


def test_whitening_bad_arguments(images):
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        P.ZCAWhitening(eps=-1)
    with pytest.raises(ValueError, match="n_components=500 but 120 images"):
        P.PCAWhitening(n_components=500).fit(images)
    with pytest.raises(ValueError, match="ZCA needs eps > 0"):
        P.ZCAWhitening(eps=0).fit(images)  # 432 pixels, 120 images: singular covariance
    with pytest.raises(ValueError, match="n_components must be a positive integer"):
        P.PCAWhitening(n_components=0)
    with pytest.raises(ValueError, match="PCA features of shape \\(N, 5\\)"):
        P.PCAWhitening(n_components=5).fit(images).inverse_transform(np.zeros((2, 6)))


# ------------------------------------------------------------------ augmentation
def test_augmentation_keeps_shape_range_and_changes_images(images):
    aug = P.augmentation_pipeline(flip="horizontal", rotation=0.1, zoom=0.1, translation=0.1, contrast=0.2)
    out = aug(images[:16], training=True).numpy()
    assert out.shape == (16, 12, 12, 3) and np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - images[:16]).mean() > 1e-3
    np.testing.assert_array_equal(aug(images[:16], training=False).numpy(), images[:16])  # inference: identity


def test_train_val_datasets_augment_training_only(images):
    labels = np.arange(len(images)) % 10
    aug = P.augmentation_pipeline(flip=None, rotation=0.0, zoom=0.0, translation=0.2, contrast=0.0)
    train, val = P.train_val_datasets(images, labels, images, labels, augment=aug, batch_size=32)
    x_val = np.concatenate([x.numpy() for x, _ in val])
    np.testing.assert_array_equal(x_val, images)  # validation images untouched, in order
    x_tr, y_tr = (np.concatenate(parts) for parts in zip(*[(x.numpy(), y.numpy()) for x, y in train]))
    assert x_tr.shape == images.shape and sorted(y_tr) == sorted(labels)
    assert not any(np.array_equal(x_tr[i], images[j]) for i in range(8) for j in range(len(images)))


def test_augmentation_bad_arguments():
    with pytest.raises(ValueError, match="flip must be one of"):
        P.augmentation_pipeline(flip="diagonal")
    with pytest.raises(ValueError, match="rotation must be in \\[0, 1\\)"):
        P.augmentation_pipeline(rotation=1.5)
    with pytest.raises(ValueError, match="every augmentation is switched off"):
        P.augmentation_pipeline(flip=None, rotation=0, zoom=0, translation=0, contrast=0)
