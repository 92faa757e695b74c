"""The official `--hparams` string: `abbrev=value,...` over the defaults of
the official hparams.py (which differ from the flags' defaults in places:
SIMCLR, no labels, temperature 1, weight decay 1e-4, both stages alike).

As official, `--hparams` replaces the hyperparameter flags: a run given it
takes every hyperparameter from the string and hparams.py, and only the
launcher's and this project's own flags from the command line. Values are
what the official serialization writes: enum values by their official codes
(`au=s` for SIMCLR; member names are accepted too), booleans as 0/1 or
true/false, lists in brackets (`phl=[2048,128]`). This module does not
import TensorFlow.
"""
import csv
import re

# The official enums' values (supcon/enums.py), by member name.
ENUM_CODES = {
    'augmentation_type': {'SIMCLR': 's', 'AUTOAUGMENT': 'a', 'RANDAUGMENT': 'r',
                          'STACKED_RANDAUGMENT': 'sr', 'IDENTITY': 'i'},
    'contrast_mode': {'ALL_VIEWS': 'a', 'ONE_VIEW': 'o'},
    'summation_location': {'OUTSIDE': 'o', 'INSIDE': 'i'},
    'denominator_mode': {'ALL': 'a', 'ONE_POSITIVE': 'o',
                         'ONLY_NEGATIVES': 'n'},
    'optimizer': {'RMSPROP': 'r', 'MOMENTUM': 'm', 'LARS': 'l', 'ADAM': 'a',
                  'NESTEROV': 'n'},
    'resnet_architecture': {'RESNET_V1': 'r1', 'RESNEXT': 'rx'},
    'learning_rate_decay': {'COSINE': 'c', 'EXPONENTIAL': 'e',
                            'PIECEWISE_LINEAR': 'p', 'NO_DECAY': 'n'},
    'eval_crop_method': {'RESIZE_THEN_CROP': 'rc', 'CROP_THEN_RESIZE': 'cr',
                         'CROP_THEN_DISTORT': 'cd', 'IDENTITY': 'i'},
}

# Abbreviation: (Config field, the official hparams.py default).
_GLOBAL = {
    'bs': ('batch_size', 2048),
    'ea': ('resnet_architecture', 'RESNET_V1'),
    'd': ('resnet_depth', 50),
    'w': ('resnet_width', 1.),
    'fk': ('first_conv_kernel_size', 7),
    'fs': ('first_conv_stride', 2),
    'imp': ('use_initial_max_pool', True),
    'phl': ('projection_head_layers', (2048, 128)),
    'up': ('use_projection_batch_norm', False),
    'pb': ('use_projection_batch_norm_beta', True),
    # Both are --normalize_embedding (the official flags set both from it).
    'phn': ('normalize_embedding', True),
    'chn': ('normalize_embedding', True),
    'czi': ('zero_initialize_classifier', False),
    'sgc': ('stop_gradient_before_classification_head', True),
    'sgp': ('stop_gradient_before_projection_head', False),
    'gbp': ('use_global_batch_norm', True),
    'ul': ('use_labels', False),
    't': ('temperature', 1.0),
    'cm': ('contrast_mode', 'ALL_VIEWS'),
    'sl': ('summation_location', 'OUTSIDE'),
    'dm': ('denominator_mode', 'ALL'),
    'pc': ('positives_cap', -1),
    'sbt': ('scale_by_temperature', True),
    'ls': ('label_smoothing', 0.),
    'bd': ('use_bias_weight_decay', True),
    'ebs': ('eval_batch_size', 128),
    'bf': ('allow_mixed_precision', False),
    'is': ('image_size', 224),
    'au': ('augmentation_type', 'SIMCLR'),
    'm': ('augmentation_magnitude', 0.5),
    'wp': ('warp_probability', 0.),
    'bp': ('blur_probability', 0.5),
    'db': ('defer_blurring', True),
    'pj': ('use_pytorch_color_jitter', False),
    'wh': ('apply_whitening', True),
    'ar': ('crop_area_range', (0.08, 1.0)),
    'ec': ('eval_crop_method', 'RESIZE_THEN_CROP'),
    'cp': ('crop_padding', 32),
    'nv': ('num_views', 2),
    'ds': ('input_fn', 'imagenet'),
    'ms': ('num_images', -1),
    'ln': ('label_noise_prob', 0.),
    'hs': ('shard_per_host', True),
    'wsc': ('warm_start_classifier', False),
    'wsp': ('warm_start_projection_head', False),
    'wse': ('warm_start_encoder', False),
    'wsi': ('ignore_missing_checkpoint_vars', False),
    'wsb': ('batch_norm_in_train_mode', False),
}
# One stage's, under the prefixes s1 and s2.
_STAGE = {
    'te': ('epochs', 700),
    'wu': ('warmup_epochs', 12.),
    'lr': ('base_learning_rate', 0.3),
    'de': ('learning_rate_decay', 'COSINE'),
    'dr': ('decay_rate', 0.1),
    'be': ('decay_boundary_epochs', (30, 60, 80, 90)),
    'epd': ('epochs_per_decay', 2.4),
    'op': ('optimizer', 'RMSPROP'),
    'ebn': ('update_encoder_batch_norm', True),
    'rep': ('rmsprop_epsilon', 1.0),
    'cw': ('contrastive_loss_weight', 1.0),
    'xw': ('cross_entropy_loss_weight', 1.0),
    'wd': ('weight_decay', 1e-4),
    'ed': ('use_encoder_weight_decay', True),
    'pd': ('use_projection_head_weight_decay', True),
    'cd': ('use_classification_head_weight_decay', True),
}
ABBREVIATIONS = {
    **_GLOBAL,
    **{f's{i}{abbrev}': (f'stage_{i}_{name}', default)
       for i in (1, 2) for abbrev, (name, default) in _STAGE.items()},
}

# As the official hparam.py: name=value, name="quoted", name=[list].
_CLAUSE = re.compile(r"""
  (?P<name>[a-zA-Z][\w\.]*)\s*=\s*
  ((?P<strval>".*?")|(?P<val>[^,\[]*)|\[(?P<vals>[^\]]*)\])
  ($|,\s*)""", re.VERBOSE)


def _scalar(field, default, text):
  name = field.split('stage_', 1)[-1][2:] if field.startswith('stage_') else (
      field)
  if name in ENUM_CODES:
    by_code = {code: member for member, code in ENUM_CODES[name].items()}
    if text in by_code:
      return by_code[text]
    if text.upper() in ENUM_CODES[name]:
      return text.upper()
    raise ValueError(f'--hparams: {text!r} is not a value of {field} (codes '
                     f'{", ".join(by_code)}).')
  if isinstance(default, bool):
    if text in ('true', 'True', '1'):
      return True
    if text in ('false', 'False', '0'):
      return False
    raise ValueError(f'--hparams: {text!r} is not a boolean ({field}).')
  kind = type(default[0]) if isinstance(default, tuple) else type(default)
  try:
    return kind(text) if kind is not int else int(text)
  except ValueError:
    article = 'an' if kind is int else 'a'
    raise ValueError(f'--hparams: {text!r} is not {article} {kind.__name__} '
                     f'({field}).') from None


def parse(serialized):
  """{Config field: value}: the official hparams.py defaults with the
  string's values over them. A malformed clause, an unknown or repeated
  abbreviation, or a value of the wrong type is a ValueError naming it."""
  values = {field: default for field, default in ABBREVIATIONS.values()}
  given, position = {}, 0
  while position < len(serialized):
    match = _CLAUSE.match(serialized, position)
    if not match:
      raise ValueError(f'--hparams: malformed at {serialized[position:]!r}.')
    position = match.end()
    name = match.group('name')
    if name not in ABBREVIATIONS:
      raise ValueError(f'--hparams: unknown hyperparameter {name!r}.')
    if name in given:
      raise ValueError(f'--hparams: {name!r} is given twice.')
    field, default = ABBREVIATIONS[name]
    if match.group('vals') is not None:
      if not isinstance(default, tuple):
        raise ValueError(f'--hparams: {name} ({field}) takes one value, not '
                         f'[{match.group("vals")}].')
      items = next(csv.reader([match.group('vals')]))
      value = tuple(_scalar(field, default, item.strip()) for item in items)
    else:
      text = (match.group('strval')[1:-1] if match.group('strval') is not None
              else match.group('val'))
      if not text:
        raise ValueError(f'--hparams: {name} has no value.')
      value = _scalar(field, default, text)
      if isinstance(default, tuple):
        value = (value,)
    given[name] = value
  for name, value in given.items():
    values[ABBREVIATIONS[name][0]] = value
  if given.get('phn', True) != given.get('chn', True):
    raise ValueError('--hparams: phn and chn differ; here one '
                     '--normalize_embedding sets both.')
  values['num_images'] = max(values['num_images'], 0)  # -1: all, as 0 here.
  return values
