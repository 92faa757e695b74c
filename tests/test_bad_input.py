"""Bad input has one clear outcome: bad flags and values, missing or odd
data. Each either becomes what a user means (grayscale, palette, RGBA,
16-bit and CMYK images to RGB; hidden and other files skipped; mixed sizes
read as files) or stops with one line naming the flag, file or split, exit
status 2, nothing written."""
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from supcon_tf.data import pipeline, sources
from tests.archives import tiny_cifar10, write_cifar_archive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _app(*flags, script='train_supcon.py', **env):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, 'bin', script), *flags],
      capture_output=True, text=True, timeout=600,
      env=dict(os.environ, **env))


def _one_line_error(done, *names):
  """Exit 2, no traceback, and one error line (the last; before it only
  the run's plain information lines) naming each of `names`."""
  assert done.returncode == 2, done.stderr[-2000:]
  assert 'Traceback' not in done.stderr
  lines = done.stderr.strip().splitlines()
  assert ': error: ' in lines[-1], done.stderr[-2000:]
  assert not any(line.startswith(('warning:', 'error:')) or ': error: ' in line
                 for line in lines[:-1]), done.stderr[-2000:]
  for name in names:
    assert name in lines[-1], lines[-1]
  return lines[-1]


# --- flags and values ----------------------------------------------------------------


@pytest.mark.parametrize('flag', ['--mode=fit', '--helpshort'])
def test_bad_flags_and_help_answer_before_tensorflow_loads(flag):
  # At once: TensorFlow's import (10 s and more on a small machine) comes
  # after the flags parsed.
  script = ('import atexit, sys\n'
            'atexit.register(lambda: print("tensorflow" in sys.modules))\n'
            f'sys.argv = ["train_supcon.py", {flag!r}]\n'
            'from supcon_tf import apps\n'
            'apps.train_supcon()\n')
  done = subprocess.run([sys.executable, '-c', script], capture_output=True,
                        text=True, timeout=600)
  # 2: a bad flag; 1: absl's status after its help.
  assert done.returncode == (2 if flag == '--mode=fit' else 1), done.stderr
  assert done.stdout.strip().splitlines()[-1] == 'False'


@pytest.mark.parametrize('flag, named', [
    ('--mode=fit', ('--mode', 'train_then_eval')),          # enum value
    ('--batch_size=many', ('--batch_size',)),               # not an integer
    ('--no_such_flag=1', ('no_such_flag',)),                # unknown flag
    ('--resnet_depth=7', ('resnet_depth', '20', '50')),     # no such encoder
    ('--temperature=0', ('--temperature', '> 0')),          # out of range
    ('--micro_batch_size=3', ('--micro_batch_size=3', 'does not divide')),
    ('--preset=resnet5', ('resnet5', 'supcon_digits_resnet20')),
])
def test_a_bad_flag_is_one_line_naming_it_and_nothing_is_written(
    tmp_path, flag, named):
  model_dir = tmp_path / 'run'
  _one_line_error(_app(flag, f'--model_dir={model_dir}'), *named)
  assert not model_dir.exists()


def test_a_setting_found_wrong_once_the_run_started_is_one_line_too(
    tmp_path):
  # Only the stage's set-up can tell that stage 1 would train nothing.
  _one_line_error(_app('--preset=supcon_digits_resnet20',
                       '--stage_1_contrastive_loss_weight=0',
                       f'--model_dir={tmp_path / "run"}'),
                  'stage_1 trains nothing')


def test_what_another_backend_cannot_run_yet_is_one_line(tmp_path):
  # Under JAX the training apps run the Keras core: the classifier app
  # without a stage-1 run and an official ImageNet preset are refused
  # before anything is written.
  _one_line_error(_app(f'--model_dir={tmp_path / "c"}',
                       script='train_classifier.py', KERAS_BACKEND='jax'),
                  'No stage-1 run in --model_dir', 'config.json is missing')
  _one_line_error(_app('--preset=supcon_imagenet_resnet50',
                       f'--model_dir={tmp_path / "i"}', KERAS_BACKEND='jax'),
                  '--allow_mixed_precision=True', 'KERAS_BACKEND=tensorflow')
  assert not (tmp_path / 'c').exists() and not (tmp_path / 'i').exists()


@pytest.mark.parametrize('script', ['convert_official.py', 'convert_seed.py'])
def test_the_converters_need_their_checkpoint_flag(tmp_path, script):
  _one_line_error(_app(f'--model_dir={tmp_path / "c"}', script=script),
                  '--checkpoint')
  assert not (tmp_path / 'c').exists()


@pytest.mark.parametrize('case', ['missing', 'corrupt'])
def test_bad_data_stops_the_app_before_anything_is_written(tmp_path, case):
  data_dir = tmp_path / 'data'
  if case == 'corrupt':
    _write(data_dir / 'train' / 'a' / '0.png', _rgb(6, 6))
    (data_dir / 'train' / 'a' / 'bad.jpg').write_bytes(b'\xff\xd8 no JPEG')
  model_dir = tmp_path / 'run'
  named = str(data_dir) if case == 'missing' else 'bad.jpg'
  _one_line_error(_app('--input_fn=folder', f'--data_dir={data_dir}',
                       f'--model_dir={model_dir}', '--stage_1_epochs=1'),
                  named)
  assert not model_dir.exists()


# --- image files ---------------------------------------------------------------------


def _rgb(height, width, seed=0):
  return np.random.default_rng(seed).integers(
      0, 256, (height, width, 3), dtype=np.uint8)


def _write(path, array, mode=None, **save):
  path.parent.mkdir(parents=True, exist_ok=True)
  image = Image.fromarray(array)
  if mode:
    image = image.convert(mode, **({'palette': Image.ADAPTIVE, 'colors': 16}
                                   if mode == 'P' else {}))
  image.save(path, **save)
  return path


def _png16(path, array):
  """A 16-bit PNG (grey or RGB) written by hand: PIL cannot write 16-bit
  RGB, and TensorFlow would be its own reference."""
  height, width = array.shape[:2]
  colour = 2 if array.ndim == 3 else 0
  rows = array.astype('>u2').reshape(height, -1).tobytes()
  stride = len(rows) // height
  raw = b''.join(b'\0' + rows[i * stride:(i + 1) * stride]
                 for i in range(height))

  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data)))

  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack(
      '>IIBBBBB', width, height, 16, colour, 0, 0, 0)) +
                   chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
  return path


def test_every_image_kind_becomes_rgb_and_other_files_are_skipped(tmp_path):
  base = _rgb(9, 7)
  alpha = np.dstack([base, _rgb(9, 7, seed=1)[..., :1]])
  grey16 = np.random.default_rng(2).integers(0, 65536, (9, 7)).astype(np.uint16)
  rgb16 = np.random.default_rng(3).integers(0, 65536, (9, 7, 3)).astype(
      np.uint16)
  folder = tmp_path / 'train' / 'things'
  # The expected RGB of each file, in the folder's (sorted) order.
  expected = {
      '0_grey.png': _write(folder / '0_grey.png', base, 'L'),
      '1_palette.png': _write(folder / '1_palette.png', base, 'P'),
      '2_rgba.PNG': _write(folder / '2_rgba.PNG', alpha),
      '3_grey_alpha.png': _write(folder / '3_grey_alpha.png', base, 'LA'),
      '4_cmyk.jpg': _write(folder / '4_cmyk.jpg', base, 'CMYK', quality=95),
      '5_upper.JPEG': _write(folder / '5_upper.JPEG', base, quality=95),
      '6_grey16.png': _png16(folder / '6_grey16.png', grey16),
      '7_rgb16.png': _png16(folder / '7_rgb16.png', rgb16),
  }
  pil = {name: np.asarray(Image.open(path).convert('RGB'))
         for name, path in expected.items() if '16' not in name}
  # 16 bits to 8: the high byte, as libpng strips them.
  pil['6_grey16.png'] = np.repeat((grey16 >> 8).astype(np.uint8)[..., None],
                                  3, axis=2)
  pil['7_rgb16.png'] = (rgb16 >> 8).astype(np.uint8)
  # Skipped: hidden files (macOS's ._ twins look like JPEGs), hidden
  # folders, other files.
  (folder / '._4_cmyk.jpg').write_bytes(b'\0\5\26\7 AppleDouble')
  (folder / '.DS_Store').write_bytes(b'\0\0\0\1Bud1')
  (folder / 'notes.txt').write_text('not an image')
  _write(tmp_path / 'train' / '.ipynb_checkpoints' / 'x.png', base)
  _write(tmp_path / 'test' / 'things' / 'a.png', base)
  (tmp_path / 'test' / '.hidden').mkdir()

  source = sources.load_source('folder', str(tmp_path))
  assert source.class_names == ['things']
  train = source.split('train')
  assert train.images.shape == (len(expected), 9, 7, 3)
  for got, name in zip(train.images, sorted(expected)):
    difference = np.abs(got.astype(int) - pil[name].astype(int))
    if name.endswith('.jpg'):
      # CMYK: PIL converts to RGB by its own formula, libjpeg by another:
      # a few levels here and there; a wrong colour conversion (inverted
      # CMYK, swapped channels) is far off everywhere.
      assert difference.max() <= 12 and difference.mean() < 2, name
    else:
      assert difference.max() == 0, name
  assert len(source.split('test')) == 1


def test_mixed_sizes_are_read_as_files_or_refused_when_asked(tmp_path):
  _write(tmp_path / 'train' / 'a' / '0.png', _rgb(12, 9))
  _write(tmp_path / 'train' / 'a' / '1.jpg', _rgb(5, 20))
  _write(tmp_path / 'train' / 'b' / '2.png', _rgb(12, 9))
  _write(tmp_path / 'test' / 'b' / '3.png', _rgb(7, 7))
  source = sources.load_source('folder', str(tmp_path))
  train = source.split('train')
  assert train.images is None and len(train.files) == 3
  # The evaluation view resizes each to the model's size.
  batch = next(iter(pipeline.eval_dataset(train, 3, sources.UNIT_MEAN_STD,
                                          image_size=8)))
  assert batch[0].shape == (3, 8, 8, 3)
  assert np.isfinite(batch[0].numpy()).all()
  with pytest.raises(sources.DataError,
                     match=r'2 sizes .*12x9 .*0\.png and 5x20 .*1\.jpg'):
    sources.load_source('folder', str(tmp_path), require_same_image_size=True)


@pytest.mark.parametrize('content', [b'', b'\xff\xd8\xff\xe0 truncated'])
def test_empty_or_truncated_image_files_are_named_or_skipped(tmp_path,
                                                             content):
  _write(tmp_path / 'train' / 'a' / '0.png', _rgb(6, 6))
  whole = _write(tmp_path / 'train' / 'a' / '1.jpg', _rgb(6, 6))
  cut = tmp_path / 'train' / 'a' / '2.jpg'
  cut.write_bytes(content or b'')
  if content:  # A real JPEG cut short.
    cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 3])
  with pytest.raises(sources.DataError, match='2.jpg.*skip_corrupt'):
    sources.load_source('folder', str(tmp_path))
  source = sources.load_source('folder', str(tmp_path), skip_corrupt=True)
  assert source.skipped == [str(cut)]
  assert len(source.split('train')) == 2


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads any file')
def test_an_unreadable_file_is_named(tmp_path):
  _write(tmp_path / 'train' / 'a' / '0.png', _rgb(6, 6))
  locked = _write(tmp_path / 'train' / 'a' / '1.png', _rgb(6, 6))
  locked.chmod(0)
  with pytest.raises(sources.DataError, match='1.png'):
    sources.load_source('folder', str(tmp_path))


# --- CIFAR archives and labels ---------------------------------------------------------


def test_a_truncated_cifar_archive_names_the_archive(tmp_path):
  archive = tiny_cifar10(tmp_path, per_batch=200) / 'cifar-10-python.tar.gz'
  whole = archive.read_bytes()
  for fraction in (0.3, 0.9):
    archive.write_bytes(whole[:int(len(whole) * fraction)])
    with pytest.raises(sources.DataError, match='cifar-10-python.tar.gz'):
      sources.load_source('cifar10', str(tmp_path))
  archive.write_bytes(whole)
  assert len(sources.load_source('cifar10', str(tmp_path)).split('train')) == (
      1000)


def test_labels_outside_the_classes_are_named(tmp_path):
  rng = np.random.default_rng(0)
  batches = {'batches.meta': {b'label_names': [b'c%d' % i for i in range(10)]}}
  for member in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
    batches[member] = {b'data': rng.integers(0, 256, (4, 3072), np.uint8),
                       b'labels': [0, 1, 2, 3]}
  batches['test_batch'][b'labels'] = [0, 10, 2, -1]
  write_cifar_archive(tmp_path / 'cifar-10-python.tar.gz',
                      'cifar-10-batches-py', batches)
  with pytest.raises(sources.DataError,
                     match=r'test: 2 label\(s\) outside 0..9, e.g. 10 at '
                           'example 1'):
    sources.load_source('cifar10', str(tmp_path))


def test_a_decoded_16_bit_png_matches_tensorflows_own_encoding(tmp_path):
  # The hand-written PNG above is a valid PNG: TensorFlow reads back the
  # 16-bit values it holds.
  values = np.random.default_rng(4).integers(0, 65536, (3, 5, 3)).astype(
      np.uint16)
  path = _png16(tmp_path / 'x.png', values)
  decoded = tf.io.decode_png(tf.io.read_file(str(path)), dtype=tf.uint16)
  np.testing.assert_array_equal(decoded.numpy(), values)
