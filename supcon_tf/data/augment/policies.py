"""AutoAugment (Cubuk et al. 2019: CIFAR-10 and ImageNet policies) and RandAugment
(Cubuk et al. 2020) on the PIL-exact ops, batch-level: each op once per batch on
the images that drew it.
"""
import tensorflow as tf

from supcon_tf.data.augment import batching
from supcon_tf.data.augment.batching import apply_to_some, as_batch
from supcon_tf.data.augment.pil_ops import OPS


# Cubuk et al. (2019), CIFAR-10 policy: 25 sub-policies of two
# (op, probability, level) each; levels are 0..10 (0 where the op takes none).
CIFAR10_POLICY = (
    (('Invert', 0.1, 0), ('Contrast', 0.2, 6)),
    (('Rotate', 0.7, 2), ('TranslateX', 0.3, 9)),
    (('Sharpness', 0.8, 1), ('Sharpness', 0.9, 3)),
    (('ShearY', 0.5, 8), ('TranslateY', 0.7, 9)),
    (('AutoContrast', 0.5, 0), ('Equalize', 0.9, 0)),
    (('ShearY', 0.2, 7), ('Posterize', 0.3, 7)),
    (('Color', 0.4, 3), ('Brightness', 0.6, 7)),
    (('Sharpness', 0.3, 9), ('Brightness', 0.7, 9)),
    (('Equalize', 0.6, 0), ('Equalize', 0.5, 0)),
    (('Contrast', 0.6, 7), ('Sharpness', 0.6, 5)),
    (('Color', 0.7, 7), ('TranslateX', 0.5, 8)),
    (('Equalize', 0.3, 0), ('AutoContrast', 0.4, 0)),
    (('TranslateY', 0.4, 3), ('Sharpness', 0.2, 6)),
    (('Brightness', 0.9, 6), ('Color', 0.2, 8)),
    (('Solarize', 0.5, 2), ('Invert', 0.0, 0)),
    (('Equalize', 0.2, 0), ('AutoContrast', 0.6, 0)),
    (('Equalize', 0.2, 0), ('Equalize', 0.6, 0)),
    (('Color', 0.9, 9), ('Equalize', 0.6, 0)),
    (('AutoContrast', 0.8, 0), ('Solarize', 0.2, 8)),
    (('Brightness', 0.1, 3), ('Color', 0.7, 0)),
    (('Solarize', 0.4, 5), ('AutoContrast', 0.9, 0)),
    (('TranslateY', 0.9, 9), ('TranslateY', 0.7, 9)),
    (('AutoContrast', 0.9, 0), ('Solarize', 0.8, 3)),
    (('Equalize', 0.8, 0), ('Invert', 0.1, 0)),
    (('TranslateY', 0.7, 9), ('AutoContrast', 0.9, 0)),
)


# Ops whose magnitude takes a random sign.
SIGNED_OPS = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')


def level_to_magnitude(name, level, posterize_bits_fix=False):
  """The original CIFAR AutoAugment level (0..10) -> magnitude in PIL units.

  `posterize_bits_fix` gives torchvision's 8 - round(level * 4 / 10) bits (8
  down to 4) in place of the original 4 - int(level * 4 / 10) (4 down to 0,
  where 0 bits turns the image black). Works on floats and tensors.
  """
  level = tf.cast(level, tf.float64)
  if name == 'Rotate':
    return tf.math.floor(level * 30. / 10.)
  if name in ('ShearX', 'ShearY'):
    return level * 0.3 / 10.
  if name in ('TranslateX', 'TranslateY'):
    return tf.math.floor(level * 10. / 10.)
  if name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    return level * 1.8 / 10. + 0.1
  if name == 'Posterize':
    if posterize_bits_fix:
      return 8. - tf.round(level * 4. / 10.)
    return 4. - tf.math.floor(level * 4. / 10.)
  if name == 'Solarize':
    return 256. - tf.math.floor(level * 256. / 10.)
  return tf.zeros_like(level)  # AutoContrast, Equalize, Invert.


def apply_each(images, names, op_index, fires, magnitude_of, op_of=None):
  """Image i gets op `names[op_index[i]]` where `fires[i]`, at the [N]
  magnitudes `magnitude_of(name)`; `op_of(name)` is the op (default `OPS`).

  Each op runs once, on the images that drew it (a gather, the op on that
  sub-batch, a scatter back), so the cost is one op per image whatever the
  number of ops.
  """
  op_of = op_of or OPS.__getitem__
  result = images
  for op_id, name in enumerate(names):
    selected = tf.logical_and(tf.equal(op_index, op_id), fires)
    magnitude = magnitude_of(name)
    result = tf.cond(
        tf.reduce_any(selected),
        lambda name=name, selected=selected, magnitude=magnitude,
        result=result: apply_to_some(op_of(name), images, magnitude,
                                      selected, result),
        lambda result=result: result)
  return result


def apply_ops(images, names, op_index, level, fires, negate,
              posterize_bits_fix=False):
  """Image i gets op `names[op_index[i]]` at `level[i]` where `fires[i]`.

  Levels are on the 0..10 scale of `level_to_magnitude`; a signed op's
  magnitude is negated where `negate`. See `apply_each`.
  """
  level = tf.cast(level, tf.float64)

  def magnitude_of(name):
    magnitude = level_to_magnitude(name, level, posterize_bits_fix)
    if name in SIGNED_OPS:
      magnitude = tf.where(negate, -magnitude, magnitude)
    return magnitude

  return apply_each(images, names, op_index, fires, magnitude_of)


def apply_policy(images, policy, choice, apply, negate,
                 posterize_bits_fix=False):
  """Applies sub-policy `choice` [N] of `policy` to each image of a batch.

  `apply` [N, 2] and `negate` [N, 2] are booleans: whether each of the
  sub-policy's two ops fires, and whether a signed op's magnitude is negated.
  Deterministic given the draws (see `autoaugment`).
  """
  images, unbatch = as_batch(images)
  names = sorted({op for sub_policy in policy for op, _, _ in sub_policy})
  for stage in range(2):
    op_ids = tf.constant([names.index(sub[stage][0]) for sub in policy])
    levels = tf.constant([sub[stage][2] for sub in policy], tf.float64)
    images = apply_ops(images, names, tf.gather(op_ids, choice),
                       tf.gather(levels, choice), apply[:, stage],
                       negate[:, stage], posterize_bits_fix)
  return images[0] if unbatch else images


def policy_draws(seed, batch, policy):
  """A sub-policy of `policy` per image (uniform) [N], whether each of its
  two ops fires (with the op's probability) [N, 2], and a seed left for the
  magnitudes' draws."""
  seeds = tf.random.experimental.stateless_split(seed, 3)
  choice = batching.uniform([batch], seeds[0], 0, len(policy),
                            dtype=tf.int32)
  probabilities = tf.gather(
      tf.constant([[op[1] for op in sub] for sub in policy], tf.float32),
      choice)
  fires = batching.uniform([batch, 2], seeds[1]) < probabilities
  return choice, fires, seeds[2]


def autoaugment(images, seed, policy=CIFAR10_POLICY, posterize_bits_fix=False):
  """AutoAugment: one sub-policy drawn uniformly per image, each op fires with
  its probability, signed magnitudes get a random sign.

  `seed` is a stateless seed (shape [2] integers): the same seed gives the same
  images.
  """
  batch_images, unbatch = as_batch(images)
  batch = tf.shape(batch_images)[0]
  choice, apply, sign_seed = policy_draws(seed, batch, policy)
  negate = batching.uniform([batch, 2], sign_seed) < 0.5
  out = apply_policy(batch_images, policy, choice, apply, negate,
                     posterize_bits_fix)
  return out[0] if unbatch else out


# Cubuk et al. (2019), ImageNet policy, levels on the same 0..10 scale.
IMAGENET_POLICY = (
    (('Posterize', 0.4, 8), ('Rotate', 0.6, 9)),
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 0)),
    (('Equalize', 0.8, 0), ('Equalize', 0.6, 0)),
    (('Posterize', 0.6, 7), ('Posterize', 0.6, 6)),
    (('Equalize', 0.4, 0), ('Solarize', 0.2, 4)),
    (('Equalize', 0.4, 0), ('Rotate', 0.8, 8)),
    (('Solarize', 0.6, 3), ('Equalize', 0.6, 0)),
    (('Posterize', 0.8, 5), ('Equalize', 1.0, 0)),
    (('Rotate', 0.2, 3), ('Solarize', 0.6, 8)),
    (('Equalize', 0.6, 0), ('Posterize', 0.4, 6)),
    (('Rotate', 0.8, 8), ('Color', 0.4, 0)),
    (('Rotate', 0.4, 9), ('Equalize', 0.6, 0)),
    (('Equalize', 0.0, 0), ('Equalize', 0.8, 0)),
    (('Invert', 0.6, 0), ('Equalize', 1.0, 0)),
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
    (('Rotate', 0.8, 8), ('Color', 1.0, 2)),
    (('Color', 0.8, 8), ('Solarize', 0.8, 7)),
    (('Sharpness', 0.4, 7), ('Invert', 0.6, 0)),
    (('ShearX', 0.6, 5), ('Equalize', 1.0, 0)),
    (('Color', 0.4, 0), ('Equalize', 0.6, 0)),
    (('Equalize', 0.4, 0), ('Solarize', 0.2, 4)),
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 0)),
    (('Invert', 0.6, 0), ('Equalize', 1.0, 0)),
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
    (('Equalize', 0.8, 0), ('Equalize', 0.6, 0)),
)


POLICIES = {'cifar10': CIFAR10_POLICY, 'imagenet': IMAGENET_POLICY}


# RandAugment (Cubuk et al. 2020): the AutoAugment ops without Invert, plus
# Identity (an op that leaves the image as it is).
RANDAUGMENT_OPS = ('Identity', 'AutoContrast', 'Equalize', 'Rotate',
                   'Solarize', 'Color', 'Posterize', 'Contrast', 'Brightness',
                   'Sharpness', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')


def randaugment_draws(seed, batch, num_layers):
  """RandAugment's random choices: op index [N, L] into `RANDAUGMENT_OPS`
  (uniform) and sign flips [N, L]."""
  seeds = tf.random.experimental.stateless_split(seed, 2)
  op_index = batching.uniform(
      [batch, num_layers], seeds[0], 0, len(RANDAUGMENT_OPS), dtype=tf.int32)
  negate = batching.uniform([batch, num_layers], seeds[1]) < 0.5
  return op_index, negate


def randaugment(images, seed, num_layers=2, magnitude=10.,
                posterize_bits_fix=False):
  """RandAugment(N=num_layers, M=magnitude): each image gets `num_layers` ops
  drawn uniformly, all at level `magnitude` (0..10 scale, fractions allowed),
  signed ops with a random sign. Stateless: the same seed, the same images.
  """
  batch_images, unbatch = as_batch(images)
  batch = tf.shape(batch_images)[0]
  op_index, negate = randaugment_draws(seed, batch, num_layers)
  level = tf.fill([batch], tf.cast(magnitude, tf.float64))
  fires = tf.ones([batch], tf.bool)
  # Identity is op 0; `apply_ops` only visits the named ops after it.
  names = RANDAUGMENT_OPS[1:]
  for layer in range(num_layers):
    batch_images = apply_ops(batch_images, names, op_index[:, layer] - 1,
                             level, fires, negate[:, layer],
                             posterize_bits_fix)
  return batch_images[0] if unbatch else batch_images
