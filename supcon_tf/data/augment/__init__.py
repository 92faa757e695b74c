"""AutoAugment image ops in plain TensorFlow, with PIL's exact semantics.

Every op in `OPS` maps `fn(image, magnitude) -> image` on uint8 images
[H, W, 3] or batches [N, H, W, 3]; the magnitude is in the op's PIL units (bits,
threshold, enhancement factor) and is a scalar or, for a batch, one value per
image [N]. The reference is Pillow (`ImageOps`, `ImageEnhance`,
`Image.rotate` and `Image.transform` with nearest-neighbour sampling and a grey
(128, 128, 128) fill); the tests compare every op with it pixel for pixel.

Built on them: AutoAugment (CIFAR-10 and ImageNet policies), RandAugment, and
the batch-level crops, flips, SimCLR colour distortion and Cutout that make a
training view (`augment`, which takes a `supcon_tf.config.Preprocessing`
or a Config). Every random choice is stateless
and made per image, so one call transforms a whole batch and the same seed
gives the same views.

Parts: `batching`, `pil_ops` (the PIL-exact ops), `policies` (AutoAugment,
RandAugment), `crops`, `color` (SimCLR), `warp`, `views` (the training and eval
views); every public name is here too.
"""
from supcon_tf.data.augment.batching import (  # noqa: F401
    FILL_VALUE, apply_to_some, as_batch, batched, per_image,
    per_image_vector, random_apply)
from supcon_tf.data.augment.pil_ops import (  # noqa: F401
    OPS, autocontrast, brightness, color, contrast, equalize, invert,
    posterize, rotate, sharpness, shear_x, shear_y, solarize, translate_x,
    translate_y)
from supcon_tf.data.augment.policies import (  # noqa: F401
    CIFAR10_POLICY, IMAGENET_POLICY, POLICIES, RANDAUGMENT_OPS, SIGNED_OPS,
    apply_each, apply_ops, apply_policy, autoaugment, level_to_magnitude,
    policy_draws, randaugment, randaugment_draws)
from supcon_tf.data.augment.crops import (  # noqa: F401
    crop_and_resize, cutout, distorted_crop_window, official_crop_boxes,
    pad_crop_flip, random_flips, random_resized_crop, sample_crop_boxes)
from supcon_tf.data.augment.warp import (  # noqa: F401
    dense_image_warp, interpolate_spline, random_warp, sparse_image_warp)
from supcon_tf.data.augment.color import (  # noqa: F401
    GRAY_WEIGHTS, JITTER_OPS, adjust_brightness, adjust_contrast,
    adjust_hue, adjust_saturation, batch_random_blur, color_jitter,
    gaussian_blur, simclr_distort)
from supcon_tf.data.augment.views import (  # noqa: F401
    augment, crop_views, deferred_blur, eval_crop, unimplemented)
