"""Benchmark course_lib.models against keras.applications: parameters, FLOPs, CPU latency.

For each pair (ours, Keras' own model built with ``weights=None`` at the same
configuration) it prints parameters, multiply-adds (``course_lib.models.count_flops``)
and the median CPU time of one forward pass, then the latency ratio ours / Keras.
Our models carry one extra layer that normalises [0, 1] images inside (no weights),
which Keras' models leave to ``preprocess_input``; the ratio includes that cost.

It also cross-checks ``count_flops`` against TensorFlow's own graph profiler, which
counts 2 FLOPs per multiply-add of Conv2D / DepthwiseConv2dNative / MatMul.

Run from the repository root:  python benchmarks/bench_models.py [--repeats 10] [--batch 1]
Timings are not asserted anywhere: on a shared machine they vary; read the ratios.
"""

import argparse

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib import models  # noqa: E402


def profiler_macs(model) -> float:
    """Multiply-adds of conv / depthwise / matmul ops according to TensorFlow's profiler (FLOPs / 2)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler import model_analyzer, option_builder

    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(concrete).graph
    opts = option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
    opts = opts.with_empty_output().account_displayed_op_only(True)
    opts = opts.select(["float_ops"]).with_node_names(show_name_regexes=[".*"]).build()
    opts["account_type_regexes"] = ["Conv2D", "DepthwiseConv2dNative", "MatMul"]
    report = model_analyzer.profile(graph, options=opts)
    return report.total_float_ops / 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()

    pairs = [
        ("ResNet50", lambda: models.resnet(50, conv_bias=True),
         lambda: keras.applications.ResNet50(weights=None, classifier_activation=None)),
        ("MobileNetV2 1.0", lambda: models.mobilenet_v2(1.0),
         lambda: keras.applications.MobileNetV2(weights=None, alpha=1.0, classifier_activation=None)),
        ("MobileNetV2 0.35 @96", lambda: models.mobilenet_v2(0.35, (96, 96, 3), 10),
         lambda: keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3), classes=10,
                                                classifier_activation=None)),
    ]
    print(f"batch {args.batch}, {args.repeats} timed forward passes per model (median)\n")
    header = f"{'model':22s} {'params ours':>12s} {'params Keras':>12s} {'MMACs ours':>11s} {'MMACs TF prof':>13s} " \
             f"{'ours ms':>8s} {'Keras ms':>9s} {'ratio':>6s}"
    print(header)
    for name, build_ours, build_ref in pairs:
        ours, ref = build_ours(), build_ref()
        macs = models.count_flops(ours) / 1e6
        prof = profiler_macs(ours) / 1e6
        t_ours = models.cpu_latency(ours, args.batch, args.repeats)
        t_ref = models.cpu_latency(ref, args.batch, args.repeats)
        print(f"{name:22s} {ours.count_params():12,d} {ref.count_params():12,d} {macs:11.1f} {prof:13.1f} "
              f"{t_ours:8.1f} {t_ref:9.1f} {t_ours / t_ref:6.2f}")
        del ours, ref
        keras.backend.clear_session()

    print("\nCourse-scale models (48x48x3, 10 classes):")
    shape = (48, 48, 3)
    models.compare_models([
        models.resnet(8, shape, 10, variant="cifar"),
        models.resnet(20, shape, 10, variant="cifar"),
        models.mobilenet_v2(0.35, shape, 10, variant="cifar"),
        models.small_inception_net(shape, 10),
        models.small_densenet(shape, 10),
    ], batch_size=args.batch, repeats=args.repeats)


if __name__ == "__main__":
    main()
