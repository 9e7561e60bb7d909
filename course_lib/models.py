"""CNN architectures of Day 3, written block by block: ResNet, MobileNetV2, Inception, DenseNet.

Every model follows the course convention: it takes float32 images in [0, 1],
(N, H, W, C), normalises them inside (a first layer with **no trainable weights**),
and outputs **logits** (no softmax; use ``from_logits=True``).

* :func:`resnet`: He et al. (2016), "Deep residual learning for image recognition",
  CVPR. ``variant="imagenet"``: depths 18 / 34 (basic blocks) and 50 / 101 / 152
  (bottleneck blocks) of the paper's Table 1. ``variant="cifar"``: the 6n+2 networks
  of the paper's Section 4.2 (ResNet-20, 32, 44, 56, 110) for small images.
* :func:`mobilenet_v2`: Sandler et al. (2018), "MobileNetV2: inverted residuals and
  linear bottlenecks", CVPR, Table 2, with the width multiplier ``alpha``.
* :func:`inception_module` (Szegedy et al. 2015, "Going deeper with convolutions",
  Figure 2b) and :func:`dense_block` (Huang et al. 2017, "Densely connected
  convolutional networks"), brief runnable versions for the comparison.
* :func:`count_flops` (multiply-adds of convolution and dense layers) and
  :func:`compare_models` (parameters, FLOPs and CPU latency in one table).

Layer names follow ``keras.applications`` (``conv2_block1_out``, ``block_3_project``,
...), so the tests can compare our models with Keras' own block by block.

Used by: notebooks 03_cnn_architectures and 04_training_and_tuning.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from keras import layers

from .validation import check_positive_int

#: Per-channel mean and standard deviation of ImageNet in [0, 1] (RGB), the ResNet convention.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ImageNet ResNets of He et al. (2016), Table 1: depth -> (block type, blocks per stage conv2..conv5).
RESNET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

#: MobileNetV2 body of Sandler et al. (2018), Table 2: (expansion t, channels c, repeats n, stride s).
MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

VARIANTS = ("imagenet", "cifar")


# ------------------------------------------------------------------ validation


def _check_input_shape(input_shape, min_size: int, what: str) -> tuple:
    """Return ``input_shape`` as a tuple (H, W, C) of ints, or raise a ValueError saying what to change."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if shape is None or len(shape) != 3 or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(
            f"input_shape must be (height, width, channels) with positive integers, channels last; "
            f"got {input_shape!r}."
        )
    h, w, _ = (int(s) for s in shape)
    if h < min_size or w < min_size:
        raise ValueError(
            f"input_shape {shape} is too small for {what}: its strides downsample by {min_size}, "
            f"so height and width must be at least {min_size}. Resize the images, or use a variant "
            f"with fewer strides (variant='cifar')."
        )
    return tuple(int(s) for s in shape)


def _check_variant(variant) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}.")
    return variant


def _check_dropout(dropout) -> float:
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a rate in [0, 1); got {dropout!r}.")
    return float(dropout)


def _check_settings(settings) -> tuple:
    """MobileNetV2 rows (t, c, n, s): positive integers, stride 1 or 2; else a ValueError."""
    try:
        rows = tuple(tuple(row) for row in settings)
    except TypeError:
        rows = ()
    ok = bool(rows) and all(
        len(r) == 4 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in r)
        and r[3] in (1, 2) for r in rows
    )
    if not ok:
        raise ValueError(
            "settings must be a non-empty list of rows (expansion t, channels c, repeats n, stride s) of "
            f"positive integers with s in (1, 2), like MOBILENET_V2_SETTINGS; got {settings!r}."
        )
    return rows


# ------------------------------------------------------------ normalisation


def normalization_layer(channels: int, mode: str = "mean_std", name: str = "normalize"):
    """The model's first layer: maps images in [0, 1] to the range the network expects.

    ``"mean_std"``: (x - mean) / std per channel with the ImageNet statistics (the ResNet
    convention; a grey image uses the mean of the three channels). ``"symmetric"``: 2x - 1,
    to [-1, 1] (the MobileNetV2 convention). Both are fixed constants, not weights:
    the layer adds **zero** parameters, so parameter counts compare with models that
    normalise outside. Notebook 02 shows how to fit these statistics on training data.
    """
    if mode == "symmetric":
        return layers.Rescaling(scale=2.0, offset=-1.0, name=name)
    if mode != "mean_std":
        raise ValueError(f"normalization mode must be 'mean_std' or 'symmetric'; got {mode!r}.")
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    if channels != 3:
        mean, std = np.full(channels, mean.mean()), np.full(channels, std.mean())
    return layers.Normalization(mean=mean, variance=std**2, name=name)


def _head(x, num_classes: int, dropout: float):
    """Global average pooling, optional dropout, and a dense layer that outputs logits."""
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="top_dropout")(x)
    return layers.Dense(num_classes, name="predictions")(x)  # logits: no softmax


# ------------------------------------------------------------------- ResNet


def _conv_bn(x, filters, kernel, stride, name, conv_bias, relu=True, padding="same"):
    """Conv -> BatchNorm (-> ReLU), the unit every ResNet block is made of."""
    x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=conv_bias, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def _shortcut(x, out_channels, stride, name, conv_bias):
    """Identity when the shape is kept; else a 1x1 convolution with stride and BN (He et al. 2016, option B)."""
    if stride == 1 and x.shape[-1] == out_channels:
        return x
    return _conv_bn(x, out_channels, 1, stride, f"{name}_0", conv_bias, relu=False)


def basic_block(x, filters: int, stride: int = 1, name: str = "block", conv_bias: bool = False):
    """Residual basic block of He et al. (2016), Figure 5 left: y = ReLU(F(x) + shortcut(x)).

    F is two 3x3 convolutions with ``filters`` channels (the first one strided), each
    followed by batch norm; a ReLU between them and after the addition (Eq. 1 / Eq. 2).
    Used by ResNet-18/34 and the CIFAR ResNets; notebook 03.
    """
    shortcut = _shortcut(x, filters, stride, name, conv_bias)
    y = _conv_bn(x, filters, 3, stride, f"{name}_1", conv_bias)
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", conv_bias, relu=False)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def bottleneck_block(x, filters: int, stride: int = 1, name: str = "block", conv_bias: bool = False):
    """Residual bottleneck block of He et al. (2016), Figure 5 right: 1x1 reduce, 3x3, 1x1 expand (x4).

    The 1x1 convolutions cut the channels to ``filters`` and restore them to
    ``4 * filters``, so the expensive 3x3 works on a quarter of the channels. The stride
    sits on the first 1x1 convolution as in the paper and ``keras.applications``
    (torchvision's "v1.5" moves it to the 3x3, same parameters, slightly more FLOPs).
    Used by ResNet-50/101/152; notebook 03.
    """
    shortcut = _shortcut(x, 4 * filters, stride, name, conv_bias)
    y = _conv_bn(x, filters, 1, stride, f"{name}_1", conv_bias)
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", conv_bias)
    y = _conv_bn(y, 4 * filters, 1, 1, f"{name}_3", conv_bias, relu=False)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _resnet_plan(depth, variant):
    """(block function, blocks per stage, strides per stage) for a depth, or a ValueError listing valid depths."""
    cifar_depths = "6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110)"
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)):
        raise ValueError(f"depth must be an integer; got {depth!r}.")
    if variant == "imagenet":
        if depth not in RESNET_STAGES:
            raise ValueError(
                f"depth {depth} is not an ImageNet ResNet of He et al. (2016); choose one of "
                f"{sorted(RESNET_STAGES)}, or variant='cifar' with depth {cifar_depths}."
            )
        kind, blocks = RESNET_STAGES[depth]
        block = basic_block if kind == "basic" else bottleneck_block
        return block, blocks, (1, 2, 2, 2)
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"depth {depth} is not a CIFAR ResNet; variant='cifar' needs depth {cifar_depths}, "
            f"or use variant='imagenet' with depth in {sorted(RESNET_STAGES)}."
        )
    n = (depth - 2) // 6
    return basic_block, (n, n, n), (1, 2, 2)


def resnet(
    depth: int = 18,
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    variant: str = "imagenet",
    width: int | None = None,
    dropout: float = 0.0,
    include_top: bool = True,
    conv_bias: bool = False,
    name: str | None = None,
) -> keras.Model:
    """Build a ResNet of He et al. (2016) with the functional API; images in [0, 1] in, logits out.

    ``variant="imagenet"`` (Table 1): a 7x7/2 convolution and a 3x3/2 max-pool, then
    stages conv2..conv5 of basic (18, 34) or bottleneck (50, 101, 152) blocks with
    ``width``, 2x, 4x, 8x channels (default 64); the network downsamples by 32.
    ``variant="cifar"`` (Section 4.2): a 3x3 convolution, three stages of n basic blocks
    (depth 6n + 2) with ``width``, 2x, 4x channels (default 16); downsamples by 4.

    ``conv_bias=False`` drops the bias of convolutions followed by batch norm (BN's
    beta makes it redundant, as in the paper and torchvision); ``keras.applications``
    keeps it, so pass ``True`` to reproduce its count. ``include_top=False`` returns the
    feature extractor (last stage output, no pooling). The first layer, ``normalize``,
    has no weights. Used by notebooks 03 and 04.
    """
    variant = _check_variant(variant)
    block, blocks, strides = _resnet_plan(depth, variant)
    input_shape = _check_input_shape(input_shape, 32 if variant == "imagenet" else 4, f"ResNet ({variant})")
    num_classes = check_positive_int(num_classes, "num_classes")
    width = check_positive_int(width if width is not None else (64 if variant == "imagenet" else 16), "width")
    dropout = _check_dropout(dropout)

    inputs = keras.Input(input_shape, name="image")
    x = normalization_layer(input_shape[-1], "mean_std")(inputs)
    if variant == "imagenet":  # stem: 7x7/2 conv, 3x3/2 max-pool, padded as in the paper and Keras
        x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = _conv_bn(x, width, 7, 2, "conv1", conv_bias, padding="valid")
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    else:  # stem: one 3x3 conv at full resolution
        x = _conv_bn(x, width, 3, 1, "conv1", conv_bias)
    for stage, (n_blocks, stride) in enumerate(zip(blocks, strides)):
        filters = width * 2**stage
        for i in range(n_blocks):
            x = block(x, filters, stride if i == 0 else 1, name=f"conv{stage + 2}_block{i + 1}", conv_bias=conv_bias)
    if include_top:
        x = _head(x, num_classes, dropout)
    return keras.Model(inputs, x, name=name or f"resnet{depth}" + ("_cifar" if variant == "cifar" else ""))


# -------------------------------------------------------------- MobileNetV2


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never more than 10% down.

    The rounding rule of the MobileNet reference code (and ``keras.applications``),
    applied to ``alpha * channels``. Used by :func:`mobilenet_v2`.
    """
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def inverted_residual_block(x, expansion: int, filters: int, stride: int, alpha: float, block_id: int,
                            bn_momentum: float = 0.999):
    """MobileNetV2 bottleneck of Sandler et al. (2018), Table 1 / Figure 3b: expand, depthwise, project.

    1. Expansion: a 1x1 convolution to ``expansion * C_in`` channels, BN, ReLU6
       (skipped when ``expansion == 1``, the first block).
    2. Depthwise 3x3 convolution (one filter per channel, strided), BN, ReLU6.
    3. Projection: a 1x1 convolution to ``make_divisible(alpha * filters)`` channels and
       BN with **no** activation: the *linear bottleneck* (ReLU on a thin tensor loses
       information, the paper's Section 3.2).

    The residual connection joins the thin ends (an *inverted* residual) when the
    stride is 1 and the channels match. Names follow ``keras.applications``. Notebook 03.
    """
    bn = dict(epsilon=1e-3, momentum=bn_momentum)
    in_channels = x.shape[-1]
    out_channels = make_divisible(int(filters * alpha), 8)
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    inputs = x
    if expansion != 1:
        x = layers.Conv2D(expansion * in_channels, 1, use_bias=False, name=prefix + "expand")(x)
        x = layers.BatchNormalization(**bn, name=prefix + "expand_BN")(x)
        x = layers.ReLU(6.0, name=prefix + "expand_relu")(x)
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=prefix + "depthwise")(x)
    x = layers.BatchNormalization(**bn, name=prefix + "depthwise_BN")(x)
    x = layers.ReLU(6.0, name=prefix + "depthwise_relu")(x)
    x = layers.Conv2D(out_channels, 1, use_bias=False, name=prefix + "project")(x)
    x = layers.BatchNormalization(**bn, name=prefix + "project_BN")(x)  # linear: no ReLU
    if stride == 1 and in_channels == out_channels:
        x = layers.Add(name=prefix + "add")([inputs, x])
    return x


def mobilenet_v2(
    alpha: float = 1.0,
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    variant: str = "imagenet",
    dropout: float = 0.0,
    include_top: bool = True,
    bn_momentum: float = 0.999,
    settings=MOBILENET_V2_SETTINGS,
    name: str | None = None,
) -> keras.Model:
    """Build MobileNetV2 (Sandler et al. 2018, Table 2); images in [0, 1] in, logits out.

    A 3x3/2 convolution with 32 * alpha channels, the 17 inverted residual blocks of
    :data:`MOBILENET_V2_SETTINGS`, a 1x1 convolution to 1280 channels (1280 * alpha
    when alpha > 1), global average pooling and the classifier. ``alpha`` is the width
    multiplier (Section 6.1): every layer's channels are scaled by it, so parameters and
    FLOPs shrink roughly by alpha squared. ``variant="cifar"`` removes the first two
    strides (stem and the first 24-channel block) so small images keep their detail:
    it downsamples by 8 instead of 32. Images are mapped to [-1, 1] inside, by a layer
    with no weights. ``include_top=False`` returns the feature extractor. ``bn_momentum``
    is the batch-norm moving-average momentum: 0.999 as in Keras suits long ImageNet
    runs; a short run from scratch needs about 0.9, or the inference-mode statistics
    lag far behind the weights (the train / inference gap of notebook 02). ``settings``
    replaces Table 2's rows (t, c, n, s), e.g. a shorter table for a small, fast network.
    Notebooks 03, 04.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not alpha > 0:
        raise ValueError(f"alpha (the width multiplier) must be a positive number, e.g. 0.35, 0.5, 1.0; got {alpha!r}.")
    alpha = float(alpha)
    variant = _check_variant(variant)
    settings = _check_settings(settings)
    # The cifar variant keeps the resolution of small images: stride 1 in the stem and in stage 1.
    strides = [1 if variant == "cifar" and i == 1 else row[3] for i, row in enumerate(settings)]
    total_stride = (2 if variant == "imagenet" else 1) * int(np.prod(strides))
    input_shape = _check_input_shape(input_shape, total_stride, f"MobileNetV2 ({variant})")
    num_classes = check_positive_int(num_classes, "num_classes")
    dropout = _check_dropout(dropout)
    if isinstance(bn_momentum, bool) or not isinstance(bn_momentum, (int, float)) or not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1), e.g. 0.9 or 0.999; got {bn_momentum!r}.")
    bn = dict(epsilon=1e-3, momentum=float(bn_momentum))

    inputs = keras.Input(input_shape, name="image")
    x = normalization_layer(input_shape[-1], "symmetric")(inputs)
    stem_stride = 2 if variant == "imagenet" else 1
    x = layers.Conv2D(make_divisible(32 * alpha, 8), 3, strides=stem_stride, padding="same", use_bias=False, name="Conv1")(x)
    x = layers.BatchNormalization(**bn, name="bn_Conv1")(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    block_id = 0
    for (t, c, n, _), s in zip(settings, strides):
        for i in range(n):
            x = inverted_residual_block(x, t, c, s if i == 0 else 1, alpha, block_id, bn["momentum"])
            block_id += 1
    last = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = layers.Conv2D(last, 1, use_bias=False, name="Conv_1")(x)
    x = layers.BatchNormalization(**bn, name="Conv_1_bn")(x)
    x = layers.ReLU(6.0, name="out_relu")(x)
    if include_top:
        x = _head(x, num_classes, dropout)
    return keras.Model(inputs, x, name=name or f"mobilenetv2_{alpha:g}" + ("_cifar" if variant == "cifar" else ""))


# ------------------------------------------------------ Inception and DenseNet


def inception_module(x, f1: int, f3_reduce: int, f3: int, f5_reduce: int, f5: int, pool_proj: int, name: str = "inception"):
    """Inception module with dimension reductions (Szegedy et al. 2015, Figure 2b).

    Four parallel branches concatenated on channels: a 1x1 convolution; 1x1 reduce then
    3x3; 1x1 reduce then 5x5; 3x3 max-pool then 1x1 projection. The 1x1 reductions are
    what keeps the 3x3 and 5x5 affordable. Convolutions have a bias and a ReLU, as in
    GoogLeNet. Output channels: f1 + f3 + f5 + pool_proj. Notebook 03.
    """

    def conv(t, filters, kernel, suffix):
        return layers.Conv2D(filters, kernel, padding="same", activation="relu", name=f"{name}_{suffix}")(t)

    b1 = conv(x, f1, 1, "1x1")
    b3 = conv(conv(x, f3_reduce, 1, "3x3_reduce"), f3, 3, "3x3")
    b5 = conv(conv(x, f5_reduce, 1, "5x5_reduce"), f5, 5, "5x5")
    bp = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    bp = conv(bp, pool_proj, 1, "pool_proj")
    return layers.Concatenate(name=f"{name}_concat")([b1, b3, b5, bp])


def dense_block(x, num_layers: int, growth_rate: int = 32, name: str = "dense"):
    """Dense block of Huang et al. (2017), DenseNet-B: every layer sees all earlier feature maps.

    Layer l computes H_l([x_0, x_1, ..., x_{l-1}]) (Eq. 2), with H = BN-ReLU-1x1 conv
    (4k channels) - BN-ReLU-3x3 conv (k channels), k = ``growth_rate``, and concatenates
    its k new maps to its input. Output channels: C_in + num_layers * k. Names follow
    ``keras.applications.DenseNet121``. Notebook 03.
    """
    for i in range(1, num_layers + 1):
        prefix = f"{name}_block{i}"
        y = layers.BatchNormalization(epsilon=1.001e-5, name=f"{prefix}_0_bn")(x)
        y = layers.Activation("relu", name=f"{prefix}_0_relu")(y)
        y = layers.Conv2D(4 * growth_rate, 1, use_bias=False, name=f"{prefix}_1_conv")(y)
        y = layers.BatchNormalization(epsilon=1.001e-5, name=f"{prefix}_1_bn")(y)
        y = layers.Activation("relu", name=f"{prefix}_1_relu")(y)
        y = layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{prefix}_2_conv")(y)
        x = layers.Concatenate(name=f"{prefix}_concat")([x, y])
    return x


def small_inception_net(input_shape=(48, 48, 3), num_classes: int = 10, name: str = "small_inception") -> keras.Model:
    """A two-module Inception network for small images (stem conv, 2 modules, pool, 2 modules, head).

    Not GoogLeNet: a runnable miniature for the params / FLOPs / latency comparison of
    notebook 03. Module sizes are GoogLeNet's inception (3a) and (3b) divided by 4.
    """
    input_shape = _check_input_shape(input_shape, 4, "small_inception_net")
    num_classes = check_positive_int(num_classes, "num_classes")
    inputs = keras.Input(input_shape, name="image")
    x = normalization_layer(input_shape[-1], "mean_std")(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="stem_conv")(x)
    x = layers.MaxPooling2D(2, name="stem_pool")(x)
    x = inception_module(x, 16, 24, 32, 4, 8, 8, name="inception_3a")
    x = inception_module(x, 32, 32, 48, 8, 24, 16, name="inception_3b")
    x = layers.MaxPooling2D(2, name="pool3")(x)
    x = inception_module(x, 48, 24, 52, 4, 12, 16, name="inception_4a")
    return keras.Model(inputs, _head(x, num_classes, 0.0), name=name)


def small_densenet(input_shape=(48, 48, 3), num_classes: int = 10, growth_rate: int = 12,
                   layers_per_block=(4, 4, 4), name: str = "small_densenet") -> keras.Model:
    """A small DenseNet-BC: stem conv, dense blocks separated by transitions (BN-ReLU-1x1 conv halving
    the channels, 2x2 average pool; Huang et al. 2017, Section 3), BN-ReLU, head. Notebook 03.
    """
    input_shape = _check_input_shape(input_shape, 2 ** (len(layers_per_block) - 1), "small_densenet")
    num_classes = check_positive_int(num_classes, "num_classes")
    growth_rate = check_positive_int(growth_rate, "growth_rate")
    inputs = keras.Input(input_shape, name="image")
    x = normalization_layer(input_shape[-1], "mean_std")(inputs)
    x = layers.Conv2D(2 * growth_rate, 3, padding="same", use_bias=False, name="stem_conv")(x)
    for b, n in enumerate(layers_per_block):
        x = dense_block(x, check_positive_int(n, "layers_per_block"), growth_rate, name=f"dense{b + 1}")
        if b < len(layers_per_block) - 1:  # transition: compress channels by 0.5, halve the resolution
            x = layers.BatchNormalization(epsilon=1.001e-5, name=f"pool{b + 1}_bn")(x)
            x = layers.Activation("relu", name=f"pool{b + 1}_relu")(x)
            x = layers.Conv2D(x.shape[-1] // 2, 1, use_bias=False, name=f"pool{b + 1}_conv")(x)
            x = layers.AveragePooling2D(2, name=f"pool{b + 1}_pool")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    return keras.Model(inputs, _head(x, num_classes, 0.0), name=name)


# --------------------------------------------------------- cost: FLOPs, latency


def layer_flops(layer) -> int:
    """Multiply-adds (MACs) of one layer for one image, from its output shape.

    * Conv2D: H_out * W_out * k_h * k_w * (C_in / groups) * C_out.
    * DepthwiseConv2D: H_out * W_out * k_h * k_w * C_in * depth_multiplier.
    * SeparableConv2D: its depthwise part plus a 1x1 pointwise part.
    * Dense: (units of every position) * C_in * units.

    Everything else (BN, activations, pooling, additions, biases) counts 0, as in the
    FLOPs column of He et al. (2016), Table 1. Used by :func:`count_flops`.
    """
    if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D, layers.Dense)):
        out_shape = layer.output.shape
        in_channels = layer.input.shape[-1]
    else:
        return 0
    positions = int(np.prod(out_shape[1:-1])) if len(out_shape) > 2 else 1
    if isinstance(layer, layers.Dense):
        return positions * in_channels * layer.units
    kh, kw = layer.kernel_size
    if isinstance(layer, layers.SeparableConv2D):
        mid = in_channels * layer.depth_multiplier
        return positions * (kh * kw * mid + mid * layer.filters)
    if isinstance(layer, layers.DepthwiseConv2D):
        return positions * kh * kw * in_channels * layer.depth_multiplier
    return positions * kh * kw * (in_channels // layer.groups) * layer.filters


def walk_layers(model, nested_models: bool = True):
    """Yield every layer of ``model`` depth first, opening nested models (a wrapped backbone) on the way.

    Parameters
    ----------
    model : keras.Model
        Functional, Sequential or nested.
    nested_models : bool
        True: a nested model is yielded, then its layers; False: only the leaf layers.

    Yields
    ------
    layer : keras.layers.Layer
        In ``model.layers`` order, each nested model's layers right after it (or in its place).

    Notes
    -----
    The one walker over nested layers of course_lib: :func:`count_flops`,
    ``training.unfreeze_top`` and ``course_lib.explain`` use it. Notebooks 03, 04, 07-09.
    """
    for layer in model.layers:
        is_model = isinstance(layer, keras.Model)
        if nested_models or not is_model:
            yield layer
        if is_model:
            yield from walk_layers(layer, nested_models)


def count_flops(model, by_layer: bool = False):
    """Total multiply-adds of a Keras model for one image (see :func:`layer_flops`).

    Recurses into nested models. With ``by_layer=True`` returns ``{layer name: MACs}``
    for the layers that count. One multiply-add is often reported as 2 FLOPs; the
    ResNet paper reports multiply-adds, and so do we. Notebook 03.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"count_flops needs a built keras.Model; got {type(model).__name__}.")
    table = {layer.name: macs for layer in walk_layers(model, nested_models=False) if (macs := layer_flops(layer))}
    return table if by_layer else int(sum(table.values()))


def cpu_latency(model, batch_size: int = 1, repeats: int = 10, warmup: int = 2) -> float:
    """Median wall time in milliseconds of one forward pass (inference mode) on the CPU.

    Runs a compiled ``tf.function`` on random images in [0, 1] of the model's input
    shape, ``warmup`` times untimed and ``repeats`` times timed. Notebook 03.
    """
    import tensorflow as tf

    batch_size = check_positive_int(batch_size, "batch_size")
    repeats = check_positive_int(repeats, "repeats")
    shape = (batch_size, *model.input_shape[1:])
    x = tf.random.uniform(shape, seed=0)
    with tf.device("/CPU:0"):
        forward = tf.function(lambda t: model(t, training=False))
        for _ in range(warmup):
            forward(x).numpy()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            forward(x).numpy()
            times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def compare_models(models, batch_size: int = 1, repeats: int = 10, latency: bool = True, verbose: bool = True):
    """Print and return a table of parameters, multiply-adds and CPU latency, one row per model.

    ``models`` is a list of Keras models (rows named by ``model.name``) or a dict
    ``{name: model}``. Columns: ``params (M)``, ``MFLOPs`` (multiply-adds, millions, one
    image) and, with ``latency=True``, ``CPU ms`` (median, batch ``batch_size``).
    Returns a pandas DataFrame. Notebook 03.
    """
    import pandas as pd

    items = list(models.items()) if isinstance(models, dict) else [(m.name, m) for m in models]
    if not items:
        raise ValueError("compare_models needs at least one model.")
    rows = []
    for label, m in items:
        if not isinstance(m, keras.Model):
            raise ValueError(f"{label!r} is a {type(m).__name__}, not a keras.Model.")
        row = {"model": label, "params (M)": m.count_params() / 1e6, "MFLOPs": count_flops(m) / 1e6}
        if latency:
            row["CPU ms"] = cpu_latency(m, batch_size=batch_size, repeats=repeats)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    if verbose:
        print(table.round(2).to_string())
    return table


# ------------------------------------------------------------------ exercise references
# The functions of notebooks 01 and 03's exercises, for the student versions to fall back
# on until an exercise is answered (course_lib.exercises.answer_or_reference).


def knn_predict(x_train, y_train, x_query, k: int) -> np.ndarray:
    """k-nearest-neighbour labels (Cover & Hart 1967): int (M,) for queries (M, D).

    Each query gets the most common label among its ``k`` nearest rows of ``x_train``
    (N, D) in Euclidean distance; tied votes go to the smallest label, as in
    scikit-learn's ``KNeighborsClassifier``. All squared distances at once from
    ||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2. Notebook 01, exercise 1.
    """
    x_train, x_query = np.asarray(x_train, np.float64), np.asarray(x_query, np.float64)
    y_train = np.asarray(y_train).astype(int)
    if x_train.ndim != 2 or x_query.ndim != 2 or x_train.shape[1] != x_query.shape[1] or len(y_train) != len(x_train):
        raise ValueError(f"x_train (N, D), y_train (N,) and x_query (M, D) must agree; got {x_train.shape}, "
                         f"{y_train.shape}, {x_query.shape}.")
    k = check_positive_int(k, "k")
    d2 = (x_query**2).sum(1)[:, None] - 2.0 * x_query @ x_train.T + (x_train**2).sum(1)[None, :]
    nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(x_query), int(y_train.max()) + 1), int)
    np.add.at(votes, (np.arange(len(x_query))[:, None], y_train[nearest]), 1)
    return votes.argmax(axis=1)


def conv2d_macs(height: int, width: int, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> int:
    """Multiply-adds of one 'same'-padded Conv2D on one image, biases not counted.

    ceil(H / s) * ceil(W / s) * k * k * (C_in / groups) * C_out: the formula of
    :func:`layer_flops` without building the layer (He et al. 2016, Table 1's FLOPs).
    Notebook 03, exercise 1.
    """
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide c_in={c_in} and c_out={c_out}.")
    out_h, out_w = -(-height // stride), -(-width // stride)
    return int(out_h * out_w * kernel * kernel * (c_in // groups) * c_out)


def residual_unit(x, filters: int, stride: int = 1):
    """The basic residual block, :func:`basic_block`, under a fresh name on each call.

    ReLU(F(x) + shortcut(x)) with F = conv3x3(stride)-BN-ReLU-conv3x3-BN and a 1x1
    conv-BN shortcut when the shape changes (He et al. 2016, Figure 2 and option B).
    Notebook 03, exercise 2.
    """
    return basic_block(x, filters, stride, name=f"residual_unit_{keras.backend.get_uid('residual_unit')}")


def channel_shuffle(x, groups: int):
    """ShuffleNet's channel shuffle on (N, H, W, C) (Zhang et al. 2018; Ma et al. 2018, Fig. 3).

    Reshape the channels to (groups, C / groups), transpose to (C / groups, groups) and
    flatten back, so the next grouped convolution sees channels from every group.
    Works on tensors and arrays with ``keras.ops``. Notebook 03, exercise 3.
    """
    n, h, w, c = x.shape
    if c % groups:
        raise ValueError(f"groups={groups} must divide the {c} channels.")
    y = keras.ops.reshape(x, (-1, h, w, groups, c // groups))
    y = keras.ops.transpose(y, (0, 1, 2, 4, 3))
    return keras.ops.reshape(y, (-1, h, w, c))
