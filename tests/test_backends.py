"""The Keras core on JAX and PyTorch: it imports and fits with TensorFlow
unimportable, and computes what the TensorFlow backend computes from the same
weights and views (the loss over the option grid, the official vectors, one
fit step with its BatchNorm statistics, `.keras` files both ways, a converted
seed checkpoint).

Keras picks its backend when imported, so each other backend runs in a
process of its own (`run_backend`); arrays travel through .npz files."""
import importlib.util
import itertools
import json
import os
import pickle
import subprocess
import sys
import tarfile
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

# Run first in the other backend's process: `import tensorflow` (and its
# submodules) fails; `importlib.util.find_spec` still answers (PyTorch asks).
BLOCK_TENSORFLOW = '''
import importlib.abc, importlib.machinery, sys
class _NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  def find_spec(self, name, path, target=None):
    if name == 'tensorflow' or name.startswith('tensorflow.'):
      return importlib.machinery.ModuleSpec(name, self)
  def create_module(self, spec):
    raise ImportError(f'{spec.name} is blocked in this test')
  def exec_module(self, module):
    pass
sys.meta_path.insert(0, _NoTensorFlow())
'''
# gradient(f, x): d sum(f(x)) / dx as NumPy, in the backend's own autodiff.
GRADIENT = {
    'jax': '''
import jax
def gradient(f, x):
  return np.asarray(jax.grad(lambda x: f(x).sum())(x))
''',
    'torch': '''
import torch
def gradient(f, x):
  x = torch.tensor(x, requires_grad=True)
  f(x).sum().backward()
  return x.grad.numpy()
''',
}
BACKENDS = [
    'jax',
    pytest.param('torch', marks=pytest.mark.skipif(
        importlib.util.find_spec('torch') is None,
        reason='PyTorch is not installed (requirements.txt installs it)')),
]


def run_backend(backend, code, cwd, stderr=False, **env):
  """Runs `code` under KERAS_BACKEND=`backend` in a fresh interpreter where
  TensorFlow cannot be imported, with numpy as np and `gradient`, and
  the environment variables `env`; its stdout (with `stderr`, stdout and
  stderr)."""
  env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS='cpu',
             PYTHONPATH=ROOT, **env)
  prelude = (BLOCK_TENSORFLOW + 'import keras\nimport numpy as np\n' +
             GRADIENT[backend])
  done = subprocess.run(
      [sys.executable, '-c', prelude + textwrap.dedent(code)], cwd=cwd,
      env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-4000:]
  return (done.stdout, done.stderr) if stderr else done.stdout


@pytest.mark.parametrize('backend', BACKENDS)
def test_the_core_imports_and_fits_without_tensorflow(tmp_path, backend):
  out = run_backend(backend, '''
    import sys
    import keras
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
      history = model.fit(images, labels, batch_size=16, epochs=1, verbose=0,
                          callbacks=[KnnMonitor((images, labels),
                                                (images, labels), k=5)])
      print(encoder.name, sorted(history.history),
            np.isfinite(history.history['loss']).all())
    # What only TensorFlow does, and bad arguments: one line each.
    from supcon_tf.losses import contrastive_loss
    for attempt in (
        lambda: SupConModel(encoder, 4, memory_size=8),
        lambda: model.compile(micro_batch_size=4),
        lambda: model.export('served'),
        lambda: contrastive_loss(np.ones((4, 2, 3)), np.arange(4),
                                 positives_cap=3),
        lambda: contrastive_loss(np.ones((4, 2, 3)), np.arange(4),
                                 temperature=0.)):
      try:
        attempt()
        print('no error')
      except ValueError as error:
        print('error:', error)
    print('tensorflow imported:', 'tensorflow' in sys.modules)
  ''', tmp_path)
  lines = out.strip().splitlines()
  assert lines[-1] == 'tensorflow imported: False'
  errors = lines[-6:-1]
  assert all(line.startswith('error: ') for line in errors), errors
  for line, words in zip(errors, (
      'memory_size (a cross-batch memory) needs the TensorFlow backend',
      'micro_batch_size (gradient caching) needs the TensorFlow backend',
      'export writes a TensorFlow SavedModel',
      'must be a multiple of the number of views',
      'temperature must be a positive finite number')):
    assert words in line, line
  fits = lines[-8:-6]
  for line in fits:
    assert line.endswith("['knn_top1', 'loss', 'probe_loss', 'probe_top1'] "
                         'True'), line
  assert fits[0].startswith('resnet20')


def _grid():
  """Every option set of the loss, each with labels of one of three kinds
  (class ids, multi-hot, none), in turns that give every value of every
  option each kind."""
  kinds = ('ids', 'multi_hot', 'none')
  for i, (mode, summation, denominator, cap) in enumerate(itertools.product(
      ('all_views', 'one_view'), ('outside', 'inside'),
      ('all', 'one_positive', 'only_negatives'), (-1, 2))):
    yield dict(contrast_mode=mode, summation_location=summation,
               denominator_mode=denominator, positives_cap=cap,
               temperature=0.2, scale_by_temperature=cap == -1,
               base_temperature=0.07 if mode == 'one_view' else None), kinds[
                   (i + i // 6) % 3]


@pytest.mark.parametrize('backend', BACKENDS)
def test_the_loss_equals_tensorflow_over_the_option_grid(tmp_path, backend):
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
  run_backend(backend, '''
    import json
    from supcon_tf.losses import contrastive_loss
    inputs = dict(np.load('inputs.npz'))
    cases = json.load(open('cases.json'))
    results = {}
    for i, (options, kind) in enumerate(cases):
      labels = None if kind == 'none' else inputs[kind]
      loss = lambda f: contrastive_loss(f, labels, **options)
      results[f'loss{i}'] = keras.ops.convert_to_numpy(
          loss(inputs['features']))
      results[f'grad{i}'] = gradient(
          lambda f: loss(f) * keras.ops.arange(1., 11.), inputs['features'])
    for i, (summation, denominator, cap) in enumerate(
        json.load(open('official.json'))):
      results[f'official{i}'] = keras.ops.convert_to_numpy(contrastive_loss(
          inputs['official_features'], inputs['official_one_hot'],
          summation_location=summation, denominator_mode=denominator,
          positives_cap=cap))
    np.savez('results.npz', **results)
  ''', tmp_path)
  other = np.load(tmp_path / 'results.npz')
  weights = tf.range(1., 11.)
  for i, (options, kind) in enumerate(cases):
    features = tf.constant(features)
    with tf.GradientTape() as tape:
      tape.watch(features)
      loss = contrastive_loss(features, labels[kind], **options)
      weighted = tf.reduce_sum(loss * weights)
    grad = tape.gradient(weighted, features).numpy()
    np.testing.assert_allclose(other[f'loss{i}'], loss.numpy(),
                               rtol=1e-5, err_msg=f'{options} {kind}')
    np.testing.assert_allclose(other[f'grad{i}'], grad, rtol=1e-4,
                               atol=1e-5 * np.abs(grad).max(),
                               err_msg=f'{options} {kind}')
  for i, (*options, expected) in enumerate(official):
    np.testing.assert_allclose(other[f'official{i}'], expected,
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




OBJECTIVE = '''
import json
from supcon_tf.training.objective import Objective
batch = np.load('objective.npz')
decayed = [keras.Variable(batch['kernel']), keras.Variable(batch['bias'])]
objective = Objective(global_batch=12, replicas=2, contrastive_weight=0.5,
                      cross_entropy_weight=2., temperature=0.2,
                      label_smoothing=0.1, num_classes=3, weight_decay=1e-2,
                      decayed=tuple(decayed))
terms, total = objective({'projection': batch['projection'],
                          'logits': batch['logits']}, batch['labels'])
values = dict(terms, total=total, weight_decay=objective.decay())
print(json.dumps({k: float(keras.ops.convert_to_numpy(v))
                  for k, v in values.items()}))
'''


def _objective_in_float64(projection, logits, labels, kernel, bias):
  """The objective's terms for OBJECTIVE's settings, in float64 NumPy."""
  from tests.reference import reference_loss
  global_batch, replicas, smoothing, classes = 12, 2, 0.1, 3
  contrastive = reference_loss(projection.astype(np.float64), labels,
                               temperature=0.2).sum() / global_batch
  first = logits[:, 0].astype(np.float64)
  log_softmax = first - np.log(np.exp(first).sum(1, keepdims=True))
  target = np.eye(classes)[labels] * (1 - smoothing) + smoothing / classes
  cross_entropy = -(target * log_softmax).sum() / global_batch
  top1 = (first.argmax(1) == labels).sum() / global_batch
  # The regular simplex's loss per anchor (docs/LOSS.md), scaled by tau.
  counts = np.bincount(labels, minlength=classes)
  views = 2 * counts
  spread = np.exp(-classes / ((classes - 1) * 0.2))
  floor = 0.2 * (np.log(views - 1 + (views.sum() - views) * spread) *
                 counts).sum() / counts.sum() / replicas
  decay = 1e-2 * ((kernel.astype(np.float64) ** 2).sum() +
                  (bias.astype(np.float64) ** 2).sum()) / 2 / replicas
  return {'contrastive_loss': contrastive, 'cross_entropy_loss': cross_entropy,
          'train_top1': top1, 'loss_floor': floor, 'weight_decay': decay,
          'total': 0.5 * contrastive + 2 * cross_entropy}


@pytest.mark.parametrize('backend', BACKENDS)
def test_the_objective_is_one_on_every_backend(tmp_path, backend):
  """`objective.Objective`, written once in keras.ops: the contrastive term,
  the floor, the cross-entropy with label smoothing, its top-1 and weight
  decay, each this replica's share, under TensorFlow and under `backend`
  as float64 NumPy computes them."""
  rng = np.random.default_rng(3)
  projection = rng.normal(size=(6, 2, 4)).astype(np.float32)
  projection /= np.linalg.norm(projection, axis=-1, keepdims=True)
  arrays = dict(projection=projection, labels=np.array([0, 1, 2, 0, 1, 1]),
                logits=rng.normal(size=(6, 2, 3)).astype(np.float32),
                kernel=rng.normal(size=(4, 3)).astype(np.float32),
                bias=rng.normal(size=(3,)).astype(np.float32))
  np.savez(tmp_path / 'objective.npz', **arrays)
  want = _objective_in_float64(*(arrays[k] for k in (
      'projection', 'logits', 'labels', 'kernel', 'bias')))
  here = {}
  previous = os.getcwd()
  os.chdir(tmp_path)
  try:
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()) as printed:
      exec(OBJECTIVE, {'np': np, 'keras': keras})
    here = json.loads(printed.getvalue())
  finally:
    os.chdir(previous)
  there = json.loads(run_backend(backend, OBJECTIVE, tmp_path))
  for got in (here, there):
    assert sorted(got) == sorted(want)
    for key, value in want.items():
      np.testing.assert_allclose(got[key], value, rtol=1e-5, err_msg=key)


@pytest.mark.parametrize('backend', BACKENDS)
def test_a_fit_step_equals_tensorflow_and_keras_files_cross(tmp_path,
                                                             backend):
  """From one .keras file and the same views: every variable after one step
  (BatchNorm moving statistics, the probe's head included) within 1e-4 of
  its scale, and so on two JAX devices; the other side's .keras file loads
  here with its embeddings."""
  rng = np.random.default_rng(0)
  views = rng.normal(size=(8, 2, 8, 8, 3)).astype(np.float32)
  labels = rng.integers(0, 3, 8)
  images = views[:, 0]
  model = _tensorflow_model()
  model.save(tmp_path / 'before.keras')
  np.savez(tmp_path / 'batch.npz', views=views, labels=labels, images=images)
  embeddings_before = model(images, training=False)['embeddings'].numpy()
  model.train_on_batch(views, labels)
  out = run_backend(backend, '''
    import keras
    import supcon_tf.training.fit  # Registers SupConModel.
    batch = np.load('batch.npz')
    model = keras.saving.load_model('before.keras')
    before = keras.ops.convert_to_numpy(
        model(batch['images'], training=False)['embeddings'])
    model.train_on_batch(batch['views'], batch['labels'])
    np.savez('after.npz', before=before,
             names=[v.name for v in model.weights],
             **{f'w{i}': keras.ops.convert_to_numpy(v)
                for i, v in enumerate(model.weights)})
    model.save('after.keras')
    if keras.backend.backend() == 'jax':
      # The same step on two devices, the batch split between them: the
      # jitted step sees the global batch (contrast set, BatchNorm).
      keras.distribution.set_distribution(keras.distribution.DataParallel())
      parallel = keras.saving.load_model('before.keras')
      parallel.train_on_batch(batch['views'], batch['labels'])
      assert len(keras.distribution.list_devices()) == 2
      print('largest difference on two devices:', max(
          float(np.abs(keras.ops.convert_to_numpy(a) -
                       keras.ops.convert_to_numpy(b)).max() /
                max(np.abs(keras.ops.convert_to_numpy(b)).max(), 1e-3))
          for a, b in zip(parallel.weights, model.weights)))
  ''', tmp_path, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  if backend == 'jax':
    assert float(out.split('two devices:')[1]) < 1e-4
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


@pytest.mark.parametrize('backend', BACKENDS)
def test_a_converted_seed_checkpoint_gives_the_seed_outputs(tmp_path,
                                                            backend):
  """The seed's .pth restored under TensorFlow, saved as .keras: under JAX
  its outputs are the seed's own (eval and train-mode BatchNorm)."""
  from supcon_tf import seed_checkpoint
  from supcon_tf.presets import make_config
  from supcon_tf.training import run as run_lib
  from tests import test_seed_checkpoint
  model = run_lib.build_model(make_config(test_seed_checkpoint.SUPCON), 10)
  model(tf.zeros([1, 32, 32, 3]))
  seed_checkpoint.restore_seed(model, test_seed_checkpoint.PTH)
  model.save(tmp_path / 'seed.keras')
  run_backend(backend, f'''
    import keras
    import supcon_tf.models  # Registers the model's classes.
    reference = np.load({os.path.join(test_seed_checkpoint.FIXTURES,
                                      'reference.npz')!r})
    model = keras.saving.load_model('seed.keras')
    outputs = {{}}
    for mode in ('eval', 'train'):
      out = model(reference['inputs'], training=mode == 'train')
      for key in ('logits', 'projection'):
        outputs[f'{{mode}}/{{key}}'] = keras.ops.convert_to_numpy(out[key])
    np.savez('outputs.npz', **outputs)
  ''', tmp_path)
  reference = np.load(os.path.join(test_seed_checkpoint.FIXTURES,
                                   'reference.npz'))
  outputs = np.load(tmp_path / 'outputs.npz')
  for key in outputs.files:
    want = reference[key]
    assert np.abs(outputs[key] - want).max() / np.abs(want).max() < 1e-5, key


@pytest.mark.parametrize('name', ['cifar10', 'cifar100'])
def test_cifar_archives_read_into_numpy_under_jax(tmp_path, name):
  """`arrays.load_cifar` without TensorFlow: the images and labels the
  command line's source reads, in the CIFAR layout (rows of 1024 red, then
  green, then blue)."""
  from supcon_tf.data import arrays, sources
  from tests import archives
  (archives.tiny_cifar10 if name == 'cifar10' else archives.tiny_cifar100)(
      tmp_path)
  label_type = 'fine' if name == 'cifar10' else 'coarse'
  run_backend('jax', f'''
    from supcon_tf.data import arrays
    splits, names = arrays.load_cifar({name!r}, '.', {label_type!r})
    np.savez('arrays.npz', names=names,
             **{{f'{{s}}_{{i}}': a for s, pair in splits.items()
                for i, a in enumerate(pair)}})
  ''', tmp_path)
  got = np.load(tmp_path / 'arrays.npz')
  source = sources.load_source(name, str(tmp_path), label_type=label_type)
  assert list(got['names']) == source.class_names
  for split in ('train', 'test'):
    np.testing.assert_array_equal(got[f'{split}_0'],
                                  source.split(split).images)
    np.testing.assert_array_equal(got[f'{split}_1'],
                                  source.split(split).labels)
  archive, folder = arrays.CIFAR_ARCHIVES[name]
  with tarfile.open(tmp_path / archive) as tar:
    member = 'test_batch' if name == 'cifar10' else 'test'
    row = pickle.load(tar.extractfile(f'{folder}/{member}'),
                      encoding='bytes')[b'data'][0]
  first = got['test_0'][0]
  assert first.shape == (32, 32, 3) and first.dtype == np.uint8
  for channel in range(3):
    np.testing.assert_array_equal(
        first[..., channel].ravel(), row[channel * 1024:(channel + 1) * 1024])


@pytest.mark.parametrize('backend', BACKENDS)
def test_device_views_equal_the_tf_data_ops_and_train(tmp_path, backend):
  """The device views under this backend against the tf.data ops on the same
  images and draws (one grey level), and as a SupConModel's augmentation:
  uint8 batches in, a fit with a finite loss."""
  from tests import test_device_views
  arrays, expected = test_device_views.cases()
  np.savez(tmp_path / 'cases.npz', **arrays)
  run_backend(backend, '''
    from supcon_tf.data.device_views import DeviceViews
    from supcon_tf.losses import ContrastiveLoss
    from supcon_tf.models import build_encoder
    from supcon_tf.training.fit import SupConModel
    from tests import device_cases
    cases = dict(np.load('cases.npz'))
    np.savez('outputs.npz', **device_cases.outputs(cases))
    images = cases['images'][:32]
    model = SupConModel(build_encoder('resnet20'), num_classes=4,
                        augmentation=DeviceViews(seed=0, mean=[128.] * 3,
                                                 std=[64.] * 3))
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=ContrastiveLoss(temperature=0.1))
    history = model.fit(images, np.arange(32) % 4, batch_size=16, epochs=1,
                        verbose=0)
    np.save('loss.npy', history.history['loss'])
  ''', tmp_path)
  test_device_views.assert_within_a_grey_level(
      dict(np.load(tmp_path / 'outputs.npz')), expected)
  assert np.isfinite(np.load(tmp_path / 'loss.npy')).all()
