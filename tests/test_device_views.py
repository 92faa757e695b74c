"""The views made on the device (`supcon_tf.data.device_views`, keras.ops)
against the tf.data ops on the same images and draws: under the TensorFlow
backend here and under JAX in a process of its own (tests/test_backends.py
runs `device_cases` there); the draws' rates against the policy's
(chi-square)."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import stats

from supcon_tf.data import device_views as D
from supcon_tf.data.augment import (
    SEED, batching, crops, engine, pil_ops, policies)
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
  family, policy = policies.POLICIES['seed_cifar10']
  choice, fires, position, _ = engine.policy_draws(seed, n, policy, family)
  arrays.update({'seed_cifar10/choice': choice.numpy(),
                 'seed_cifar10/fires': fires.numpy(),
                 'seed_cifar10/position': position.numpy().astype('float32')})
  expected['seed_cifar10'] = engine.autoaugment(x, seed, policy, family)
  return arrays, {k: np.asarray(v, 'float64') for k, v in expected.items()}


def assert_within_a_grey_level(got, expected):
  """Every pixel within one grey level, and few off at all (float32 here
  against float64 there moves a rounding now and then)."""
  assert set(got) == set(expected)
  for name, want in expected.items():
    diff = np.abs(np.asarray(got[name], 'float64') - want)
    assert got[name].shape == want.shape, name
    assert diff.max() <= 1, (name, diff.max())
    assert np.mean(diff > 0) < 0.01, (name, np.mean(diff > 0))


def test_each_device_op_equals_the_tf_data_op_on_the_same_draws():
  arrays, expected = cases()
  assert_within_a_grey_level(device_cases.outputs(arrays), expected)
  # The draws did something: the views are not the images.
  assert np.mean(expected['seed_cifar10'] != arrays['images']) > 0.2


def test_the_layer_makes_its_views_from_its_draws_and_normalises():
  x = images(16)
  layer = D.DeviceViews(seed=7, mean=[120., 110., 100.], std=[60., 50., 40.])
  draws = layer.draws(16)
  views = layer.views(x, draws)
  want = D.autoaugment(
      D.pad_crop_flip(x.astype('float32'), draws['offsets'], draws['mirror']),
      D.POLICIES['seed_cifar10'], draws['choice'], draws['fires'],
      draws['position'])
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


def test_draws_occur_at_the_rates_the_policy_gives():
  n = 10000
  policy = D.POLICIES['seed_cifar10']
  draws = {k: np.asarray(v) for k, v in D.autoaugment_draws(
      n, policy, D.keras.random.SeedGenerator(0)).items()}
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
  # The magnitude's place in its bin: uniform (10 bins, both ops).
  counts = np.histogram(draws['position'], bins=10, range=(0, 1))[0]
  assert _chi_square(counts, np.ones(10)) > 0.01
  # pad_crop_flip: the 81 offsets and the mirror, uniform.
  crop = D.pad_crop_flip_draws(n, D.keras.random.SeedGenerator(1))
  offsets = np.asarray(crop['offsets']) + 4
  assert offsets.min() == 0 and offsets.max() == 8
  counts = np.bincount(offsets[:, 0] * 9 + offsets[:, 1], minlength=81)
  assert _chi_square(counts, np.ones(81)) > 0.01
  mirror = np.bincount(np.asarray(crop['mirror']).astype(int), minlength=2)
  assert _chi_square(mirror, np.ones(2)) > 0.01


@pytest.mark.parametrize('arguments,words', [
    (dict(crop='random'), "crop must be 'pad' or None"),
    (dict(policy='v7'), 'policy must be one of seed_cifar10'),
    (dict(mean=[1., 2., 3.]), 'mean and std go together'),
])
def test_bad_layer_arguments_give_one_line(arguments, words):
  with pytest.raises(ValueError, match=words):
    D.DeviceViews(**arguments)
