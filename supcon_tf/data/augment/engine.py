"""AutoAugment (Cubuk et al. 2019) and RandAugment (Cubuk et al. 2020) over
any op family, batch-level and stateless.

An op family (`Family`) is a table: its ops by name, how a policy's level
(0..10) becomes an op's argument, which ops take a random sign, the per-op
draw it needs (a sign, or a position inside the level's bin) and the ops
that draw randomness of their own (TF-Models' Cutout). A policy is data over
a family's op names: sub-policies of two (op, probability, level). This
module makes every random choice (`policy_draws`, `randaugment_draws`) and
applies the drawn steps (`apply_steps`), the same for every family; the
families are `pil_ops.PIL`, `tf_models_ops.TF_MODELS` and `seed_ops.SEED`,
the policies `policies.POLICIES`.

Each op runs once per step, on the images that drew it (the batch
partitioned by op, each op on its part, the parts stitched back), so a step
costs one op per image whatever the number of ops.
"""
import dataclasses
from typing import Callable, Mapping

import tensorflow as tf

from supcon_tf.data.augment import batching
from supcon_tf.data.augment.batching import apply_by_group, as_batch
from supcon_tf.data.policy_tables import GEOMETRIC_OPS  # noqa: F401

IDENTITY = 'Identity'  # RandAugment's op that leaves the image as it is.


def sign_draw(shape, seed):
  """Per-op draw of the families with signed ops: negate (probability 1/2)."""
  return batching.uniform(shape, seed) < 0.5


@dataclasses.dataclass(frozen=True, eq=False)  # A family is itself: by identity.
class Family:
  """An op family: how a policy's (op, level) becomes pixels.

  ops: name -> op(images uint8 [n, H, W, 3], argument [n]).
  level_to_arg: (name, level [N] float64, draw [N], **options) -> the
    op's argument [N], before the sign.
  signed: the ops whose argument is negated where the draw says so.
  draw: (shape, seed) -> the per-op draws (`sign_draw`, or the family's own).
  randaugment_ops: RandAugment's op list, drawn uniformly; `IDENTITY`
    where the family has one.
  randaugment_options: options of `level_to_arg` for RandAugment (the
    family's defaults are AutoAugment's).
  seeded_ops: name -> op(images, seed, argument), ops that draw their own
    randomness; each step gets a seed of its own for them.
  config_fields: Config fields passed to `level_to_arg` as options.
  """
  ops: Mapping[str, Callable]
  level_to_arg: Callable
  signed: tuple = ()
  draw: Callable = sign_draw
  randaugment_ops: tuple = ()
  randaugment_options: Mapping = dataclasses.field(default_factory=dict)
  seeded_ops: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
  config_fields: tuple = ()

  def op(self, name, seed=None):
    """op(images, argument) of `name`; a seeded op with `seed` bound."""
    if name in self.seeded_ops:
      return lambda images, argument: self.seeded_ops[name](
          images, seed, argument)
    return self.ops[name]

  def argument(self, name, level, draw, **options):
    """The argument [N] of op `name` at `level` [N], signed by `draw`."""
    argument = self.level_to_arg(name, level, draw, **options)
    if name in self.signed:
      argument = tf.where(draw, -argument, argument)
    return argument

  def options(self, config):
    """The `level_to_arg` options a Config sets for this family."""
    return {name: getattr(config, name) for name in self.config_fields}


def apply_each(images, names, op_index, fires, argument_of, op_of):
  """Image i gets op `op_of(names[op_index[i]])` where `fires[i]`, at the
  [N] arguments `argument_of(name)`; `IDENTITY` leaves it as it is."""
  def op(name):
    if name == IDENTITY:
      return None
    argument = argument_of(name)
    return lambda part, where: op_of(name)(part, tf.gather(argument, where))
  return apply_by_group(images, tf.where(fires, op_index, len(names)),
                        [op(name) for name in names])


def apply_steps(images, family, names, op_index, level, fires, draw,
                op_seeds=None, **options):
  """The drawn steps, in turn: at step k, image i gets op
  `names[op_index[i, k]]` of `family` at `level[i, k]` where `fires[i, k]`,
  with its per-op draw `draw[i, k]`; `op_seeds[k]` seeds the family's
  seeded ops. `options` go to the family's `level_to_arg`. Deterministic."""
  images, unbatch = as_batch(images)
  level = tf.cast(level, tf.float64)
  for step in range(op_index.shape[1]):
    seed = None if op_seeds is None else op_seeds[step]
    images = apply_each(
        images, names, op_index[:, step], fires[:, step],
        lambda name, step=step: family.argument(
            name, level[:, step], draw[:, step], **options),
        lambda name, seed=seed: family.op(name, seed))
  return images[0] if unbatch else images


def apply_policy(images, policy, choice, fires, draw, family, op_seeds=None,
                 **options):
  """Sub-policy `choice` [N] of `policy` on each image: its op k fires where
  `fires[:, k]`, with the per-op draw `draw[:, k]`. Deterministic given the
  draws (`policy_draws`)."""
  names = sorted({op for sub in policy for op, _, _ in sub})
  op_ids = tf.constant([[names.index(op) for op, _, _ in sub]
                        for sub in policy])
  levels = tf.constant([[level for _, _, level in sub] for sub in policy],
                       tf.float64)
  return apply_steps(images, family, names, tf.gather(op_ids, choice),
                     tf.gather(levels, choice), fires, draw, op_seeds,
                     **options)


def policy_draws(seed, batch, policy, family):
  """AutoAugment's random choices: a sub-policy per image (uniform) [N],
  whether each of its two ops fires (with the op's probability) [N, 2], the
  family's per-op draws [N, 2] and, for a family with seeded ops, a seed
  per op (else None)."""
  seeds = tf.random.experimental.stateless_split(seed, 3)
  choice = batching.uniform([batch], seeds[0], 0, len(policy),
                            dtype=tf.int32)
  probabilities = tf.gather(
      tf.constant([[op[1] for op in sub] for sub in policy], tf.float32),
      choice)
  fires = batching.uniform([batch, 2], seeds[1]) < probabilities
  draw_seed, op_seeds = seeds[2], None
  if family.seeded_ops:
    # The third seed splits only where ops need seeds of their own: every
    # family keeps the draws (and so the views) it had for a given seed.
    rest = tf.random.experimental.stateless_split(seeds[2], 3)
    draw_seed, op_seeds = rest[0], [rest[1], rest[2]]
  return choice, fires, family.draw([batch, 2], draw_seed), op_seeds


def autoaugment(images, seed, policy, family, **options):
  """AutoAugment: one sub-policy of `policy` drawn uniformly per image, each
  of its ops fires with its probability. uint8 in and out; `seed` is a
  stateless seed (shape [2] integers): the same seed, the same images."""
  batch = tf.shape(as_batch(images)[0])[0]
  choice, fires, draw, op_seeds = policy_draws(seed, batch, policy, family)
  return apply_policy(images, policy, choice, fires, draw, family, op_seeds,
                      **options)


def randaugment_draws(seed, batch, num_layers, family):
  """RandAugment's random choices: an index into `family.randaugment_ops`
  per image and layer (uniform) [N, L], the family's per-op draws [N, L]
  and, for a family with seeded ops, a seed per layer (else None)."""
  seeds = tf.random.experimental.stateless_split(
      seed, 3 if family.seeded_ops else 2)
  op_index = batching.uniform([batch, num_layers], seeds[0], 0,
                              len(family.randaugment_ops), dtype=tf.int32)
  draw = family.draw([batch, num_layers], seeds[1])
  op_seeds = None
  if family.seeded_ops:
    layer_seeds = tf.random.experimental.stateless_split(seeds[2], num_layers)
    op_seeds = [layer_seeds[layer] for layer in range(num_layers)]
  return op_index, draw, op_seeds


def randaugment(images, seed, family, num_layers=2, magnitude=10., **options):
  """RandAugment(N=num_layers, M=magnitude): each image gets `num_layers`
  ops drawn uniformly from the family's list, every one at level
  `magnitude` (0..10, fractions allowed). uint8 in and out; the same seed,
  the same images."""
  batch = tf.shape(as_batch(images)[0])[0]
  op_index, draw, op_seeds = randaugment_draws(seed, batch, num_layers,
                                               family)
  level = tf.fill([batch, num_layers], tf.cast(magnitude, tf.float64))
  fires = tf.ones([batch, num_layers], tf.bool)
  return apply_steps(images, family, family.randaugment_ops, op_index, level,
                     fires, draw, op_seeds,
                     **{**family.randaugment_options, **options})
