"""The seed presets against the seed's own formulas (its train.py, loss/spc.py,
models/resnet_contrastive.py, data_augmentation/auto_augment.py), written in
NumPy / scipy here."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from supcon_tf.presets import PRESETS, make_config
from supcon_tf.data.augment import CIFAR10_POLICY, apply_policy
from supcon_tf.data.augment import seed_ops as S
from supcon_tf.data.sources import MEAN_STD
from supcon_tf.losses import contrastive_loss
from supcon_tf.training import optimizers, run as run_lib, stages
from tests.reference import seed_loss

SUPCON = 'seed_cifar10_resnet20_supcon_autoaugment'


def _unit(shape, seed, spread=1.):
  """Unit vectors; small `spread` keeps them close together."""
  rng = np.random.default_rng(seed)
  x = np.ones(shape) + spread * rng.normal(size=shape)
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_six_seed_presets_name_dataset_model_and_method():
  names = {n for n in PRESETS if n.startswith('seed_')}
  assert names == {f'seed_{d}_resnet20_{m}' for d in ('cifar10', 'cifar100')
                   for m in ('ce', 'ce_autoaugment', 'supcon_autoaugment')}
  for name in names:
    config = make_config(name)
    assert config.input_fn in name and config.resnet_depth == 20
    augmented = name.endswith('autoaugment')
    assert (config.augmentation_type == 'AUTOAUGMENT') == augmented
    assert (config.stage_1_contrastive_loss_weight > 0) == ('supcon' in name)
    # The classifier on the frozen encoder with BatchNorm in inference mode.
    assert config.stage_2_encoder_batch_norm_inference


def test_seed_normalisation_constants():
  # The seed's transforms.Normalize(mean, std) on 0..1 images.
  seed = {'cifar10': ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
          'cifar100': ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))}
  for dataset, (mean, std) in seed.items():
    config = make_config(f'seed_{dataset}_resnet20_supcon_autoaugment')
    used = run_lib.normalization(config, source=None)
    np.testing.assert_allclose(used[0], 255 * np.array(mean), atol=0.06)
    np.testing.assert_allclose(used[1], 255 * np.array(std), atol=0.06)
    assert MEAN_STD[dataset] == used


def test_seed_loss_is_the_unscaled_loss_and_scaling_multiplies_by_tau():
  features = _unit((16, 2, 8), 0, spread=0.3)
  labels = np.arange(16) % 3
  config = make_config(SUPCON)
  port = contrastive_loss(features, labels, temperature=config.temperature,
                          scale_by_temperature=config.scale_by_temperature)
  # Close projections: the seed's epsilon (1e-5 after the shift) is negligible.
  np.testing.assert_allclose(float(tf.reduce_mean(port)),
                             seed_loss(features, labels, 0.07), rtol=1e-4)
  # scale_by_temperature=True (official) gives every gradient a factor tau.
  x = tf.constant(features)
  grads = []
  for scale in (False, True):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_mean(contrastive_loss(
          x, labels, temperature=0.07, scale_by_temperature=scale))
    grads.append(tape.gradient(loss, x).numpy())
  np.testing.assert_allclose(grads[1], 0.07 * grads[0], rtol=1e-4, atol=1e-9)


def _seed_model():
  keras.utils.set_random_seed(3)
  model = run_lib.build_model(make_config(SUPCON), 10)
  model(tf.zeros([2, 32, 32, 3]))
  return model


def test_initial_weights_follow_kaiming_normal_and_pytorch_biases():
  model = _seed_model()
  checked = 0
  for v in model.trainable_variables:
    leaf, value = v.path.rsplit('/', 1)[1], v.numpy()
    if leaf == 'kernel':
      fan_in = int(np.prod(value.shape[:-1]))
      # kaiming_normal_: N(0, 2 / fan_in); the std within 15% for >= 400
      # weights, the mean near 0.
      if value.size >= 400:
        assert abs(value.std() / math.sqrt(2. / fan_in) - 1) < 0.15, v.path
        assert abs(value.mean()) < 0.2 * value.std(), v.path
        checked += 1
    elif leaf == 'bias':
      # nn.Linear's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in 64.
      bound = 1. / 8.
      assert np.abs(value).max() <= bound and value.std() > 0.4 * bound
      checked += 1
    elif leaf == 'gamma':
      np.testing.assert_array_equal(value, 1.)
    elif leaf == 'beta':
      np.testing.assert_array_equal(value, 0.)
  # 19 convolutions, 2 projection and 1 classifier kernel, 3 biases.
  assert checked == 19 + 3 + 3
  dense = [l.use_bias for l in model.projection_head.dense]
  assert dense == [True, True]  # The seed's head: both Linear layers biased.


def test_every_parameter_a_stage_updates_decays():
  model = _seed_model()
  config = make_config(SUPCON)
  stage_1 = stages.stage_from_config(config, 1)
  decayed = {v.path for v in stages.decayed_variables(stage_1, model, config)}
  updated = {v.path for part in stages.trained_parts(stage_1, model, config)
             for v in part.trainable_variables}
  assert decayed == updated and any(p.endswith('gamma') for p in decayed)
  stage_2 = stages.stage_from_config(config, 2)
  assert {v.path for v in stages.decayed_variables(stage_2, model, config)} == {
      v.path for v in model.classification_head.trainable_variables}
  ce = make_config('seed_cifar10_resnet20_ce')
  stage = stages.stage_from_config(ce, 1)
  assert {v.path for v in stages.decayed_variables(stage, model, ce)} == {
      v.path for p in (model.encoder, model.classification_head)
      for v in p.trainable_variables}
  official = make_config('supcon_cifar10_resnet50')
  assert not official.use_batch_norm_weight_decay


@pytest.mark.parametrize('nesterov', [False, True])
def test_momentum_matches_pytorch_sgd_with_weight_decay(nesterov):
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(5, 3))
  gradients = rng.normal(size=(6, 5, 3))
  rates = [0.1, 0.1, 0.05, 0.05, 0.01, 0.2]  # A schedule that moves.
  wd, momentum = 1e-4, 0.9
  variable = tf.Variable(w0, dtype=tf.float64)

  class Rates(keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
      return tf.gather(tf.constant(rates, tf.float64), step)

  optimizer = optimizers.Momentum(Rates(), momentum, nesterov=nesterov)
  # torch.optim.SGD.step: d = g + wd * p; buf = m * buf + d;
  # p -= lr * (d + m * buf if nesterov else buf).
  w, buf = w0.copy(), np.zeros_like(w0)
  for g, lr in zip(gradients, rates):
    # The training step adds wd * l2_loss to the loss: gradient g + wd * w.
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(variable * g) + wd * tf.nn.l2_loss(variable)
    optimizer.apply(tape.gradient(loss, [variable]), [variable])
    d = g + wd * w
    buf = momentum * buf + d
    w = w - lr * (d + momentum * buf if nesterov else buf)
  np.testing.assert_allclose(variable.numpy(), w, rtol=1e-10)


def test_schedule_moves_once_per_epoch_as_the_seed_adjusts_it():
  def seed_rate(epoch, lr, epochs):
    # train.py calls adjust_learning_rate(epoch) after epoch `epoch`.
    if epoch == 0:
      return lr
    eta_min = lr * 0.1 ** 3
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * (epoch - 1) /
                                                    epochs)) / 2
  steps_per_epoch = 7
  for name, index, lr in ((SUPCON, 1, 0.1), (SUPCON, 2, 0.05),
                          ('seed_cifar100_resnet20_ce', 1, 0.05)):
    config = make_config(name, stage_1_epochs=12, stage_2_epochs=5)
    stage = stages.stage_from_config(config, index)
    schedule = stages.learning_rate(stage, config, steps_per_epoch)
    got = [float(schedule(s)) for s in range(stage.epochs * steps_per_epoch)]
    want = [seed_rate(s // steps_per_epoch, lr, stage.epochs)
            for s in range(stage.epochs * steps_per_epoch)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


# --- the seed's AutoAugment ----------------------------------------------------


def _seed_transform(name, magnitude, size):
  """The seed's matrix and offset for ndimage, as its auto_augment.py builds
  them (transform_matrix_offset_center with o = size / 2 + 0.5)."""
  if name == 'ShearX':
    m = np.array([[1, magnitude, 0], [0, 1, 0], [0, 0, 1]])
  elif name == 'ShearY':
    m = np.array([[1, 0, 0], [magnitude, 1, 0], [0, 0, 1]])
  elif name == 'TranslateX':
    m = np.array([[1, 0, 0], [0, 1, size * magnitude], [0, 0, 1]])
  elif name == 'TranslateY':
    m = np.array([[1, 0, size * magnitude], [0, 1, 0], [0, 0, 1]])
  else:
    t = np.deg2rad(magnitude)
    m = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0],
                  [0, 0, 1]])
  o = size / 2 + 0.5
  offset = np.array([[1, 0, o], [0, 1, o], [0, 0, 1]])
  reset = np.array([[1, 0, -o], [0, 1, -o], [0, 0, 1]])
  full = offset @ m @ reset
  return full[:2, :2], full[:2, 2]


@pytest.mark.parametrize('name,magnitude', [
    ('ShearX', 0.21), ('ShearY', -0.17), ('TranslateX', 0.4),
    ('TranslateY', -0.13), ('Rotate', -14.5), ('Rotate', 27.)])
def test_geometric_ops_equal_ndimage_affine_transform(name, magnitude):
  from scipy import ndimage
  size = 32
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
  matrix, offset = _seed_transform(name, magnitude, size)
  got_matrix, got_offset = S.ndimage_matrix(name, tf.constant([magnitude]),
                                            float(size))
  np.testing.assert_allclose(got_matrix[0], matrix, atol=1e-12)
  np.testing.assert_allclose(got_offset[0], offset, atol=1e-9)
  got = S.apply_op(name, tf.constant(image[None]),
                   tf.constant([magnitude], tf.float64))[0].numpy()
  # As the seed calls it: uint8 in and out, order 3, constant 0 fill.
  want = np.stack([ndimage.affine_transform(image[:, :, c], matrix, offset)
                   for c in range(3)], axis=2)
  np.testing.assert_array_equal(got, want)


def test_magnitudes_are_uniform_inside_the_seeds_linspace_bins():
  for name, (low, high) in S.RANGES.items():
    bins = np.linspace(low, high, 11)
    for level in (0, 3, 9):
      for u in (0., 0.25, 0.999):
        got = float(S.level_to_magnitude(name, level, u))
        assert got == pytest.approx(bins[level] + u * (bins[level + 1] -
                                                       bins[level]))


@pytest.mark.parametrize('threshold', [51.2, 60.7, 76.0])
def test_fractional_solarize_threshold_matches_pil(threshold):
  image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
  got = S.apply_op('Solarize', tf.constant(image[None]),
                   tf.constant([threshold], tf.float64))[0].numpy()
  want = np.asarray(ImageOps.solarize(Image.fromarray(image), threshold))
  np.testing.assert_array_equal(got, want)


def test_seed_policy_applies_each_drawn_op_in_order():
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, (6, 32, 32, 3)).astype(np.uint8)
  choice = tf.constant([1, 3, 14, 21, 4, 0])
  fires = tf.constant([[True, True], [True, False], [True, True],
                       [False, True], [False, False], [True, True]])
  uniform = tf.constant(rng.uniform(size=(6, 2)))
  got = apply_policy(tf.constant(images), CIFAR10_POLICY, choice, fires,
                     uniform, S.SEED).numpy()
  for i in range(6):
    want = tf.constant(images[i:i + 1])
    for stage in range(2):
      if not bool(fires[i, stage]):
        continue
      name, _, level = CIFAR10_POLICY[int(choice[i])][stage]
      magnitude = S.level_to_magnitude(name, level, uniform[i, stage])[None]
      want = S.apply_op(name, want, magnitude)
    np.testing.assert_array_equal(got[i], want[0].numpy())
  np.testing.assert_array_equal(got[4], images[4])  # Nothing fired.
