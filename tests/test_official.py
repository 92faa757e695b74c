"""Official checkpoints: written by the official code (tests/fixtures/official,
made by tests/fixtures/make_official_fixtures.py), read into the port's model,
the converter's SavedModel signatures, and warm starts."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import official
from supcon_tf.presets import make_config
from supcon_tf.models import layers
from supcon_tf.training import run as run_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'official')
OUTPUTS = ('unnormalized_embeddings', 'embeddings', 'projection', 'logits')
# The official flags each fixture was written with.
FLAGS = {
    'resnet18': dict(resnet_depth=18, resnet_width=0.125, image_size=16,
                     first_conv_kernel_size=3, first_conv_stride=1,
                     use_initial_max_pool=False,
                     projection_head_layers=(32, 16)),
    'resnet50': dict(resnet_depth=50, resnet_width=0.0625, image_size=32,
                     first_conv_kernel_size=7, first_conv_stride=2,
                     use_initial_max_pool=True,
                     projection_head_layers=(64, 16),
                     use_projection_batch_norm=True,
                     use_projection_batch_norm_beta=False),
    'resnext50': dict(resnet_depth=50, resnet_architecture='RESNEXT',
                      first_conv_kernel_size=7, first_conv_stride=2,
                      use_initial_max_pool=True,
                      projection_head_layers=(2048, 128),
                      use_projection_batch_norm=True,
                      use_projection_batch_norm_beta=False),
}
CLASSES = {'resnet18': 10, 'resnet50': 7, 'resnext50': 100}


def _model(name, **changes):
  config = make_config(**{**FLAGS[name], **changes})
  model = run_lib.build_model(config, CLASSES[name])
  model(tf.zeros([1, config.image_size, config.image_size, 3]))
  return model


def _assert_outputs_equal(got, want):
  for key in OUTPUTS:
    scale = np.abs(want[key]).max()
    np.testing.assert_allclose(np.asarray(got[key]) / scale, want[key] / scale,
                               atol=1e-5, err_msg=key)


def _official_outputs(name, mode):
  data = np.load(os.path.join(FIXTURES, name, 'outputs.npz'))
  return data['images'], {k: data[f'{mode}_{k}'] for k in OUTPUTS}


@pytest.mark.parametrize('name', ['resnet18', 'resnet50'])
def test_official_checkpoints_compute_what_the_official_model_computed(name):
  model = _model(name)
  restored = official.restore_official(model, os.path.join(FIXTURES, name))
  with open(os.path.join(FIXTURES, name, 'variables.json')) as f:
    assert restored == sorted(json.load(f))  # Every variable, under 'outer/'.
  images, want = _official_outputs(name, 'eval')
  _assert_outputs_equal(model(images, training=False), want)
  # Training mode: batch statistics, the moving averages left alone.
  images, want = _official_outputs(name, 'train')
  before = [v.numpy() for v in model.non_trainable_variables]
  layers.freeze_moving_statistics(model, True)
  try:
    _assert_outputs_equal(model(images, training=True), want)
  finally:
    layers.freeze_moving_statistics(model, False)
  for old, new in zip(before, model.non_trainable_variables):
    np.testing.assert_array_equal(old, new.numpy())


def test_resnext_names_and_shapes_are_the_official_ones():
  with open(os.path.join(FIXTURES, 'resnext50', 'variables.json')) as f:
    want = json.load(f)
  names = official.official_names(_model('resnext50'))
  # The official layers under a variable scope 'outer' are named 'outer//...'.
  got = {'outer//' + official.SCOPE + n: list(v.shape)
         for n, v in names.items()}
  assert got == want


def test_mismatches_are_named_and_nothing_is_half_restored():
  path = os.path.join(FIXTURES, 'resnet18')
  # One projection layer where the checkpoint has two.
  model = _model('resnet18', projection_head_layers=(16,))
  kernel = model.projection_head.dense[0].kernel
  initial = kernel.numpy()
  with pytest.raises(ValueError) as error:
    official.restore_official(model, path)
  message = str(error.value)
  assert 'ProjectionHead/dense/kernel has shape [64, 32]' in message
  assert 'ProjectionHead/dense_1/kernel is in the checkpoint but not' in message
  assert 'Momentum' not in message  # Optimizer slots are not variables.
  np.testing.assert_array_equal(kernel.numpy(), initial)
  stem = model.encoder.stem.kernel.numpy()
  # Skipped with ignore_missing; the encoder alone when asked for.
  restored = official.restore_official(model, path, ignore_missing=True)
  assert not any('ProjectionHead/dense' in n for n in restored)
  assert not np.array_equal(model.encoder.stem.kernel.numpy(), stem)
  fresh = _model('resnet18')
  head = fresh.classification_head.dense.kernel.numpy()
  restored = official.restore_official(fresh, path, parts=('encoder',))
  assert all('/Encoder/' in n for n in restored)
  np.testing.assert_array_equal(fresh.classification_head.dense.kernel, head)
  with pytest.raises(ValueError, match='ResNet-18..200'):
    official.restore_official(_model('resnet18', resnet_depth=20), path)
  with pytest.raises(ValueError, match='No checkpoint in the directory'):
    official.restore_official(model, FIXTURES)


def test_converted_savedmodel_has_the_official_signatures(tmp_path):
  flags = FLAGS['resnet18']
  command = [
      sys.executable, os.path.join(ROOT, 'bin', 'convert_official.py'),
      f'--checkpoint={os.path.join(FIXTURES, "resnet18")}',
      f'--model_dir={tmp_path}', '--input_fn=cifar10',
      '--apply_whitening=false', f'--resnet_depth={flags["resnet_depth"]}',
      f'--resnet_width={flags["resnet_width"]}',
      f'--image_size={flags["image_size"]}', '--projection_head_layers=32,16',
      '--first_conv_kernel_size=3', '--first_conv_stride=1',
      '--use_initial_max_pool=false']
  done = subprocess.run(command, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert '110 variables from' in done.stdout
  loaded = tf.saved_model.load(str(tmp_path / 'export'))
  for signature, mode in (('contrastive_eval', 'eval'),
                          ('contrastive_train', 'train')):
    images, want = _official_outputs('resnet18', mode)
    got = loaded.signatures[signature](images=tf.constant(images))
    assert sorted(got) == sorted(OUTPUTS)
    _assert_outputs_equal({k: v.numpy() for k, v in got.items()}, want)
  # The port's own checkpoint holds the same model.
  model = _model('resnet18')
  tf.train.Checkpoint(model=model).read(
      str(tmp_path / 'converted' / 'ckpt')).assert_existing_objects_matched()
  images, want = _official_outputs('resnet18', 'eval')
  _assert_outputs_equal(model(images, training=False), want)
  bad = subprocess.run(
      command[:3] + [f'--model_dir={tmp_path / "x"}', '--input_fn=folder'],
      capture_output=True, text=True, timeout=600)
  assert bad.returncode != 0 and '--num_classes' in bad.stderr
  # A checkpoint that does not fit the flags: one line naming a variable.
  wrong = subprocess.run(command + ['--projection_head_layers=16'],
                         capture_output=True, text=True, timeout=600)
  assert wrong.returncode == 2 and 'Traceback' not in wrong.stderr
  assert 'ProjectionHead/dense' in wrong.stderr.strip().splitlines()[-1]


def test_warm_started_classifier_stage_keeps_the_official_encoder(tmp_path):
  # Stage 2 only, on the official encoder: every BatchNorm in inference mode
  # (no --batch_norm_in_train_mode), so the encoder is exactly as written.
  config = make_config(
      **{**FLAGS['resnet18'], 'image_size': 32}, input_fn='digits',
      model_dir=str(tmp_path), mode='train_then_eval',
      augmentation_type='IDENTITY',
      reference_ckpt=os.path.join(FIXTURES, 'resnet18'),
      warm_start_encoder=True, stage_1_epochs=0, stage_2_epochs=1,
      batch_size=128, progress=False, plot=False, export=False)
  assert not config.batch_norm_training
  results = run_lib.run(config)
  assert results['stage_2_steps'] > 0 and 0 <= results['test_top1'] <= 1
  model = _model('resnet18')
  official.restore_official(model, config.reference_ckpt, parts=('encoder',))
  trained = run_lib.build_model(config, results['num_classes'])
  trained(tf.zeros([1, 32, 32, 3]))
  tf.train.Checkpoint(model=trained).read(tf.train.latest_checkpoint(
      str(tmp_path / 'stage_2'))).expect_partial()
  for want, got in zip(model.encoder.variables, trained.encoder.variables):
    np.testing.assert_array_equal(want.numpy(), got.numpy())
  with pytest.raises(ValueError, match='no part is chosen'):
    make_config(reference_ckpt=config.reference_ckpt)
