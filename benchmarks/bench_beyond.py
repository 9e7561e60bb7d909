"""Time course_lib.explain.rise and smooth_grad_cam_plus_plus against plain references, same run.

RISE: ours (masked copies in memory-budgeted chunks through one compiled function) vs
the straightforward loop of ``model.predict`` on each image's masked copies.
Smooth Grad-CAM++: ours (all noisy copies of a batch in one compiled pass) vs one
Grad-CAM++ call per noisy copy (what averaging maps would cost). Prints seconds and ratios.

    python benchmarks/bench_beyond.py [--images 8] [--masks 500] [--samples 16]
"""

import argparse
import time

import course_lib

course_lib.setup(seed=0, verbose=False)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from course_lib import explain  # noqa: E402


def small_cnn(size=48):
    inputs = keras.Input((size, size, 3))
    x = inputs
    for i, f in enumerate((16, 32, 64, 64), start=1):
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        if i <= 2:
            x = keras.layers.MaxPooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x)))


def timed(fn, repeats=2):
    fn()  # warm-up (tracing)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--masks", type=int, default=500)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    model = small_cnn()
    images = np.random.default_rng(0).random((args.images, 48, 48, 3)).astype(np.float32)
    masks = explain.rise_masks(args.masks, (48, 48), grid=6)

    def naive_rise():
        for x in images:
            probs = keras.ops.softmax(model.predict(x[None] * masks[..., None], verbose=0, batch_size=256))
            np.tensordot(np.asarray(probs)[:, 0], masks, axes=1)

    ours = timed(lambda: explain.rise(model, images, 0, n_masks=args.masks, grid=6, progress=False))
    ref = timed(naive_rise)
    print(f"RISE, {args.images} images x {args.masks} masks: ours {ours:.2f} s, model.predict loop {ref:.2f} s, "
          f"ratio ours/ref {ours / ref:.2f}")

    rng = np.random.default_rng(0)

    def per_copy():
        for _ in range(args.samples):
            noisy = np.clip(images + 0.15 * rng.standard_normal(images.shape), 0, 1).astype(np.float32)
            explain.grad_cam_plus_plus(model, noisy)  # clipped: the public function checks [0, 1]

    ours = timed(lambda: explain.smooth_grad_cam_plus_plus(model, images, n_samples=args.samples))
    ref = timed(per_copy)
    print(f"Smooth Grad-CAM++, {args.images} images x {args.samples} copies: ours {ours:.2f} s, "
          f"one Grad-CAM++ call per copy {ref:.2f} s, ratio ours/ref {ours / ref:.2f}")


if __name__ == "__main__":
    main()
