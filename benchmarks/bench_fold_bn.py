"""Inference time before and after folding batch normalization into the convolutions.

Times ``course_lib.batchnorm.fold_batch_norm`` on a MobileNetV2 (``keras.applications``,
random weights, nothing downloaded) and on a small ResNet-style model built here from
Keras layers, against the unfolded model as the reference, in the same run. Prints the
max abs output difference and the speed ratio (unfolded time / folded time, > 1 means
folding is faster). Run from the repository root:

    python benchmarks/bench_fold_bn.py [--batch 32] [--size 96] [--repeats 20]
"""

import argparse
import time

import numpy as np

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers as L  # noqa: E402

from course_lib.batchnorm import fold_batch_norm  # noqa: E402


def resnet_style(size, width=32, blocks=4):
    """Conv-BN-ReLU stem and basic residual blocks (He et al. 2016), BN after every conv."""
    inp = keras.Input((size, size, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(inp)))
    for _ in range(blocks):
        y = L.ReLU()(L.BatchNormalization()(L.Conv2D(width, 3, padding="same", use_bias=False)(x)))
        y = L.BatchNormalization()(L.Conv2D(width, 3, padding="same", use_bias=False)(y))
        x = L.ReLU()(L.Add()([x, y]))
    return keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)), name="resnet_style")


def randomize_bn(model, seed=0):
    """Give every BN non-trivial statistics so the fold is actually exercised."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            values = {"gamma": rng.uniform(0.5, 1.5, n), "beta": rng.normal(0, 0.2, n),
                      "moving_mean": rng.normal(0, 0.2, n), "moving_variance": rng.uniform(0.5, 1.5, n)}
            layer.set_weights([values[w.name] for w in layer.weights])


def median_times(fns, x, repeats):
    """Median seconds per call of each function; calls alternate so all see the same machine load."""
    for fn in fns:
        fn(x)  # trace / warm up, outside the timing
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn(x).numpy()
            record.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    x = np.random.default_rng(0).random((args.batch, args.size, args.size, 3)).astype("float32")
    models = {
        "MobileNetV2(alpha=0.5)": keras.applications.MobileNetV2(
            input_shape=(args.size, args.size, 3), alpha=0.5, weights=None, classes=10, classifier_activation=None),
        "ResNet-style (4 basic blocks)": resnet_style(args.size),
    }
    print(f"batch {args.batch} x {args.size}x{args.size}x3, median of {args.repeats} alternating runs, tf.function inference")
    print(f"{'model':32s} {'BN before':>9s} {'after':>6s} {'max|diff|':>10s} {'unfolded ms':>12s} "
          f"{'folded ms':>10s} {'ratio':>6s}")
    for name, model in models.items():
        randomize_bn(model)
        folded = fold_batch_norm(model)
        n_bn = [sum(isinstance(la, L.BatchNormalization) for la in m.layers) for m in (model, folded)]
        diff = float(np.abs(model(x, training=False).numpy() - folded(x, training=False).numpy()).max())
        ref = tf.function(lambda v, m=model: m(v, training=False))
        ours = tf.function(lambda v, m=folded: m(v, training=False))
        t_ref, t_ours = median_times([ref, ours], x, args.repeats)
        print(f"{name:32s} {n_bn[0]:9d} {n_bn[1]:6d} {diff:10.2e} {1e3 * t_ref:12.1f} {1e3 * t_ours:10.1f} "
              f"{t_ref / t_ours:6.2f}x")


if __name__ == "__main__":
    main()
