"""Training and eval pipelines: batches, epochs, seeds, replicas."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from supcon_tf.config import Preprocessing
from supcon_tf.data import epochs as epochs_lib
from supcon_tf.data import pipeline, sources

UNIT = ((0.,) * 3, (1.,) * 3)  # Normalisation that leaves pixel values.
PLAIN = Preprocessing(augmentation_type='IDENTITY', crop='none', flip=False,
                      image_size=8)


def _numbered(count=40, size=8, classes=4):
  """Images whose first pixel spells their index; labels index % classes."""
  images = np.zeros((count, size, size, 3), np.uint8)
  images[:, 0, 0, 0] = np.arange(count) // 256
  images[:, 0, 0, 1] = np.arange(count) % 256
  images[:, 1:, :, :] = np.arange(count)[:, None, None, None] % 251
  return sources.Split(np.arange(count) % classes, images=images)


def _indices(views):
  pixel = np.asarray(views)[..., 0, 0, :]
  return (pixel[..., 0] * 256 + pixel[..., 1]).astype(int)


def _take(dataset, count):
  return [(v.numpy(), l.numpy()) for v, l in dataset.take(count)]


def test_training_batches_are_views_of_each_example_once_per_epoch():
  split = _numbered(40)
  dataset = pipeline.train_dataset(split, PLAIN, 8, UNIT, num_views=3,
                                   seed=1)
  assert epochs_lib.steps_per_epoch(len(split), 8) == 5
  batches = _take(dataset, 10)
  for views, labels in batches:
    assert views.shape == (8, 3, 8, 8, 3) and views.dtype == np.float32
    index = _indices(views)
    assert (index == index[:, :1]).all()  # Every view of the same example.
    np.testing.assert_array_equal(labels, index[:, 0] % 4)
  epochs = [np.concatenate([_indices(v)[:, 0] for v, _ in batches[e:e + 5]])
            for e in (0, 5)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(40))
  assert list(epochs[0]) != list(epochs[1])  # Reshuffled each epoch.


def test_span_batches_cross_epoch_ends_and_read_every_example():
  # 44 examples in batches of 8: 5.5 steps an epoch, as official.
  split = _numbered(44)
  assert epochs_lib.steps_per_epoch(len(split), 8, 'span') == 5.5
  assert epochs_lib.steps_per_epoch(len(split), 8, 'drop') == 5
  stream = pipeline.train_dataset(split, PLAIN, 8, UNIT, num_views=1,
                                  seed=2, epoch_remainder='span')
  seen = np.concatenate([_indices(v)[:, 0] for v, _ in _take(stream, 11)])
  # Eleven batches are exactly two epochs, each a permutation of all 44; the
  # sixth batch holds the last 4 of epoch 0 and the first 4 of epoch 1.
  for epoch in (seen[:44], seen[44:]):
    assert sorted(epoch) == list(range(44))
  assert list(seen[:44]) != list(seen[44:])
  # Epoch ends fall on the step that completes them: 6 (44 of 48 read), 11.
  ends = [epochs_lib.first_step_of_epoch(e, len(split), 8, 'span')
          for e in (1, 2, 3)]
  assert ends == [6, 11, 17]
  assert [epochs_lib.epoch_of_step(s, len(split), 8, 'span')
          for s in (5, 6, 11)] == [0, 1, 2]
  # Resuming at step 6 continues mid-epoch with the same examples.
  resumed = pipeline.train_dataset(split, PLAIN, 8, UNIT, num_views=1, seed=2,
                                   start_step=6, epoch_remainder='span')
  again = np.concatenate([_indices(v)[:, 0] for v, _ in _take(resumed, 5)])
  np.testing.assert_array_equal(again, seen[48:88])


def test_the_same_seed_gives_the_same_batches_and_start_step_resumes():
  split = _numbered(48, size=32)
  config = Preprocessing(augmentation_type='SIMCLR', image_size=32,
                         crop='random_resized', blur_probability=0.)
  make = lambda seed, start=0: pipeline.train_dataset(
      split, config, 16, UNIT, seed=seed, start_step=start)
  a, b, c = _take(make(5), 6), _take(make(5), 6), _take(make(6), 6)
  for (va, la), (vb, lb) in zip(a, b):
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_array_equal(la, lb)
  assert not np.array_equal(a[0][0], c[0][0])
  # Two views of an example differ.
  assert np.mean([not np.array_equal(x[0], x[1]) for x in a[0][0]]) > 0.8
  resumed = _take(make(5, start=2), 4)
  for (va, _), (vr, _) in zip(a[2:], resumed):
    np.testing.assert_array_equal(va, vr)


def test_views_are_normalised_with_the_given_mean_and_std():
  split = _numbered(16)
  mean_std = ((10., 20., 30.), (2., 4., 8.))
  views, _ = _take(pipeline.train_dataset(split, PLAIN, 16, mean_std), 1)[0]
  raw, _ = _take(pipeline.train_dataset(split, PLAIN, 16, UNIT), 1)[0]
  np.testing.assert_allclose(views, (raw - [10., 20., 30.]) / [2., 4., 8.],
                             rtol=1e-6)


def test_class_balanced_batches_have_the_same_label_configuration():
  split = _numbered(120, classes=10)
  dataset = pipeline.train_dataset(split, PLAIN, 12, UNIT, seed=3,
                                   classes_per_batch=4)
  seen = set()
  for views, labels in _take(dataset, 12):
    counts = np.bincount(labels, minlength=10)
    assert sorted(counts[counts > 0]) == [3, 3, 3, 3]
    np.testing.assert_array_equal(labels, _indices(views)[:, 0] % 10)
    seen.update(labels)
  assert len(seen) == 10
  with pytest.raises(ValueError, match='classes_per_batch'):
    pipeline.train_dataset(split, PLAIN, 12, UNIT, classes_per_batch=11)
  with pytest.raises(ValueError, match='divisible by classes_per_batch'):
    pipeline.train_dataset(split, PLAIN, 12, UNIT, classes_per_batch=5)


def test_the_fixed_configuration_sampler_repeats_one_label_multiset():
  split = _numbered(120, classes=4)
  classes = epochs_lib.sampler_classes('fixed_configuration', 0, split)
  assert classes == 4
  assert epochs_lib.sampler_classes('uniform', 0, split) is None
  assert epochs_lib.sampler_classes('class_balanced', 2, split) == 2
  dataset = pipeline.train_dataset(split, PLAIN, 12, UNIT, seed=3,
                                   classes_per_batch=classes)
  batches = _take(dataset, 20)  # Two epochs of 10 batches.
  for views, labels in batches:
    np.testing.assert_array_equal(np.sort(labels), np.repeat(np.arange(4), 3))
    np.testing.assert_array_equal(labels, _indices(views)[:, 0] % 4)
  # Every example once per epoch, in another order each epoch.
  first = np.concatenate([_indices(v)[:, 0] for v, _ in batches[:10]])
  second = np.concatenate([_indices(v)[:, 0] for v, _ in batches[10:]])
  np.testing.assert_array_equal(np.sort(first), np.arange(120))
  assert not np.array_equal(first, second)
  uniform = [l for _, l in _take(pipeline.train_dataset(
      split, PLAIN, 12, UNIT, seed=3), 10)]
  assert len({tuple(np.bincount(l, minlength=4)) for l in uniform}) > 1
  with pytest.raises(ValueError, match='sampler must be one of'):
    epochs_lib.sampler_classes('balanced', 0, split)


def test_replicas_get_contiguous_chunks_of_the_same_global_batches():
  split = _numbered(64)
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  distributed = pipeline.train_dataset_distributed(strategy, split, PLAIN, 16,
                                                   UNIT, num_views=2, seed=4)
  single = _take(pipeline.train_dataset(split, PLAIN, 16, UNIT, seed=4), 4)
  for (want, want_labels), batch in zip(single, distributed):
    views, labels = batch
    chunks = strategy.experimental_local_results(views)
    assert [c.shape[0] for c in chunks] == [8, 8]
    np.testing.assert_array_equal(np.concatenate(chunks), want)
    np.testing.assert_array_equal(
        np.concatenate(strategy.experimental_local_results(labels)),
        want_labels)
  with pytest.raises(ValueError, match='not divisible by the 2 replicas'):
    iter(pipeline.train_dataset_distributed(strategy, split, PLAIN, 15, UNIT))


def _layouts(make_dataset, pipelines, batches=3):
  """Global batches of views from one pipeline, and from `pipelines` input
  pipelines of one replica each (as workers), the chunks concatenated."""
  whole = _take(make_dataset(None), batches)
  parts = [_take(make_dataset(tf.distribute.InputContext(
      pipelines, p, pipelines)), batches) for p in range(pipelines)]
  joined = [np.concatenate([part[b][0] for part in parts])
            for b in range(batches)]
  return [views for views, _ in whole], joined


@pytest.mark.parametrize('kind', ['AUTOAUGMENT', 'SIMCLR', 'RANDAUGMENT'])
def test_the_same_seed_gives_the_same_views_whatever_the_layout(kind):
  # Draws follow the example's place in the global batch, not the chunk it
  # is augmented in: 1 pipeline and 4 (workers) give the same views (two
  # pipelines: test_views_of_files_are_the_same_whatever_the_layout).
  rng = np.random.default_rng(3)
  split = sources.Split(np.arange(48) % 4, images=rng.integers(
      0, 256, (48, 16, 16, 3), np.uint8))
  config = Preprocessing(augmentation_type=kind, image_size=16,
                         autoaugment_policy='v0', crop='random_resized',
                         blur_probability=0.5, defer_blurring=False)
  whole, joined = _layouts(lambda context: pipeline.train_dataset(
      split, config, 16, UNIT, num_views=2, seed=5,
      input_context=context), 4, batches=2)
  for want, got in zip(whole, joined):
    np.testing.assert_array_equal(got, want)
  # The draws do change with the seed.
  other = _take(pipeline.train_dataset(split, config, 16, UNIT, num_views=2,
                                       seed=6), 1)[0][0]
  assert np.abs(other - whole[0]).mean() > 1.


def test_views_of_files_are_the_same_whatever_the_layout(tmp_path):
  split = _mixed_folder(tmp_path).split('train')
  config = Preprocessing(augmentation_type='AUTOAUGMENT',
                         autoaugment_policy='v0', image_size=16)
  whole, joined = _layouts(lambda context: pipeline.train_dataset(
      split, config, 6, UNIT, num_views=2, seed=1, input_context=context), 2)
  for want, got in zip(whole, joined):
    np.testing.assert_array_equal(got, want)


def test_eval_batches_cover_every_example_once_in_order():
  split = _numbered(37)
  batches = list(pipeline.eval_dataset(split, 16, UNIT, 8))
  assert [len(l) for _, l in batches] == [16, 16, 5]
  images = np.concatenate([i.numpy() for i, _ in batches])
  np.testing.assert_array_equal(_indices(images), np.arange(37))
  np.testing.assert_array_equal(images, split.images)
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  seen = []
  for images, _ in pipeline.eval_dataset_distributed(strategy, split, 16,
                                                     UNIT, 8):
    seen.extend(np.concatenate(
        [_indices(x) for x in strategy.experimental_local_results(images)]))
  assert sorted(seen) == list(range(37))


def test_too_large_a_batch_is_named():
  with pytest.raises(ValueError, match='global batch size 64 is larger'):
    pipeline.train_dataset(_numbered(40), PLAIN, 64, UNIT)
  with pytest.raises(ValueError, match='num_views'):
    pipeline.train_dataset(_numbered(40), PLAIN, 8, UNIT, num_views=0)


def _mixed_folder(root):
  rng = np.random.default_rng(0)
  for c in ('a', 'b'):
    (root / 'train' / c).mkdir(parents=True)
    for i, size in enumerate([(20, 30), (40, 24), (32, 32)]):
      Image.fromarray(rng.integers(0, 256, size + (3,), np.uint8)).save(
          root / 'train' / c / f'{i}.png')
  return sources.load_source('folder', str(root))


@pytest.mark.parametrize('crop', ['random_resized', 'pad'])
def test_images_of_any_size_read_from_files(tmp_path, crop):
  source = _mixed_folder(tmp_path)
  split = source.split('train')
  assert split.files is not None
  config = Preprocessing(augmentation_type='SIMCLR', crop=crop,
                         image_size=16, blur_probability=0.5,
                         defer_blurring=False)
  make = lambda: pipeline.train_dataset(split, config, 3, source.mean_std,
                                        num_views=2, seed=2)
  a, b = _take(make(), 4), _take(make(), 4)
  for (va, la), (vb, _) in zip(a, b):
    assert va.shape == (3, 2, 16, 16, 3) and la.shape == (3,)
    np.testing.assert_array_equal(va, vb)
  evals = list(pipeline.eval_dataset(split, 4, source.mean_std, 16,
                                     'RESIZE_THEN_CROP', crop_padding=4))
  assert [i.shape for i, _ in evals] == [(4, 16, 16, 3), (2, 16, 16, 3)]


@pytest.mark.parametrize('policy', ['seed_cifar10', 'v0', 'cifar10'])
def test_eval_training_views_of_files_keep_their_size_in_a_short_batch(
    tmp_path, policy):
  # Files, a last batch of 2: the geometric ops must keep the static image
  # size (the seed's spline AutoAugment needs it).
  split = _mixed_folder(tmp_path).split('train')
  config = Preprocessing(augmentation_type='AUTOAUGMENT', image_size=16,
                         autoaugment_policy=policy, crop='pad')
  batches = list(pipeline.eval_dataset(split, 4, UNIT, 16,
                                       training_view=config))
  assert [b.shape for b, _ in batches] == [(4, 2, 16, 16, 3),
                                           (2, 2, 16, 16, 3)]


def test_streams_train_and_evaluate():
  tf.random.set_seed(0)  # A global seed must not break the seeded shuffle.
  rng = np.random.default_rng(1)
  images = [rng.integers(0, 256, (h, 20, 3), np.uint8) for h in (16, 24) * 6]
  stream = tf.data.Dataset.from_generator(
      lambda: ((im, i % 3) for i, im in enumerate(images)),
      output_signature=(tf.TensorSpec([None, None, 3], tf.uint8),
                        tf.TensorSpec([], tf.int64)))
  split = sources.Split(None, stream=stream, size=len(images))
  config = Preprocessing(augmentation_type='RANDAUGMENT', randaugment_ops='pil',
                         augmentation_magnitude=5, crop='random_resized',
                         image_size=12)
  make = lambda: pipeline.train_dataset(split, config, 4, UNIT, seed=1)
  batches, again = _take(make(), 5), _take(make(), 5)
  assert [v.shape for v, _ in batches] == [(4, 2, 12, 12, 3)] * 5
  for (a, _), (b, _) in zip(batches, again):
    np.testing.assert_array_equal(a, b)
  evals = list(pipeline.eval_dataset(split, 5, UNIT, 12))
  assert sum(len(l) for _, l in evals) == 12


def test_training_images_of_another_size_than_image_size_are_refused():
  split = _numbered(16)  # 8x8 images.
  config = Preprocessing(augmentation_type='IDENTITY', image_size=16,
                         crop='pad')
  with pytest.raises(ValueError, match='are 8x8 but image_size is 16'):
    pipeline.train_dataset(split, config, 8, UNIT)


def test_eval_pairs_are_the_eval_view_and_a_training_view():
  # The official eval's two views: the eval view, then a training view.
  split = _numbered(10, size=8)
  plain = list(pipeline.eval_dataset(split, 4, UNIT, 8))
  training = Preprocessing(augmentation_type='IDENTITY', crop='pad',
                           random_crop_padding=2, flip=True, image_size=8)
  make = lambda seed: list(pipeline.eval_dataset(
      split, 4, UNIT, 8, training_view=training, seed=seed))
  pairs, again, other = make(1), make(1), make(2)
  assert [v.shape for v, _ in pairs] == [(4, 2, 8, 8, 3)] * 2 + [
      (2, 2, 8, 8, 3)]
  for (views, labels), (want, want_labels) in zip(pairs, plain):
    np.testing.assert_array_equal(views[:, 0], want)
    np.testing.assert_array_equal(labels, want_labels)
  second = np.concatenate([v[:, 1] for v, _ in pairs])
  np.testing.assert_array_equal(second, np.concatenate([v[:, 1]
                                                        for v, _ in again]))
  assert not np.array_equal(second, np.concatenate([v[:, 0]
                                                    for v, _ in pairs]))
  assert not np.array_equal(second, np.concatenate([v[:, 1]
                                                    for v, _ in other]))
