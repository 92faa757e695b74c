"""The AutoAugment pixel ops against Pillow, pixel for pixel."""
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from supcon_tf.config import Preprocessing
from supcon_tf.data.augment import OPS
from supcon_tf.enums import AUGMENTATION_TYPES, EVAL_CROP_METHODS

GREY = (128, 128, 128)


def _pil_affine(image, matrix):
  return image.transform(image.size, Image.AFFINE, matrix,
                         resample=Image.NEAREST, fillcolor=GREY)


PIL_OPS = {
    'AutoContrast': lambda im, m: ImageOps.autocontrast(im),
    'Equalize': lambda im, m: ImageOps.equalize(im),
    'Invert': lambda im, m: ImageOps.invert(im),
    'Posterize': lambda im, m: ImageOps.posterize(im, int(m)),
    'Solarize': lambda im, m: ImageOps.solarize(im, m),
    'Color': lambda im, m: ImageEnhance.Color(im).enhance(m),
    'Contrast': lambda im, m: ImageEnhance.Contrast(im).enhance(m),
    'Brightness': lambda im, m: ImageEnhance.Brightness(im).enhance(m),
    'Sharpness': lambda im, m: ImageEnhance.Sharpness(im).enhance(m),
    'Rotate': lambda im, m: im.rotate(m, resample=Image.NEAREST,
                                      fillcolor=GREY),
    'ShearX': lambda im, m: _pil_affine(im, (1, m, 0, 0, 1, 0)),
    'ShearY': lambda im, m: _pil_affine(im, (1, 0, 0, m, 1, 0)),
    'TranslateX': lambda im, m: _pil_affine(im, (1, 0, m, 0, 1, 0)),
    'TranslateY': lambda im, m: _pil_affine(im, (1, 0, 0, 0, 1, m)),
}
# Magnitudes in PIL units, covering AutoAugment's range and the extremes.
MAGNITUDES = {
    'AutoContrast': [None], 'Equalize': [None], 'Invert': [None],
    'Posterize': [1, 4, 7, 8],
    'Solarize': [0, 26, 128, 255, 256],
    # AutoAugment: rotate +-int(level * 3) degrees, shear +-level * 0.03,
    # translate +-level pixels (CIFAR); plus angles PIL special-cases.
    'Rotate': [d * s for d in range(0, 31, 3) for s in (1, -1)] + [
        12.5, 45, 90, 180, 270, -90, 400],
    'ShearX': [l * 0.03 * s for l in range(11) for s in (1, -1)],
    'ShearY': [l * 0.03 * s for l in range(11) for s in (1, -1)],
    'TranslateX': [l * s for l in range(11) for s in (1, -1)] + [40, 3.5],
    'TranslateY': [l * s for l in range(11) for s in (1, -1)] + [40, 3.5],
}
FACTORS = [0.1, 0.55, 1.0, 1.45, 1.9]


def _images():
  """Smooth, noisy, flat and narrow-range images (histogram edge cases)."""
  rng = np.random.default_rng(0)
  smooth = [np.asarray(Image.fromarray(s).resize((32, 32), Image.BILINEAR))
            for s in rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)]
  return smooth + [
      rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8),
      rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8),
      np.full((32, 32, 3), 7, np.uint8),
      rng.integers(100, 104, size=(32, 32, 3), dtype=np.uint8),
      np.tile(np.arange(256, dtype=np.uint8)[None, :, None], [8, 1, 3]),
  ]


@pytest.mark.parametrize('name', sorted(PIL_OPS))
def test_op_matches_pil_exactly(name):
  for magnitude in MAGNITUDES.get(name, FACTORS):
    for index, image in enumerate(_images()):
      want = np.asarray(PIL_OPS[name](Image.fromarray(image), magnitude))
      got = OPS[name](image, magnitude).numpy()
      assert got.dtype == np.uint8 and got.shape == image.shape
      np.testing.assert_array_equal(
          got, want, err_msg=f'{name} magnitude {magnitude} image {index}')


@pytest.mark.parametrize('name', sorted(set(PIL_OPS) - {'Invert'}))
def test_batch_with_one_magnitude_per_image_matches_pil(name):
  images = np.stack(_images()[:4])
  magnitudes = MAGNITUDES.get(name, FACTORS)
  magnitudes = [magnitudes[i % len(magnitudes)] for i in range(4)]
  if magnitudes[0] is None:
    got = OPS[name](images).numpy()
  else:
    got = OPS[name](images, np.array(magnitudes)).numpy()
  for image, magnitude, out in zip(images, magnitudes, got):
    want = np.asarray(PIL_OPS[name](Image.fromarray(image), magnitude))
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize('name', ['Sharpness', 'Equalize', 'AutoContrast',
                                  'Contrast', 'Color'])
def test_images_smaller_than_3x3_match_pil(name):
  rng = np.random.default_rng(5)
  for height, width in [(1, 1), (2, 5), (3, 2), (1, 7), (3, 3)]:
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for magnitude in MAGNITUDES.get(name, FACTORS):
      want = np.asarray(PIL_OPS[name](Image.fromarray(image), magnitude))
      np.testing.assert_array_equal(OPS[name](image, magnitude).numpy(), want,
                                    err_msg=f'{height}x{width} {magnitude}')


def test_bad_image_raises_value_error_naming_it():
  with pytest.raises(ValueError, match='image must be uint8'):
    OPS['Invert'](np.zeros((4, 4, 3), np.float32))
  with pytest.raises(ValueError, match='image must be'):
    OPS['Invert'](np.zeros((4, 4), np.uint8))


# --- AutoAugment --------------------------------------------------------------

from supcon_tf.data.augment import (CIFAR10_POLICY, PIL,  # noqa: E402
                                    apply_policy, autoaugment)
from supcon_tf.data.augment.pil_ops import level_to_magnitude  # noqa: E402


def test_level_to_magnitude_follows_the_original_cifar_code():
  expected = {
      ('Rotate', 7): 21, ('ShearX', 5): 0.15, ('TranslateY', 9): 9,
      ('Color', 0): 0.1, ('Sharpness', 10): 1.9, ('Posterize', 7): 2,
      ('Posterize', 0): 4, ('Solarize', 2): 205, ('Solarize', 0): 256,
  }
  for (name, level), want in expected.items():
    np.testing.assert_allclose(float(level_to_magnitude(name, level)), want,
                               err_msg=name)
  assert float(level_to_magnitude('Posterize', 7, posterize_bits_fix=True)) == 5


def _with_pil(image, steps, posterize_bits_fix=False):
  """Pillow's ops applied in turn: steps of (name, level, negate)."""
  image = Image.fromarray(image)
  for name, level, negate in steps:
    magnitude = float(level_to_magnitude(
        name, level, posterize_bits_fix=posterize_bits_fix))
    if name in PIL.signed and negate:
      magnitude = -magnitude
    image = PIL_OPS[name](image, magnitude)
  return np.asarray(image)


@pytest.mark.parametrize('policy_name', ['cifar10', 'imagenet'])
def test_policy_equals_the_same_choices_made_with_pil(policy_name):
  from supcon_tf.data.augment import POLICIES
  family, policy = POLICIES[policy_name]
  assert family is PIL and len(policy) == 25
  images = np.stack(_images()[:4] + _images()[:4])
  rng = np.random.default_rng(1)
  for _ in range(5):
    choice = rng.integers(0, len(policy), size=8)
    apply = rng.uniform(size=(8, 2)) < 0.7
    negate = rng.uniform(size=(8, 2)) < 0.5
    got = apply_policy(images, policy, choice, apply, negate, PIL).numpy()
    for i, image in enumerate(images):
      steps = [(name, level, negate[i, stage]) for stage, (name, _, level)
               in enumerate(policy[choice[i]]) if apply[i, stage]]
      np.testing.assert_array_equal(got[i], _with_pil(image, steps),
                                    err_msg=f'{policy[choice[i]]}')


def test_autoaugment_is_deterministic_per_seed_and_varies_across_seeds():
  images = np.stack(_images()[:4] * 8)
  a = autoaugment(images, [1, 2], CIFAR10_POLICY, PIL).numpy()
  b = autoaugment(images, [1, 2], CIFAR10_POLICY, PIL).numpy()
  c = autoaugment(images, [3, 4], CIFAR10_POLICY, PIL).numpy()
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  changed = np.mean([not np.array_equal(x, y) for x, y in zip(a, images)])
  assert 0.3 < changed < 1.0  # Some sub-policies fire rarely or not at all.


# --- RandAugment ---------------------------------------------------------------

from supcon_tf.data.augment import randaugment, randaugment_draws  # noqa: E402,E501


@pytest.mark.parametrize('magnitude', [3, 9.5])
def test_randaugment_equals_its_draws_applied_with_pil(magnitude):
  images = np.stack(_images()[:4] * 4)
  seed = [5, 6]
  got = randaugment(images, seed, PIL, num_layers=3, magnitude=magnitude,
                    posterize_bits_fix=True).numpy()
  op_index, negate, _ = randaugment_draws(seed, 16, 3, PIL)
  op_index, negate = op_index.numpy(), negate.numpy()
  ops = PIL.randaugment_ops
  assert 'Invert' not in ops and len(set(op_index.ravel())) > 5
  assert ops[0] == 'Identity'
  for i, image in enumerate(images):
    steps = [(ops[op], magnitude, negate[i, layer])
             for layer, op in enumerate(op_index[i]) if op > 0]
    np.testing.assert_array_equal(got[i], _with_pil(image, steps, True),
                                  err_msg=str(i))


# --- Crops, flips, Cutout ---------------------------------------------------------

from supcon_tf.data import augment as A  # noqa: E402


def test_pad_crop_flip_is_a_shifted_window_of_the_zero_padded_image():
  rng = np.random.default_rng(3)
  images = rng.integers(1, 256, size=(64, 12, 10, 3), dtype=np.uint8)
  out = A.pad_crop_flip(images, [1, 1], padding=2).numpy()
  padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)])
  seen = set()
  for image, got in zip(padded, out):
    matches = [(dy, dx, flip) for dy in range(5) for dx in range(5)
               for flip in (False, True)
               if np.array_equal(got, (lambda w: w[:, ::-1] if flip else w)(
                   image[dy:dy + 12, dx:dx + 10]))]
    assert matches, 'output is no shifted window of the padded image'
    seen.update(matches)
  assert {m[2] for m in seen} == {False, True}
  assert {m[0] for m in seen} == set(range(5))


def test_crop_boxes_respect_area_and_aspect_ranges():
  boxes = A.sample_crop_boxes([4, 4], 2000, 40, 30, (0.2, 0.6),
                              (0.5, 2.0)).numpy()
  x0, y0, w, h = boxes.T
  assert (x0 >= 0).all() and (y0 >= 0).all()
  assert (x0 + w <= 30).all() and (y0 + h <= 40).all()
  area = w * h / 1200.
  # Rounded sides move the area a little off the drawn fraction.
  assert area.min() > 0.2 * 0.85 and area.max() < 0.6 * 1.15
  ratio = w / h
  assert ratio.min() > 0.5 * 0.85 and ratio.max() < 2.0 * 1.15
  assert area.max() - area.min() > 0.3  # Spread over the range.
  # No box can fit: torchvision's central crop with the ratio clamped.
  fallback = A.sample_crop_boxes([1, 1], 3, 20, 20, (1., 1.),
                                 (2., 3.)).numpy()
  np.testing.assert_array_equal(fallback, [[0, 5, 20, 10]] * 3)


def test_crop_and_resize_equals_tf_image_resize_of_the_box():
  rng = np.random.default_rng(4)
  images = rng.integers(0, 256, size=(3, 24, 20, 3)).astype(np.float32)
  boxes = np.array([[0, 0, 20, 24], [3, 5, 9, 13], [7, 1, 13, 20]],
                   np.float32)
  got = A.crop_and_resize(images, boxes, 16, flip=[False, True, False])
  for i, (x0, y0, w, h) in enumerate(boxes.astype(int)):
    want = tf.image.resize(images[i, y0:y0 + h, x0:x0 + w], [16, 16]).numpy()
    if i == 1:
      want = want[:, ::-1]
    np.testing.assert_allclose(got[i], want, atol=2e-3)


def test_official_crop_window_is_tensorflows_box_with_the_centre_fallback():
  shape = tf.constant([40, 30, 3])
  for seed in ([1, 2], [3, 4], [5, 6]):
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, tf.zeros([1, 0, 4]), seed=seed, min_object_covered=0.1,
        aspect_ratio_range=(0.75, 1.33), area_range=(0.2, 1.0),
        max_attempts=100, use_image_if_no_bounding_boxes=True)
    window = A.distorted_crop_window(shape, seed, (0.2, 1.0)).numpy()
    np.testing.assert_array_equal(window, [begin[0], begin[1], size[0],
                                           size[1]])
    assert window[2] < 40 or window[3] < 30  # A box was found.
  # An area no box within the aspect range reaches (the whole of a 4:1
  # image): the official central square of the shorter side.
  np.testing.assert_array_equal(
      A.distorted_crop_window([8, 32, 3], [1, 2], (1., 1.)), [0, 12, 8, 8])


def test_official_training_crop_is_slice_resize_and_truncating_cast():
  rng = np.random.default_rng(6)
  images = rng.integers(0, 256, size=(4, 24, 20, 3), dtype=np.uint8)
  got = A.random_resized_crop(images, [7, 8], 16, (0.3, 1.0)).numpy()
  seeds = tf.random.experimental.stateless_split([7, 8], 2)
  mirror = A.random_flips(seeds[1], 4).numpy()
  assert 0 < mirror.sum() < 4
  for i, seed in enumerate(tf.random.experimental.stateless_split(seeds[0],
                                                                  4)):
    y0, x0, h, w = A.distorted_crop_window([24, 20, 3], seed,
                                           (0.3, 1.0)).numpy()
    # The official _crop_to_square: tf.slice, bilinear tf.image.resize, cast
    # back to uint8; then the flip.
    crop = tf.slice(images[i], [y0, x0, 0], [h, w, 3])
    want = tf.cast(tf.image.resize(crop, [16, 16]), tf.uint8).numpy()
    np.testing.assert_array_equal(got[i], want[:, ::-1] if mirror[i] else want)


def test_cutout_fills_one_clipped_square():
  rng = np.random.default_rng(5)
  images = rng.integers(0, 100, size=(50, 20, 20, 3), dtype=np.uint8)
  out = A.cutout(images, [2, 3], size=8, fill=200).numpy()
  clipped = 0
  for image, got in zip(images, out):
    changed = np.any(got != image, axis=-1)
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    assert np.all(got[changed] == 200)
    assert changed[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
    assert 4 <= len(rows) <= 8 and 4 <= len(cols) <= 8
    clipped += changed.sum() < 64
  assert 0 < clipped < 50


# --- SimCLR colour distortion ----------------------------------------------------

import colorsys  # noqa: E402

import tensorflow as tf  # noqa: E402


def _float_images(n=4, seed=6):
  return np.random.default_rng(seed).uniform(size=(n, 9, 7, 3)).astype(
      np.float32)


def test_tensorflow_style_jitter_ops_match_tf_image():
  images = _float_images()
  factors = np.array([0.3, 0.8, 1.2, 1.7], np.float32)
  deltas = np.array([-0.3, -0.05, 0.1, 0.45], np.float32)
  for i, image in enumerate(images):
    cases = [
        (A.adjust_brightness(images, deltas), tf.image.adjust_brightness(
            image, deltas[i])),
        (A.adjust_contrast(images, factors), tf.image.adjust_contrast(
            image, factors[i])),
        (A.adjust_saturation(images, factors), tf.image.adjust_saturation(
            image, factors[i])),
        (A.adjust_hue(images, deltas), tf.image.adjust_hue(image, deltas[i])),
    ]
    for got, want in cases:
      np.testing.assert_allclose(got[i], want, atol=1e-5)


def test_pytorch_style_jitter_ops_match_torchvision_formulas():
  images = _float_images().astype(np.float64)
  factors = np.array([0.3, 0.8, 1.2, 1.7])
  gray = images @ np.array(A.GRAY_WEIGHTS)
  for i, image in enumerate(images):
    f = factors[i]
    np.testing.assert_allclose(
        A.adjust_brightness(images, factors, True)[i], image * f, atol=1e-5)
    np.testing.assert_allclose(
        A.adjust_contrast(images, factors, True)[i],
        f * image + (1 - f) * gray[i].mean(), atol=1e-5)
    np.testing.assert_allclose(
        A.adjust_saturation(images, factors, True)[i],
        f * image + (1 - f) * gray[i][..., None], atol=1e-5)
  hue = A.adjust_hue(images[:1], 0.25, True).numpy()[0]
  for pixel, got in zip(images[0].reshape(-1, 3), hue.reshape(-1, 3)):
    h, s, v = colorsys.rgb_to_hsv(*pixel)
    np.testing.assert_allclose(got, colorsys.hsv_to_rgb((h + 0.25) % 1, s, v),
                               atol=1e-5)


def test_color_jitter_stays_in_range_is_seeded_and_zero_strength_is_identity():
  images = tf.constant(_float_images(16))
  for pytorch in (False, True):
    a = A.color_jitter(images, [1, 2], 0.5, pytorch).numpy()
    b = A.color_jitter(images, [1, 2], 0.5, pytorch).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert np.abs(a - images.numpy()).mean() > 0.02
    np.testing.assert_allclose(A.color_jitter(images, [1, 2], 0., pytorch),
                               images, atol=1e-5)
  with pytest.raises(ValueError, match='strength'):
    A.color_jitter(images, [1, 2], -1.)


def test_gaussian_blur_equals_separable_numpy_convolution_with_zero_padding():
  images = _float_images(2, seed=7)
  sigmas = np.array([0.4, 1.7])
  got = A.gaussian_blur(images, sigmas, kernel_size=5).numpy()
  for image, sigma, out in zip(images, sigmas, got):
    x = np.arange(-2, 3)
    kernel = np.exp(-x ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    padded = np.pad(image, [(2, 2), (2, 2), (0, 0)])
    want = np.zeros_like(image, dtype=np.float64)
    for dy in range(5):
      for dx in range(5):
        want += kernel[dy] * kernel[dx] * padded[dy:dy + 9, dx:dx + 7]
    np.testing.assert_allclose(out, want, atol=1e-5)


# --- The training view by the official names ---------------------------------------


def _uint8_batch(n=8, size=32):
  return np.random.default_rng(8).integers(0, 256, size=(n, size, size, 3),
                                           dtype=np.uint8)


@pytest.mark.parametrize('official', [True, False])
@pytest.mark.parametrize('kind', AUGMENTATION_TYPES)
def test_every_augmentation_type_is_seeded_and_shaped(kind, official):
  images = _uint8_batch()
  # The official ops (TF-Models' AutoAugment v0 and RandAugment, the warp),
  # or the PIL-exact ones.
  ops = (dict(autoaugment_policy='v0', randaugment_ops='tf_models',
              warp_probability=0.5) if official else
         dict(autoaugment_policy='cifar10', randaugment_ops='pil'))
  config = Preprocessing(augmentation_type=kind, crop='random_resized',
                         image_size=24, blur_probability=0.5, cutout_size=8,
                         defer_blurring=False, **ops)
  a = A.augment(images, [1, 2], config).numpy()
  b = A.augment(images, [1, 2], config).numpy()
  c = A.augment(images, [3, 4], config).numpy()
  assert a.shape == (8, 24, 24, 3) and a.dtype == np.float32
  assert a.min() >= 0 and a.max() <= 255
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_identity_without_crop_or_flip_returns_the_images():
  images = _uint8_batch()
  for kind, magnitude in (('IDENTITY', 0.5), ('AUTOAUGMENT', 0.),
                          ('SIMCLR', 0.)):
    config = Preprocessing(augmentation_type=kind, crop='none', flip=False,
                           augmentation_magnitude=magnitude)
    np.testing.assert_array_equal(A.augment(images, [1, 2], config), images)


def test_preprocessing_accepts_official_enum_names_and_rejects_bad_values():
  assert Preprocessing(
      augmentation_type='AugmentationType.SIMCLR').augmentation_type == 'SIMCLR'
  assert Preprocessing(
      augmentation_type='randaugment').augmentation_type == 'RANDAUGMENT'
  for bad, match in (({'augmentation_type': 'MIXUP'}, 'augmentation_type'),
                     ({'crop': 'center'}, 'crop'),
                     ({'crop_area_range': (0.5, 0.2)}, 'crop_area_range'),
                     ({'autoaugment_policy': 'mnist'}, 'autoaugment_policy'),
                     ({'blur_probability': 2.}, 'blur_probability')):
    with pytest.raises(ValueError, match=match):
      Preprocessing(**bad)


def test_eval_crops():
  image = np.random.default_rng(9).integers(0, 256, size=(48, 64, 3),
                                            dtype=np.uint8)
  np.testing.assert_array_equal(A.eval_crop(image[:32, :32], 32), image[:32,
                                                                       :32])
  for method in EVAL_CROP_METHODS:
    assert A.eval_crop(image, 24, method, crop_padding=8).shape == (24, 24, 3)
  # CROP_THEN_RESIZE with no padding and no resize is the central square.
  np.testing.assert_array_equal(
      A.eval_crop(image, 48, 'CROP_THEN_RESIZE', crop_padding=0),
      image[:, 8:56])
  with pytest.raises(ValueError, match='eval_crop_method'):
    A.eval_crop(image, 24, 'CENTER')
  # The official _crop_to_square (is_training False): uint8 resizes
  # (bilinear, truncated) and central windows at (size - side + 1) // 2.
  resized = tf.cast(tf.image.resize(image, [56, 74]), tf.uint8).numpy()
  np.testing.assert_array_equal(
      A.eval_crop(image, 24, 'RESIZE_THEN_CROP', crop_padding=32),
      resized[16:40, 25:49])
  side = int(24 / (24 + 5) * 48)
  top, left = (48 - side + 1) // 2, (64 - side + 1) // 2
  square = image[top:top + side, left:left + side]
  np.testing.assert_array_equal(
      A.eval_crop(image, 24, 'CROP_THEN_RESIZE', crop_padding=5),
      tf.cast(tf.image.resize(square, [24, 24]), tf.uint8).numpy())


def test_deferred_blur_is_the_official_batch_random_blur():
  # Official batch_random_blur: one sigma in [0.1, 2] for the batch, a
  # separable kernel of side // 10 (odd), zero padding, each image with
  # probability p. The reference: float64 NumPy with the drawn sigma.
  rng = np.random.default_rng(9)
  images = rng.normal(size=(6, 40, 40, 3)).astype(np.float32)
  out = A.batch_random_blur(tf.constant(images), [3, 4], 0.5).numpy()
  seeds = tf.random.experimental.stateless_split([3, 4], 2)
  sigma = float(tf.random.stateless_uniform([], seeds[0], 0.1, 2.0))
  chosen = (tf.random.stateless_uniform([6], seeds[1]) < 0.5).numpy()
  assert 0 < chosen.sum() < 6
  radius = (40 // 10) // 2
  x = np.arange(-radius, radius + 1)
  kernel = np.exp(-x**2 / (2 * sigma**2))
  kernel /= kernel.sum()
  padded = np.pad(images.astype(np.float64),
                  [(0, 0), (radius, radius), (radius, radius), (0, 0)])
  rows = sum(kernel[k] * padded[:, k:k + 40] for k in range(2 * radius + 1))
  want = sum(kernel[k] * rows[:, :, k:k + 40] for k in range(2 * radius + 1))
  np.testing.assert_allclose(out[chosen], want[chosen], atol=1e-5)
  np.testing.assert_array_equal(out[~chosen], images[~chosen])
  # The input pipeline leaves the blur to the training step.
  config = Preprocessing(augmentation_type='SIMCLR', blur_probability=1.,
                         crop='none', flip=False, augmentation_magnitude=0.,
                         image_size=40)
  assert A.deferred_blur(config)
  assert not A.deferred_blur(Preprocessing(augmentation_type='SIMCLR',
                                           defer_blurring=False))
  batch = _uint8_batch()
  deferred = Preprocessing(augmentation_type='SIMCLR', blur_probability=1.,
                           image_size=24, crop='random_resized')
  unblurred = Preprocessing(augmentation_type='SIMCLR', blur_probability=0.,
                            image_size=24, crop='random_resized')
  np.testing.assert_array_equal(A.augment(batch, [1, 2], deferred),
                                A.augment(batch, [1, 2], unblurred))


WARP_CASES = ((2, 0., 0), (1, 0., 0), (3, 0., 2), (2, 0.01, 3), (4, 0., 1))


@pytest.mark.parametrize('case', WARP_CASES)
def test_sparse_image_warp_equals_tensorflow_addons(case):
  # tests/fixtures/warp.npz: tensorflow-addons 0.23 on TF 2.15
  # (tests/fixtures/make_warp_fixtures.py).
  import os
  data = np.load(os.path.join(os.path.dirname(__file__), 'fixtures',
                              'warp.npz'))
  order, weight, boundary = case
  for name in ('grid', 'free'):
    warped, flows = A.sparse_image_warp(
        data['images'], data[f'{name}_source'], data[f'{name}_dest'],
        interpolation_order=order, regularization_weight=weight,
        num_boundary_points=boundary)
    key = f'{name}_{order}_{weight}_{boundary}'
    # The spline's float32 solve: flows of up to 40 pixels moved 1.1e-3
    # pixels with oneDNN's AVX2 kernels (order 4); 1e-4 of the flow covers it.
    np.testing.assert_allclose(flows, data[f'{key}_flows'], atol=1e-3,
                               rtol=1e-4)
    # Images in 0..255: within 1e-3 of that scale.
    np.testing.assert_allclose(warped, data[f'{key}_warped'], atol=0.255)


def test_the_official_warp_in_the_simclr_view():
  images = _uint8_batch()
  warped = Preprocessing(augmentation_type='SIMCLR', blur_probability=0.,
                         warp_probability=1., image_size=24,
                         crop='random_resized')
  plain = Preprocessing(augmentation_type='SIMCLR', blur_probability=0.,
                        warp_probability=0., image_size=24,
                        crop='random_resized')
  a, b = A.augment(images, [1, 2], warped), A.augment(images, [1, 2], warped)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (8, 24, 24, 3)
  assert not np.array_equal(a, A.augment(images, [1, 2], plain))
  # Control points that do not move leave the image as it is.
  points = [[[8., 8.], [8., 16.], [16., 8.], [16., 16.]]] * 2
  still = A.sparse_image_warp(tf.cast(images[:2], tf.float32), points,
                              points)[0]
  np.testing.assert_allclose(still, images[:2], atol=1e-3)


def _tf_models_fixture():
  import os
  return np.load(os.path.join(os.path.dirname(__file__), 'fixtures',
                              'tf_models_ops.npz'))


def test_tf_models_ops_equal_tf_models_own_ops():
  # tests/fixtures/tf_models_ops.npz: TF-Models 2.15's ops
  # (tests/fixtures/make_tf_models_fixtures.py), one image at a time.
  from supcon_tf.data.augment import tf_models_ops as T
  data = _tf_models_fixture()
  images = data['images']
  checked = 0
  for key in data.files:
    if key == 'images':
      continue
    name, value = key.rsplit('_', 1)
    op = T.OPS[name]
    args = () if value == 'None' else (float(value),)
    got = op(tf.constant(images), *args).numpy()
    if name in ('Sharpness', 'Color'):
      # A float sum (the smoothing convolution, the grey dot product)
      # truncated to uint8: where its exact value is a whole level, the
      # kernel's summation order (another CPU's) decides the level below or
      # this one. There, and only there, one level either way.
      ties = _whole_level_sums(images, name)
      difference = np.abs(got.astype(int) - data[key])
      assert difference.max() <= 1, key
      assert not np.any(difference[~ties]), key
    elif name == 'Rotate':
      # Sampling coordinates from float cos / sin: a pixel whose source lies
      # on a rounding boundary may take its neighbour, in at most 1% of the
      # pixels.
      moved = np.any(got != data[key], axis=-1)
      assert moved.mean() <= 0.01, (key, moved.mean())
    else:
      # Integer arithmetic, or one IEEE operation per value: the same on
      # any CPU, so exact.
      np.testing.assert_array_equal(got, data[key], err_msg=key)
    checked += 1
  assert checked == 56


def _whole_level_sums(images, name):
  """Where the float64 smoothing (Sharpness: [[1, 1, 1], [1, 5, 1],
  [1, 1, 1]] / 13 inside the border) or grey value (Color: 0.2989 R + 0.587 G
  + 0.114 B, every channel) is a whole level."""
  values = images.astype(np.float64)
  if name == 'Color':
    grey = values @ [0.2989, 0.587, 0.114]
    tie = np.abs(grey - np.round(grey)) < 1e-3
    return np.repeat(tie[..., None], 3, axis=-1)
  height, width = images.shape[1:3]
  kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]])
  sums = sum(kernel[i, j] * values[:, i:i + height - 2, j:j + width - 2]
             for i in range(3) for j in range(3))
  ties = np.zeros(images.shape, bool)
  ties[:, 1:-1, 1:-1] = sums % 13 == 0
  return ties


def test_tf_models_cutout_is_the_square_around_its_centre():
  # TF-Models' cutout of pad 3: the side-6 square from the centre - 3.
  images = np.full((2, 10, 12, 3), 7, np.uint8)
  out = A.cutout_at(images, [0, 6], [5, 11], 2 * 3, fill=200).numpy()
  want = images.copy()
  want[0, 0:3, 2:8] = 200  # Rows max(0, 0 - 3) to 0 + 3, columns 2 to 8.
  want[1, 3:9, 8:12] = 200
  np.testing.assert_array_equal(out, want)


def test_every_policy_and_op_set_flag_value_names_a_family_table():
  from supcon_tf import enums
  from supcon_tf.data.augment import (POLICIES, RANDAUGMENT_FAMILIES,
                                      SEED, TF_MODELS)
  assert set(POLICIES) == set(enums.AUTOAUGMENT_POLICIES)
  assert set(RANDAUGMENT_FAMILIES) == set(enums.RANDAUGMENT_OP_SETS)
  for name, (family, policy) in POLICIES.items():
    ops = set(family.ops) | set(family.seeded_ops)
    assert {op for sub in policy for op, _, _ in sub} <= ops, name
  for family in RANDAUGMENT_FAMILIES.values():
    assert set(family.randaugment_ops) <= (set(family.ops) |
                                           set(family.seeded_ops) |
                                           {'Identity'})
  # One CIFAR-10 table for the three families.
  assert POLICIES['seed_cifar10'] == (SEED, POLICIES['cifar10'][1])
  assert POLICIES['reduced_cifar10'] == (TF_MODELS, POLICIES['cifar10'][1])


def test_tf_models_policies_are_tf_models_own():
  import json
  import os
  from supcon_tf.data.augment import POLICIES, TF_MODELS
  with open(os.path.join(os.path.dirname(__file__), 'fixtures',
                         'tf_models_policies.json')) as f:
    want = json.load(f)
  as_lists = lambda policy: [[list(op) for op in sub] for sub in policy]
  tf_models = {name: policy for name, (family, policy) in POLICIES.items()
               if family is TF_MODELS}
  for name, policy in tf_models.items():
    assert as_lists(policy) == want[name], name
  assert set(tf_models) == set(want) - {'randaugment_ops'}
  # The 16 ops, then the identity that RandAugment draws as the 17th.
  assert list(TF_MODELS.randaugment_ops) == want['randaugment_ops'] + [
      'Identity']


def test_tf_models_autoaugment_applies_each_sub_policy_op_by_op():
  from supcon_tf.data.augment import V0_POLICY, autoaugment
  from supcon_tf.data.augment import tf_models_ops as T
  images = _uint8_batch()
  # One sub-policy whose ops always fire: exactly the two ops in order, at
  # TF-Models' arguments (Equalize, then Solarize at int(3 / 10 * 256)).
  got = autoaugment(images, [1, 2], ((('Equalize', 1., 5),
                                     ('Solarize', 1., 3)),), T.TF_MODELS)
  np.testing.assert_array_equal(got, T.solarize(T.equalize(images), 76))
  # A signed op: each image rotated by +-24 degrees (level 8 of 30).
  got = autoaugment(images, [3, 4], ((('Rotate', 1., 8),
                                     ('Invert', 0., 0)),),
                    T.TF_MODELS).numpy()
  plus, minus = T.rotate(images, 24.).numpy(), T.rotate(images, -24.).numpy()
  signs = [np.array_equal(g, p) or np.array_equal(g, m)
           for g, p, m in zip(got, plus, minus)]
  assert all(signs)
  assert {np.array_equal(g, p) for g, p in zip(got, plus)} == {True, False}
  again = autoaugment(images, [5, 6], V0_POLICY, T.TF_MODELS)
  np.testing.assert_array_equal(
      again, autoaugment(images, [5, 6], V0_POLICY, T.TF_MODELS))
  assert again.dtype == tf.uint8 and again.shape == images.shape


def test_tf_models_randaugment_draws_one_op_or_the_identity_per_layer():
  from supcon_tf.data.augment import randaugment
  from supcon_tf.data.augment import tf_models_ops as T
  images = _uint8_batch(n=32)
  got = randaugment(images, [7, 8], T.TF_MODELS, num_layers=1,
                    magnitude=5.).numpy()
  batch = tf.constant(images)
  candidates = [images]
  for name in T.TF_MODELS.randaugment_ops:
    if name in ('Cutout', 'Identity'):
      continue
    argument = float(T.level_to_arg(name, 5., cutout_const=40.,
                                    translate_const=100.))
    candidates.append(T.OPS[name](batch, argument).numpy())
    if name in T.TF_MODELS.signed:
      candidates.append(T.OPS[name](batch, -argument).numpy())
  for i, image in enumerate(got):
    matched = any(np.array_equal(image, c[i]) for c in candidates)
    # Cutout (pad 20 at magnitude 5): the image, grey where the square fell.
    grey_square = np.all((image == images[i]) | (image == 128))
    assert matched or grey_square, i
