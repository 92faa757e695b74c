"""The ImageNet TFRecord source (`--input_fn=tfrecord`): shards counted from
their headers, epochs over every record once, resume, per-pipeline shards,
bad shards and records named. On shards the tests write in the layout of
build_imagenet_data.py: numbered PNGs, whose first pixel spells the record."""
import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.config import Preprocessing
from supcon_tf.data import decoding, pipeline, sources
from supcon_tf.data import records as records_lib
from tests import archives, stops

UNIT = ((0.,) * 3, (1.,) * 3)
PLAIN = Preprocessing(augmentation_type='IDENTITY', crop='none', flip=False,
                      image_size=8)


def _numbered(first, count, classes=4):
  """(image, label) of examples first.. : the first pixel spells the number,
  the label is number % classes."""
  examples = []
  for number in range(first, first + count):
    image = np.full((8, 8, 3), number % 251, np.uint8)
    image[0, 0, :2] = divmod(number, 256)
    examples.append((image, number % classes))
  return examples


def _write(root, train=(7, 9, 8, 6), validation=(5, 6)):
  """Shards of `train` and `validation` records numbered in order."""
  shards, first = {}, 0
  for split, counts in (('train', train), ('validation', validation)):
    shards[split] = []
    for count in counts:
      shards[split].append(_numbered(first, count))
      first += count
  return archives.write_records(root, shards)


def _numbers(views):
  pixel = np.asarray(views)[..., 0, 0, :]
  return (pixel[..., 0] * 256 + pixel[..., 1]).astype(int)


def _take(dataset, count):
  return [(v.numpy(), l.numpy()) for v, l in dataset.take(count)]


def test_epochs_read_every_record_once_labels_from_zero_and_resume(tmp_path):
  _write(tmp_path)
  source = sources.load_source('tfrecord', str(tmp_path))
  train = source.split('train')
  assert (len(train), source.num_classes) == (30, 1000)
  np.testing.assert_array_equal(train.records.counts, [7, 9, 8, 6])
  # 30 records in batches of 6: five steps an epoch.
  batches = _take(pipeline.train_dataset(train, PLAIN, 6, UNIT, num_views=2,
                                         seed=3), 10)
  numbers = np.concatenate([_numbers(v) for v, _ in batches])
  assert (numbers == numbers[:, :1]).all()  # Both views of one record.
  for epoch in (numbers[:30, 0], numbers[30:, 0]):
    assert sorted(epoch) == list(range(30))
  assert list(numbers[:30, 0]) != list(numbers[30:, 0])
  # The labels 1..4 written become 0..3.
  labels = np.concatenate([l for _, l in batches])
  np.testing.assert_array_equal(labels, numbers[:, 0] % 4)
  # The same seed repeats; a resume mid-epoch continues with the same views.
  again = _take(pipeline.train_dataset(train, PLAIN, 6, UNIT, seed=3), 10)
  resumed = _take(pipeline.train_dataset(train, PLAIN, 6, UNIT, seed=3,
                                         start_step=7), 3)
  for (want, _), (got, _) in zip(batches[7:] + batches, resumed + again):
    np.testing.assert_array_equal(got, want)
  # The validation shards are the test split, in order.
  test = source.split('test')
  evaluated = list(pipeline.eval_dataset(test, 4, UNIT, 8))
  np.testing.assert_array_equal(
      np.concatenate([_numbers(v) for v, _ in evaluated]), np.arange(30, 41))
  np.testing.assert_array_equal(np.concatenate([l for _, l in evaluated]),
                                np.arange(30, 41) % 4)


def test_crops_of_jpeg_records_are_those_of_the_same_files(tmp_path):
  # Records go through the file views: the crop windows drawn from the JPEG
  # header and one region decoded give what a folder of the same JPEG gives.
  config = Preprocessing(augmentation_type='IDENTITY', crop='random_resized',
                         flip=True, image_size=16)
  rng = np.random.default_rng(0)
  for i, shape in enumerate([(40, 30, 3), (27, 53, 3)]):
    root = tmp_path / str(i)
    root.mkdir()
    archives.write_records(root, {'train': [[(rng.integers(
        0, 256, shape, np.uint8), 0)]]}, encode='jpeg')
    records = sources.load_source('tfrecord', str(root)).split('train')
    serialized = next(iter(tf.data.TFRecordDataset(
        str(root / 'train-00000-of-00001'))))
    (root / 'image.jpg').write_bytes(
        records_lib.parse_records(serialized[None])[0][0].numpy())
    files = sources.Split([0], files=np.asarray([str(root / 'image.jpg')]))
    (want, _), = _take(pipeline.train_dataset(files, config, 1, UNIT,
                                              seed=4), 1)
    (got, _), = _take(pipeline.train_dataset(records, config, 1, UNIT,
                                             seed=4), 1)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got[0, 0], got[0, 1])


def test_each_input_pipeline_reads_its_own_shards(tmp_path):
  _write(tmp_path, train=(6, 6, 6, 6, 6, 6))
  train = sources.load_source('tfrecord', str(tmp_path)).split('train')
  shards = np.repeat(np.arange(6), 6)
  order = records_lib.record_shard_order(6, 2, 0)
  for p in range(2):
    context = tf.distribute.InputContext(2, p, 2)
    make = lambda start: pipeline.train_dataset(
        train, PLAIN, 6, UNIT, num_views=1, seed=2, input_context=context,
        start_step=start)
    batches = _take(make(0), 6)
    numbers = np.concatenate([_numbers(v)[:, 0] for v, _ in batches])
    # Epoch 0 of this pipeline: the records of shards order[p::2], once.
    assert sorted(numbers[:18]) == sorted(
        np.flatnonzero(np.isin(shards, order[p::2])))
    resumed = _take(make(4), 2)
    for (want, _), (got, _) in zip(batches[4:], resumed):
      np.testing.assert_array_equal(got, want)
  # Without shard_per_host every pipeline reads all shards and keeps its
  # part of the global batches one pipeline gives.
  whole = _take(pipeline.train_dataset(train, PLAIN, 6, UNIT, seed=2), 3)
  parts = [_take(pipeline.train_dataset(
      train, PLAIN, 6, UNIT, seed=2, shard_per_host=False,
      input_context=tf.distribute.InputContext(2, p, 2)), 3) for p in (0, 1)]
  for b, (want, _) in enumerate(whole):
    np.testing.assert_array_equal(
        np.concatenate([parts[0][b][0], parts[1][b][0]]), want)
  with pytest.raises(sources.DataError, match='6 TFRecord shards cannot be '
                     'split over 8 input pipelines'):
    pipeline.train_dataset(train, PLAIN, 8, UNIT,
                           input_context=tf.distribute.InputContext(8, 0, 8))


def test_num_images_and_validation_keep_records_of_the_shards(tmp_path):
  _write(tmp_path)
  source = sources.load_source('tfrecord', str(tmp_path), num_images=20,
                               validation_fraction=0.25, seed=1)
  train, validation = source.split('train'), source.split('validation')
  assert (len(train), len(validation)) == (15, 5)
  read = lambda split: sorted(np.concatenate([
      _numbers(v) for v, _ in pipeline.eval_dataset(split, 4, UNIT, 8)]))
  assert sorted(read(train) + read(validation)) == list(range(20))
  epoch = np.concatenate([_numbers(v)[:, 0] for v, _ in _take(
      pipeline.train_dataset(train, PLAIN, 5, UNIT, num_views=1), 3)])
  assert sorted(epoch) == read(train)


def test_bad_shards_are_named_at_start_up(tmp_path):
  paths = _write(tmp_path)
  shard = paths['train'][2]
  body = shard.read_bytes()
  shard.write_bytes(body[:-30])
  with pytest.raises(sources.DataError, match=f'{shard} is cut short: '
                     'record 7 ends at byte'):
    sources.load_source('tfrecord', str(tmp_path))
  shard.write_bytes(b'\xff\xd8' + body)
  with pytest.raises(sources.DataError,
                     match=f'{shard} is not a TFRecord file'):
    sources.load_source('tfrecord', str(tmp_path))
  # Another layout: the label under another name.
  with tf.io.TFRecordWriter(str(shard)) as writer:
    writer.write(tf.train.Example(features=tf.train.Features(feature={
        'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[b'x'])),
        'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
    })).SerializeToString())
  with pytest.raises(sources.DataError, match=f'first record of {shard} has '
                     'no image/class/label .* it has image/encoded, label'):
    sources.load_source('tfrecord', str(tmp_path))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(sources.DataError, match='no train-\\*-of-\\* shards'):
    sources.load_source('tfrecord', str(tmp_path / 'empty'))


def _first_error(dataset):
  with pytest.raises(tf.errors.OpError) as raised:
    for _ in dataset.take(20):
      pass
  return decoding.corrupt_data_message(raised.value)


def test_records_that_break_after_start_up_are_named(tmp_path):
  paths = _write(tmp_path)
  train = sources.load_source('tfrecord', str(tmp_path)).split('train')
  # One byte of a record's data changed: its CRC check fails when read.
  shard = paths['train'][1]
  body = bytearray(shard.read_bytes())
  body[len(body) // 2] ^= 0x40
  shard.write_bytes(bytes(body))
  message = _first_error(pipeline.train_dataset(train, PLAIN, 6, UNIT))
  assert message.startswith(f'{shard} gave ') and 'of its 9 records' in message
  # With --skip_corrupt the rest of the shard is skipped and training goes on.
  batches = _take(pipeline.train_dataset(train, PLAIN, 6, UNIT,
                                         skip_corrupt=True), 5)
  assert len(batches) == 5
  # A label outside 1..1000, and an image that does not decode: the record
  # is named.
  for i, example in enumerate([(b'not an image', 1), (_numbered(0, 1)[0][0],
                                                       -1)]):
    root = tmp_path / f'bad{i}'
    root.mkdir()
    archives.write_records(root, {'train': [_numbered(0, 2) + [example]]})
    train = sources.load_source('tfrecord', str(root)).split('train')
    message = _first_error(pipeline.train_dataset(train, PLAIN, 3, UNIT))
    shard = root / 'train-00000-of-00001'
    assert message.startswith(f'{shard} record 2'), message
    assert ('is not a readable image' if i == 0 else
            'label 0 is not one of the image/class/label values 1..1000'
            ) in message


def test_supcon_trains_on_records_and_a_resumed_run_ends_with_the_same_weights(
    tmp_path, monkeypatch):
  from supcon_tf.presets import make_config
  from supcon_tf.training import run as run_lib, signals
  rng = np.random.default_rng(0)
  train = archives.quadrants(16, rng)
  order = rng.permutation(len(train))  # As build_imagenet_data.py shuffles.
  train = [train[i] for i in order]
  archives.write_records(tmp_path / 'data', {
      'train': [train[:20], train[20:44], train[44:]]})

  def run(name):
    return run_lib.run(make_config(
        model_dir=str(tmp_path / name), input_fn='tfrecord',
        data_dir=str(tmp_path / 'data'), mode='train', image_size=8,
        resnet_depth=20, projection_head_layers=(32, 16), weight_init='seed',
        batch_size=16, augmentation_type='AUTOAUGMENT',
        autoaugment_policy='cifar10', crop='pad', random_crop_padding=1,
        flip=False, temperature=0.1, stage_1_epochs=3,
        stage_1_optimizer='ADAM', stage_1_warmup_epochs=0.,
        stage_1_base_learning_rate=0.01, steps_per_loop=2,
        knn_every_epochs=0, progress=False, plot=False, export=False),
                       stage_indices=(1,))

  straight = run('straight')
  assert straight['stage_1_steps'] == 12
  assert np.isfinite(straight['stage_1_final_loss'])
  # A Ctrl-C after step 6, in the second epoch (four steps an epoch).
  with stops.ctrl_c_at_check(monkeypatch, 4):
    with pytest.raises(signals.Interrupted, match='step 6'):
      run('resumed')
  resumed = run('resumed')
  assert resumed['stage_1_steps'] == 12
  weights = [tf.train.load_checkpoint(str(tmp_path / name / 'stage_1'))
             for name in ('straight', 'resumed')]
  names = [n for n, _ in tf.train.list_variables(
      str(tmp_path / 'straight' / 'stage_1')) if n.startswith('model/')]
  assert len(names) >= 40  # Kernels, biases, BatchNorm, the heads.
  for name in names:
    np.testing.assert_allclose(weights[1].get_tensor(name),
                               weights[0].get_tensor(name), rtol=1e-4,
                               atol=1e-5, err_msg=name)


def test_the_app_names_a_bad_shard_and_a_bad_record_in_one_line(tmp_path):
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def train(data_dir, model_dir):
    return subprocess.run(
        [sys.executable, os.path.join(root, 'bin', 'train_supcon.py'),
         '--input_fn=tfrecord', f'--data_dir={data_dir}',
         f'--model_dir={model_dir}', '--mode=train', '--image_size=8',
         '--resnet_depth=20', '--batch_size=4', '--stage_1_epochs=1',
         '--stage_2_epochs=1', '--use_tpu=false', '--progress=false'],
        capture_output=True, text=True, timeout=600)
  # At start-up: a shard cut short. Nothing is written.
  paths = _write(tmp_path / 'short', train=(4, 4))
  paths['train'][1].write_bytes(paths['train'][1].read_bytes()[:-5])
  done = train(tmp_path / 'short', tmp_path / 'run1')
  assert done.returncode == 2 and 'Traceback' not in done.stderr
  last = done.stderr.strip().splitlines()[-1]
  assert f'{paths["train"][1]} is cut short' in last, done.stderr[-2000:]
  assert not (tmp_path / 'run1').exists()
  # While training: a record whose label is 0 (unused in the layout).
  archives.write_records(tmp_path / 'label', {'train': [
      _numbered(0, 3) + [(_numbered(3, 1)[0][0], -1)]]})
  done = train(tmp_path / 'label', tmp_path / 'run2')
  assert done.returncode == 1 and 'Traceback' not in done.stderr
  last = done.stderr.strip().splitlines()[-1]
  shard = tmp_path / 'label' / 'train-00000-of-00001'
  assert f'stage_1: {shard} record 3: label 0 is not one of' in last, (
      done.stderr[-2000:])
  assert 'The last checkpoint is kept' in last
