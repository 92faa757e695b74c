"""TF-Models' AutoAugment (policy v0; `simple`, v0 without its custom ops;
reduced_cifar10, svhn, reduced_imagenet) and RandAugment on `tf_models_ops`, batch-level: each op once per batch
on the images that drew it (`apply_each`), every draw stateless and per
image. As official.legacy.image_classification.augment, which the official
preprocessing imports: AutoAugment with translate_const 250 and
cutout_const 100, RandAugment with 16 ops plus identity drawn uniformly per
layer (always applied, at the one magnitude), translate_const 100,
cutout_const 40; rotations, shears and translations negated with
probability 1/2.
"""
import tensorflow as tf

from supcon_tf.data.augment import batching
from supcon_tf.data.augment import tf_models_ops
from supcon_tf.data.augment.batching import as_batch
from supcon_tf.data.augment.policies import apply_each, policy_draws

# TF-Models' policy_v0: 25 sub-policies of two (op, probability, level).
V0_POLICY = (
    (('Equalize', 0.8, 1), ('ShearY', 0.8, 4)),
    (('Color', 0.4, 9), ('Equalize', 0.6, 3)),
    (('Color', 0.4, 1), ('Rotate', 0.6, 8)),
    (('Solarize', 0.8, 3), ('Equalize', 0.4, 7)),
    (('Solarize', 0.4, 2), ('Solarize', 0.6, 2)),
    (('Color', 0.2, 0), ('Equalize', 0.8, 8)),
    (('Equalize', 0.4, 8), ('SolarizeAdd', 0.8, 3)),
    (('ShearX', 0.2, 9), ('Rotate', 0.6, 8)),
    (('Color', 0.6, 1), ('Equalize', 1.0, 2)),
    (('Invert', 0.4, 9), ('Rotate', 0.6, 0)),
    (('Equalize', 1.0, 9), ('ShearY', 0.6, 3)),
    (('Color', 0.4, 7), ('Equalize', 0.6, 0)),
    (('Posterize', 0.4, 6), ('AutoContrast', 0.4, 7)),
    (('Solarize', 0.6, 8), ('Color', 0.6, 9)),
    (('Solarize', 0.2, 4), ('Rotate', 0.8, 9)),
    (('Rotate', 1.0, 7), ('TranslateY', 0.8, 9)),
    (('ShearX', 0.0, 0), ('Solarize', 0.8, 4)),
    (('ShearY', 0.8, 0), ('Color', 0.6, 4)),
    (('Color', 1.0, 0), ('Rotate', 0.6, 2)),
    (('Equalize', 0.8, 4), ('Equalize', 0.0, 8)),
    (('Equalize', 1.0, 4), ('AutoContrast', 0.6, 2)),
    (('ShearY', 0.4, 7), ('SolarizeAdd', 0.6, 7)),
    (('Posterize', 0.8, 2), ('Solarize', 0.6, 10)),
    (('Solarize', 0.6, 8), ('Equalize', 0.6, 1)),
    (('Color', 0.8, 6), ('Rotate', 0.4, 5)),
)
# Its policy_simple: v0 without the sub-policies that use geometric ops.
SIMPLE_POLICY = tuple(
    sub for sub in V0_POLICY
    if not {op for op, _, _ in sub} & {'ShearX', 'ShearY', 'Rotate',
                                       'TranslateY', 'Invert'})
# The other policies of TF-Models' AutoAugment (official.vision.ops.augment):
# Cubuk et al.'s reduced CIFAR-10, SVHN and reduced ImageNet searches.
REDUCED_CIFAR10_POLICY = (
    (('Invert', 0.1, 7), ('Contrast', 0.2, 6)),
    (('Rotate', 0.7, 2), ('TranslateX', 0.3, 9)),
    (('Sharpness', 0.8, 1), ('Sharpness', 0.9, 3)),
    (('ShearY', 0.5, 8), ('TranslateY', 0.7, 9)),
    (('AutoContrast', 0.5, 8), ('Equalize', 0.9, 2)),
    (('ShearY', 0.2, 7), ('Posterize', 0.3, 7)),
    (('Color', 0.4, 3), ('Brightness', 0.6, 7)),
    (('Sharpness', 0.3, 9), ('Brightness', 0.7, 9)),
    (('Equalize', 0.6, 5), ('Equalize', 0.5, 1)),
    (('Contrast', 0.6, 7), ('Sharpness', 0.6, 5)),
    (('Color', 0.7, 7), ('TranslateX', 0.5, 8)),
    (('Equalize', 0.3, 7), ('AutoContrast', 0.4, 8)),
    (('TranslateY', 0.4, 3), ('Sharpness', 0.2, 6)),
    (('Brightness', 0.9, 6), ('Color', 0.2, 8)),
    (('Solarize', 0.5, 2), ('Invert', 0.0, 3)),
    (('Equalize', 0.2, 0), ('AutoContrast', 0.6, 0)),
    (('Equalize', 0.2, 8), ('Equalize', 0.6, 4)),
    (('Color', 0.9, 9), ('Equalize', 0.6, 6)),
    (('AutoContrast', 0.8, 4), ('Solarize', 0.2, 8)),
    (('Brightness', 0.1, 3), ('Color', 0.7, 0)),
    (('Solarize', 0.4, 5), ('AutoContrast', 0.9, 3)),
    (('TranslateY', 0.9, 9), ('TranslateY', 0.7, 9)),
    (('AutoContrast', 0.9, 2), ('Solarize', 0.8, 3)),
    (('Equalize', 0.8, 8), ('Invert', 0.1, 3)),
    (('TranslateY', 0.7, 9), ('AutoContrast', 0.9, 1)),
)
SVHN_POLICY = (
    (('ShearX', 0.9, 4), ('Invert', 0.2, 3)),
    (('ShearY', 0.9, 8), ('Invert', 0.7, 5)),
    (('Equalize', 0.6, 5), ('Solarize', 0.6, 6)),
    (('Invert', 0.9, 3), ('Equalize', 0.6, 3)),
    (('Equalize', 0.6, 1), ('Rotate', 0.9, 3)),
    (('ShearX', 0.9, 4), ('AutoContrast', 0.8, 3)),
    (('ShearY', 0.9, 8), ('Invert', 0.4, 5)),
    (('ShearY', 0.9, 5), ('Solarize', 0.2, 6)),
    (('Invert', 0.9, 6), ('AutoContrast', 0.8, 1)),
    (('Equalize', 0.6, 3), ('Rotate', 0.9, 3)),
    (('ShearX', 0.9, 4), ('Solarize', 0.3, 3)),
    (('ShearY', 0.8, 8), ('Invert', 0.7, 4)),
    (('Equalize', 0.9, 5), ('TranslateY', 0.6, 6)),
    (('Invert', 0.9, 4), ('Equalize', 0.6, 7)),
    (('Contrast', 0.3, 3), ('Rotate', 0.8, 4)),
    (('Invert', 0.8, 5), ('TranslateY', 0.0, 2)),
    (('ShearY', 0.7, 6), ('Solarize', 0.4, 8)),
    (('Invert', 0.6, 4), ('Rotate', 0.8, 4)),
    (('ShearY', 0.3, 7), ('TranslateX', 0.9, 3)),
    (('ShearX', 0.1, 6), ('Invert', 0.6, 5)),
    (('Solarize', 0.7, 2), ('TranslateY', 0.6, 7)),
    (('ShearY', 0.8, 4), ('Invert', 0.8, 8)),
    (('ShearX', 0.7, 9), ('TranslateY', 0.8, 3)),
    (('ShearY', 0.8, 5), ('AutoContrast', 0.7, 3)),
    (('ShearX', 0.7, 2), ('Invert', 0.1, 5)),
)
REDUCED_IMAGENET_POLICY = (
    (('Posterize', 0.4, 8), ('Rotate', 0.6, 9)),
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 5)),
    (('Equalize', 0.8, 8), ('Equalize', 0.6, 3)),
    (('Posterize', 0.6, 7), ('Posterize', 0.6, 6)),
    (('Equalize', 0.4, 7), ('Solarize', 0.2, 4)),
    (('Equalize', 0.4, 4), ('Rotate', 0.8, 8)),
    (('Solarize', 0.6, 3), ('Equalize', 0.6, 7)),
    (('Posterize', 0.8, 5), ('Equalize', 1.0, 2)),
    (('Rotate', 0.2, 3), ('Solarize', 0.6, 8)),
    (('Equalize', 0.6, 8), ('Posterize', 0.4, 6)),
    (('Rotate', 0.8, 8), ('Color', 0.4, 0)),
    (('Rotate', 0.4, 9), ('Equalize', 0.6, 2)),
    (('Equalize', 0.0, 7), ('Equalize', 0.8, 8)),
    (('Invert', 0.6, 4), ('Equalize', 1.0, 8)),
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
    (('Rotate', 0.8, 8), ('Color', 1.0, 2)),
    (('Color', 0.8, 8), ('Solarize', 0.8, 7)),
    (('Sharpness', 0.4, 7), ('Invert', 0.6, 8)),
    (('ShearX', 0.6, 5), ('Equalize', 1.0, 9)),
    (('Color', 0.4, 0), ('Equalize', 0.6, 3)),
    (('Equalize', 0.4, 7), ('Solarize', 0.2, 4)),
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 5)),
    (('Invert', 0.6, 4), ('Equalize', 1.0, 8)),
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
    (('Equalize', 0.8, 8), ('Equalize', 0.6, 3)),
)
POLICIES = {'v0': V0_POLICY, 'simple': SIMPLE_POLICY,
            'reduced_cifar10': REDUCED_CIFAR10_POLICY, 'svhn': SVHN_POLICY,
            'reduced_imagenet': REDUCED_IMAGENET_POLICY}
RANDAUGMENT_OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize',
                   'Solarize', 'Color', 'Contrast', 'Brightness', 'Sharpness',
                   'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Cutout',
                   'SolarizeAdd')
SIGNED_OPS = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')


def level_to_arg(name, level, cutout_const, translate_const):
  """TF-Models' level (0..10) -> the op's argument, before the sign."""
  level = tf.cast(level, tf.float32)
  integer = lambda scale: tf.math.floor(level / 10. * scale)
  if name == 'Rotate':
    return level / 10. * 30.
  if name in ('ShearX', 'ShearY'):
    return level / 10. * 0.3
  if name in ('TranslateX', 'TranslateY'):
    return level / 10. * translate_const
  if name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    return level / 10. * 1.8 + 0.1
  if name == 'Posterize':
    return integer(4.)
  if name == 'Solarize':
    return integer(256.)
  if name == 'SolarizeAdd':
    return integer(110.)
  if name == 'Cutout':
    return integer(cutout_const)
  return tf.zeros_like(level)  # AutoContrast, Equalize, Invert.


def _apply(images, names, op_index, level, fires, negate, seed, cutout_const,
           translate_const):
  def argument_of(name):
    argument = level_to_arg(name, level, cutout_const, translate_const)
    if name in SIGNED_OPS:
      argument = tf.where(negate, -argument, argument)
    return argument

  def op_of(name):
    if name == 'Cutout':
      return lambda x, pad: tf_models_ops.cutout(x, seed, pad)
    return tf_models_ops.OPS[name]

  return apply_each(images, names, op_index, fires, argument_of, op_of)


def autoaugment(images, seed, policy=V0_POLICY, cutout_const=100.,
                translate_const=250.):
  """TF-Models' AutoAugment: a sub-policy per image, each op with its
  probability. uint8 in and out; the same seed, the same images."""
  images, unbatch = as_batch(images)
  batch = tf.shape(images)[0]
  choice, fires, rest = policy_draws(seed, batch, policy)
  seeds = tf.random.experimental.stateless_split(rest, 3)
  negate = batching.uniform([batch, 2], seeds[0]) < 0.5
  names = sorted({op for sub in policy for op, _, _ in sub})
  for stage in range(2):
    op_ids = tf.constant([names.index(sub[stage][0]) for sub in policy])
    levels = tf.constant([sub[stage][2] for sub in policy], tf.float32)
    images = _apply(images, names, tf.gather(op_ids, choice),
                    tf.gather(levels, choice), fires[:, stage],
                    negate[:, stage], seeds[1 + stage], cutout_const,
                    translate_const)
  return images[0] if unbatch else images


def randaugment(images, seed, num_layers=2, magnitude=10., cutout_const=40.,
                translate_const=100.):
  """TF-Models' RandAugment: per layer, one of the 16 ops or the identity
  (uniform over 17) at `magnitude`. uint8 in and out."""
  images, unbatch = as_batch(images)
  batch = tf.shape(images)[0]
  seeds = tf.random.experimental.stateless_split(seed, 3)
  choices = batching.uniform(
      [batch, num_layers], seeds[0], 0, len(RANDAUGMENT_OPS) + 1, tf.int32)
  negate = batching.uniform([batch, num_layers], seeds[1]) < 0.5
  level = tf.fill([batch], tf.cast(magnitude, tf.float32))
  fires = tf.ones([batch], tf.bool)
  layer_seeds = tf.random.experimental.stateless_split(seeds[2], num_layers)
  for layer in range(num_layers):
    # Index len(RANDAUGMENT_OPS) is the identity: no op has it.
    images = _apply(images, RANDAUGMENT_OPS, choices[:, layer], level, fires,
                    negate[:, layer], layer_seeds[layer], cutout_const,
                    translate_const)
  return images[0] if unbatch else images
