"""Benchmark: course_lib.explain's Grad-CAM / Grad-CAM++ against tf-keras-vis, same model, same batch.

Times ``grad_cam`` and ``grad_cam_plus_plus`` on one batch of 32 images against
tf-keras-vis's ``Gradcam`` and ``GradcamPlusPlus`` (a dev / benchmark requirement, not
the course's) on the same randomly initialised MobileNetV2 classifier (no download),
and prints the median times and the ratios. Goals (issue 7): Grad-CAM at least 3x
faster than tf-keras-vis; our Grad-CAM++ at most 1.3x our Grad-CAM. It also checks that
both libraries give the same raw maps at the layer's resolution, so we time the same computation.

It also times a bare compiled forward and backward pass on the same model and batch (a
``keras.Model`` with the layer's output and the logits as outputs, and one
``tf.function`` that takes the gradient of the class logits w.r.t. that layer, with
nothing else), the least any Grad-CAM can cost, and prints our Grad-CAM's time over it
(issue 16: keep it within 1.2x). Nothing is asserted: speed is printed, not tested.

    python benchmarks/bench_gradcam.py [--batch 32] [--size 96] [--repeats 7]
"""

import argparse
import statistics
import time

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib import explain as ex  # noqa: E402


def build_model(size, images):
    """A flat functional MobileNetV2 (alpha 0.35, random weights) + GAP + Dense(10) logits.

    With random weights and fresh batch-norm statistics the activations shrink to ~1e-12
    by the last block; one training-mode pass with momentum 0 sets every batch norm's
    moving statistics to the batch's, so the maps have realistic magnitudes.
    """
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, include_top=False, weights=None)
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    model = keras.Model(base.input, keras.layers.Dense(10, name="logits")(x))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for bn in norms:
        bn.momentum = 0.0
    model(images, training=True)
    for bn in norms:
        bn.momentum = 0.99
    return model


def bare_forward_backward(model, layer, size):
    """A compiled ``fn(images, classes) -> (dS_c/dA, logits)``: the forward and backward pass Grad-CAM needs, alone."""
    sub = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])

    @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32), tf.TensorSpec((None,), tf.int32)])
    def fn(images, classes):
        with tf.GradientTape() as tape:
            A, logits = sub(images, training=False)
            score = tf.gather(logits, classes, batch_dims=1)
        return tape.gradient(score, A), logits

    return fn


def median_times(fns, repeats):
    """Median wall time of each function; rounds interleave them, so machine load hits all alike."""
    for fn in fns.values():
        fn()  # warm-up: tracing and compilation are not what we time
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.utils.scores import CategoricalScore

    images = np.random.default_rng(0).random((args.batch, args.size, args.size, 3)).astype(np.float32)
    model = build_model(args.size, images)
    classes = np.argmax(model.predict(images, verbose=0), -1)
    score = CategoricalScore(list(classes))
    tkv_gc, tkv_pp = Gradcam(model, clone=True), GradcamPlusPlus(model, clone=True)

    def ours_gc():
        return ex.grad_cam(model, images, classes, layer="out_relu")

    def ours_pp():
        return ex.grad_cam_plus_plus(model, images, classes, layer="out_relu")

    # seek_penultimate_conv_layer=False: by default tf-keras-vis silently moves from out_relu
    # to the last *Conv2D* before it (Conv_1, before batch norm and ReLU): another map.
    tkv_args = dict(penultimate_layer="out_relu", seek_penultimate_conv_layer=False, normalize_cam=False)

    def theirs_gc():
        return tkv_gc(score, images, **tkv_args)

    def theirs_pp():
        return tkv_pp(score, images, **tkv_args)

    bare_fn = bare_forward_backward(model, "out_relu", args.size)
    images_t, classes_t = tf.constant(images), tf.constant(classes.astype(np.int32))

    def bare():
        grads, logits = bare_fn(images_t, classes_t)
        return grads.numpy(), logits.numpy()  # wait for the result, as ours does

    # Same computation? At the layer's resolution the maps agree (the upsampling methods differ).
    ours_raw = ex.grad_cam(model, images, classes, layer="out_relu", upsample=False)
    theirs_raw = np.asarray(tkv_gc(score, images, expand_cam=False, **tkv_args))
    gap = np.abs(ours_raw - theirs_raw).max() / np.abs(ours_raw).max()

    t = median_times({"ours_gc": ours_gc, "bare": bare, "tkv_gc": theirs_gc, "ours_pp": ours_pp, "tkv_pp": theirs_pp},
                     args.repeats)
    print(f"MobileNetV2-0.35 at {args.size}x{args.size}, batch {args.batch}, median of {args.repeats} runs")
    print(f"  Grad-CAM maps at layer resolution, max relative difference ours vs tf-keras-vis: {gap:.1e}")
    for name, label in [("ours_gc", "course_lib grad_cam"), ("bare", "bare forward + backward pass"),
                        ("tkv_gc", "tf-keras-vis Gradcam"),
                        ("ours_pp", "course_lib grad_cam_plus_plus"), ("tkv_pp", "tf-keras-vis GradcamPlusPlus")]:
        print(f"  {label:32s} {t[name] * 1000:8.1f} ms")
    print(f"  our Grad-CAM / bare fwd+bwd time:    {t['ours_gc'] / t['bare']:.2f}   (goal <= 1.2)")
    print(f"  Grad-CAM speed-up vs tf-keras-vis:   {t['tkv_gc'] / t['ours_gc']:.2f}x  (goal >= 3x)")
    print(f"  Grad-CAM++ speed-up vs tf-keras-vis: {t['tkv_pp'] / t['ours_pp']:.2f}x")
    print(f"  our Grad-CAM++ / our Grad-CAM time:  {t['ours_pp'] / t['ours_gc']:.2f}   (goal <= 1.3)")


if __name__ == "__main__":
    main()
