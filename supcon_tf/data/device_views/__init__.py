"""The training views on the device: the project's augmentation in `keras.ops`
(every Keras backend), applied in the training step to uint8 batches, so
the host only decodes (and crops and resizes) images.

    views = DeviceViews(crop='pad', policy='seed_cifar10', mean=..., std=...)
    model = SupConModel(encoder, num_classes=10, augmentation=views)

Each op computes what the tf.data op of the same name computes
(`supcon_tf.data.augment`, itself tested against PIL and TF-Models) on the
same images and draws, to within one grey level: some tf.data ops compute
in float64, these in float32, which JAX and accelerators prefer. Images
travel as float32 holding whole grey levels 0..255, so the uint8 semantics
(truncating casts, bit shifts) are exact arithmetic on floats.

Draws are explicit: `pad_crop_flip_draws`, `autoaugment_draws`,
`simclr_draws` and `deferred_blur_draws` make them with `keras.random` (the
layer's `SeedGenerator`), and `pad_crop_flip`, `autoaugment` and
`simclr_distort` apply given draws, so tests can hand both sides the same
ones. Every op runs on the whole batch and each image keeps the result of
the op it drew (a select): static shapes, as XLA wants, at the cost of
computing every op of a step for every image; the geometric ops of a step
share one resampling.

Parts: `common` (what the ops share), `pixel_ops` (PIL's and TF-Models'),
`geometry` (the three families' resamplings, pad-crop-flip), `policies`
(the op families, AutoAugment and its draws), `color` (SimCLR), `layer`
(`DeviceViews`).
"""
from supcon_tf.data.device_views.color import (  # noqa: F401
    GRAY_WEIGHTS, color_jitter, deferred_blur_draws, gaussian_blur,
    jitter_ranges, simclr_distort, simclr_draws)
from supcon_tf.data.device_views.geometry import (  # noqa: F401
    FILL_VALUE, pad_crop_flip, pad_crop_flip_draws, pil_matrix, pil_resample,
    seed_affine, seed_matrix, spline_prefilter, tf_models_resample,
    tf_models_transform)
from supcon_tf.data.device_views.layer import DeviceViews  # noqa: F401
from supcon_tf.data.device_views.pixel_ops import (  # noqa: F401
    PIXEL_OPS, TF_MODELS_PIXEL_OPS)
from supcon_tf.data.device_views.policies import (  # noqa: F401
    PIL, POLICIES, SEED, TF_MODELS, Family, autoaugment, autoaugment_draws,
    pil_argument, seed_magnitude, tf_models_argument)
from supcon_tf.data.policy_tables import (  # noqa: F401
    GEOMETRIC_OPS, SEED_RANGES)
