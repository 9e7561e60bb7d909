"""Explaining a classifier: class activation maps, gradients on the input, perturbation, localization.

One module per family, each importable from here under the names the notebooks use
(``explain.grad_cam``, ``explain.rise``, ...):

- ``_interpreter``: runs any functional, Sequential or nested Keras model layer by layer,
  records an inner feature map, strips a final softmax or sigmoid (any spelling), chooses
  one of several outputs, caches one compiled function per model and layer; the only
  file of course_lib that reads private Keras API.
- ``cam``: :func:`cam` (Zhou et al. 2016), :func:`grad_cam` (Selvaraju et al. 2017),
  :func:`grad_cam_plus_plus` (Chattopadhay et al. 2018), :func:`smooth_grad_cam_plus_plus`
  (Omeiza et al. 2019), :func:`layer_cam` (Jiang et al. 2021): weight functions feeding one
  combine-and-upsample step; :func:`augmented_grad_cam` (Morbidelli et al. 2020).
- ``gradients``: :func:`saliency` (Simonyan et al. 2014), :func:`guided_backprop`
  (Springenberg et al. 2015), :func:`guided_grad_cam`.
- ``perturbation``: :func:`occlusion` (Zeiler and Fergus 2014), :func:`rise` (Petsiuk et al. 2018).
- ``wsol``: :func:`cam_to_box`, :func:`box_iou`, :func:`box_mass_share`,
  :func:`localization_accuracy` (the CAM paper's protocol), :func:`box_accuracy_by_threshold`
  (Choe et al. 2020).
- ``features`` (notebook 08): :func:`layer_activations`, :func:`receptive_field`,
  :func:`max_activating_patches`, :func:`activation_maximization`.
- ``faithfulness`` (notebook 09): :func:`average_drop`, :func:`increase_in_confidence`,
  :func:`deletion_insertion`, :func:`sanity_check` (Adebayo et al. 2018).
- ``perception`` (notebook 07): :func:`perception_visualization` (Giulivi et al. 2021): a
  decoder's reconstruction of the latent representation, weighted by Grad-CAM.
- ``display``: :func:`normalize`, :func:`overlay`, :func:`resize_maps`.

Conventions: images are float32 in [0, 1], (N, H, W, C); models output logits (a final
softmax or sigmoid is stripped in any spelling, so the explained score is always the
logit S_c; an output activation whose logit cannot be recovered raises a ValueError).
A model with several outputs is explained one output at a time (``output=`` name or
index); models with several inputs are refused. Every map is returned as a float32 NumPy
array, also for a model built under the ``mixed_float16`` policy. TensorFlow only. Used
in notebooks 07, 08, 09 and 11.
"""

from __future__ import annotations

from ._interpreter import _CACHE, _all_layers  # noqa: F401  (the tests inspect the cache and walk nested layers)
from .cam import (METHODS, VARIANTS, WEIGHTS, anisotropic_tv, augmented_grad_cam, cam, cam_weighted_sum,  # noqa: F401
                  grad_cam, grad_cam_map, grad_cam_plus_plus, layer_cam, smooth_grad_cam_plus_plus, warp_matrix)
from .display import normalize, overlay, resize_maps
from .faithfulness import (average_drop, curve_auc, deletion_insertion, drop_and_increase, explanation_confidence,
                           increase_in_confidence, randomized_copy, sanity_check)
from .features import (activation_maximization, ascent_step, feature_map_layers, find_layer, layer_activations,
                       max_activating_patches, receptive_field, receptive_field_size, top_images)
from .gradients import guided_backprop, guided_grad_cam, saliency
from .perception import perception_visualization
from .perturbation import occlusion, rise, rise_estimate, rise_masks
from .wsol import box_accuracy_by_threshold, box_iou, box_mass_share, cam_to_box, localization_accuracy, map_to_box

__all__ = [
    "cam", "grad_cam", "grad_cam_plus_plus", "layer_cam", "saliency", "guided_backprop", "guided_grad_cam",
    "occlusion", "normalize", "overlay", "resize_maps", "cam_to_box", "box_iou", "box_mass_share",
    "localization_accuracy", "box_accuracy_by_threshold", "find_layer", "feature_map_layers",
    "layer_activations", "receptive_field", "max_activating_patches", "activation_maximization",
    "smooth_grad_cam_plus_plus", "rise_masks", "rise", "warp_matrix", "augmented_grad_cam",
    "explanation_confidence", "average_drop", "increase_in_confidence", "curve_auc", "deletion_insertion",
    "randomized_copy", "sanity_check", "perception_visualization",
    # the references of notebooks 07-09's exercises (course_lib.exercises falls back on them)
    "cam_weighted_sum", "grad_cam_map", "map_to_box", "receptive_field_size", "top_images", "ascent_step",
    "rise_estimate", "drop_and_increase", "anisotropic_tv",
]

# The public home of every name is course_lib.explain (messages and help() say so), whichever file defines it.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
