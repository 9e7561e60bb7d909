"""Tests of course_lib.models against keras.applications, published counts and hand-computed FLOPs.

The two big comparisons (ResNet50 and MobileNetV2 at 224x224 with 1,000 classes) build
Keras' model with ``weights=None`` and ours at the same configuration, and check the
parameter count to the unit, the output shape of every block, and (after copying the
weights layer by layer) the logits themselves. Keras' models take already normalised
inputs, ours normalise inside with a layer that has no weights: the tests check that
this layer holds zero parameters and feed Keras' model our normalised images.
"""

import numpy as np
import pytest

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402

from course_lib import models as M  # noqa: E402


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _copy_weights(ref, ours):
    """Copy every weighted layer of ``ref`` into the layer of the same name in ``ours``."""
    n = 0
    for layer in ref.layers:
        if layer.weights:
            ours.get_layer(layer.name).set_weights(layer.get_weights())
            n += 1
    return n


def _block_outputs(model, suffixes):
    return {layer.name: tuple(layer.output.shape) for layer in model.layers if layer.name.endswith(suffixes)}


def _check_same_logits(ref, ours, size, atol=1e-3):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(2, size, size, 3)).astype("float32")
    normalised = ours.get_layer("normalize")(x)
    ours_logits = np.asarray(ours(x, training=False))
    ref_logits = np.asarray(ref(normalised, training=False))
    assert np.isfinite(ours_logits).all()
    np.testing.assert_allclose(ours_logits, ref_logits, rtol=1e-4, atol=atol)


# ------------------------------------------------------------ against Keras


def test_resnet50_equals_keras_applications():
    ref = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=1000, classifier_activation=None)
    ours = M.resnet(50, (224, 224, 3), 1000, conv_bias=True)  # Keras keeps a bias in every conv
    # Our extra first layer normalises with constants: no weights at all.
    assert ours.get_layer("normalize").count_params() == 0
    assert ours.count_params() == ref.count_params() == 25_636_712
    assert _trainable(ours) == _trainable(ref)
    # Same output shape after the stem and after every one of the 16 residual blocks.
    ours_blocks = _block_outputs(ours, ("_out", "pool1_pool"))
    ref_blocks = _block_outputs(ref, ("_out", "pool1_pool"))
    assert len(ref_blocks) == 17 and ours_blocks == ref_blocks
    # Same function: with Keras' weights copied in, the same logits.
    assert _copy_weights(ref, ours) == len([layer for layer in ours.layers if layer.weights])
    _check_same_logits(ref, ours, 224)


def test_mobilenet_v2_equals_keras_applications():
    ref = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), alpha=1.0, classes=1000,
                                         classifier_activation=None)
    ours = M.mobilenet_v2(1.0, (224, 224, 3), 1000)
    assert ours.get_layer("normalize").count_params() == 0
    assert ours.count_params() == ref.count_params() == 3_538_984
    assert _trainable(ours) == _trainable(ref)
    suffixes = ("_project_BN", "_add", "out_relu")
    ours_blocks, ref_blocks = _block_outputs(ours, suffixes), _block_outputs(ref, suffixes)
    assert len(ref_blocks) == 17 + 10 + 1 and ours_blocks == ref_blocks
    _copy_weights(ref, ours)
    _check_same_logits(ref, ours, 224)


@pytest.mark.parametrize("alpha", [0.35, 1.3])
def test_mobilenet_v2_width_multiplier_equals_keras(alpha):
    ref = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=alpha, classes=10,
                                         classifier_activation=None)
    ours = M.mobilenet_v2(alpha, (96, 96, 3), 10)
    assert ours.count_params() == ref.count_params()
    assert ours.output_shape == ref.output_shape == (None, 10)


def test_mobilenet_v2_short_settings():
    rows = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2))
    model = M.mobilenet_v2(0.5, (24, 24, 3), 10, variant="cifar", settings=rows, include_top=False)
    # cifar variant: stem and first 24-channel row keep the resolution, the 32-channel row halves it
    assert model.get_layer("block_2_add").output.shape == (None, 24, 24, 16)
    assert model.get_layer("block_3_project_BN").output.shape == (None, 12, 12, 16)
    assert model.output_shape == (None, 12, 12, 1280)


def test_dense_block_equals_keras_densenet_block():
    from keras.src.applications.densenet import dense_block as keras_dense_block  # Keras' own DenseNet121 block

    inp = keras.Input((28, 28, 64))
    ours = keras.Model(inp, M.dense_block(inp, 6, growth_rate=32, name="conv2"))
    inp2 = keras.Input((28, 28, 64))
    ref = keras.Model(inp2, keras_dense_block(inp2, 6, name="conv2"))
    assert ours.count_params() == ref.count_params()
    assert ours.output_shape == ref.output_shape == (None, 28, 28, 64 + 6 * 32)


# ------------------------------------------------------- published figures


def test_resnet18_matches_published_count_and_flops():
    model = M.resnet(18)
    assert _trainable(model) == 11_689_512  # torchvision's resnet18 (no conv bias before BN)
    assert abs(M.count_flops(model) / 1.8e9 - 1) < 0.02  # He et al. 2016, Table 1: 1.8 x 10^9
    assert model.get_layer("conv5_block2_out").output.shape == (None, 7, 7, 512)
    assert model.output_shape == (None, 1000)


def test_cifar_resnet20_shapes_and_size():
    model = M.resnet(20, (32, 32, 3), 10, variant="cifar")
    assert model.get_layer("conv2_block3_out").output.shape == (None, 32, 32, 16)
    assert model.get_layer("conv4_block3_out").output.shape == (None, 8, 8, 64)
    # He et al. 2016, Table 6: 0.27M parameters (option A shortcuts); our 1x1 projections add 2.6K.
    assert abs(_trainable(model) / 0.27e6 - 1) < 0.02
    features = M.resnet(20, (32, 32, 3), 10, variant="cifar", include_top=False)
    assert features.output_shape == (None, 8, 8, 64)


def test_normalization_layer_maps_imagenet_mean_to_zero():
    layer = M.normalization_layer(3)
    x = np.array(M.IMAGENET_MEAN, "float32").reshape(1, 1, 1, 3) + np.array(M.IMAGENET_STD, "float32").reshape(1, 1, 1, 3)
    np.testing.assert_allclose(np.asarray(layer(x)), 1.0, atol=1e-5)  # mean + std -> 1
    assert layer.count_params() == 0
    np.testing.assert_allclose(np.asarray(M.normalization_layer(3, "symmetric")(np.zeros((1, 2, 2, 3)))), -1.0)


# ------------------------------------------------------------ FLOPs by hand


def _flops_of(layer, input_shape):
    inp = keras.Input(input_shape)
    return M.count_flops(keras.Model(inp, layer(inp)))


def test_flops_of_single_layers_by_hand():
    L = keras.layers
    assert _flops_of(L.Conv2D(16, 3, padding="same"), (10, 10, 8)) == 10 * 10 * 3 * 3 * 8 * 16
    assert _flops_of(L.Conv2D(16, 3, strides=2, padding="same"), (10, 10, 8)) == 5 * 5 * 3 * 3 * 8 * 16
    assert _flops_of(L.Conv2D(16, 3), (10, 10, 8)) == 8 * 8 * 3 * 3 * 8 * 16  # valid padding
    assert _flops_of(L.Conv2D(16, 1, groups=4), (10, 10, 8)) == 10 * 10 * 1 * 1 * 2 * 16
    assert _flops_of(L.DepthwiseConv2D(3, padding="same"), (10, 10, 8)) == 10 * 10 * 3 * 3 * 8
    assert _flops_of(L.DepthwiseConv2D(3, padding="same", depth_multiplier=2), (10, 10, 8)) == 10 * 10 * 9 * 16
    assert _flops_of(L.SeparableConv2D(16, 3, padding="same"), (10, 10, 8)) == 10 * 10 * (9 * 8 + 8 * 16)
    assert _flops_of(L.Dense(5), (7,)) == 35
    assert _flops_of(L.Dense(5), (4, 4, 7)) == 16 * 35
    for free in (L.BatchNormalization(), L.MaxPooling2D(2), L.GlobalAveragePooling2D(), L.ReLU()):
        assert _flops_of(free, (10, 10, 8)) == 0


def test_inception_3a_matches_googlenet_table():
    # Szegedy et al. 2015, Table 1, inception (3a) on 28x28x192: 128M multiply-adds.
    inp = keras.Input((28, 28, 192))
    out = M.inception_module(inp, 64, 96, 128, 16, 32, 32, name="inception_3a")
    model = keras.Model(inp, out)
    weights = 192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32
    assert model.output_shape == (None, 28, 28, 64 + 128 + 32 + 32)
    assert model.count_params() == weights + (64 + 96 + 128 + 16 + 32 + 32)  # + biases
    assert M.count_flops(model) == 28 * 28 * weights
    assert round(M.count_flops(model) / 1e6) == 128


def test_flops_recurse_into_nested_models():
    inner = M.resnet(8, (16, 16, 3), 10, variant="cifar", width=4)
    inp = keras.Input((16, 16, 3))
    outer = keras.Model(inp, keras.layers.Dense(3)(inner(inp)))
    assert M.count_flops(outer) == M.count_flops(inner) + 10 * 3


def _tf_profiler_macs(model):
    """Multiply-adds according to TensorFlow's graph profiler: FLOPs of Conv2D / depthwise / MatMul ops, / 2."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler import model_analyzer, option_builder

    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(concrete).graph
    opts = option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
    opts = opts.with_empty_output().account_displayed_op_only(True).select(["float_ops"]).build()
    opts["account_type_regexes"] = ["Conv2D", "DepthwiseConv2dNative", "MatMul"]
    return model_analyzer.profile(graph, options=opts).total_float_ops / 2


@pytest.mark.parametrize("build", [
    lambda: M.resnet(8, (24, 24, 3), 10, variant="cifar"),
    lambda: M.mobilenet_v2(0.35, (24, 24, 3), 10, variant="cifar"),
    lambda: M.small_inception_net((24, 24, 3), 10),
    lambda: M.small_densenet((24, 24, 3), 10, growth_rate=4),
], ids=["resnet8", "mobilenetv2", "inception", "densenet"])
def test_flops_equal_tensorflow_profiler(build):
    model = build()
    assert M.count_flops(model) == _tf_profiler_macs(model)


# ----------------------------------------------------- small models, helper


def test_small_models_give_finite_logits():
    x = np.random.default_rng(0).uniform(0, 1, size=(4, 16, 16, 3)).astype("float32")
    for model in (
        M.small_inception_net((16, 16, 3), 4),
        M.small_densenet((16, 16, 3), 4, growth_rate=4, layers_per_block=(2, 2)),
        M.mobilenet_v2(0.35, (32, 32, 3), 4, include_top=False),
    ):
        out = np.asarray(model(x if model.input_shape[1] == 16 else np.resize(x, (4, 32, 32, 3)), training=False))
        assert np.isfinite(out).all()
        assert out.shape == (4, 4) or out.shape == (4, 1, 1, 1280)


@pytest.mark.parametrize("build", [
    lambda: M.resnet(8, (16, 16, 3), 4, variant="cifar", width=8),
    lambda: M.mobilenet_v2(0.35, (16, 16, 3), 4, variant="cifar", bn_momentum=0.9,
                           settings=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2))),
], ids=["resnet8_cifar", "mobilenetv2_cifar"])
def test_small_models_learn(build):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(32, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 4, size=32)
    model = build()
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    # Training-mode loss on one fixed batch: batch norm's moving averages barely move in 10
    # steps, so the inference-mode loss would say little about whether gradients flow.
    loss = model.fit(x, y, epochs=10, batch_size=32, verbose=0).history["loss"]
    assert np.isfinite(loss).all() and loss[-1] < 0.8 * loss[0], f"{model.name}: loss {loss[0]:.3f} -> {loss[-1]:.3f}"


def test_compare_models_table():
    a = M.resnet(8, (16, 16, 3), 10, variant="cifar", width=4)
    b = M.mobilenet_v2(0.35, (16, 16, 3), 10, variant="cifar")
    table = M.compare_models([a, b], repeats=2, verbose=False)
    assert list(table.columns) == ["params (M)", "MFLOPs", "CPU ms"]
    assert table.loc[a.name, "params (M)"] == pytest.approx(a.count_params() / 1e6)
    assert table.loc[b.name, "MFLOPs"] == pytest.approx(M.count_flops(b) / 1e6)
    assert (table["CPU ms"] > 0).all()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=19), "not an ImageNet ResNet"),
        (dict(depth=21, variant="cifar", input_shape=(32, 32, 3)), "not a CIFAR ResNet"),
        (dict(depth="50"), "depth must be an integer"),
        (dict(depth=18, variant="tiny"), "variant must be one of"),
        (dict(depth=18, input_shape=(16, 16, 3)), "too small"),
        (dict(depth=20, variant="cifar", input_shape=(3, 32, 3)), "too small"),
        (dict(depth=18, input_shape=(224, 224)), "height, width, channels"),
        (dict(depth=18, num_classes=0), "num_classes"),
        (dict(depth=18, dropout=1.5), "dropout"),
    ],
)
def test_resnet_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        M.resnet(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=0), "positive"),
        (dict(alpha=-0.5), "positive"),
        (dict(alpha="1.0"), "positive"),
        (dict(alpha=1.0, input_shape=(24, 24, 3)), "too small"),
        (dict(alpha=1.0, input_shape=(6, 6, 3), variant="cifar"), "too small"),
        (dict(alpha=1.0, input_shape=(32, 32, 3, 1)), "height, width, channels"),
        (dict(alpha=1.0, bn_momentum=1.0), "bn_momentum"),
        (dict(alpha=1.0, settings=[(6, 24, 2, 3)]), "settings must be"),
        (dict(alpha=1.0, settings=[]), "settings must be"),
        (dict(alpha=1.0, input_shape=(16, 16, 3), settings=[(1, 16, 1, 2)] * 4), "downsample by 32"),
    ],
)
def test_mobilenet_v2_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        M.mobilenet_v2(**kwargs)


def test_helpers_bad_input():
    with pytest.raises(ValueError, match="keras.Model"):
        M.count_flops(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="at least one model"):
        M.compare_models([])
    with pytest.raises(ValueError, match="normalization mode"):
        M.normalization_layer(3, "zscore")
