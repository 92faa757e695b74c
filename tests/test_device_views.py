"""The views made on the device (`supcon_tf.data.device_views`, keras.ops)
against the tf.data ops on the same images and draws: under the TensorFlow
backend here and under JAX in a process of its own (tests/test_backends.py
runs `device_cases` there); the draws' rates against the policy's
(chi-square)."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import stats

from supcon_tf.data import device_views as D
from supcon_tf.data.augment import (
    SEED, batching, color, crops, engine, pil_ops, policies, tf_models_ops)
from tests import device_cases


def images(count=48, size=32):
  """Smooth photographs' stand-ins, noise, flat and narrow-range images."""
  rng = np.random.default_rng(0)
  smooth = [np.asarray(Image.fromarray(s).resize((size, size),
                                                 Image.BILINEAR))
            for s in rng.integers(0, 256, (count - 4, 6, 6, 3), np.uint8)]
  narrow = rng.integers(100, 104, (size, size, 3), np.uint8)
  return np.stack(smooth + [
      rng.integers(0, 256, (size, size, 3), np.uint8),
      np.full((size, size, 3), 7, np.uint8), narrow,
      np.concatenate([narrow[:, :size // 2], 255 - narrow[:, size // 2:]],
                     1)])


def cases():
  """(arrays for `device_cases.outputs`, the tf.data ops' outputs)."""
  x = images()
  n = len(x)
  rng = np.random.default_rng(1)
  arrays, expected = {'images': x}, {}
  for name in D.PIXEL_OPS:
    magnitude = {'Posterize': rng.integers(0, 9, n),
                 'Solarize': rng.integers(0, 257, n)}.get(
                     name, rng.uniform(0.1, 1.9, n))
    arrays[f'{name}/magnitude'] = magnitude.astype('float32')
    expected[name] = pil_ops.OPS[name](x, magnitude)
  for name, values in (('Rotate', [0, 3, 9, 30, -12, -30, 90, 45.5]),
                       ('ShearX', [0, 0.03, 0.3, -0.15, -0.3]),
                       ('ShearY', [0, 0.09, 0.27, -0.06, -0.3]),
                       ('TranslateX', [0, 1, 5, 10, -3, -10, 3.5]),
                       ('TranslateY', [0, 2, 9, -1, -7, 40, 3.5])):
    magnitude = np.resize(np.array(values, 'float32'), n)
    arrays[f'pil/{name}/magnitude'] = magnitude
    expected[f'pil/{name}'] = pil_ops.OPS[name](x, magnitude)
  for name in D.GEOMETRIC_OPS:
    low, high = D.SEED_RANGES[name]
    magnitude = rng.uniform(low, high, n).astype('float32')
    arrays[f'{name}/magnitude'] = magnitude
    expected[name] = SEED.ops[name](x, magnitude)
  seed = tf.constant([3, 4], tf.int64)
  # pad_crop_flip's own draws, as it makes them.
  seeds = tf.random.experimental.stateless_split(seed, 2)
  arrays['pad_crop_flip/offsets'] = (batching.uniform(
      [n, 2], seeds[0], 0, 9, dtype=tf.int32) - 4).numpy()
  arrays['pad_crop_flip/mirror'] = crops.random_flips(seeds[1], n).numpy()
  expected['pad_crop_flip'] = crops.pad_crop_flip(x, seed)
  for name in D.TF_MODELS_PIXEL_OPS:
    argument = {'Posterize': rng.integers(0, 5, n),
                'Solarize': rng.integers(0, 257, n),
                'SolarizeAdd': rng.integers(0, 111, n)}.get(
                    name, rng.uniform(0.1, 1.9, n))
    arrays[f'tf_models/{name}/argument'] = argument.astype('float32')
    expected[f'tf_models/{name}'] = tf_models_ops.OPS[name](x, argument)
  for name, scale in (('Rotate', 30.), ('ShearX', 0.3), ('ShearY', 0.3),
                      ('TranslateX', 40.), ('TranslateY', 40.)):
    argument = rng.uniform(-scale, scale, n).astype('float32')
    arrays[f'tf_models/{name}/argument'] = argument
    expected[f'tf_models/{name}'] = tf_models_ops.OPS[name](x, argument)
  for name in D.POLICIES:
    family, policy = policies.POLICIES[name]
    choice, fires, draw, _ = engine.policy_draws(seed, n, policy, family)
    draw = draw.numpy()
    arrays.update({f'{name}/choice': choice.numpy(),
                   f'{name}/fires': fires.numpy(),
                   f'{name}/draw': draw.astype(
                       'float32' if draw.dtype == np.float64 else draw.dtype)})
    expected[name] = engine.autoaugment(x, seed, policy, family)
  for pytorch in (False, True):
    name = f'simclr/{"pytorch" if pytorch else "tf"}'
    draws = simclr_draws(seed, n, 1.0, pytorch, blur_probability=0.5)
    arrays.update({f'{name}/{k}': v for k, v in draws.items()})
    with batching.example_positions(tf.range(n), n):
      expected[name] = color.simclr_distort(
          x, seed, 1.0, blur_probability=0.5, pytorch_color_jitter=pytorch)
  sigma = rng.uniform(0.1, 2., n).astype('float32')
  arrays['blur/sigma'] = sigma
  expected['blur'] = color.gaussian_blur(tf.cast(x, tf.float32), sigma, 7)
  return arrays, {k: np.asarray(v, 'float64') for k, v in expected.items()}


def simclr_draws(seed, n, strength, pytorch, blur_probability):
  """The draws `augment.simclr_distort` makes for a batch of `n` (its seeds'
  split, per-image draws at the images' places), as the device op takes
  them."""
  seeds = tf.random.experimental.stateless_split(seed, 4)
  jitter = tf.random.experimental.stateless_split(seeds[0], 5)
  uniform = lambda shape, s, low=0., high=1.: batching.uniform(
      shape, s, low, high).numpy()
  ranges = D.jitter_ranges(strength, pytorch)
  return {
      'jitter': uniform([n], tf.random.experimental.stateless_fold_in(
          seeds[0], 1)) < 0.8,
      'factors': np.stack([uniform([n], jitter[i], *ranges[i])
                           for i in range(4)], 1),
      'order': np.argsort(uniform([n, 4], jitter[4]), 1).astype('int32'),
      'gray': uniform([n], seeds[1]) < 0.2,
      'blur': uniform([n], seeds[3]) < blur_probability,
      'sigma': uniform([n], seeds[2], 0.1, 2.0)}


def assert_within_a_grey_level(got, expected):
  """Every pixel within one grey level, and few off by more than half of
  one (float32 here against float64 there moves a rounding now and then)."""
  assert set(got) == set(expected)
  for name, want in expected.items():
    diff = np.abs(np.asarray(got[name], 'float64') - want)
    assert got[name].shape == want.shape, name
    assert diff.max() <= 1, (name, diff.max())
    assert np.mean(diff > 0.5) < 0.01, (name, np.mean(diff > 0.5))


def test_each_device_op_equals_the_tf_data_op_on_the_same_draws():
  arrays, expected = cases()
  assert_within_a_grey_level(device_cases.outputs(arrays), expected)
  # The draws did something: the views are not the images.
  for policy in D.POLICIES:
    assert np.mean(expected[policy] != arrays['images']) > 0.2


def test_the_layer_makes_its_views_from_its_draws_and_normalises():
  x = images(16)
  layer = D.DeviceViews(policy='seed_cifar10', seed=7, mean=[120., 110., 100.],
                        std=[60., 50., 40.])
  draws = layer.draws(16)
  views = layer.views(x, draws)
  want = D.autoaugment(
      D.pad_crop_flip(x.astype('float32'), draws['offsets'], draws['mirror']),
      *D.POLICIES['seed_cifar10'], draws['choice'], draws['fires'],
      draws['draw'])
  np.testing.assert_array_equal(np.asarray(views), np.asarray(want))
  np.testing.assert_allclose(
      np.asarray(layer.normalize(views)),
      (np.asarray(views) - [120., 110., 100.]) / [60., 50., 40.], rtol=1e-6)
  # Each call draws anew; eval only normalises.
  first, second = np.asarray(layer(x)), np.asarray(layer(x))
  assert np.mean(first != second) > 0.5
  np.testing.assert_allclose(np.asarray(layer(x, training=False)),
                             (x - [120., 110., 100.]) / [60., 50., 40.],
                             rtol=1e-6)
  again = D.DeviceViews.from_config(layer.get_config())
  assert again.get_config() == layer.get_config()


def _chi_square(observed, expected):
  """p of the counts against the expected ones; cells expected empty must
  be empty."""
  observed, expected = np.ravel(observed), np.ravel(expected)
  assert observed[expected == 0].sum() == 0
  keep = expected > 0
  return stats.chisquare(observed[keep],
                         expected[keep] * observed.sum() /
                         expected[keep].sum()).pvalue


@pytest.mark.parametrize('name', list(D.POLICIES))
def test_draws_occur_at_the_rates_the_policy_gives(name):
  n = 10000
  family, policy = D.POLICIES[name]
  draws = {k: np.asarray(v) for k, v in D.autoaugment_draws(
      n, family, policy, keras.random.SeedGenerator(0)).items()}
  probabilities = np.array([[p for _, p, _ in sub] for sub in policy])
  # Each sub-policy, and each of its four fire patterns, at its rate.
  pattern = draws['fires'][:, 0] * 2 + draws['fires'][:, 1]
  observed = np.zeros((len(policy), 4))
  np.add.at(observed, (draws['choice'], pattern), 1)
  p0, p1 = probabilities[:, 0:1], probabilities[:, 1:2]
  expected = np.concatenate([(1 - p0) * (1 - p1), (1 - p0) * p1,
                             p0 * (1 - p1), p0 * p1], 1) / len(policy)
  assert _chi_square(observed, expected) > 0.01
  # A wrong rate fails: every op firing at 1/2 instead.
  assert _chi_square(observed, np.full_like(expected, 1 / 4)) < 1e-6
  if family is D.SEED:
    # The magnitude's place in its bin: uniform (10 bins, both ops).
    counts = np.histogram(draws['draw'], bins=10, range=(0, 1))[0]
    assert _chi_square(counts, np.ones(10)) > 0.01
  else:
    # The geometric ops' sign: negated half the time.
    assert draws['draw'].dtype == bool
    counts = np.bincount(draws['draw'].ravel().astype(int), minlength=2)
    assert _chi_square(counts, np.ones(2)) > 0.01
  # pad_crop_flip: the 81 offsets and the mirror, uniform.
  crop = D.pad_crop_flip_draws(n, keras.random.SeedGenerator(1))
  offsets = np.asarray(crop['offsets']) + 4
  assert offsets.min() == 0 and offsets.max() == 8
  counts = np.bincount(offsets[:, 0] * 9 + offsets[:, 1], minlength=81)
  assert _chi_square(counts, np.ones(81)) > 0.01
  mirror = np.bincount(np.asarray(crop['mirror']).astype(int), minlength=2)
  assert _chi_square(mirror, np.ones(2)) > 0.01


def test_simclr_draws_occur_at_their_rates():
  n = 10000
  ranges = D.jitter_ranges(0.5, pytorch=True)
  draws = {k: np.asarray(v) for k, v in D.simclr_draws(
      n, keras.random.SeedGenerator(2), 0.5, True, 0.3).items()}
  for name, rate in (('jitter', 0.8), ('gray', 0.2), ('blur', 0.3)):
    counts = np.bincount(draws[name].astype(int), minlength=2)
    assert _chi_square(counts, [1 - rate, rate]) > 0.01, name
  # The jitter's order: the 24 permutations, uniformly.
  codes = (draws['order'] * [64, 16, 4, 1]).sum(1)
  _, counts = np.unique(codes, return_counts=True)
  assert len(counts) == 24 and _chi_square(counts, np.ones(24)) > 0.01
  for values, (low, high) in zip(draws['factors'].T, ranges + ((0.1, 2.),)):
    counts = np.histogram(values, bins=10, range=(low, high))[0]
    assert counts.sum() == n and _chi_square(counts, np.ones(10)) > 0.01
  counts = np.histogram(draws['sigma'], bins=10, range=(0.1, 2.))[0]
  assert counts.sum() == n and _chi_square(counts, np.ones(10)) > 0.01


def test_the_layer_reads_a_presets_training_view():
  from supcon_tf.presets import make_config
  digits = D.DeviceViews.from_preprocessing(make_config(
      'supcon_digits_resnet20', posterize_bits_fix=True))
  assert (digits.policy, digits.posterize_bits_fix) == ('cifar10', True)
  seed = D.DeviceViews.from_preprocessing(
      make_config('seed_cifar10_resnet20_supcon_autoaugment'),
      ([1.] * 3, [2.] * 3))
  assert (seed.crop, seed.padding, seed.flip, seed.policy,
          seed.simclr_strength) == ('pad', 4, True, 'seed_cifar10', 0.)
  assert seed.mean == [1.] * 3
  official = make_config('supcon_imagenet_resnet50')
  with pytest.raises(ValueError, match="random_resized' is the host's"):
    D.DeviceViews.from_preprocessing(official)
  views = D.DeviceViews.from_preprocessing(official, cropped=True)
  assert (views.crop, views.flip) == (None, False)
  assert views.policy == 'v0'  # the official AutoAugment
  simclr = dataclasses.replace(official, augmentation_type='SIMCLR',
                               defer_blurring=True,
                            blur_probability=0.5, augmentation_magnitude=0.5)
  layer = D.DeviceViews.from_preprocessing(simclr, cropped=True, seed=3)
  assert (layer.simclr_strength, layer.deferred_blur) == (0.5, True)
  out = np.asarray(layer(images(8, 40)))
  assert out.shape == (8, 40, 40, 3) and np.isfinite(out).all()
  for change, words in ((dict(augmentation_type='RANDAUGMENT'),
                         'augmentation_type=RANDAUGMENT has no device views'),
                        (dict(augmentation_type='AUTOAUGMENT',
                              autoaugment_policy='svhn'),
                         'autoaugment_policy=svhn has no device views'),
                        (dict(cutout_size=8), 'cutout_size has no device')):
    with pytest.raises(ValueError, match=words):
      D.DeviceViews.from_preprocessing(dataclasses.replace(simclr, **change),
                                       cropped=True)


@pytest.mark.parametrize('arguments,words', [
    (dict(crop='random'), "crop must be 'pad' or None"),
    (dict(policy='v7'), 'policy must be one of cifar10, seed_cifar10, v0'),
    (dict(blur_probability=2.), 'blur_probability must be in'),
    (dict(mean=[1., 2., 3.]), 'mean and std go together'),
])
def test_bad_layer_arguments_give_one_line(arguments, words):
  with pytest.raises(ValueError, match=words):
    D.DeviceViews(**arguments)
