"""Localization: boxes, IoU, box losses and multitask (class + box) models.

The lecture's path (notebook ``05_localization_multitask``):

1. *Box regression*: a network maps an image to four numbers, the box, trained with
   an L2 loss :math:`\\|\\hat b - b\\|_2^2` (:func:`box_regressor`).
2. *Classification and localization*: one backbone, two heads (class logits and a
   box), one scalar loss :math:`L = \\alpha S + (1 - \\alpha) R` (:func:`multitask_model`;
   :class:`MultitaskTrainer` writes the same loss in a custom ``train_step``).
3. The seeds' "quick and dirty" model, a sigmoid class unit and four sigmoid box units
   under one binary cross-entropy (:func:`quick_and_dirty_model`), and its limits.
4. *Keypoints*: regressing :math:`2k` coordinates, the idea of DeepPose (Toshev and
   Szegedy, 2014), on generated stick figures (:func:`make_stick_figures`).

Conventions: boxes are ``(x_min, y_min, x_max, y_max)`` ("xyxy") normalised by the
image width and height, as float32 arrays of shape (N, 4). The (x, y, w, h) form is
available with (x, y) the top-left corner (COCO's and Keras' ``"xywh"``) or the centre
(``center=True``, Keras' ``"center_xywh"``). Classifiers output logits.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from .validation import check_positive_int

# ------------------------------------------------------------------ box checks


def check_boxes(boxes, name: str = "boxes", fmt: str = "xyxy") -> np.ndarray:
    """Validate boxes at a course_lib boundary and return them as float32 (..., 4).

    Raises a ValueError that says what is wrong when the last dimension is not 4,
    the values are not finite, or (for ``fmt="xyxy"``) a box has ``x_max < x_min`` or
    ``y_max < y_min``; for ``fmt="xywh"`` a negative width or height.
    """
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise ValueError(
            f"{name} must have a last dimension of 4 ({'x_min, y_min, x_max, y_max' if fmt == 'xyxy' else 'x, y, w, h'}); "
            f"got shape {arr.shape}. Reshape to (N, 4)."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf values.")
    if fmt == "xyxy":
        bad = (arr[..., 2] < arr[..., 0]) | (arr[..., 3] < arr[..., 1])
        if bad.any():
            first = arr.reshape(-1, 4)[np.flatnonzero(bad.reshape(-1))[0]]
            raise ValueError(
                f"{name} must be (x_min, y_min, x_max, y_max) with x_max >= x_min and y_max >= y_min; "
                f"{int(bad.sum())} box(es) are not, e.g. {first.tolist()}. "
                "If your boxes are (x, y, w, h), convert them with xywh_to_xyxy first."
            )
    elif (arr[..., 2:] < 0).any():
        raise ValueError(f"{name} has a negative width or height; (x, y, w, h) boxes need w >= 0 and h >= 0.")
    return arr


# ----------------------------------------------------------- box conversions


def xyxy_to_xywh(boxes, center: bool = False) -> np.ndarray:
    """Convert (x_min, y_min, x_max, y_max) boxes to (x, y, w, h).

    ``(x, y)`` is the top-left corner (COCO, Keras ``"xywh"``), or the centre with
    ``center=True`` (the parametrisation most box regressors predict). Works on
    normalised and pixel boxes alike. Used in notebook 05.
    """
    b = check_boxes(boxes)
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    x, y = (b[..., 0] + w / 2, b[..., 1] + h / 2) if center else (b[..., 0], b[..., 1])
    return np.stack([x, y, w, h], axis=-1)


def xywh_to_xyxy(boxes, center: bool = False) -> np.ndarray:
    """Convert (x, y, w, h) boxes back to (x_min, y_min, x_max, y_max); inverse of :func:`xyxy_to_xywh`."""
    b = check_boxes(boxes, fmt="xywh")
    x, y, w, h = (b[..., i] for i in range(4))
    if center:
        x, y = x - w / 2, y - h / 2
    return np.stack([x, y, x + w, y + h], axis=-1)


def _check_size(width, height):
    return check_positive_int(width, "width"), check_positive_int(height, "height")


def to_pixels(boxes, width: int, height: int) -> np.ndarray:
    """Normalised xyxy boxes -> pixel coordinates: multiply x by ``width`` and y by ``height``."""
    b = check_boxes(boxes)
    width, height = _check_size(width, height)
    return b * np.array([width, height, width, height], np.float32)


def to_normalized(boxes, width: int, height: int) -> np.ndarray:
    """Pixel xyxy boxes -> normalised [0, 1] coordinates: divide x by ``width`` and y by ``height``."""
    b = check_boxes(boxes)
    width, height = _check_size(width, height)
    return b / np.array([width, height, width, height], np.float32)


# -------------------------------------------------------------------- IoU


def _areas(b):
    """Areas of xyxy boxes; a negative side (an inverted predicted box) counts as 0."""
    return ops.maximum(b[..., 2] - b[..., 0], 0.0) * ops.maximum(b[..., 3] - b[..., 1], 0.0)


def _intersection_union(a, b):
    """Areas of the intersection and of the union of xyxy boxes (broadcast); an inverted box is empty."""
    lo = ops.maximum(a[..., :2], b[..., :2])
    hi = ops.minimum(a[..., 2:], b[..., 2:])
    wh = ops.maximum(hi - lo, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, _areas(a) + _areas(b) - inter


def box_iou(y_true, y_pred, dtype="float32"):
    """Element-wise IoU of two (..., 4) xyxy tensors (Keras ops, differentiable, broadcast).

    :math:`IoU = |A \\cap B| / |A \\cup B|`; 0 for disjoint boxes. The union is
    clamped away from 0 (1e-12), so two degenerate (zero-area) boxes give 0, never NaN.
    Inverted predicted boxes (x_max < x_min) count as empty. No validation: this is the
    metric inside training graphs; :func:`iou` is the checked NumPy entry point.

    Parameters
    ----------
    y_true, y_pred : float tensors or arrays of shapes (..., 4) that broadcast
        Boxes (x_min, y_min, x_max, y_max), normalised to [0, 1] or in pixels (both alike).
    dtype : str
        The dtype the IoU is computed and returned in (float32; ``course_lib.explain.box_iou``
        asks for float64).

    Returns
    -------
    iou : backend tensor of the broadcast shape without the last axis, ``dtype``, in [0, 1]

    References
    ----------
    The Jaccard index of two boxes, the detection criterion of PASCAL VOC (Everingham et
    al., IJCV 2010). The one box IoU of the course: :func:`iou`, :class:`BoxIoU` and
    ``course_lib.explain.box_iou`` call it. Used in notebook 05 (and 07, 09 through
    ``course_lib.explain.box_iou``).
    """
    y_true = ops.cast(y_true, dtype)
    y_pred = ops.cast(y_pred, dtype)
    inter, union = _intersection_union(y_true, y_pred)
    return inter / ops.maximum(union, 1e-12)


def iou(boxes_a, boxes_b) -> np.ndarray:
    """Element-wise IoU of two (N, 4) arrays of xyxy boxes, as a NumPy (N,) array.

    Validates the boxes (shape, x_max >= x_min, y_max >= y_min), then applies
    :func:`box_iou`. Disjoint boxes give 0; degenerate boxes give 0, never NaN.
    """
    a, b = check_boxes(boxes_a, "boxes_a"), check_boxes(boxes_b, "boxes_b")
    if a.shape != b.shape:
        raise ValueError(f"boxes_a and boxes_b must have the same shape; got {a.shape} and {b.shape}.")
    return np.asarray(ops.convert_to_numpy(box_iou(a, b)), np.float32)


def box_giou(y_true, y_pred):
    """Element-wise generalised IoU (Rezatofighi et al., CVPR 2019, Algorithm 1).

    :math:`GIoU = IoU - |C \\setminus (A \\cup B)| / |C|`, with C the smallest box
    enclosing A and B. In [-1, 1]; unlike IoU it still has a gradient when the boxes
    do not overlap. The predicted corners are put in order first (the paper's Algorithm 2),
    so an inverted prediction is scored as the box it spans. Degenerate inputs give
    finite values (areas clamped away from 0).
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, y_true.dtype)
    # Algorithm 2 of the paper: order the predicted corners first, so that a network whose
    # four outputs are free (x_max may come out below x_min) still gets a valid box.
    y_pred = ops.concatenate([ops.minimum(y_pred[..., :2], y_pred[..., 2:]), ops.maximum(y_pred[..., :2], y_pred[..., 2:])], axis=-1)
    inter, union = _intersection_union(y_true, y_pred)
    union = ops.maximum(union, 1e-12)
    c_lo = ops.minimum(y_true[..., :2], y_pred[..., :2])
    c_hi = ops.maximum(y_true[..., 2:], y_pred[..., 2:])
    c_wh = ops.maximum(c_hi - c_lo, 0.0)
    enclosing = ops.maximum(c_wh[..., 0] * c_wh[..., 1], 1e-12)
    return inter / union - (enclosing - union) / enclosing


@keras.saving.register_keras_serializable("course_lib")
class BoxIoU(keras.metrics.MeanMetricWrapper):
    """Keras metric: the mean IoU of predicted and true xyxy boxes over the data seen.

    Use in ``compile(metrics={"box": [BoxIoU()]})``. (Not ``keras.metrics.MeanIoU``,
    which is the IoU of segmentation classes.) Used in notebook 05.
    """

    def __init__(self, name: str = "iou", dtype=None):
        super().__init__(fn=box_iou, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


# -------------------------------------------------------------------- box losses


@keras.saving.register_keras_serializable("course_lib")
class L2BoxLoss(keras.losses.Loss):
    """The lecture's box loss :math:`\\|\\hat b - b\\|_2^2`: squared error summed over the 4 coordinates.

    Averaged over the batch, it equals 4x Keras' ``MeanSquaredError`` (which averages
    over coordinates too). Works on any (..., D) target, e.g. keypoints (N, k, 2).
    """

    def __init__(self, name="l2_box", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return ops.sum(ops.square(y_pred - ops.cast(y_true, y_pred.dtype)), axis=-1)


@keras.saving.register_keras_serializable("course_lib")
class L1BoxLoss(keras.losses.Loss):
    """:math:`\\|\\hat b - b\\|_1`: absolute error summed over the 4 coordinates (4x ``MeanAbsoluteError``)."""

    def __init__(self, name="l1_box", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return ops.sum(ops.abs(y_pred - ops.cast(y_true, y_pred.dtype)), axis=-1)


@keras.saving.register_keras_serializable("course_lib")
class SmoothL1BoxLoss(keras.losses.Loss):
    """Smooth L1 (Girshick, Fast R-CNN, ICCV 2015, eq. 3), summed over the 4 coordinates.

    Per coordinate, with :math:`d = \\hat b - b`: :math:`0.5 d^2 / \\beta` if
    :math:`|d| < \\beta`, else :math:`|d| - 0.5 \\beta`. Quadratic near 0 (smooth
    gradients), linear far away (robust to outliers). Fast R-CNN uses
    :math:`\\beta = 1` on pixel-scale offsets; on normalised boxes a small
    :math:`\\beta` (default 0.05) keeps the linear part in play. Equals Huber(delta=beta) / beta.
    """

    def __init__(self, beta: float = 0.05, name="smooth_l1_box", reduction="sum_over_batch_size", dtype=None):
        if not beta > 0:
            raise ValueError(f"beta must be > 0; got {beta!r}.")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.beta = float(beta)

    def call(self, y_true, y_pred):
        d = ops.abs(y_pred - ops.cast(y_true, y_pred.dtype))
        per_coord = ops.where(d < self.beta, 0.5 * ops.square(d) / self.beta, d - 0.5 * self.beta)
        return ops.sum(per_coord, axis=-1)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@keras.saving.register_keras_serializable("course_lib")
class GIoULoss(keras.losses.Loss):
    """:math:`1 - GIoU` (Rezatofighi et al., CVPR 2019): 0 for a perfect box, up to 2 far away.

    Scale-invariant (it compares areas, not coordinates), so small and large objects
    weigh the same. See :func:`box_giou`.
    """

    def __init__(self, name="giou", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return 1.0 - box_giou(y_true, y_pred)


BOX_LOSSES = {"l2": L2BoxLoss, "l1": L1BoxLoss, "smooth_l1": SmoothL1BoxLoss, "giou": GIoULoss}


def get_box_loss(loss) -> keras.losses.Loss:
    """Return a box loss object from a name in :data:`BOX_LOSSES` or a ``keras.losses.Loss``."""
    if isinstance(loss, keras.losses.Loss):
        return loss
    if loss not in BOX_LOSSES:
        raise ValueError(f"unknown box loss {loss!r}; choose one of {sorted(BOX_LOSSES)} or pass a keras.losses.Loss.")
    return BOX_LOSSES[loss]()


# ------------------------------------------------------------------ CoordConv


@keras.saving.register_keras_serializable("course_lib")
class AddCoords(keras.layers.Layer):
    """CoordConv's coordinate channels (Liu et al., NeurIPS 2018, Sec. 3): append x and y maps.

    Maps a (batch, h, w, c) tensor to (batch, h, w, c + 2): channel ``c`` holds each
    pixel's column and channel ``c + 1`` its row, both scaled linearly to [-1, 1]
    (left/top = -1, right/bottom = 1). A convolution is translation-equivariant, so
    without these channels it cannot tell *where* it is, which a box regressor needs;
    with them, the next convolution can read the absolute position. Used in notebook 05.
    """

    def call(self, x):
        shape = ops.shape(x)
        ys = ops.reshape(ops.linspace(-1.0, 1.0, shape[1]), (1, -1, 1, 1))
        xs = ops.reshape(ops.linspace(-1.0, 1.0, shape[2]), (1, 1, -1, 1))
        grid_shape = (shape[0], shape[1], shape[2], 1)
        xx = ops.cast(ops.broadcast_to(xs, grid_shape), x.dtype)
        yy = ops.cast(ops.broadcast_to(ys, grid_shape), x.dtype)
        return ops.concatenate([x, xx, yy], axis=-1)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"AddCoords expects a (batch, height, width, channels) input; got shape {tuple(input_shape)}.")
        channels = None if input_shape[-1] is None else input_shape[-1] + 2
        return (*input_shape[:-1], channels)


# ------------------------------------------------------------ multitask models


def check_alpha(alpha) -> float:
    """Return ``alpha`` as a float if it is strictly between 0 and 1, else raise a clear ValueError.

    At 0 or 1 one head gets no gradient and the model is not multitask: train a single
    head instead (:func:`box_regressor`, or a plain classifier).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) or not np.isfinite(alpha):
        raise ValueError(f"alpha must be a number strictly between 0 and 1; got {alpha!r}.")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(
            f"alpha must be strictly between 0 and 1 so that both heads are trained; got {alpha}. "
            "alpha = 1 ignores the box head and alpha = 0 the class head: for one task, build a "
            "single-head model (box_regressor for boxes alone)."
        )
    return float(alpha)


def multitask_loss(s, r, alpha):
    """The lecture's multitask loss :math:`L = \\alpha S + (1 - \\alpha) R` (one scalar to differentiate)."""
    alpha = check_alpha(alpha)
    return alpha * s + (1.0 - alpha) * r


def _check_backbone(backbone):
    """Return the backbone's spatial output (batch, h, w, c), or raise a clear ValueError."""
    if not isinstance(backbone, keras.Model):
        raise ValueError(f"backbone must be a keras.Model (e.g. a small CNN or a MobileNetV2 without top); got {type(backbone).__name__}.")
    if len(backbone.outputs) != 1 or len(backbone.outputs[0].shape) != 4:
        shapes = [tuple(o.shape) for o in backbone.outputs]
        raise ValueError(
            f"backbone must output one spatial feature map (batch, h, w, channels); got output shape(s) {shapes}. "
            "Build it without its classifier and without global pooling (e.g. include_top=False, pooling=None)."
        )
    return backbone.outputs[0]


POOLINGS = {"flatten": keras.layers.Flatten, "avg": keras.layers.GlobalAveragePooling2D,
            "max": keras.layers.GlobalMaxPooling2D}


def _head(features, pooling: str, dropout: float, hidden: int, name: str):
    """Feature map -> pooled vector -> dropout -> Dense(hidden, relu).

    'flatten' keeps where each feature fired; 'avg' and 'max' (global average / max
    pooling) discard it, which suits a class that does not depend on the position.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {sorted(POOLINGS)} ('flatten' keeps where things are); got {pooling!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}.")
    x = POOLINGS[pooling](name=f"{name}_{pooling}")(features)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    if hidden:
        x = keras.layers.Dense(check_positive_int(hidden, "hidden"), activation="relu", name=f"{name}_hidden")(x)
    return x


def multitask_model(backbone, num_classes: int, alpha: float = 0.5, box_loss="l2", hidden: int = 128,
                    dropout: float = 0.3, box_dropout: float = 0.0, class_pooling: str = "max", box_pooling: str = "flatten",
                    learning_rate: float = 1e-3, optimizer=None, compile: bool = True, name: str = "multitask"):
    """Classification + localization on one backbone, compiled with :math:`\\alpha S + (1-\\alpha) R`.

    Two heads share the backbone's feature map. ``"class"``: ``num_classes`` logits
    after global max pooling (``class_pooling``; what the digit is does not depend on
    where it is, and the max keeps the strongest evidence even among clutter), with
    ``dropout`` before it. ``"box"``: four sigmoids, a normalised xyxy box inside the image by
    construction, after flattening (``box_pooling``; where it is needs the positions)
    and a Dense(``hidden``, relu) layer, with ``box_dropout`` (default none: dropout noise
    on a regression output blurs the box). ``learning_rate`` may be a Keras schedule. Compiled with the loss dict
    ``{"class": sparse cross-entropy from logits, "box": box_loss}`` and
    ``loss_weights={"class": alpha, "box": 1 - alpha}``, which is how Keras writes the
    lecture's multitask loss; metrics: class accuracy and :class:`BoxIoU`; optimizer
    ``optimizer`` or Adam(``learning_rate``). ``backbone`` must output a spatial map
    (batch, h, w, c). Used in notebook 05.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2; got {num_classes}.")
    alpha = check_alpha(alpha)
    box_loss = get_box_loss(box_loss)
    features = _check_backbone(backbone)
    outputs = {
        "class": keras.layers.Dense(num_classes, name="class")(_head(features, class_pooling, dropout, 0, "class")),
        "box": keras.layers.Dense(4, activation="sigmoid", name="box")(_head(features, box_pooling, box_dropout, hidden, "box")),
    }
    model = keras.Model(backbone.inputs, outputs, name=name)
    if compile:
        model.compile(
            optimizer=optimizer or keras.optimizers.Adam(learning_rate),
            loss={"class": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "box": box_loss},
            loss_weights={"class": alpha, "box": 1.0 - alpha},
            metrics={"class": ["accuracy"], "box": [BoxIoU()]},
        )
    return model


def box_regressor(backbone, box_loss="l2", activation: str = "linear", hidden: int = 128, dropout: float = 0.0,
                  pooling: str = "flatten", learning_rate: float = 1e-3, name: str = "box_regressor"):
    """Box regression alone: backbone -> Dense(4), compiled with a box loss and :class:`BoxIoU`.

    The lecture's "simplest solution" uses a linear output and the L2 loss; with
    ``activation="linear"`` nothing keeps the box inside the image, ``"sigmoid"`` does.
    Used in notebook 05.
    """
    if activation not in ("linear", "sigmoid"):
        raise ValueError(f"activation must be 'linear' (unconstrained) or 'sigmoid' (inside the image); got {activation!r}.")
    x = _head(_check_backbone(backbone), pooling, dropout, hidden, name)
    out = keras.layers.Dense(4, activation=activation, name="box")(x)
    model = keras.Model(backbone.inputs, out, name=name)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=get_box_loss(box_loss), metrics=[BoxIoU()])
    return model


def quick_and_dirty_model(backbone, dropout: float = 0.3, pooling: str = "flatten", learning_rate: float = 1e-3,
                          name: str = "quick_and_dirty"):
    """The lecture's "quick and dirty" localizer, built so its limits can be shown.

    Two heads on the backbone: ``"class"``, one sigmoid unit (a *binary* class
    probability), and ``"box"``, four sigmoid units (a normalised box); both trained
    with the same ``BinaryCrossentropy`` and equal weights. It cannot express more than
    two classes, and the loss it adds up is not a loss we chose for boxes. (The lecture
    puts both heads on MobileNet's pooled vector; ``pooling="avg"`` does that.)
    Used in notebook 05.
    """
    x = _head(_check_backbone(backbone), pooling, dropout, 0, name)
    outputs = {
        "class": keras.layers.Dense(1, activation="sigmoid", name="class")(x),
        "box": keras.layers.Dense(4, activation="sigmoid", name="box")(x),
    }
    model = keras.Model(backbone.inputs, outputs, name=name)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.BinaryCrossentropy(),
                  metrics={"class": ["binary_accuracy"], "box": [BoxIoU()]})
    return model


@keras.saving.register_keras_serializable("course_lib")
class MultitaskTrainer(keras.Model):
    """The multitask loss written out in a custom ``train_step`` (one scalar, both heads' gradients).

    Wraps a two-head model (outputs ``{"class": logits, "box": box}``, e.g.
    :func:`multitask_model` with ``compile=False``) and shares its weights. In each
    step: :math:`S` = sparse cross-entropy of the logits, :math:`R` = the box loss,
    :math:`L = \\alpha S + (1 - \\alpha) R` (+ any layer regularisation), gradients
    of :math:`L` with respect to every trainable weight, one optimizer step. With the
    same weights and data it gives the same update as the ``compile`` version.
    Logs ``loss``, ``class_loss``, ``box_loss``, ``class_accuracy``, ``box_iou``,
    the names ``compile`` uses. Used in notebook 05.
    """

    def __init__(self, model, alpha: float = 0.5, box_loss="l2", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model) or not isinstance(model.output, dict) or set(model.output) != {"class", "box"}:
            raise ValueError("model must be a keras.Model with outputs {'class': logits, 'box': box}; build it with multitask_model(..., compile=False).")
        self.model = model
        self.alpha = check_alpha(alpha)
        self.class_loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.box_loss_fn = get_box_loss(box_loss)
        self.trackers = {
            "loss": keras.metrics.Mean(name="loss"),
            "class_loss": keras.metrics.Mean(name="class_loss"),
            "box_loss": keras.metrics.Mean(name="box_loss"),
            "class_accuracy": keras.metrics.SparseCategoricalAccuracy(name="class_accuracy"),
            "box_iou": BoxIoU(name="box_iou"),
        }

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _multitask_losses(self, y, out):
        s = self.class_loss_fn(y["class"], out["class"])
        r = self.box_loss_fn(y["box"], out["box"])
        loss = multitask_loss(s, r, self.alpha)
        if self.losses:  # weight decay or other layer penalties, as compile adds them
            loss = loss + ops.sum(ops.stack(self.losses))
        return loss, s, r

    def _update(self, y, out, loss, s, r):
        for key, value in (("loss", loss), ("class_loss", s), ("box_loss", r)):
            self.trackers[key].update_state(value)
        self.trackers["class_accuracy"].update_state(y["class"], out["class"])
        self.trackers["box_iou"].update_state(y["box"], out["box"])
        return {k: m.result() for k, m in self.trackers.items()}

    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            out = self(x, training=True)
            loss, s, r = self._multitask_losses(y, out)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self._update(y, out, loss, s, r)

    def test_step(self, data):
        x, y = data[0], data[1]
        out = self(x, training=False)
        return self._update(y, out, *self._multitask_losses(y, out))


# ------------------------------------------------------------------ evaluation


def localization_report(model, images, labels, boxes, batch_size: int = 256) -> dict:
    """Evaluate a two-head model: accuracy, mean IoU, fraction of boxes with IoU >= 0.5, and both.

    ``"correct_and_iou50"`` counts an image as right when the class is right *and* the
    box overlaps the truth by IoU >= 0.5 (the classic single-object localization
    criterion of ImageNet's challenge). ``labels``: (N,), (N, 1) or one-hot (N, K)
    (:func:`course_lib.validation.class_ids`). Returns also the predictions.
    """
    from .validation import class_ids

    labels = class_ids(labels)  # a (N, 1) column would broadcast against (N,) predictions into (N, N)
    boxes = check_boxes(boxes)
    out = model.predict(images, batch_size=batch_size, verbose=0)
    pred_class = np.asarray(out["class"]).argmax(axis=-1)
    pred_box = np.asarray(out["box"], np.float32)
    ious = np.asarray(ops.convert_to_numpy(box_iou(boxes, pred_box)))
    correct = pred_class == labels
    return {
        "accuracy": float(correct.mean()),
        "mean_iou": float(ious.mean()),
        "iou50": float((ious >= 0.5).mean()),
        "correct_and_iou50": float((correct & (ious >= 0.5)).mean()),
        "pred_class": pred_class,
        "pred_box": pred_box,
        "ious": ious,
    }


def show_boxes(images, true_boxes, pred_boxes, labels=None, predictions=None, class_names=None,
               ncols: int = 8, title: str | None = None, size: float = 1.6):
    """Show images with the true box (white) and the predicted box (yellow), titled with class and IoU.

    Builds on :func:`course_lib.viz.show_images`; the title of each panel is
    ``"true / predicted"`` class (red when wrong) followed by the IoU. Predicted boxes
    are drawn as predicted, even if they leave the image or are inverted.
    """
    import matplotlib.pyplot as plt

    from .viz import show_images

    t = check_boxes(true_boxes, "true_boxes")
    p = np.asarray(pred_boxes, np.float32)
    if p.shape != t.shape or p.shape[-1] != 4:
        raise ValueError(f"pred_boxes must have the shape of true_boxes {t.shape}; got {p.shape}.")
    ious = np.asarray(ops.convert_to_numpy(box_iou(t, p)))
    fig = show_images(images, labels=labels, predictions=predictions, class_names=class_names, boxes=t,
                      ncols=ncols, title=title, size=size)
    h, w = np.asarray(images).shape[1:3]
    for ax, box, score in zip(fig.axes, p, ious):
        ax.add_patch(plt.Rectangle((box[0] * w - 0.5, box[1] * h - 0.5), (box[2] - box[0]) * w, (box[3] - box[1]) * h,
                                   fill=False, edgecolor="yellow", linewidth=1.2, linestyle="--"))
        ax.set_title(f"{ax.get_title()}  IoU {score:.2f}".strip(), fontsize=8, color=ax.title.get_color())
        ax.set_xlim(-0.5 - 0.25 * w, w - 0.5 + 0.25 * w)  # a margin, so boxes that leave the image show
        ax.set_ylim(h - 0.5 + 0.25 * h, -0.5 - 0.25 * h)
    return fig


# -------------------------------------------------------------------- keypoints

#: The joints of :func:`make_stick_figures`, in output order.
JOINTS = ("head", "neck", "hip", "left_hand", "right_hand", "left_foot", "right_foot")
#: The limbs drawn between joints (indices into :data:`JOINTS`) and their colours:
#: the figure's left side is drawn in cyan, its right side in orange, the trunk in white.
LIMBS = ((0, 1, "trunk"), (1, 2, "trunk"), (1, 3, "left"), (1, 4, "right"), (2, 5, "left"), (2, 6, "right"))
_LIMB_COLOURS = {"trunk": (1.0, 1.0, 1.0), "left": (0.2, 0.9, 1.0), "right": (1.0, 0.6, 0.1)}


def _draw_segment(canvas, p, q, colour, width=1.5):
    """Draw an anti-aliased thick segment from p to q (pixel (x, y)) onto an (S, S, 3) canvas."""
    size = canvas.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = q - p
    t = np.clip(((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / max(float(d @ d), 1e-6), 0.0, 1.0)
    dist = np.hypot(xx - (p[0] + t * d[0]), yy - (p[1] + t * d[1]))
    alpha = np.clip(width - dist, 0.0, 1.0)[..., None]
    canvas[:] = canvas * (1 - alpha) + np.asarray(colour, np.float32) * alpha


def make_stick_figures(n: int, image_size: int = 48, seed: int = 0):
    """Generate ``n`` stick figures on real textures, with their 7 joints as regression targets.

    Each figure: a random pose (trunk tilt, arm and leg angles), scaled to 50-90% of
    the image and placed at random, drawn over a dim crop of a real texture (skimage
    grass / gravel / brick); left limbs cyan, right limbs orange (as pose annotations
    colour-code sides). Returns ``(images, keypoints)``: float32 (n, S, S, 3) in
    [0, 1] and float32 (n, 7, 2) normalised (x, y) in :data:`JOINTS` order.
    Deterministic per seed. Used in notebook 05 (keypoint regression, the DeepPose idea).
    """
    from .data import TEXTURES, load_texture

    n = check_positive_int(n, "n")
    image_size = check_positive_int(image_size, "image_size")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 to draw a figure; got {image_size}.")
    rng = np.random.default_rng([seed, 5])
    images = np.empty((n, image_size, image_size, 3), np.float32)
    keypoints = np.empty((n, len(JOINTS), 2), np.float32)
    for i in range(n):
        tilt = rng.uniform(-0.4, 0.4)
        up = np.array([np.sin(tilt), -np.cos(tilt)])
        hip = np.zeros(2)
        neck = hip + 1.0 * up
        head = neck + 0.45 * up

        def limb(origin, angle, length):
            return origin + length * np.array([np.sin(angle), np.cos(angle)])

        # angles measured from "down": left limbs swing to the figure's left (image right)
        l_hand = limb(neck, tilt + rng.uniform(0.3, 2.6), 0.8)
        r_hand = limb(neck, tilt - rng.uniform(0.3, 2.6), 0.8)
        l_foot = limb(hip, tilt + rng.uniform(0.1, 0.8), 1.0)
        r_foot = limb(hip, tilt - rng.uniform(0.1, 0.8), 1.0)
        pts = np.stack([head, neck, hip, l_hand, r_hand, l_foot, r_foot])
        lo, hi = pts.min(0), pts.max(0)
        scale = rng.uniform(0.5, 0.9) * (image_size - 4) / (hi - lo).max()
        pts = (pts - lo) * scale
        offset = rng.uniform(2, image_size - 2 - pts.max(0))
        pts = pts + offset
        tex = load_texture(TEXTURES[rng.integers(len(TEXTURES))])
        top, left = rng.integers(0, tex.shape[0] - image_size, size=2)
        canvas = np.repeat(0.1 + 0.3 * tex[top : top + image_size, left : left + image_size, None], 3, axis=-1)
        canvas = canvas * (0.5 + 0.5 * rng.random(3))
        for a, b, side in LIMBS:
            _draw_segment(canvas, pts[a], pts[b], _LIMB_COLOURS[side])
        _draw_segment(canvas, pts[0], pts[0], _LIMB_COLOURS["trunk"], width=2.5)  # the head as a dot
        images[i] = np.clip(canvas, 0.0, 1.0)
        keypoints[i] = pts / image_size
    return images, keypoints


def keypoint_model(backbone, num_keypoints: int, hidden: int = 128, dropout: float = 0.0, pooling: str = "flatten",
                   learning_rate: float = 1e-3, name: str = "keypoints"):
    """Keypoint regression: backbone -> Dense(2k, sigmoid) -> (k, 2), trained with the L2 loss.

    The box head's idea with :math:`2k` outputs instead of 4, as DeepPose (Toshev and
    Szegedy, CVPR 2014) regresses the k joints of a human pose. Used in notebook 05.
    """
    k = check_positive_int(num_keypoints, "num_keypoints")
    x = _head(_check_backbone(backbone), pooling, dropout, hidden, name)
    x = keras.layers.Dense(2 * k, activation="sigmoid", name="coords")(x)
    out = keras.layers.Reshape((k, 2), name="keypoints")(x)
    model = keras.Model(backbone.inputs, out, name=name)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=L2BoxLoss(name="l2_keypoints"))
    return model


def show_keypoints(images, true_keypoints, pred_keypoints=None, ncols: int = 6, title: str | None = None,
                   size: float = 1.8):
    """Show images with true joints (white dots) and predicted skeletons (limbs in :data:`LIMBS` colours).

    ``true_keypoints`` / ``pred_keypoints``: (N, k, 2) normalised (x, y) in :data:`JOINTS` order.
    Used in notebook 05.
    """
    from .viz import show_images

    t = np.asarray(true_keypoints, np.float32)
    if t.ndim != 3 or t.shape[-1] != 2 or len(t) != len(images):
        raise ValueError(f"true_keypoints must be (N, k, 2) with N = len(images); got {t.shape} for {len(images)} images.")
    fig = show_images(images, ncols=ncols, title=title, size=size)
    h, w = np.asarray(images).shape[1:3]
    for i, ax in enumerate(fig.axes[: len(t)]):
        ax.plot(t[i, :, 0] * w - 0.5, t[i, :, 1] * h - 0.5, "o", ms=3, mfc="white", mec="black", mew=0.5)
        if pred_keypoints is not None:
            p = np.asarray(pred_keypoints[i], np.float32) * [w, h] - 0.5
            for a, b, side in LIMBS:
                ax.plot(p[[a, b], 0], p[[a, b], 1], "-", lw=1.5, color=_LIMB_COLOURS[side] if side != "trunk" else "red")
    return fig


def pck(true_keypoints, pred_keypoints, threshold: float = 0.1) -> np.ndarray:
    """Percentage of Correct Keypoints per joint (Yang and Ramanan, 2013): a (k,) array.

    A predicted joint is correct when it lies within ``threshold`` x the size of the
    true figure (the longer side of the box around its keypoints) of the true joint.
    """
    t = np.asarray(true_keypoints, np.float32)
    p = np.asarray(pred_keypoints, np.float32)
    if t.ndim != 3 or t.shape[-1] != 2 or p.shape != t.shape:
        raise ValueError(f"keypoints must be two arrays of the same shape (N, k, 2); got {t.shape} and {p.shape}.")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold!r}.")
    size = (t.max(axis=1) - t.min(axis=1)).max(axis=-1)  # (N,)
    dist = np.linalg.norm(p - t, axis=-1)  # (N, k)
    return (dist <= threshold * size[:, None]).mean(axis=0)


# ------------------------------------------------------------------ exercise references
# Notebook 05's exercises, for the student versions to fall back on until an exercise is
# answered (course_lib.exercises.answer_or_reference).


def to_center_xywh(boxes) -> np.ndarray:
    """(x_min, y_min, x_max, y_max) boxes -> (x_centre, y_centre, width, height), float32 (N, 4).

    :func:`xyxy_to_xywh` with ``center=True``. Notebook 05, exercise 1.
    """
    return xyxy_to_xywh(np.asarray(boxes, np.float32), center=True).astype(np.float32)


def multitask_loss_np(labels, logits, true_boxes, pred_boxes, alpha) -> float:
    """The multitask loss in NumPy: alpha * mean cross-entropy + (1 - alpha) * mean squared box error.

    S is the softmax cross-entropy of ``logits`` (N, K) for ``labels`` (N,), (N, 1) or one-hot (N, K), R the
    squared L2 box error summed over the 4 coordinates and averaged over the boxes;
    :func:`multitask_loss` combines them (ValueError unless 0 < alpha < 1). Notebook 05, exercise 3.
    """
    from .validation import class_ids

    alpha = check_alpha(alpha)
    logits = np.asarray(logits, np.float64)
    labels = class_ids(labels, logits.shape[-1])  # (N,), (N, 1) or one-hot
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    s = -log_p[np.arange(len(labels)), labels].mean()
    r = ((np.asarray(pred_boxes, np.float64) - np.asarray(true_boxes, np.float64)) ** 2).sum(axis=1).mean()
    return float(multitask_loss(s, r, alpha))
