"""The Keras core on JAX: it imports and fits with TensorFlow unimportable,
and computes what the TensorFlow backend computes from the same weights and
views (the loss over the option grid, the official vectors, one fit step with
its BatchNorm statistics, `.keras` files both ways).

Keras picks its backend when imported, so each JAX side runs in a process of
its own (`run_jax`); arrays travel through .npz files."""
import itertools
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.losses import ContrastiveLoss, contrastive_loss
from supcon_tf.models import build_encoder
from supcon_tf.training.fit import SupConModel
from tests import test_losses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run first in a JAX process: `import tensorflow` (and its submodules) fails.
BLOCK_TENSORFLOW = '''
import importlib.abc, sys
class _NoTensorFlow(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name == 'tensorflow' or name.startswith('tensorflow.'):
      raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, _NoTensorFlow())
'''


def run_jax(code, cwd, block_tensorflow=True):
  """Runs `code` under KERAS_BACKEND=jax in a fresh interpreter; its
  stdout."""
  env = dict(os.environ, KERAS_BACKEND='jax', JAX_PLATFORMS='cpu',
             PYTHONPATH=ROOT)
  prelude = BLOCK_TENSORFLOW if block_tensorflow else ''
  done = subprocess.run(
      [sys.executable, '-c', prelude + textwrap.dedent(code)], cwd=cwd,
      env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-4000:]
  return done.stdout


def test_the_core_imports_and_fits_under_jax_without_tensorflow(tmp_path):
  out = run_jax('''
    import sys
    import keras, numpy as np
    from supcon_tf.data import arrays
    from supcon_tf.losses import ContrastiveLoss
    from supcon_tf.models import build_encoder
    from supcon_tf.training.fit import KnnMonitor, SupConModel
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (32, 16, 16, 3)).astype('float32')
    labels = rng.integers(0, 4, 32)
    views = keras.Sequential([keras.layers.RandomFlip('horizontal'),
                              keras.layers.RandomTranslation(0.1, 0.1)])
    for encoder in (build_encoder('resnet20'), keras.Sequential(
        [keras.layers.Conv2D(8, 3, activation='relu'),
         keras.layers.GlobalAveragePooling2D()])):
      model = SupConModel(encoder, num_classes=4, augmentation=views)
      model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                    loss=ContrastiveLoss(temperature=0.1),
                    probe_optimizer=keras.optimizers.Adam(1e-2))
      history = model.fit(images, labels, batch_size=16, epochs=2, verbose=0,
                          callbacks=[KnnMonitor((images, labels),
                                                (images, labels), k=5)])
      print(encoder.name, sorted(history.history),
            np.isfinite(history.history['loss']).all())
    print('tensorflow imported:', 'tensorflow' in sys.modules)
  ''', tmp_path)
  lines = out.strip().splitlines()
  assert lines[-1] == 'tensorflow imported: False'
  for line in lines[-3:-1]:
    assert line.endswith("['knn_top1', 'loss', 'probe_loss', 'probe_top1'] "
                         'True'), line
  assert lines[-3].startswith('resnet20')


def _grid():
  """Every option set of the loss (with labels of three kinds)."""
  for mode, summation, denominator, cap, labels in itertools.product(
      ('all_views', 'one_view'), ('outside', 'inside'),
      ('all', 'one_positive', 'only_negatives'), (-1, 2),
      ('ids', 'multi_hot', 'none')):
    yield dict(contrast_mode=mode, summation_location=summation,
               denominator_mode=denominator, positives_cap=cap,
               temperature=0.2, scale_by_temperature=cap == -1,
               base_temperature=0.07 if mode == 'one_view' else None), labels


def test_the_loss_under_jax_equals_tensorflow_over_the_option_grid(tmp_path):
  rng = np.random.default_rng(0)
  features = rng.normal(size=(10, 2, 6)).astype(np.float32)
  features /= np.linalg.norm(features, axis=-1, keepdims=True)
  labels = {'ids': rng.integers(0, 3, 10),
            'multi_hot': (rng.uniform(size=(10, 4)) < 0.4).astype(np.int32),
            'none': None}
  labels['multi_hot'][:, 0] = 1 - labels['multi_hot'][:, 1:].max(1)
  cases = list(_grid())
  # The official test vectors of the one-hot batch, as test_losses lists them.
  official = [mark for mark in
              test_losses.test_official_vectors_one_hot.pytestmark
              if mark.args[0] == 'summation,denominator,cap,expected'][0].args[1]
  np.savez(tmp_path / 'inputs.npz', features=features, ids=labels['ids'],
           multi_hot=labels['multi_hot'],
           official_features=test_losses.FEATURES,
           official_one_hot=test_losses.ONE_HOT)
  (tmp_path / 'cases.json').write_text(json.dumps(cases))
  (tmp_path / 'official.json').write_text(json.dumps(
      [case[:3] for case in official]))
  run_jax('''
    import json
    import jax, numpy as np
    from supcon_tf.losses import contrastive_loss
    inputs = dict(np.load('inputs.npz'))
    cases = json.load(open('cases.json'))
    results = {}
    for i, (options, kind) in enumerate(cases):
      labels = None if kind == 'none' else inputs[kind]
      loss = lambda f: contrastive_loss(f, labels, **options)
      results[f'loss{i}'] = np.asarray(loss(inputs['features']))
      results[f'grad{i}'] = np.asarray(jax.grad(
          lambda f: (loss(f) * np.arange(1., 11.)).sum())(inputs['features']))
    for i, (summation, denominator, cap) in enumerate(
        json.load(open('official.json'))):
      results[f'official{i}'] = np.asarray(contrastive_loss(
          inputs['official_features'], inputs['official_one_hot'],
          summation_location=summation, denominator_mode=denominator,
          positives_cap=cap))
    np.savez('jax.npz', **results)
  ''', tmp_path)
  jax_results = np.load(tmp_path / 'jax.npz')
  weights = tf.range(1., 11.)
  for i, (options, kind) in enumerate(cases):
    features = tf.constant(features)
    with tf.GradientTape() as tape:
      tape.watch(features)
      loss = contrastive_loss(features, labels[kind], **options)
      weighted = tf.reduce_sum(loss * weights)
    grad = tape.gradient(weighted, features).numpy()
    np.testing.assert_allclose(jax_results[f'loss{i}'], loss.numpy(),
                               rtol=1e-5, err_msg=f'{options} {kind}')
    np.testing.assert_allclose(jax_results[f'grad{i}'], grad, rtol=1e-4,
                               atol=1e-5 * np.abs(grad).max(),
                               err_msg=f'{options} {kind}')
  for i, (*options, expected) in enumerate(official):
    np.testing.assert_allclose(jax_results[f'official{i}'], expected,
                               rtol=1e-6, err_msg=str(options))


def _tensorflow_model():
  """A seed-style ResNet-20 SupConModel with a probe, built on 8 x 8 images
  and compiled as the JAX side will find it in its .keras file."""
  keras.utils.set_random_seed(0)
  model = SupConModel(build_encoder('resnet20', weight_init='seed'), 3,
                      projection_head_layers=(16,), weight_init='seed')
  model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                loss=ContrastiveLoss(temperature=0.5),
                probe_optimizer=keras.optimizers.Adam(1e-2))
  model(np.zeros((1, 8, 8, 3), np.float32))
  return model




def test_a_fit_step_under_jax_equals_tensorflow_and_keras_files_cross(
    tmp_path):
  """From one .keras file and the same views: every variable after one step
  (BatchNorm moving statistics, the probe's head included) within 1e-4 of
  its scale; the JAX side's .keras file loads here with its embeddings."""
  rng = np.random.default_rng(0)
  views = rng.normal(size=(8, 2, 8, 8, 3)).astype(np.float32)
  labels = rng.integers(0, 3, 8)
  images = views[:, 0]
  model = _tensorflow_model()
  model.save(tmp_path / 'before.keras')
  np.savez(tmp_path / 'batch.npz', views=views, labels=labels, images=images)
  embeddings_before = model(images, training=False)['embeddings'].numpy()
  model.train_on_batch(views, labels)
  run_jax('''
    import keras, numpy as np
    import supcon_tf.training.fit  # Registers SupConModel.
    batch = np.load('batch.npz')
    model = keras.saving.load_model('before.keras')
    before = np.asarray(model(batch['images'], training=False)['embeddings'])
    model.train_on_batch(batch['views'], batch['labels'])
    np.savez('after.npz', before=before,
             names=[v.name for v in model.weights],
             **{f'w{i}': np.asarray(v) for i, v in enumerate(model.weights)})
    model.save('after.keras')
  ''', tmp_path)
  after = np.load(tmp_path / 'after.npz')
  np.testing.assert_allclose(after['before'], embeddings_before, atol=1e-5)
  # Variables in the same order on both sides (their paths differ: a loaded
  # model's lack the model's name).
  assert list(after['names']) == [v.name for v in model.weights]
  moved = 0
  for i, variable in enumerate(model.weights):
    value = np.asarray(variable)
    scale = max(np.abs(value).max(), 1e-3)
    np.testing.assert_allclose(after[f'w{i}'], value, atol=1e-4 * scale,
                               err_msg=variable.path)
    moved += variable.name.startswith('moving')
  assert moved > 20  # The BatchNorm statistics are among them.
  loaded = keras.saving.load_model(tmp_path / 'after.keras')
  np.testing.assert_allclose(
      loaded(images, training=False)['embeddings'].numpy(),
      model(images, training=False)['embeddings'].numpy(), atol=1e-4)
  # The optimizer's state came back with it: the next step is the same too.
  assert int(loaded.optimizer.iterations) == 1
