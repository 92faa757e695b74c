"""Training and evaluation views, batch-level and stateless: every random
choice is made per image from a seed, so one call transforms a whole batch
and the same seed gives the same views.

Parts: `batching` (what the ops share), `engine` (AutoAugment and
RandAugment over an op family: every draw and the one loop that applies
them), three op families, each its ops and their level convention:
`pil_ops` (`PIL`: the papers' ops with PIL's exact semantics, tested pixel
for pixel against Pillow), `tf_models_ops` (`TF_MODELS`: TF-Models' ops, the
official code's) and `seed_ops` (`SEED`: the seed's scipy-based variant);
`policies` (the policy tables, each written once, and the named policies),
`crops` (pad and crop, the official crop window, flips, Cutout), `color`
(SimCLR's distortion and blur), `warp` (the official warp), `views`
(`augment`, the training view by the official names from a
`supcon_tf.config.Preprocessing` or a Config; `eval_crop`). The public names
of the parts other than the families' ops are here too.
"""
from supcon_tf.data.augment.batching import (  # noqa: F401
    FILL_VALUE, apply_by_group, as_batch, batched, example_positions,
    image_seeds, normal, per_image, per_image_vector, random_apply, uniform)
from supcon_tf.data.augment.engine import (  # noqa: F401
    GEOMETRIC_OPS, IDENTITY, Family, apply_each, apply_policy, apply_steps,
    autoaugment, policy_draws, randaugment, randaugment_draws)
from supcon_tf.data.augment.pil_ops import OPS, PIL  # noqa: F401
from supcon_tf.data.augment.tf_models_ops import TF_MODELS  # noqa: F401
from supcon_tf.data.augment.seed_ops import SEED  # noqa: F401
from supcon_tf.data.augment.policies import (  # noqa: F401
    CIFAR10_POLICY, IMAGENET_POLICY, POLICIES, RANDAUGMENT_FAMILIES,
    SIMPLE_POLICY, SVHN_POLICY, V0_POLICY)
from supcon_tf.data.augment.crops import (  # noqa: F401
    crop_and_resize, cutout, cutout_at, distorted_crop_window,
    official_crop, official_crop_draws, pad_crop_flip, random_flips,
    random_resized_crop, resize_window, sample_crop_boxes)
from supcon_tf.data.augment.warp import (  # noqa: F401
    dense_image_warp, interpolate_spline, random_warp, sparse_image_warp)
from supcon_tf.data.augment.color import (  # noqa: F401
    GRAY_WEIGHTS, JITTER_OPS, adjust_brightness, adjust_contrast,
    adjust_hue, adjust_saturation, batch_random_blur, color_jitter,
    gaussian_blur, simclr_distort)
from supcon_tf.data.augment.views import (  # noqa: F401
    augment, crop_views, deferred_blur, eval_crop, window_views)
