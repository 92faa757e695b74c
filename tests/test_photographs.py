"""Image files at their own sizes: the official crops decoded from the JPEG
header and one region, image headers read without pixels, files that break
after start-up. The photographs are scikit-learn's two sample images (real
427 x 640 camera JPEGs), re-encoded here in the other layouts JPEG files
come in."""
import collections
import io
import os

import numpy as np
import pytest
import sklearn.datasets
import tensorflow as tf
from PIL import Image

from supcon_tf.config import Preprocessing
from supcon_tf.data import (augment, chunks, decoding, folder, pipeline,
                            sources)

PHOTOS = os.path.join(os.path.dirname(sklearn.datasets.__file__), 'images')
CROPS = Preprocessing(augmentation_type='IDENTITY', crop='random_resized',
                      image_size=40, flip=True)


def _photographs():
  """JPEG bytes: both photographs as shipped, and china.jpg re-encoded with
  4:4:4, 4:2:2 and 4:2:0 chroma, progressive, restart markers, grayscale
  and an odd size (chroma blocks cut at the edge)."""
  out = {}
  for name in ('china.jpg', 'flower.jpg'):
    with open(os.path.join(PHOTOS, name), 'rb') as f:
      out[name] = f.read()
  image = Image.open(io.BytesIO(out['china.jpg']))
  variants = {
      '444': (image, dict(subsampling=0)),
      '422': (image, dict(subsampling=1)),
      '420-progressive': (image, dict(subsampling=2, progressive=True)),
      'grey': (image.convert('L'), {}),
      'odd-size': (image.crop((3, 5, 3 + 301, 5 + 213)), dict(subsampling=2)),
  }
  for name, (picture, options) in variants.items():
    buffer = io.BytesIO()
    picture.save(buffer, 'JPEG', quality=87, **options)
    out[name] = buffer.getvalue()
  return out


def test_views_from_the_header_and_one_region_equal_decode_then_crop():
  # The windows come from the header and only the region they cover is
  # decoded: every pixel equals cropping the whole decoded image.
  views = tf.function(lambda contents, seed: chunks.file_views(
      contents, seed, CROPS, 3))
  reference = tf.function(lambda contents, seed: augment.crop_views(
      decoding.decode(contents), seed, CROPS, 3))
  compared = 0
  for name, contents in _photographs().items():
    for seed in range(12):
      key = tf.constant([seed, 17], tf.int64)
      got = views(contents, key).numpy()
      want = reference(contents, key).numpy()
      assert got.shape == (3, 40, 40, 3), name
      np.testing.assert_array_equal(got, want, err_msg=f'{name} seed {seed}')
      compared += 1
  assert compared == 7 * 12


def test_the_region_decode_gives_the_whole_decodes_pixels_at_every_edge():
  # Windows that start and end at chroma-block boundaries and one pixel off
  # them: where decoding a window alone differs from the whole decode.
  contents = _photographs()['420-progressive']
  whole = decoding.decode(contents).numpy()
  height, width = whole.shape[:2]
  for top, left in ((0, 0), (16, 16), (15, 17), (1, 31), (height - 9, 7)):
    bottom, right = min(height, top + 33), min(width, left + 47)
    region, origin = decoding.decode_jpeg_region(contents, [top, left],
                                                 [bottom, right])
    region, origin = region.numpy(), origin.numpy()
    got = region[top - origin[0]:bottom - origin[0],
                 left - origin[1]:right - origin[1]]
    np.testing.assert_array_equal(got, whole[top:bottom, left:right])
    assert region.shape[0] < height  # Only a region was decoded.


def test_image_headers_give_pils_sizes_and_refuse_broken_files(tmp_path):
  paths = []
  for name, contents in _photographs().items():
    path = tmp_path / f'{name}.jpg'
    path.write_bytes(contents)
    paths.append(path)
  png = tmp_path / 'a.png'
  Image.new('RGBA', (13, 7)).save(png)
  exif = tmp_path / 'exif.jpg'
  Image.new('RGB', (21, 9)).save(exif, exif=b'Exif\x00\x00' + b'\x00' * 3000)
  paths += [png, exif]
  for path in paths:
    with Image.open(path) as image:
      assert folder.image_size(str(path)) == (image.height, image.width)
  whole = paths[0].read_bytes()
  broken = {'empty': b'', 'text': b'not an image at all',
            'cut in the header': whole[:40],
            'png without IHDR': b'\x89PNG\r\n\x1a\n' + b'\x00' * 16}
  for name, contents in broken.items():
    path = tmp_path / f'{name}.jpg'
    path.write_bytes(contents)
    assert folder.image_size(str(path)) is None, name
  assert folder.image_size(str(tmp_path / 'missing.jpg')) is None
  # Many files go through the thread pool, in order.
  many = [str(p) for p in paths] * 20
  assert folder.image_sizes(many) == [folder.image_size(p) for p in many]


def _photo_folder(root):
  """A folder source of the photographs at their own sizes (so it is read
  as files), two classes."""
  files = []
  for i, (name, contents) in enumerate(sorted(_photographs().items())):
    path = root / 'train' / f'class{i % 2}' / f'{name}.jpg'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(contents)
    files.append(path)
  return files


def test_large_folders_read_no_pixels_at_start_up(tmp_path, monkeypatch):
  files = _photo_folder(tmp_path)
  # The body of one JPEG broken, its header whole: start-up cannot see it.
  body = files[2].read_bytes()
  files[2].write_bytes(body[:len(body) // 2] + b'\x00' * 64)
  decoded = []
  monkeypatch.setattr(decoding, 'decode',
                      lambda contents: decoded.append(1) or contents)
  split = sources.load_source('folder', str(tmp_path)).split('train')
  assert decoded == [] and split.images is None
  assert len(split.files) == len(files)


def _corrupt_folder(tmp_path):
  files = _photo_folder(tmp_path)
  broken = files[3]
  body = broken.read_bytes()
  broken.write_bytes(body[:len(body) // 3])  # Truncated: a header, no end.
  return str(broken)


def test_a_file_that_breaks_after_start_up_is_named(tmp_path):
  broken = _corrupt_folder(tmp_path)
  split = sources.load_source('folder', str(tmp_path)).split('train')
  dataset = pipeline.train_dataset(split, CROPS, len(split),
                                   sources.UNIT_MEAN_STD)
  with pytest.raises(tf.errors.OpError) as raised:
    next(iter(dataset))
  message = decoding.corrupt_data_message(raised.value)
  assert message.startswith(broken) and '--skip_corrupt' in message


def test_skip_corrupt_fills_the_batch_from_its_chunk_and_counts(tmp_path):
  broken = _corrupt_folder(tmp_path)
  split = sources.load_source('folder', str(tmp_path)).split('train')
  del decoding.SKIPPED_CORRUPT[:]
  dataset = pipeline.train_dataset(split, CROPS, len(split),
                                   sources.UNIT_MEAN_STD, skip_corrupt=True)
  views, labels = next(iter(dataset))
  assert views.shape == (len(split), 2, 40, 40, 3)
  assert np.isfinite(views.numpy()).all()
  assert decoding.SKIPPED_CORRUPT == [broken]
  # The batch is the readable examples, one of them twice: their labels.
  index = [str(f) for f in split.files].index(broken)
  readable = collections.Counter(np.delete(split.labels, index).tolist())
  got = collections.Counter(labels.numpy().tolist())
  assert not readable - got and sum((got - readable).values()) == 1
