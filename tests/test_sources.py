"""Data sources, on data the tests write themselves."""
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from supcon_tf.data import sources
from tests.archives import write_cifar_archive


def _cifar_batches(name, rng):
  """Tiny CIFAR python batches: {member: dict} and the expected arrays."""
  if name == 'cifar10':
    members = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    meta = {'batches.meta': {b'label_names': [b'plane', b'car', b'bird']}}
  else:
    members = ['train', 'test']
    meta = {'meta': {b'fine_label_names': [b'a', b'b', b'c', b'd'],
                     b'coarse_label_names': [b'x', b'y']}}
  batches, expected = {}, {'train': [], 'test': []}
  for member in members:
    data = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    batch = {b'data': data}
    if name == 'cifar10':
      batch[b'labels'] = list(rng.integers(0, 3, size=3))
    else:
      batch[b'fine_labels'] = list(rng.integers(0, 4, size=3))
      batch[b'coarse_labels'] = list(rng.integers(0, 2, size=3))
    batches[member] = batch
    split = 'test' if 'test' in member else 'train'
    expected[split].append(batch)
  batches.update(meta)
  return batches, expected


def _check_split(split, batches, key):
  data = np.concatenate([b[b'data'] for b in batches])
  want = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  np.testing.assert_array_equal(split.images, want)
  np.testing.assert_array_equal(
      split.labels, np.concatenate([b[key] for b in batches]))


@pytest.mark.parametrize('extracted', [False, True])
def test_cifar10_reads_the_original_archive_or_its_folder(tmp_path, extracted):
  batches, expected = _cifar_batches('cifar10', np.random.default_rng(0))
  if extracted:
    folder = tmp_path / 'cifar-10-batches-py'
    folder.mkdir()
    for member, content in batches.items():
      (folder / member).write_bytes(pickle.dumps(content))
  else:
    write_cifar_archive(tmp_path / 'cifar-10-python.tar.gz', 'cifar-10-batches-py',
                   batches)
  source = sources.load_source('cifar10', str(tmp_path))
  assert source.class_names == ['plane', 'car', 'bird']
  assert source.num_classes == 3
  assert source.mean_std == sources.CIFAR10_MEAN_STD
  _check_split(source.split('train'), expected['train'], b'labels')
  _check_split(source.split('test'), expected['test'], b'labels')


def test_cifar10_whitening_is_the_official_one_in_pixel_units():
  mean, std = sources.CIFAR10_MEAN_STD
  pixels = np.array([0., 100., 255.])
  for c, (m, s) in enumerate(zip((-0.0172, -0.0356, -0.107),
                                 (0.4046, 0.3988, 0.402))):
    np.testing.assert_allclose((pixels - mean[c]) / std[c],
                               (pixels / 127.5 - 1. - m) / s, rtol=1e-12)


@pytest.mark.parametrize('label_type,classes', [('fine', 4), ('coarse', 2)])
def test_cifar100_fine_and_coarse_labels(tmp_path, label_type, classes):
  batches, expected = _cifar_batches('cifar100', np.random.default_rng(1))
  write_cifar_archive(tmp_path / 'cifar-100-python.tar.gz', 'cifar-100-python',
                 batches)
  source = sources.load_source('cifar100', str(tmp_path),
                               label_type=label_type)
  assert source.num_classes == classes
  key = f'{label_type}_labels'.encode()
  _check_split(source.split('train'), expected['train'], key)
  _check_split(source.split('test'), expected['test'], key)


def test_a_broken_cifar_archive_names_the_file(tmp_path):
  batches, _ = _cifar_batches('cifar10', np.random.default_rng(2))
  del batches['data_batch_3']
  write_cifar_archive(tmp_path / 'cifar-10-python.tar.gz', 'cifar-10-batches-py',
                 batches)
  with pytest.raises(ValueError, match='data_batch_3'):
    sources.load_source('cifar10', str(tmp_path))
  (tmp_path / 'cifar-10-python.tar.gz').write_bytes(b'not a tar file')
  with pytest.raises(ValueError, match='cifar-10-python.tar.gz'):
    sources.load_source('cifar10', str(tmp_path))


def test_tfds_names_go_through_tfds():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=12):
    cifar = sources.load_source('cifar100', '/nonexistent/tfds',
                                label_type='coarse')
    assert cifar.num_classes == 20
    assert cifar.split('train').images.shape == (12, 32, 32, 3)
    assert cifar.split('train').labels.max() < 20
    imagenet = sources.load_source('imagenet2012', '/nonexistent/tfds')
    assert imagenet.num_classes == 1000
    assert imagenet.split('train').stream is not None
    assert len(imagenet.split('train')) == 12
    # The official code does not whiten ImageNet: [-1, 1].
    assert imagenet.mean_std == sources.UNIT_MEAN_STD


# --- folders ------------------------------------------------------------------


def _write_folder(root, sizes=None, classes=('cat', 'ant', 'bee'), count=3,
                  split='train'):
  """PNG images, class by class; returns {path: (image, class name)}."""
  rng = np.random.default_rng(3)
  written = {}
  for c in classes:
    os.makedirs(root / split / c, exist_ok=True)
    for i in range(count):
      size = sizes[i % len(sizes)] if sizes else (8, 8)
      image = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
      path = root / split / c / f'{i}.png'
      Image.fromarray(image).save(path)
      written[str(path)] = (image, c)
  return written


def test_folder_reads_classes_sorted_and_images_exactly(tmp_path):
  written = _write_folder(tmp_path)
  _write_folder(tmp_path, classes=('ant', 'cat'), count=2, split='test')
  source = sources.load_source('folder', str(tmp_path))
  assert source.class_names == ['ant', 'bee', 'cat']
  train = source.split('train')
  assert train.images.shape == (9, 8, 8, 3)
  for (image, name), got, label in zip(
      sorted(written.values(), key=lambda v: v[1]), train.images,
      train.labels):
    np.testing.assert_array_equal(got, image)
    assert source.class_names[label] == name
  np.testing.assert_array_equal(source.split('test').labels, [0, 0, 2, 2])


def test_folder_with_mixed_sizes_keeps_the_files(tmp_path):
  _write_folder(tmp_path, sizes=[(8, 8), (10, 6)])
  train = sources.load_source('folder', str(tmp_path)).split('train')
  assert train.images is None and len(train.files) == 9


def test_folder_errors_name_the_path(tmp_path):
  with pytest.raises(ValueError, match='does not exist'):
    sources.load_source('folder', str(tmp_path / 'nowhere'))
  with pytest.raises(ValueError, match='no train split at .*train'):
    sources.load_source('folder', str(tmp_path))
  _write_folder(tmp_path)
  with pytest.raises(ValueError, match='no test split at .*test'):
    sources.load_source('folder', str(tmp_path)).split('test')
  os.makedirs(tmp_path / 'train' / 'dog')
  with pytest.raises(ValueError, match='train.dog has no images'):
    sources.load_source('folder', str(tmp_path))
  os.rmdir(tmp_path / 'train' / 'dog')
  _write_folder(tmp_path, classes=('emu',), split='test')
  with pytest.raises(ValueError, match='not in train: emu'):
    sources.load_source('folder', str(tmp_path))


def test_corrupt_files_are_an_error_or_skipped_and_counted(tmp_path):
  _write_folder(tmp_path)
  bad = tmp_path / 'train' / 'bee' / 'broken.jpg'
  bad.write_bytes(b'\xff\xd8 this is not a JPEG')
  with pytest.raises(ValueError, match='broken.jpg.*skip_corrupt'):
    sources.load_source('folder', str(tmp_path))
  source = sources.load_source('folder', str(tmp_path), skip_corrupt=True)
  assert source.skipped == [str(bad)]
  assert len(source.split('train')) == 9


# --- digits and the validation split -----------------------------------------------


def test_digits_is_a_fixed_32x32_rgb_split():
  a = sources.load_source('digits')
  b = sources.load_source('digits')
  train, test = a.split('train'), a.split('test')
  assert train.images.shape == (1437, 32, 32, 3)
  assert test.images.shape == (360, 32, 32, 3)
  assert train.images.dtype == np.uint8 and train.images.max() == 255
  np.testing.assert_array_equal(train.images, b.split('train').images)
  assert set(test.labels) == set(range(10)) == set(train.labels)
  # Each 8x8 digit pixel is a grey 4x4 block.
  block = train.images[0, :4, 4:8]
  assert (block == block[0, 0]).all()


def test_validation_split_is_seeded_and_disjoint_from_train():
  full = sources.load_source('digits').split('train')
  key = lambda images: sorted(i.tobytes() for i in images)
  a = sources.load_source('digits', validation_fraction=0.2, seed=1)
  b = sources.load_source('digits', validation_fraction=0.2, seed=1)
  c = sources.load_source('digits', validation_fraction=0.2, seed=2)
  assert len(a.split('validation')) == round(0.2 * 1437)
  assert len(a.split('train')) + len(a.split('validation')) == 1437
  assert key(np.concatenate([a.split('train').images,
                             a.split('validation').images])) == key(
                                 full.images)
  np.testing.assert_array_equal(a.split('validation').labels,
                                b.split('validation').labels)
  assert not np.array_equal(a.split('validation').images,
                            c.split('validation').images)
  assert len(a.split('test')) == 360  # Test is never touched.
  for bad in (-0.1, 1.0):
    with pytest.raises(ValueError, match='validation_fraction'):
      sources.load_source('digits', validation_fraction=bad)


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match='label_type'):
    sources.load_source('digits', label_type='medium')
  with pytest.raises(ValueError, match='coarse.*cifar100'):
    sources.load_source('digits', label_type='coarse')
  with pytest.raises(ValueError, match='needs data_dir'):
    sources.load_source('folder')
  with pytest.raises(ValueError, match='no split'):
    sources.load_source('digits').split('validation')


def test_num_images_and_label_noise_as_the_official_input_fn():
  clean = sources.load_source('digits')
  train = clean.split('train')
  first = sources.load_source('digits', num_images=100)
  np.testing.assert_array_equal(first.split('train').labels, train.labels[:100])
  np.testing.assert_array_equal(first.split('train').images, train.images[:100])
  noisy = sources.load_source('digits', label_noise_prob=0.5, seed=3)
  changed = noisy.split('train').labels != train.labels
  # Half the labels redrawn uniformly over 10 classes: about 45% change.
  assert 0.38 < changed.mean() < 0.52
  again = sources.load_source('digits', label_noise_prob=0.5, seed=3)
  np.testing.assert_array_equal(again.split('train').labels,
                                noisy.split('train').labels)  # Fixed.
  np.testing.assert_array_equal(noisy.split('test').labels,
                                clean.split('test').labels)
  assert sources.load_source('digits', label_noise_prob=1.,
                             seed=4).split('train').labels.max() <= 9


def test_whitening_where_the_official_code_applies_it():
  from supcon_tf.presets import make_config
  from supcon_tf.training import run as run_lib
  whitening = lambda **values: run_lib.normalization(make_config(**values))
  # Official: CIFAR-10's statistics; ImageNet specifies none: [-1, 1].
  assert whitening(input_fn='cifar10') == sources.CIFAR10_MEAN_STD
  assert whitening(input_fn='imagenet') == sources.UNIT_MEAN_STD
  assert whitening(input_fn='cifar10',
                   apply_whitening=False) == sources.UNIT_MEAN_STD
  assert whitening(input_fn='imagenet', normalization='imagenet2012') == (
      sources.MEAN_STD['imagenet2012'])
  with pytest.raises(ValueError, match='--normalization'):
    whitening(input_fn='folder')
