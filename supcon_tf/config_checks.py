"""The config's checks: enum fields normalised to their member names and
checked against the allowed values (`CHOICES`), and every value's range and
combination checked, each failure one ValueError naming the flag. No
TensorFlow."""
import dataclasses
import os

from supcon_tf import enums

# A run's configuration, in its model_dir.
CONFIG_FILE = 'config.json'


def normalise_choices(config):
  """Enum fields to their member names ('Optimizer.LARS', 'lars' -> 'LARS');
  a value outside the allowed ones is a ValueError naming the field."""
  names = {f.name for f in dataclasses.fields(config)}
  for name, allowed in CHOICES.items():
    if name not in names:
      continue
    value = getattr(config, name)
    if isinstance(value, str):
      value = value.rsplit('.', 1)[-1]
      if name not in LOWER_CASE_CHOICES:
        value = value.upper()
      setattr(config, name, value)
    if value not in allowed:
      raise ValueError(f'{name} must be one of {", ".join(allowed)}; got '
                       f'{getattr(config, name)!r}.')


# Allowed values of the enum-valued fields.
CHOICES = {
    'mode': enums.MODES,
    'augmentation_type': enums.AUGMENTATION_TYPES,
    'crop': enums.CROPS,
    'eval_crop_method': enums.EVAL_CROP_METHODS,
    'autoaugment_policy': enums.AUTOAUGMENT_POLICIES,
    'randaugment_ops': enums.RANDAUGMENT_OP_SETS,
    'contrast_mode': enums.CONTRAST_MODES,
    'summation_location': enums.SUMMATION_LOCATIONS,
    'denominator_mode': enums.DENOMINATOR_MODES,
    'stage_1_optimizer': enums.OPTIMIZERS,
    'stage_2_optimizer': enums.OPTIMIZERS,
    'stage_1_learning_rate_decay': enums.DECAY_TYPES,
    'stage_2_learning_rate_decay': enums.DECAY_TYPES,
    'strategy': enums.STRATEGIES,
    'label_type': enums.LABEL_TYPES,
    'weight_init': enums.WEIGHT_INITS,
    'resnet_architecture': enums.ENCODER_ARCHITECTURES,
    'resnet_layout': enums.RESNET_LAYOUTS,
    'normalization': enums.NORMALIZATIONS,
    'epoch_remainder': enums.EPOCH_REMAINDERS,
    'sampler': enums.SAMPLERS,
}


# Enum fields whose values are lower-case names rather than official members.
LOWER_CASE_CHOICES = ('mode', 'strategy', 'label_type', 'crop',
                      'autoaugment_policy', 'randaugment_ops', 'weight_init',
                      'normalization', 'epoch_remainder', 'sampler',
                      'resnet_layout')


def check_preprocessing(config):
  """The views' fields: choices normalised (`normalise_choices`), ranges
  checked."""
  normalise_choices(config)
  low, high = config.crop_area_range
  if not 0 < low <= high <= 1:
    raise ValueError('crop_area_range must be 0 < low <= high <= 1; got '
                     f'{config.crop_area_range}.')
  for name in ('blur_probability', 'warp_probability'):
    if not 0 <= getattr(config, name) <= 1:
      raise ValueError(f'{name} must be in [0, 1]; got '
                       f'{getattr(config, name)}.')
  if (config.image_size < 1 or config.random_crop_padding < 0 or
      config.cutout_size < 0):
    raise ValueError(
        'image_size must be >= 1 and random_crop_padding, cutout_size >= 0; '
        f'got {config.image_size}, {config.random_crop_padding}, '
        f'{config.cutout_size}.')


def check_fields(config):
  """A whole Config's values: each within its range, then the combinations
  that cannot run. A ValueError naming the flag."""
  _check_ranges(config)
  _check_combinations(config)


def _check_ranges(config):
  checks = (
      ('batch_size', config.batch_size >= 1, '>= 1'),
      ('eval_batch_size', config.eval_batch_size >= 1, '>= 1'),
      ('micro_batch_size', config.micro_batch_size >= 0, '>= 0'),
      ('num_views', config.num_views >= 1, '>= 1'),
      ('steps_per_loop', config.steps_per_loop >= 1, '>= 1'),
      ('stop_after_minutes', config.stop_after_minutes >= 0, '>= 0'),
      ('save_interval_steps', config.save_interval_steps >= 1, '>= 1'),
      ('summary_interval_steps', config.summary_interval_steps >= 1, '>= 1'),
      ('max_checkpoints_to_keep', config.max_checkpoints_to_keep >= 1,
       '>= 1'),
      ('stage_1_epochs', config.stage_1_epochs >= 0, '>= 0'),
      ('stage_2_epochs', config.stage_2_epochs >= 0, '>= 0'),
      ('temperature', config.temperature > 0, '> 0'),
      ('validation_fraction', 0 <= config.validation_fraction < 1,
       'in [0, 1)'),
      ('num_images', config.num_images >= 0, '>= 0'),
      ('label_noise_prob', 0 <= config.label_noise_prob <= 1, 'in [0, 1]'),
      ('memory_size', config.memory_size >= 0, '>= 0'),
      ('memory_warmup', config.memory_warmup >= 0, '>= 0'),
      ('momentum_encoder', 0 <= config.momentum_encoder < 1, 'in [0, 1)'),
  )
  for name, ok, allowed in checks:
    if not ok:
      raise ValueError(f'--{name} must be {allowed}; got '
                       f'{getattr(config, name)!r}.')


def _check_combinations(config):
  if config.micro_batch_size and config.batch_size % config.micro_batch_size:
    raise ValueError(
        f'--micro_batch_size={config.micro_batch_size} does not divide '
        f'--batch_size={config.batch_size}; choose a divisor of the '
        'per-replica batch.')
  if config.sampler == 'class_balanced' and not config.classes_per_batch:
    raise ValueError('--sampler=class_balanced needs --classes_per_batch.')
  if config.sampler == 'fixed_configuration' and config.classes_per_batch:
    raise ValueError('--sampler=fixed_configuration takes every class; '
                     'leave --classes_per_batch unset (it is '
                     'class_balanced\'s).')
  if config.learning_rate_per_epoch and config.epoch_remainder != 'drop':
    raise ValueError('learning_rate_per_epoch moves the schedule at whole '
                     'epochs of steps: it needs epoch_remainder=drop.')
  if config.reference_ckpt and not config.warm_start_parts:
    raise ValueError('reference_ckpt is set but no part is chosen: add '
                     '--warm_start_encoder, --warm_start_projection_head '
                     'or --warm_start_classifier.')
  if config.momentum_encoder and not config.memory_size:
    raise ValueError('--momentum_encoder embeds the memory\'s entries: it '
                     'needs --memory_size.')
  if config.momentum_encoder and config.micro_batch_size:
    raise ValueError('--momentum_encoder with --micro_batch_size: the key '
                     'encoder runs on whole batches; use one or the other.')
  if config.num_views < 2 and config.stage_1_contrastive_loss_weight > 0:
    raise ValueError('The contrastive loss needs num_views >= 2; got '
                     f'{config.num_views}.')


def check_saved_config(config, stage_2_started):
  """Refuses to resume the run in `config.model_dir` when its config.json
  holds another configuration (stage 2's settings may change until stage 2
  has started): one line naming each difference. Reads, never writes."""
  path = os.path.join(config.model_dir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = type(config).from_json(f.read())
  different = config.differences(saved)
  if not stage_2_started:
    different = [d for d in different if not d.startswith('stage_2_')]
  if different:
    details = ', '.join(f'{d}={getattr(config, d)!r} (saved '
                        f'{getattr(saved, d)!r})' for d in different)
    raise ValueError(
        f'{config.model_dir} holds a run with a different configuration: '
        f'{details}. Use another --model_dir, or the saved values to resume.')
