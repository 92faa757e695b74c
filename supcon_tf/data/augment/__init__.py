"""Training and evaluation views, batch-level and stateless: every random
choice is made per image from a seed, so one call transforms a whole batch
and the same seed gives the same views.

Parts: `batching` (what the ops share), `pil_ops` (AutoAugment's ops with
PIL's exact semantics, tested pixel for pixel against Pillow), `policies`
(AutoAugment's CIFAR-10 and ImageNet policies, RandAugment), `crops` (pad
and crop, the official crop window, flips, Cutout), `color` (SimCLR's
distortion and blur), `warp` (the official warp), `views` (`augment`, the
training view by the official names from a `supcon_tf.config.Preprocessing`
or a Config; `eval_crop`), `tf_models_ops` and `tf_models_policies` (TF-Models'
AutoAugment and RandAugment, the official ones; kept under their own names).
Every public name of the other parts is here too.
"""
from supcon_tf.data.augment.batching import (  # noqa: F401
    FILL_VALUE, apply_to_some, as_batch, batched, example_positions,
    image_seeds, normal, per_image, per_image_vector, random_apply, uniform)
from supcon_tf.data.augment.pil_ops import (  # noqa: F401
    OPS, autocontrast, brightness, color, contrast, equalize, invert,
    posterize, rotate, sharpness, shear_x, shear_y, solarize, translate_x,
    translate_y)
from supcon_tf.data.augment.policies import (  # noqa: F401
    CIFAR10_POLICY, IMAGENET_POLICY, POLICIES, RANDAUGMENT_OPS, SIGNED_OPS,
    apply_each, apply_ops, apply_policy, autoaugment, level_to_magnitude,
    policy_draws, randaugment, randaugment_draws)
from supcon_tf.data.augment.crops import (  # noqa: F401
    crop_and_resize, cutout, cutout_at, distorted_crop_window,
    official_crop, pad_crop_flip, random_flips, random_resized_crop,
    sample_crop_boxes)
from supcon_tf.data.augment.warp import (  # noqa: F401
    dense_image_warp, interpolate_spline, random_warp, sparse_image_warp)
from supcon_tf.data.augment.color import (  # noqa: F401
    GRAY_WEIGHTS, JITTER_OPS, adjust_brightness, adjust_contrast,
    adjust_hue, adjust_saturation, batch_random_blur, color_jitter,
    gaussian_blur, simclr_distort)
from supcon_tf.data.augment.views import (  # noqa: F401
    augment, crop_views, deferred_blur, eval_crop)
