"""Input pipeline throughput: two training views per image, beside torchvision.

`--policy cifar10` (the default): the two-view AutoAugment CIFAR training
pipeline.
Per view, as the torchvision peer (benchmarks/peers/torchvision_autoaugment.py):
pad-4 random crop, horizontal flip, AutoAugment CIFAR-10 policy, normalise.
The images are the peer's (smooth upsampled noise, same generator and seed),
or real CIFAR-10 images with --data_dir (a folder source or the CIFAR archive).

    .venv/bin/python benchmarks/input_pipeline.py --threads 1 \
        --peer_python .peer-venv/bin/python \
        --peer_script benchmarks/peers/torchvision_autoaugment.py

`--policy official_imagenet|official_simclr --image_size 224 --data_dir DIR`:
the official training views of the JPEG files under DIR (decoded one at a
time, the official crop window resized to 224, flip, then TF-Models'
AutoAugment v0 or SimCLR's distortion with its blur), beside the peer
benchmarks/peers/torchvision_imagenet_views.py (RandomResizedCrop,
AutoAugment(IMAGENET) or SimCLR's ops) on the same files, in the same run:

    .venv/bin/python benchmarks/input_pipeline.py --policy official_imagenet \
        --image_size 224 --data_dir DIR --peer_python .peer-venv/bin/python

With `--source=tfrecord` the same files are first written (once, under
/tmp) into ImageNet-layout TFRecord shards, and the views read from them
(`--input_fn=tfrecord`); the peer still reads the files.

`--views_on_device` (with an official policy): the host's part when the
views are made on the device (`supcon_tf.data.device_views`): decode, the
crop window resized and flipped, uint8 out (`train_dataset` without
`mean_std`); beside the peer's
whole pipeline for both official policies (AutoAugment and SimCLR), in the
same run, the smaller ratio last:

    .venv/bin/python benchmarks/input_pipeline.py --policy official_imagenet \
        --image_size 224 --data_dir DIR --views_on_device \
        --peer_python .peer-venv/bin/python

Prints `views/s: N` last (views produced per second on N threads), or, with a
peer, `views/s per core ratio: R`.
"""
import os

from absl import app, flags

flags.DEFINE_integer('threads', 1, 'Cores (threads) the pipeline may use.')
flags.DEFINE_integer('images', 4000, 'Images in the synthetic dataset.')
flags.DEFINE_integer('batch_size', 256, 'Images per batch (2 views each).')
flags.DEFINE_integer('batches', 40, 'Batches timed, after 5 of warm-up.')
flags.DEFINE_string('data_dir', None, 'Folder of real CIFAR images '
                    '(<data_dir>/train/<class>/*.jpg); synthetic if unset.')
flags.DEFINE_string('peer_python', None, 'Python of the torchvision peer\'s '
                    'environment; with --peer_script, runs the peer in the '
                    'same session and prints the ratio.')
flags.DEFINE_string('peer_script', None, 'The CIFAR peer: '
                    'torchvision_autoaugment.py (the ImageNet-style policies '
                    'use benchmarks/peers/torchvision_imagenet_views.py).')
flags.DEFINE_enum('policy', 'cifar10', ['cifar10', 'official_imagenet',
                                        'official_simclr'],
                  'Which training views.')
flags.DEFINE_integer('image_size', 32, 'Side of the views.')
flags.DEFINE_enum('source', 'files', ['files', 'tfrecord'],
                  'Read the --data_dir JPEGs as files, or from TFRecord '
                  'shards written from them.')
flags.DEFINE_bool('views_on_device', False, 'Time only the host\'s part of '
                  'device-made views (decode, crop, resize, flip); the peer '
                  'runs both official policies.')
FLAGS = flags.FLAGS


def _peer_views_per_second(policy):
  import subprocess
  if policy == 'cifar10':
    command = [FLAGS.peer_python, FLAGS.peer_script, '--images',
               str(FLAGS.images)]
  else:
    command = [FLAGS.peer_python, os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'peers',
        'torchvision_imagenet_views.py'), '--data_dir', FLAGS.data_dir,
               '--images', str(FLAGS.images), '--image_size',
               str(FLAGS.image_size), '--policy', policy.split('_')[1]]
  out = subprocess.run(command, check=True, capture_output=True,
                       text=True).stdout
  return float(out.strip().splitlines()[-1].split(':')[1])


def _synthetic(count):
  """The peer's images: 8x8 noise upsampled to 32x32 with PIL-like bilinear."""
  import numpy as np
  import tensorflow as tf
  rng = np.random.default_rng(0)
  small = rng.integers(0, 256, size=(count, 8, 8, 3), dtype=np.uint8)
  big = tf.image.resize(small.astype(np.float32), [32, 32], antialias=True)
  return np.clip(np.round(big.numpy()), 0, 255).astype(np.uint8)


def _records_of(files, shards=4):
  """The files as ImageNet-layout TFRecord shards (written once)."""
  import hashlib

  import tensorflow as tf
  key = hashlib.sha1('\n'.join(files).encode()).hexdigest()[:12]
  root = f'/tmp/supcon_records_{key}'
  done = os.path.join(root, '.done')
  if not os.path.exists(done):
    os.makedirs(root, exist_ok=True)
    for s in range(shards):
      path = os.path.join(root, f'train-{s:05d}-of-{shards:05d}')
      with tf.io.TFRecordWriter(path) as writer:
        for name in files[s::shards]:
          with open(name, 'rb') as f:
            encoded = f.read()
          writer.write(tf.train.Example(features=tf.train.Features(feature={
              'image/encoded': tf.train.Feature(
                  bytes_list=tf.train.BytesList(value=[encoded])),
              'image/class/label': tf.train.Feature(
                  int64_list=tf.train.Int64List(value=[1])),
          })).SerializeToString())
    open(done, 'w').close()
  return root


def main(_):
  # Thread counts must be set before TensorFlow starts its runtime.
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
  import time

  import numpy as np

  from supcon_tf.config import Preprocessing
  from supcon_tf.data import pipeline, sources

  if FLAGS.policy != 'cifar10':
    # JPEG files read and decoded one at a time, as ImageNet is.
    files = sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(FLAGS.data_dir) for name in names
        if name.lower().endswith(('.jpg', '.jpeg', '.png')))[:FLAGS.images]
    split = sources.Split(np.zeros(len(files), np.int64),
                          files=np.array(files))
    if FLAGS.source == 'tfrecord':
      split = sources.load_source('tfrecord', _records_of(files)).split(
          'train')
    kind = 'AUTOAUGMENT' if FLAGS.policy == 'official_imagenet' else 'SIMCLR'
    if FLAGS.views_on_device:
      kind = 'IDENTITY'  # The rest of the view is the device's.
    config = Preprocessing(augmentation_type=kind, augmentation_magnitude=1.,
                           image_size=FLAGS.image_size, defer_blurring=False)
  elif FLAGS.views_on_device:
    raise app.UsageError('--views_on_device times the official policies\' '
                         'host part: give --policy official_imagenet.')
  elif FLAGS.data_dir:
    split = sources.load_source('folder', FLAGS.data_dir).split('train')
  else:
    images = _synthetic(FLAGS.images)
    split = sources.Split(np.zeros(len(images), np.int64), images=images)
  if FLAGS.policy == 'cifar10':
    config = Preprocessing(augmentation_type='AUTOAUGMENT',
                           autoaugment_policy='cifar10', image_size=32,
                           crop='pad', random_crop_padding=4, flip=True)
  dataset = pipeline.train_dataset(
      split, config, FLAGS.batch_size,
      None if FLAGS.views_on_device else sources.CIFAR10_MEAN_STD, num_views=2,
      seed=0, input_threads=FLAGS.threads)
  iterator = iter(dataset)
  for _ in range(5):
    next(iterator)
  start = time.perf_counter()
  views = 0
  for _ in range(FLAGS.batches):
    batch, _ = next(iterator)
    views += int(batch.shape[0]) * int(batch.shape[1])
  elapsed = time.perf_counter() - start
  print(f'{"host part of " if FLAGS.views_on_device else ""}'
        f'{FLAGS.policy} ({FLAGS.source}), {FLAGS.image_size} x '
        f'{FLAGS.image_size}, threads: '
        f'{FLAGS.threads}, batch {FLAGS.batch_size} x 2 views, '
        f'{FLAGS.batches} batches in {elapsed:.2f} s: '
        f'{views / elapsed:.1f} views/s')
  if FLAGS.peer_python and (FLAGS.peer_script or FLAGS.policy != 'cifar10'):
    ratios = []
    for policy in (('official_imagenet', 'official_simclr')
                   if FLAGS.views_on_device else (FLAGS.policy,)):
      peer = _peer_views_per_second(policy)
      ratios.append(views / elapsed / FLAGS.threads / peer)
      print(f'peer views/s (one core, {policy}): {peer:.1f}, ratio '
            f'{ratios[-1]:.2f}')
    print(f'views/s per core ratio: {min(ratios):.2f}')
  else:
    print(f'views/s: {views / elapsed:.1f}')


if __name__ == '__main__':
  app.run(main)
