"""SupCon the Keras way: `SupConModel` with `compile` and `fit` runs the
command-line Trainer's step, under MirroredStrategy as on one device, and
saves to `.keras` files; the views come from `pipeline.training_views`."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.config import Preprocessing
from supcon_tf.data import pipeline
from supcon_tf.losses import ContrastiveLoss
from supcon_tf.models import layers
from supcon_tf.presets import make_config
from supcon_tf.training import optimizers, run as run_lib, stages
from supcon_tf.training.fit import KnnMonitor, SupConModel
from tests import trainers
from tests.replicas import two_replicas

SUPCON = 'seed_cifar10_resnet20_supcon_autoaugment'
SIZE, BATCH = 8, 8


def _config():
  # Stage 1 with the contrastive loss alone and no L2 term: what a compiled
  # ContrastiveLoss asks of fit.
  return make_config(SUPCON, batch_size=BATCH, image_size=SIZE,
                     use_global_batch_norm=False,
                     stage_1_cross_entropy_loss_weight=0.,
                     stage_1_weight_decay=0.)


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(BATCH, 2, SIZE, SIZE, 3)).astype(np.float32),
          rng.integers(0, 3, BATCH))


def _loss(config):
  return ContrastiveLoss(
      temperature=config.temperature, contrast_mode=config.contrast_mode,
      summation_location=config.summation_location,
      denominator_mode=config.denominator_mode,
      positives_cap=config.positives_cap,
      scale_by_temperature=config.scale_by_temperature,
      use_labels=config.use_labels)


def _fit_model(config, weights, strategy=None, synchronized=False,
               **options):
  """A SupConModel of the Trainer's architecture with `weights`, compiled
  with the stage's optimizer and the config's loss; `options` go to
  SupConModel."""
  strategy = strategy or tf.distribute.get_strategy()
  stage = stages.stage_from_config(config, 1)
  with strategy.scope():
    model = SupConModel.from_config(dict(
        run_lib.build_model(config, 10).get_config(), **options))
    model(tf.zeros([1, SIZE, SIZE, 3]))
    # A memory's weights come after the heads' and keep their start.
    model.set_weights(list(weights) + model.get_weights()[len(weights):])
    layers.synchronize_batch_norm(model, synchronized)
    optimizer = optimizers.build_optimizer(
        stage.optimizer, stages.learning_rate(stage, config, 5),
        stage.rmsprop_epsilon,
        lars_adapted=stages.decay_selection(stage, model, config))
    model.compile(optimizer=optimizer, loss=_loss(config), jit_compile=False)
  return model


def _trained(model):
  return [np.array(v) for v in (model.encoder.trainable_variables +
                                model.projection_head.trainable_variables)]


def _relative(got, want):
  scale = np.abs(want).max()
  return np.abs(got - want).max() / scale if scale else np.abs(got).max()


def test_the_fit_step_is_the_trainers_step():
  config = _config()
  stage = stages.stage_from_config(config, 1)
  model = run_lib.build_model(config, 10)
  model(tf.zeros([1, SIZE, SIZE, 3]))
  layers.synchronize_batch_norm(model, False)
  initial = model.get_weights()
  trainer = trainers.fixture_trainer(config, model)
  views, labels = _batch()
  before = _trained(model)
  terms, _ = trainer.train_on_batches(stage, [(views, labels)])
  fit_model = _fit_model(config, initial)
  history = fit_model.fit(views, labels, batch_size=BATCH, epochs=1,
                          shuffle=False, verbose=0)
  assert abs(history.history['loss'][0] - terms[0]['contrastive_loss']) <= (
      1e-5 * abs(terms[0]['contrastive_loss']))
  for got, want in zip(_trained(fit_model), _trained(model)):
    assert _relative(got, want) < 1e-5
  assert sum(not np.array_equal(w, b)
             for w, b in zip(_trained(model), before)) > 10


def test_fit_on_two_replicas_is_fit_on_one_device():
  # Global BatchNorm and the contrastive loss's gathered negatives make two
  # replicas of 4 examples one batch of 8.
  config = _config()
  model = run_lib.build_model(config, 10)
  model(tf.zeros([1, SIZE, SIZE, 3]))
  initial = model.get_weights()
  views, labels = _batch(1)
  results = []
  # The cross-batch memory holds the global batch on every replica: with one
  # batch of memory, the second and third steps contrast with it.
  for strategy in (two_replicas(), tf.distribute.get_strategy()):
    fit_model = _fit_model(config, initial, strategy, synchronized=True,
                           memory_size=BATCH)
    history = fit_model.fit(views, labels, batch_size=BATCH, epochs=3,
                            shuffle=False, verbose=0)
    results.append((history.history['loss'], _trained(fit_model),
                    fit_model.memory.contents()))
  (loss_two, two, memory_two), (loss_one, one, memory_one) = results
  np.testing.assert_allclose(loss_two, loss_one, rtol=1e-5)
  for got, want in zip(two, one):
    assert _relative(got, want) < 1e-5
  np.testing.assert_allclose(memory_two[0], memory_one[0], atol=1e-5)
  np.testing.assert_array_equal(memory_two[1], labels)


def _small_encoder():
  return keras.Sequential([
      keras.layers.Conv2D(8, 3, activation='relu'),
      keras.layers.GlobalAveragePooling2D()], name='small')


@pytest.mark.parametrize('compiled', ['uncompiled', 'optimizer', 'probe'])
def test_a_model_round_trips_through_a_keras_file(tmp_path, compiled):
  """Uncompiled (saved before training, or built to export), compiled with
  one optimizer, and with the probe's own: the same outputs, compile
  settings and optimizer state come back."""
  model = SupConModel(_small_encoder(), 3, projection_head_layers=(16,))
  views, labels = _batch(2)
  if compiled != 'uncompiled':
    probe = keras.optimizers.SGD(0.1) if compiled == 'probe' else None
    model.compile(optimizer='adam', loss=ContrastiveLoss(temperature=0.2),
                  probe_optimizer=probe)
    model.fit(views, labels, batch_size=4, epochs=2, verbose=0)
  else:
    model(views, training=False)
  path = str(tmp_path / 'm.keras')
  model.save(path)
  loaded = keras.saving.load_model(path)
  assert isinstance(loaded, SupConModel)
  for key, value in model(views, training=False).items():
    np.testing.assert_array_equal(loaded(views, training=False)[key], value)
  # The encoder alone, one attribute away.
  assert loaded.encoder(views[:, 0]).shape == (BATCH, 8)
  if compiled == 'uncompiled':
    assert not loaded.compiled
    for trained in (model, loaded):
      trained.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=ContrastiveLoss(temperature=0.2))
  else:
    assert loaded.loss.temperature == 0.2
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)
    assert (isinstance(loaded.probe_optimizer, keras.optimizers.SGD) if
            compiled == 'probe' else loaded.probe_optimizer is None)
  # The optimizer state came back too: one more step each is the same step.
  model.fit(views, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
  loaded.fit(views, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
  assert not np.allclose(_trained(loaded)[0], _trained(
      keras.saving.load_model(path))[0])
  for got, want in zip(_trained(loaded), _trained(model)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_fit_reports_the_probe_and_refuses_what_it_cannot_train():
  model = SupConModel(_small_encoder(), 3, projection_head_layers=(16,))
  model.compile(optimizer='adam', loss=ContrastiveLoss(),
                probe_optimizer='adam')
  views, labels = _batch(3)
  logs = model.fit(views, labels, batch_size=8, epochs=1, verbose=0,
                   validation_data=(views[:, 0], labels)).history
  assert set(logs) == {'loss', 'probe_loss', 'probe_top1', 'val_probe_loss',
                       'val_probe_top1'}
  images_only = SupConModel(_small_encoder(), 3)
  images_only.compile(optimizer='adam', loss=ContrastiveLoss())
  with pytest.raises(ValueError, match='fit got examples of shape'):
    images_only.fit(views[:, 0], labels, verbose=0)
  unpooled = SupConModel(keras.Sequential([keras.layers.Conv2D(4, 3)]), 3)
  unpooled.compile(optimizer='adam', loss=ContrastiveLoss())
  with pytest.raises(ValueError, match=r"gives features of shape .*pool them "
                     r"\(keras.applications: pooling='avg'"):
    unpooled.fit(views, labels, verbose=0)
  with pytest.raises(ValueError, match='trains with a ContrastiveLoss'):
    model.compile(optimizer='adam', loss='mse')


def test_training_views_differ_and_repeat_by_seed():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (24, 16, 16, 3), np.uint8)
  labels = np.arange(24) % 3
  config = Preprocessing(augmentation_type='AUTOAUGMENT', image_size=16,
                         autoaugment_policy='v0', crop='random_resized')
  take = lambda seed: [v.numpy() for v, _ in pipeline.training_views(
      images, labels, config, 8, seed=seed)[0].take(3)]
  dataset, steps = pipeline.training_views(images, labels, config, 8)
  assert steps == 3
  views, batch_labels = next(iter(dataset))
  assert views.shape == (8, 2, 16, 16, 3) and batch_labels.shape == (8,)
  first, again, other = take(1), take(1), take(2)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first[0], other[0])
  assert all(not np.array_equal(v[0], v[1]) for v in first[0])


def test_augmentation_layers_make_the_views_inside_the_step():
  augmentation = keras.Sequential([
      keras.layers.RandomFlip('horizontal', seed=1),
      keras.layers.RandomTranslation(0.2, 0.2, seed=2)], name='views')
  model = SupConModel(_small_encoder(), 3, augmentation=augmentation,
                      num_views=3, projection_head_layers=(16,))
  model.compile(optimizer='adam', loss=ContrastiveLoss(temperature=0.5))
  images, labels = _batch(4)[0][:, 0], _batch(4)[1]
  views = model._views(tf.constant(images))
  assert views.shape == (BATCH, 3, SIZE, SIZE, 3)
  assert not np.array_equal(views[:, 0], views[:, 1])
  history = model.fit(images, labels, batch_size=8, epochs=2, verbose=0)
  assert np.isfinite(history.history['loss']).all()
  config = model.get_config()
  assert SupConModel.from_config(config).augmentation.name == 'views'


@pytest.mark.parametrize('backend', ['tensorflow', 'jax'])
def test_the_example_runs_from_any_directory(tmp_path, backend):
  import os
  import subprocess
  import sys
  example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))), 'examples', 'keras_fit.py')
  done = subprocess.run(
      [sys.executable, example, '--epochs=1', '--steps_per_epoch=1',
       '--batch_size=16', f'--model_path={tmp_path / "m.keras"}'],
      capture_output=True, text=True, timeout=600, cwd=tmp_path,
      env=dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS='cpu'))
  assert done.returncode == 0, done.stderr[-3000:]
  lines = done.stdout.strip().splitlines()
  assert 'reloaded outputs equal: True' in lines[-4]
  assert ('serves the same embeddings: True' in lines[-2] if
          backend == 'tensorflow' else 'not exported under jax' in lines[-2])
  top1 = float(lines[-1].removeprefix('probe test top-1: '))
  assert 0 <= top1 <= 1 and (tmp_path / 'm.keras').exists()


def test_the_memory_queues_the_last_samples_and_joins_once_full():
  views, labels = _batch(5)
  runs = {}
  for name, size, warmup in (('none', 0, 0), ('late', 3 * BATCH, 100),
                             ('on', 12, 0)):
    keras.utils.set_random_seed(0)
    model = SupConModel(_small_encoder(), 3, projection_head_layers=(16,),
                        memory_size=size, memory_warmup=warmup)
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=ContrastiveLoss(temperature=0.5), jit_compile=False)
    # Batches of 4: the memory of 12 is full after three steps.
    history = model.fit(views, labels, batch_size=4, epochs=3,
                        shuffle=False, verbose=0).history
    runs[name] = history['loss'], _trained(model), model.memory
  # Until it is full and warm, the memory changes nothing.
  np.testing.assert_array_equal(runs['late'][0], runs['none'][0])
  for got, want in zip(runs['late'][1], runs['none'][1]):
    np.testing.assert_array_equal(got, want)
  # Six steps of 4 (three epochs of 8): the ring holds the last 12
  # samples, sample w in slot w % 12, and took part from the fourth step on.
  memory = runs['on'][2]
  assert int(memory.written.value) == 24 and int(memory.steps.value) == 6
  np.testing.assert_array_equal(memory.labels.value,
                                np.concatenate([labels[4:], labels]))
  assert runs['on'][0][0] == runs['none'][0][0]
  assert runs['on'][0][2] != runs['none'][0][2]
  projections = runs['on'][2].features.value.numpy()
  np.testing.assert_allclose(np.linalg.norm(projections, axis=-1), 1.,
                             rtol=1e-5)


def test_export_serves_the_embeddings_of_images(tmp_path):
  model = SupConModel(_small_encoder(), 3, projection_head_layers=(16,))
  model.compile(optimizer='adam', loss=ContrastiveLoss(temperature=0.5))
  views, labels = _batch(6)
  model.fit(views, labels, batch_size=8, epochs=1, verbose=0)
  model.export(str(tmp_path / 'served'), verbose=False)
  served = tf.saved_model.load(str(tmp_path / 'served'))
  images = views[:, 1]
  got = served.serve(images)
  want = model(images, training=False)
  assert set(got) == set(want)
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
  assert served.serve(images[:3])['embeddings'].shape == (3, 8)


def test_the_knn_monitor_logs_the_top1_of_a_weighted_vote():
  rng = np.random.default_rng(7)
  images = rng.normal(size=(30, SIZE, SIZE, 3)).astype(np.float32)
  labels = np.arange(30) % 3
  bank = tf.data.Dataset.from_tensor_slices((images[:20], labels[:20]))
  queries = tf.data.Dataset.from_tensor_slices((images[20:], labels[20:]))
  monitor = KnnMonitor(bank.batch(8), queries.batch(4), k=5, temperature=0.5)
  model = SupConModel(_small_encoder(), 3, projection_head_layers=(16,))
  model.compile(optimizer='adam', loss=ContrastiveLoss(temperature=0.5))
  views, batch_labels = _batch(8)
  logs = model.fit(views, batch_labels, batch_size=8, epochs=2, verbose=0,
                   callbacks=[monitor]).history
  # By hand: each query's five nearest bank images by cosine similarity
  # vote with weight exp(similarity / 0.5).
  embed = lambda x: model(x, training=False)['embeddings'].numpy()
  normed = lambda e: e / np.linalg.norm(e, axis=1, keepdims=True)
  similarity = normed(embed(images[20:])) @ normed(embed(images[:20])).T
  correct = 0
  for row, label in zip(similarity, labels[20:]):
    votes = np.zeros(3)
    for j in np.argsort(-row)[:5]:
      votes[labels[j]] += np.exp(row[j] / 0.5)
    correct += votes.argmax() == label
  assert len(logs['knn_top1']) == 2
  assert logs['knn_top1'][-1] == pytest.approx(correct / 10)
  # The same vote from arrays and from a PyDataset (the other backends' data).

  class Batches(keras.utils.PyDataset):
    def __init__(self):
      super().__init__()

    def __len__(self):
      return 3

    def __getitem__(self, index):
      return (images[20 + 4 * index:24 + 4 * index],
              labels[20 + 4 * index:24 + 4 * index])

  for bank_data, query_data in (((images[:20], labels[:20]), Batches()),
                                ((images[:20], labels[:20]),
                                 (images[20:], labels[20:]))):
    monitor = KnnMonitor(bank_data, query_data, k=5, temperature=0.5,
                         batch_size=8)
    monitor.set_model(model)
    assert monitor.top1() == pytest.approx(correct / 10)
  with pytest.raises(ValueError, match='KnnMonitor bank must be'):
    KnnMonitor(images, queries)


def _mlp(features=6):
  return keras.Sequential([keras.Input((features,)),
                           keras.layers.Dense(8, activation='relu')])


def test_rows_train_as_one_view_each_or_as_views():
  rng = np.random.default_rng(0)
  rows = rng.normal(size=(8, 6)).astype(np.float32)
  labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
  model = SupConModel(_mlp(), 3, num_views=1, projection_head_layers=(4,))
  assert model.example_rank == 1  # From the encoder's Input.
  loss = ContrastiveLoss(temperature=0.5)
  model.compile(optimizer=keras.optimizers.SGD(0.), loss=loss)
  # One view, no augmentation: the rows as they are, [B, 1, F].
  want = np.mean(loss.call(
      labels, model(rows[:, None], training=True)['projection']))
  got = model.fit(rows, labels, batch_size=8, epochs=1, verbose=0)
  np.testing.assert_allclose(got.history['loss'][0], want, rtol=1e-5)
  # Views of rows [B, V, F] train as views.
  views = np.stack([rows, rows + 0.1], axis=1)
  two = np.mean(loss.call(labels, model(views, training=True)['projection']))
  # A fresh step function: TensorFlow would trace the old one again with
  # shapes of unknown rank.
  model.compile(optimizer=keras.optimizers.SGD(0.), loss=loss)
  got = model.fit(views, labels, batch_size=8, epochs=1, verbose=0)
  np.testing.assert_allclose(got.history['loss'][0], two, rtol=1e-5)
  assert abs(two - want) > 1e-3
  # Two views asked for and no augmentation: one line saying what to give.
  model = SupConModel(_mlp(), 3, projection_head_layers=(4,))
  model.compile(optimizer='sgd', loss=loss)
  with pytest.raises(ValueError, match=r'fit got examples of shape \(8, 6\) '
                     'and no augmentation.*or with num_views=1'):
    model.fit(rows, labels, batch_size=8, verbose=0)
  with pytest.raises(ValueError, match=r'Inputs of shape \(8, 6, 1, 1\): this '
                     'model takes examples of rank 1'):
    model(rows[:, :, None, None])
  simclr = SupConModel(_mlp(), 3, num_views=1, projection_head_layers=(4,))
  simclr.compile(optimizer='sgd', loss=ContrastiveLoss(use_labels=False))
  with pytest.raises(ValueError, match='needs two views or more'):
    simclr.fit(rows, labels, batch_size=8, verbose=0)


@keras.saving.register_keras_serializable(package='tests')
class TokenDrop(keras.layers.Layer):
  """A view of a sentence: each token id replaced by 0 with p = 0.3."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.seeds = keras.random.SeedGenerator(0)

  def call(self, ids, training=None):
    keep = keras.random.uniform(keras.ops.shape(ids), seed=self.seeds) > 0.3
    return ids * keras.ops.cast(keep, ids.dtype)


def test_token_ids_take_an_augmentation_layer_and_round_trip():
  tokens = keras.Sequential([keras.Input((5,), dtype='int32'),
                             keras.layers.Embedding(20, 8),
                             keras.layers.GlobalAveragePooling1D()])
  masking = TokenDrop()
  ids = np.random.default_rng(1).integers(1, 20, (8, 5)).astype(np.int32)
  labels = np.arange(8) % 2
  model = SupConModel(tokens, 2, augmentation=masking, num_views=2,
                      projection_head_layers=(4,))
  model.compile(optimizer='adam', loss=ContrastiveLoss(temperature=0.5),
                probe_optimizer='adam')
  views = model._views(ids)
  assert views.shape == (8, 2, 5)
  history = model.fit(ids, labels, batch_size=8, epochs=2, verbose=0)
  assert np.isfinite(history.history['loss']).all()
  assert model(ids)['embeddings'].shape == (8, 8)
  config = model.get_config()
  assert config['example_rank'] == 1
  assert SupConModel.from_config(config).example_rank == 1


def test_the_tabular_example_ends_with_its_probe_top1(tmp_path):
  import os
  import subprocess
  import sys
  example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))), 'examples', 'tabular.py')
  done = subprocess.run(
      [sys.executable, example, '--epochs=3', '--num_views=1', '--noise=0',
       '--dropout=0'], capture_output=True, text=True, timeout=600,
      cwd=tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  lines = done.stdout.strip().splitlines()
  assert '398 training rows, 171 test rows; 1 view(s) a row' in lines[0]
  top1 = float(lines[-1].removeprefix('probe test top-1: '))
  # 171 test rows: a multiple of 1/171 (printed to 4 digits).
  assert 0.5 <= top1 <= 1 and abs(top1 * 171 - round(top1 * 171)) < 0.01
