"""`DeviceViews`: the training view as one Keras layer."""
import keras

from supcon_tf.data.device_views.color import (
    deferred_blur_draws, gaussian_blur, simclr_distort, simclr_draws)
from supcon_tf.data.device_views.common import select
from supcon_tf.data.device_views.geometry import (
    pad_crop_flip, pad_crop_flip_draws)
from supcon_tf.data.device_views.policies import (
    PIL, POLICIES, autoaugment, autoaugment_draws)

ops = keras.ops


@keras.saving.register_keras_serializable(package='supcon_tf')
class DeviceViews(keras.layers.Layer):
  """One training view of every image of a batch, made on the device:
  uint8 (or whole-level float) [N, H, W, 3] -> float32 [N, H, W, 3], in the
  order of the tf.data view (`augment.augment`): crop and flip, AutoAugment,
  SimCLR's distortion, normalisation, the deferred blur.

  crop: 'pad' (`pad_crop_flip`, `padding` pixels) or None (the host
    cropped); flip: mirror half the images.
  policy: an AutoAugment policy of `POLICIES` ('cifar10', 'seed_cifar10',
    'v0') or None; `posterize_bits_fix` as the flag, for 'cifar10'.
  simclr_strength > 0: SimCLR's distortion at that strength (colour jitter
    torchvision's way with `pytorch_color_jitter`), its blur with
    `blur_probability`; `deferred_blur` blurs after the normalisation
    instead, one sigma per call, as the official --defer_blurring.
  mean, std: per-channel normalisation in 0..255 units (the input
    pipeline's `normalize`); None leaves 0..255.
  seed: the `SeedGenerator`'s seed; each call draws anew.

  `training=False` only normalises. `draws(batch)` and `views(images,
  draws)` split a call, for tests and for callers with their own draws;
  `from_preprocessing` reads a Config's augmentation flags.
  """

  def __init__(self, crop='pad', padding=4, flip=True, policy=None,
               posterize_bits_fix=False, simclr_strength=0.,
               pytorch_color_jitter=False, blur_probability=0.,
               deferred_blur=False, mean=None, std=None, seed=None,
               **kwargs):
    super().__init__(**kwargs)
    if crop not in ('pad', None):
      raise ValueError(f"crop must be 'pad' or None; got {crop!r}.")
    if policy is not None and policy not in POLICIES:
      raise ValueError(f'policy must be one of {", ".join(POLICIES)} or '
                       f'None; got {policy!r}.')
    if (mean is None) != (std is None):
      raise ValueError('mean and std go together: give both or neither.')
    if not 0. <= blur_probability <= 1. or simclr_strength < 0.:
      raise ValueError('blur_probability must be in [0, 1] and '
                       'simclr_strength >= 0; got '
                       f'{blur_probability}, {simclr_strength}.')
    self.crop, self.padding, self.flip = crop, int(padding), bool(flip)
    self.policy = policy
    self.posterize_bits_fix = bool(posterize_bits_fix)
    self.simclr_strength = float(simclr_strength)
    self.pytorch_color_jitter = bool(pytorch_color_jitter)
    self.blur_probability = float(blur_probability)
    self.deferred_blur = bool(deferred_blur)
    self.mean = None if mean is None else [float(v) for v in mean]
    self.std = None if std is None else [float(v) for v in std]
    self.seed = seed
    self.seed_generator = keras.random.SeedGenerator(seed)

  @classmethod
  def from_preprocessing(cls, config, mean_std=None, cropped=False,
                         seed=None):
    """The device views of a Config's (or Preprocessing's) training view;
    `cropped`: the host made the crop and flip (`augment.crop_views`).
    What the device views lack is a one-line ValueError."""
    kind, magnitude = config.augmentation_type, config.augmentation_magnitude
    if kind not in ('AUTOAUGMENT', 'SIMCLR', 'IDENTITY') and magnitude > 0:
      raise ValueError(f'augmentation_type={kind} has no device views; '
                       'AUTOAUGMENT, SIMCLR and IDENTITY have.')
    policy = None
    if kind == 'AUTOAUGMENT' and magnitude > 0:
      policy = config.autoaugment_policy
      if policy not in POLICIES:
        raise ValueError(f'autoaugment_policy={policy} has no device views; '
                         f'{", ".join(POLICIES)} have.')
    for name in ('cutout_size', 'warp_probability'):
      if getattr(config, name, 0):
        raise ValueError(f'{name} has no device views; set it to 0.')
    if config.crop == 'random_resized' and not cropped:
      raise ValueError("crop='random_resized' is the host's (it needs the "
                       'whole image): give the device cropped views.')
    simclr = kind == 'SIMCLR' and magnitude > 0
    deferred = bool(simclr and config.defer_blurring and
                    config.blur_probability > 0)
    mean, std = mean_std if mean_std is not None else (None, None)
    return cls(
        crop=None if cropped or config.crop != 'pad' else 'pad',
        padding=config.random_crop_padding,
        flip=bool(config.flip and not cropped), policy=policy,
        posterize_bits_fix=config.posterize_bits_fix,
        simclr_strength=magnitude if simclr else 0.,
        pytorch_color_jitter=config.use_pytorch_color_jitter,
        blur_probability=config.blur_probability if simclr else 0.,
        deferred_blur=deferred, mean=mean, std=std, seed=seed)

  def draws(self, batch):
    """Every random choice of one call for `batch` images."""
    seed, draws = self.seed_generator, {}
    if self.crop == 'pad' or self.flip:
      draws.update(pad_crop_flip_draws(batch, seed, self.padding, self.flip))
    if self.policy is not None:
      draws.update(autoaugment_draws(batch, *POLICIES[self.policy], seed))
    if self.simclr_strength > 0:
      draws.update(simclr_draws(
          batch, seed, self.simclr_strength, self.pytorch_color_jitter,
          0. if self.deferred_blur else self.blur_probability))
    if self.deferred_blur:
      draws.update(deferred_blur_draws(batch, seed, self.blur_probability))
    return draws

  def views(self, images, draws):
    """The views of `images` with the given `draws`, before normalising."""
    images = ops.cast(images, 'float32')
    if self.crop == 'pad':
      images = pad_crop_flip(images, draws['offsets'], draws['mirror'],
                             self.padding)
    elif self.flip:
      images = select(draws['mirror'], ops.flip(images, axis=2), images)
    if self.policy is not None:
      family, policy = POLICIES[self.policy]
      options = ({'posterize_bits_fix': self.posterize_bits_fix}
                 if family is PIL else {})
      images = autoaugment(images, family, policy, draws['choice'],
                           draws['fires'], draws['draw'], **options)
    if self.simclr_strength > 0:
      images = simclr_distort(images, draws['jitter'], draws['factors'],
                              draws['order'], draws['gray'], draws['blur'],
                              draws['sigma'], self.pytorch_color_jitter)
    return images

  def normalize(self, images):
    images = ops.cast(images, 'float32')
    if self.mean is None:
      return images
    return ((images - ops.convert_to_tensor(self.mean, 'float32')) /
            ops.convert_to_tensor(self.std, 'float32'))

  def finish(self, views, draws):
    """Normalised views, then the deferred blur where there is one."""
    views = self.normalize(views)
    if self.deferred_blur:
      views = select(draws['deferred_blur'], gaussian_blur(
          views, draws['deferred_sigma'], views.shape[1] // 10), views)
    return views

  def call(self, images, training=True):
    if not training:
      return self.normalize(images)
    draws = self.draws(ops.shape(images)[0])
    return self.finish(self.views(images, draws), draws)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(
        crop=self.crop, padding=self.padding, flip=self.flip,
        policy=self.policy, posterize_bits_fix=self.posterize_bits_fix,
        simclr_strength=self.simclr_strength,
        pytorch_color_jitter=self.pytorch_color_jitter,
        blur_probability=self.blur_probability,
        deferred_blur=self.deferred_blur, mean=self.mean, std=self.std,
        seed=self.seed)
    return config
