"""The AutoAugment pixel ops against Pillow, pixel for pixel."""
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from supcon_tf.data.augment import OPS

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


def test_bad_image_raises_value_error_naming_it():
  with pytest.raises(ValueError, match='image must be uint8'):
    OPS['Invert'](np.zeros((4, 4, 3), np.float32))
  with pytest.raises(ValueError, match='image must be'):
    OPS['Invert'](np.zeros((4, 4), np.uint8))


# --- AutoAugment --------------------------------------------------------------

from supcon_tf.data.augment import (CIFAR10_POLICY, SIGNED_OPS,  # noqa: E402
                                    apply_policy, autoaugment,
                                    level_to_magnitude)


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


def test_policy_equals_the_same_choices_made_with_pil():
  images = np.stack(_images()[:4] + _images()[:4])
  rng = np.random.default_rng(1)
  for _ in range(6):
    choice = rng.integers(0, len(CIFAR10_POLICY), size=8)
    apply = rng.uniform(size=(8, 2)) < 0.7
    negate = rng.uniform(size=(8, 2)) < 0.5
    got = apply_policy(images, CIFAR10_POLICY, choice, apply, negate).numpy()
    for i, image in enumerate(images):
      want = Image.fromarray(image)
      for stage, (name, _, level) in enumerate(CIFAR10_POLICY[choice[i]]):
        if not apply[i, stage]:
          continue
        magnitude = float(level_to_magnitude(name, level))
        if name in SIGNED_OPS and negate[i, stage]:
          magnitude = -magnitude
        want = PIL_OPS[name](want, magnitude)
      np.testing.assert_array_equal(got[i], np.asarray(want),
                                    err_msg=f'{CIFAR10_POLICY[choice[i]]}')


def test_autoaugment_is_deterministic_per_seed_and_varies_across_seeds():
  images = np.stack(_images()[:4] * 8)
  a = autoaugment(images, seed=[1, 2]).numpy()
  b = autoaugment(images, seed=[1, 2]).numpy()
  c = autoaugment(images, seed=[3, 4]).numpy()
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  changed = np.mean([not np.array_equal(x, y) for x, y in zip(a, images)])
  assert 0.3 < changed < 1.0  # Some sub-policies fire rarely or not at all.
