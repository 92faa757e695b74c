"""AutoAugment on the device: each op family (its pixel ops, how a level
becomes an argument, its resampling, its per-op draw), the policies and
the draws."""
import functools
import typing

import keras
import numpy as np

from supcon_tf.data import policy_tables
from supcon_tf.data.device_views.common import (
    on_floats, seed_generator, select)
from supcon_tf.data.device_views.geometry import (
    pil_matrix, pil_resample, seed_affine, seed_matrix, tf_models_resample,
    tf_models_transform)
from supcon_tf.data.device_views.pixel_ops import (
    PIXEL_OPS, TF_MODELS_PIXEL_OPS)
from supcon_tf.data.policy_tables import GEOMETRIC_OPS, SEED_RANGES

ops = keras.ops


def seed_magnitude(name, level, position):
  """The seed's magnitude: bin `level` of the op's np.linspace(low, high,
  11), at `position` (0..1) inside it; 0 for the ops without one."""
  if name not in SEED_RANGES:
    return ops.zeros_like(ops.cast(level, 'float32'))
  low, high = SEED_RANGES[name]
  return low + (high - low) * (ops.cast(level, 'float32') +
                               ops.cast(position, 'float32')) / 10.


def _seed_pixel_op(name, images, magnitude):
  if name == 'Posterize':
    magnitude = ops.round(magnitude)
  if name == 'Solarize':
    # PIL inverts i >= threshold: for a fractional threshold, i >= ceil.
    magnitude = ops.ceil(magnitude)
  return PIXEL_OPS[name](images, magnitude)


def tf_models_argument(name, level, negate):
  """TF-Models' level (0..10) -> argument (AutoAugment: translate_const
  250), the geometric ones negated where `negate`."""
  level = ops.cast(level, 'float32')
  integer = lambda scale: ops.floor(level / 10. * scale)
  argument = {
      'Rotate': level / 10. * 30., 'ShearX': level / 10. * 0.3,
      'ShearY': level / 10. * 0.3, 'TranslateX': level / 10. * 250.,
      'TranslateY': level / 10. * 250., 'Posterize': integer(4.),
      'Solarize': integer(256.), 'SolarizeAdd': integer(110.)}.get(name)
  if name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    argument = level / 10. * 1.8 + 0.1
  if argument is None:
    return ops.zeros_like(level)
  if name in GEOMETRIC_OPS:
    argument = ops.where(negate, -argument, argument)
  return argument


def pil_argument(name, level, negate, posterize_bits_fix=False):
  """The original AutoAugment's level (0..10) in PIL units
  (`pil_ops.level_to_magnitude`), geometric ones negated where `negate`."""
  level = ops.cast(level, 'float32')
  if name == 'Rotate':
    argument = ops.floor(level * 30. / 10.)
  elif name in ('ShearX', 'ShearY'):
    argument = level * 0.3 / 10.
  elif name in ('TranslateX', 'TranslateY'):
    argument = ops.floor(level * 10. / 10.)
  elif name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    return level * 1.8 / 10. + 0.1
  elif name == 'Posterize':
    if posterize_bits_fix:
      return 8. - ops.round(level * 4. / 10.)
    return 4. - ops.floor(level * 4. / 10.)
  elif name == 'Solarize':
    return 256. - ops.floor(level * 256. / 10.)
  else:
    return ops.zeros_like(level)
  return ops.where(negate, -argument, argument)


class Family(typing.NamedTuple):
  """An op family on the device (as `augment.engine.Family`).

  pixel_ops: name -> op(images, argument [N]).
  argument: (name, level [N], draw [N]) -> the op's argument [N].
  transform: (name, argument, height, width) -> a geometric op's
    resampling parameters, a tuple of [N] (per-image: they are selected
    image by image, so one resampling serves every geometric op).
  resample: (images, parameters) -> images.
  draw: (shape, seed) -> the per-op draws.
  """
  pixel_ops: dict
  argument: typing.Callable
  transform: typing.Callable
  resample: typing.Callable
  draw: typing.Callable


SEED = Family(
    pixel_ops={name: functools.partial(_seed_pixel_op, name)
               for name in PIXEL_OPS},
    argument=seed_magnitude,
    transform=lambda name, argument, height, width: seed_matrix(
        name, argument, float(height)),
    resample=seed_affine,
    # Where in its level's bin the magnitude falls.
    draw=lambda shape, seed: keras.random.uniform(shape, seed=seed))
PIL = Family(
    pixel_ops=PIXEL_OPS, argument=pil_argument, transform=pil_matrix,
    resample=pil_resample,
    # Whether a geometric op's argument is negated.
    draw=lambda shape, seed: keras.random.uniform(shape, seed=seed) < 0.5)
TF_MODELS = Family(
    pixel_ops=TF_MODELS_PIXEL_OPS, argument=tf_models_argument,
    transform=tf_models_transform, resample=tf_models_resample,
    # Whether a geometric op's argument is negated.
    draw=lambda shape, seed: keras.random.uniform(shape, seed=seed) < 0.5)
# The policies the device views have, by their --autoaugment_policy names.
POLICIES = {'cifar10': (PIL, policy_tables.CIFAR10_POLICY),
            'seed_cifar10': (SEED, policy_tables.CIFAR10_POLICY),
            'v0': (TF_MODELS, policy_tables.V0_POLICY)}


def _policy_arrays(policy):
  names = sorted({op for sub in policy for op, _, _ in sub})
  op_ids = np.array([[names.index(op) for op, _, _ in sub] for sub in policy],
                    'int32')
  probabilities = np.array([[p for _, p, _ in sub] for sub in policy],
                           'float32')
  levels = np.array([[level for _, _, level in sub] for sub in policy],
                    'float32')
  return names, op_ids, probabilities, levels


def autoaugment_draws(batch, family, policy, seed):
  """AutoAugment's random choices: a sub-policy per image (uniform)
  `choice` [N], whether each of its two ops fires (with its probability)
  `fires` [N, 2], and the family's per-op draws `draw` [N, 2]."""
  seed = seed_generator(seed)
  _, _, probabilities, _ = _policy_arrays(policy)
  choice = keras.random.randint((batch,), 0, len(policy), seed=seed,
                                dtype='int32')
  fires = keras.random.uniform((batch, 2), seed=seed) < ops.take(
      probabilities, choice, axis=0)
  return {'choice': choice, 'fires': fires,
          'draw': family.draw((batch, 2), seed)}


@on_floats
def autoaugment(images, family, policy, choice, fires, draw, **options):
  """AutoAugment (`augment.autoaugment`) of an op family with given draws:
  sub-policy `choice[i]` on image i, its op k where `fires[i, k]`, with the
  family's per-op draw `draw[i, k]`; `options` go to its `argument`."""
  names, op_ids, _, levels = _policy_arrays(policy)
  height, width = images.shape[1], images.shape[2]
  geometric = [name for name in names if name in GEOMETRIC_OPS]
  for step in range(2):
    op = ops.take(op_ids[:, step], choice, axis=0)
    level = ops.take(levels[:, step], choice, axis=0)
    fired = fires[:, step]
    argument = lambda name: family.argument(name, level, draw[:, step],
                                            **options)
    out = images
    if geometric:
      # One resampling for every geometric op, with each image's own
      # parameters (zeros where its op is another: that result is unused).
      parameters, is_geometric = None, ops.zeros_like(fired)
      for name in geometric:
        mine = op == names.index(name)
        is_geometric = is_geometric | mine
        own = family.transform(name, argument(name), height, width)
        parameters = [ops.where(mine, part, 0. if total is None else total)
                      for part, total in zip(own, parameters or
                                             [None] * len(own))]
      out = select(is_geometric & fired,
                    family.resample(images, parameters), out)
    for index, name in enumerate(names):
      if name not in GEOMETRIC_OPS:
        out = select((op == index) & fired,
                      family.pixel_ops[name](images, argument(name)), out)
    images = out
  return images
