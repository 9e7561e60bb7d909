"""Perception Visualization: what the network perceived where it looked (Giulivi, Carman and Boracchi, BMVC 2021).

The encoder E is the classifier truncated at the layer Grad-CAM explains; a decoder D,
trained separately to reconstruct the input from E's output, turns the latent
representation back into an image, D(E(x)). A saliency map says *where* the evidence
for a class lies; the reconstruction shows *what* the representation holds there.
:func:`perception_visualization` combines the two: the reconstruction weighted, pixel by
pixel, by the Grad-CAM map of the class, upsampled and scaled to [0, 1]. The classifier
is not changed; training the decoder is the caller's (notebook 07 shows one way).
Used in notebook 07.
"""

from __future__ import annotations

import keras
import numpy as np

from ..validation import check_images, check_positive_int
from .cam import grad_cam
from .display import normalize
from .features import layer_activations


def perception_visualization(model, decoder, images, class_index=None, layer=None, batch_size=64):
    """Perception Visualization PV = S * D(E(x)): the decoder's reconstruction where Grad-CAM looks.

    Parameters
    ----------
    model : keras.Model
        The classifier M (outputs logits or probabilities, as for
        :func:`~course_lib.explain.grad_cam`), with one image input. Not changed.
    decoder : keras.Model
        D: maps the output of ``layer`` (N, h, w, K) to images (N, H, W, C) with values in
        [0, 1] (end it with a sigmoid), trained beforehand to invert E.
    images : float32 array of shape (N, H, W, C), values in [0, 1]
    class_index : None, int or int array of shape (N,)
        Class whose Grad-CAM weights the reconstruction. None: each image's top class
        (the prediction, the usual choice for explaining a mistake); an int: that class for
        every image.
    layer : str or None
        The layer where M is cut into the encoder E, also the layer Grad-CAM explains;
        None: the last 4-D map feeding the global pooling (Grad-CAM's default).
    batch_size : int
        Images per call of the model and the decoder, >= 1.

    Returns
    -------
    result : dict of float32 ndarrays
        ``"pv"`` (N, H, W, C): ``saliency[..., None] * reconstruction``, values in [0, 1];
        ``"reconstruction"`` (N, H, W, C): D(E(x)), values in [0, 1];
        ``"saliency"`` (N, H, W): the Grad-CAM map of the class (ReLU of the weighted sum),
        upsampled bilinearly to (H, W) and scaled to [0, 1] per image by its minimum and
        maximum (a map with no positive evidence is all zeros, and so is its PV).

    Raises
    ------
    ValueError
        ``images`` not (N, H, W, C) float in [0, 1], or another size than the model's input;
        ``decoder`` not a keras.Model; a decoder whose input is not the shape of the layer's
        output, or whose output is not the shape of the images; reconstructions outside
        [0, 1] or not finite; ``batch_size`` < 1; and every error of
        :func:`~course_lib.explain.grad_cam` (a class out of range, an unknown or non-4-D
        ``layer``, a model that is not a classifier with one image input).

    References
    ----------
    L. Giulivi, M. J. Carman and G. Boracchi, "Perception Visualization: Seeing Through
    the Eyes of a DNN", BMVC 2021: an encoder E (a truncation of M), a decoder D trained to
    invert it, and saliency maps, combined so that the reconstruction is shown where the
    model looks. Here the saliency is Grad-CAM (Selvaraju et al., ICCV 2017) and the
    combination a pixel-wise product. Used in notebook 07.
    """
    images = check_images(images)
    batch_size = check_positive_int(batch_size, "batch_size")
    if not isinstance(decoder, keras.Model):
        raise ValueError(f"decoder must be a keras.Model mapping the latent maps to images; got "
                         f"{type(decoder).__name__}.")
    saliency = normalize(grad_cam(model, images, class_index, layer=layer, batch_size=batch_size))
    latent = layer_activations(model, images, layer, batch_size=batch_size)
    expected = tuple(decoder.inputs[0].shape[1:]) if len(decoder.inputs) == 1 else None
    if expected is None or any(e is not None and e != s for e, s in zip(expected, latent.shape[1:])) \
            or len(expected) != latent.ndim - 1:
        raise ValueError(f"the decoder must take one input of the layer's shape {latent.shape[1:]}; its inputs are "
                         f"{[tuple(t.shape) for t in decoder.inputs]}. Cut the model at the layer the decoder was "
                         "trained on (layer=...).")
    reconstruction = np.asarray(decoder.predict(latent, batch_size=batch_size, verbose=0), dtype=np.float32)
    if reconstruction.shape != images.shape:
        raise ValueError(f"the decoder outputs shape {reconstruction.shape[1:]} per image; the images are "
                         f"{images.shape[1:]}. The decoder must reconstruct the input image.")
    if not np.isfinite(reconstruction).all():
        raise ValueError("the decoder's reconstructions must be finite and lie in [0, 1] (images); they contain NaN "
                         "or Inf. Check the decoder's weights.")
    if reconstruction.min() < 0 or reconstruction.max() > 1:
        raise ValueError("the decoder's reconstructions must lie in [0, 1] (images); got values in "
                         f"[{reconstruction.min():.3g}, {reconstruction.max():.3g}]. End the decoder with a sigmoid.")
    return {"pv": saliency[..., None] * reconstruction, "reconstruction": reconstruction, "saliency": saliency}
