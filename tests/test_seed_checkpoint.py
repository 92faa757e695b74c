"""Checkpoints of the seed's PyTorch code, against outputs of its own code.

tests/fixtures/seed/ was written by tests/fixtures/make_seed_fixtures.py
beside the seed's code (PyTorch is not needed here): its ResNet-20 as its
train.py saves it, eight images, its outputs and loss on them, and its state
after three SupCon and three cross-entropy steps.

Tolerances: the forward outputs and the first step's loss agree to about
1e-6 of their scale. After three steps, float32 rounding alone moves the
seed's own code by up to 1.7% of the update (its state in float32 against
float64, whole model; 3% in the worst tensor, a BatchNorm beta): a ReLU
whose input lies within rounding of zero flips with the summation order.
The port measured 1.5% / 3.0% against it. The bounds below sit above that
and far below what a wrong rate, momentum form, loss scale or BatchNorm
update gives (100% and more).
"""
import dataclasses
import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import flags as flags_lib
from supcon_tf import losses, seed_checkpoint
from supcon_tf.presets import make_config
from supcon_tf.training import run as run_lib, stages
from tests import trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'seed')
PTH = os.path.join(FIXTURES, 'resnet20.pth')
SUPCON = 'seed_cifar10_resnet20_supcon_autoaugment'
CROSS_ENTROPY = 'seed_cifar10_resnet20_ce'
# The fixture's learning rates (make_seed_fixtures.py).
RATES = {'supcon': 0.02, 'cross_entropy': 0.05}


@pytest.fixture(scope='module')
def reference():
  return dict(np.load(os.path.join(FIXTURES, 'reference.npz')))


def _model(preset=SUPCON, **values):
  config = make_config(preset, **values)
  model = run_lib.build_model(config, 10)
  model(tf.zeros([1, 32, 32, 3]))
  return config, model


def _relative(got, want):
  return np.abs(got - want).max() / np.abs(want).max()


def test_read_pth_reads_what_torch_save_wrote(reference):
  checkpoint = seed_checkpoint.read_pth(PTH)
  assert sorted(checkpoint) == ['avg_loss', 'epoch', 'net']
  state = seed_checkpoint.seed_state_dict(checkpoint, PTH)
  assert len(state) == 120  # 19 conv, 19 x 5 BatchNorm, 3 Linear x 2.
  assert state['conv1.weight'].shape == (16, 3, 3, 3)
  assert state['conv1.weight'].dtype == np.float32
  assert state['layer3.2.bn2.running_var'].shape == (64,)
  assert state['bn1.num_batches_tracked'].dtype == np.int64
  assert state['linear.weight'].shape == (10, 64)
  assert seed_checkpoint.num_classes(state) == 10
  # kaiming_normal_ (std sqrt(2 / fan_in)) and the BatchNorm defaults.
  assert abs(state['layer3.0.conv2.weight'].std() / np.sqrt(2 / 576) - 1) < .1
  np.testing.assert_array_equal(state['bn1.weight'], np.ones(16))
  np.testing.assert_array_equal(state['bn1.running_var'], np.ones(16))


@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_converted_model_gives_the_seed_outputs(reference, mode):
  _, model = _model()
  restored = seed_checkpoint.restore_seed(model, PTH)
  assert len(restored) == 101 == len(model.variables)
  out = model(tf.constant(reference['inputs']), training=mode == 'train')
  for key in ('logits', 'projection'):
    assert _relative(out[key].numpy(), reference[f'{mode}/{key}']) < 1e-5


def test_the_seed_loss_is_the_port_loss_without_its_tau_factor(reference):
  # The seed concatenates view 0 of the batch, then view 1.
  projection = reference['train/projection'].reshape(2, 4, -1)
  per_anchor = losses.contrastive_loss(
      tf.constant(projection.transpose(1, 0, 2)),
      tf.constant(reference['supcon_labels'][:4]), temperature=0.07,
      scale_by_temperature=False)
  loss = float(tf.reduce_sum(per_anchor)) / 4
  assert abs(loss / float(reference['loss']) - 1) < 1e-5


def _train_three_steps(reference, name):
  """The port's own training step, three times, on the fixture's batch."""
  batch = 4 if name == 'supcon' else 8
  config, model = _model(
      SUPCON if name == 'supcon' else CROSS_ENTROPY, batch_size=batch,
      stage_1_base_learning_rate=RATES[name] * 256 / batch)
  seed_checkpoint.restore_seed(model, PTH)
  initial = {n: v.numpy().copy()
             for n, (v, _) in seed_checkpoint.seed_names(model).items()}
  # Five steps an epoch: the three steps run at the first epoch's rate.
  trainer = trainers.fixture_trainer(config, model)
  x = reference['inputs']
  if name == 'supcon':
    views = x.reshape(2, 4, 32, 32, 3).transpose(1, 0, 2, 3, 4)
    labels = reference['supcon_labels'][:4]
  else:
    views, labels = x[:, None], reference['labels']
  terms, _ = trainer.train_on_batches(stages.stage_from_config(config, 1),
                                      [(views, labels)] * 3)
  return model, initial, terms


@pytest.mark.parametrize('name', ['supcon', 'cross_entropy'])
def test_three_training_steps_match_the_seed(reference, name):
  model, initial, terms = _train_three_steps(reference, name)
  key = 'contrastive_loss' if name == 'supcon' else 'cross_entropy_loss'
  got = np.array([t[key] for t in terms])
  want = reference[f'{name}_losses']
  assert abs(got[0] / want[0] - 1) < 1e-5
  np.testing.assert_allclose(got, want, rtol=2e-3 if name == 'supcon' else 1e-4)
  moved, off, worst = [], [], {}
  for seed_name, (variable, layout) in seed_checkpoint.seed_names(
      model).items():
    now = variable.numpy().astype(np.float64)
    want = seed_checkpoint.to_port(reference[f'{name}/{seed_name}'],
                                   layout).astype(np.float64)
    start = initial[seed_name].astype(np.float64)
    if 'running' in seed_name:
      # The moving statistics: batch statistics, forward only.
      assert _relative(now, want) < 1e-3, seed_name
      continue
    update = np.linalg.norm(want - start)
    if update == 0:
      # What the seed's step leaves alone (no gradient reaches it) is left.
      np.testing.assert_array_equal(now, start, err_msg=seed_name)
      continue
    worst[seed_name] = np.linalg.norm(now - want) / update
    moved.append(want - start)
    off.append(now - want)
  # 19 convolutions and 19 BatchNorms (gamma, beta), then the two
  # projection Linear layers (SupCon) or the classifier (cross-entropy).
  assert len(worst) == (61 if name == 'supcon' else 59)
  assert max(worst.values()) < 0.1, max(worst, key=worst.get)
  whole = (np.linalg.norm(np.concatenate([d.ravel() for d in off])) /
           np.linalg.norm(np.concatenate([d.ravel() for d in moved])))
  assert whole < 0.05


def test_restore_seed_names_what_does_not_fit_and_assigns_nothing():
  _, model = _model(resnet_depth=32)
  kernel = model.encoder.stem.kernel.numpy()
  with pytest.raises(ValueError) as error:
    seed_checkpoint.restore_seed(model, PTH)
  message = str(error.value)
  assert 'layer1.3.conv1.weight is not in the checkpoint' in message
  np.testing.assert_array_equal(model.encoder.stem.kernel.numpy(), kernel)
  _, model = _model(projection_head_layers=(64, 32))
  with pytest.raises(ValueError, match=r'contrastive_output_layer.weight has '
                     r'shape \[64, 64\] in the checkpoint \(\[64, 64\] here\)'
                     r', \[64, 32\] in the model'):
    seed_checkpoint.restore_seed(model, PTH)
  restored = seed_checkpoint.restore_seed(model, PTH, ignore_missing=True)
  assert 'contrastive_output_layer.weight' not in restored
  assert 'conv1.weight' in restored
  # A part alone: the others keep their values.
  _, model = _model()
  head = model.classification_head.dense.kernel.numpy()
  restored = seed_checkpoint.restore_seed(model, PTH, parts=('encoder',))
  assert all(n.startswith(('conv1', 'bn1', 'layer')) for n in restored)
  np.testing.assert_array_equal(model.classification_head.dense.kernel, head)
  _, model = _model(resnet_depth=50)
  with pytest.raises(ValueError, match='CIFAR ResNet-20'):
    seed_checkpoint.restore_seed(model, PTH)


def _crafted(path, marker):
  """A .pth whose pickle would run `touch marker` when unpickled."""
  data = (b'\x80\x02cposix\nsystem\nq\x00X' +
          len(f'touch {marker}').to_bytes(4, 'little') +
          f'touch {marker}'.encode() + b'\x85R.')
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('ckpt/data.pkl', data)
    archive.writestr('ckpt/byteorder', 'little')
  return path


def test_a_pth_that_would_run_code_is_refused(tmp_path):
  marker = tmp_path / 'ran'
  path = _crafted(str(tmp_path / 'evil.pth'), marker)
  # What the pickle does when loaded without care: the file is a real attack.
  with zipfile.ZipFile(path) as archive:
    pickle.load(io.BytesIO(archive.read('ckpt/data.pkl')))
  assert marker.exists()
  marker.unlink()
  with pytest.raises(ValueError, match=r'names posix\.system, which is not a '
                     'tensor, a container or a number; refused'):
    seed_checkpoint.read_pth(path)
  assert not marker.exists()


def test_a_tensor_outside_its_storage_is_refused(tmp_path):
  with zipfile.ZipFile(PTH) as source:
    members = {n: source.read(n) for n in source.namelist()}
  data = members['resnet20/data.pkl']
  # conv1.weight's strides (27, 9, 3, 1) -> (255, 9, 3, 1): past its 432.
  assert data.count(b'K\x1bK\tK\x03K\x01') == 1
  members['resnet20/data.pkl'] = data.replace(b'K\x1bK\tK\x03K\x01',
                                              b'K\xffK\tK\x03K\x01')
  path = str(tmp_path / 'strided.pth')
  with zipfile.ZipFile(path, 'w') as archive:
    for name, content in members.items():
      archive.writestr(name, content)
  with pytest.raises(ValueError, match=r'strided.pth is damaged \(a tensor '
                     r'of shape \(16, 3, 3, 3\) reaches outside its storage'):
    seed_checkpoint.read_pth(path)


def _convert(tmp_path, *flags):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, 'bin', 'convert_seed.py'),
       f'--model_dir={tmp_path / "run"}', *flags],
      capture_output=True, text=True, timeout=600)


def test_bad_pth_files_end_in_one_line_and_exit_2(tmp_path):
  marker = tmp_path / 'ran'
  truncated = tmp_path / 'cut.pth'
  truncated.write_bytes(open(PTH, 'rb').read()[:300_000])
  cases = {
      _crafted(str(tmp_path / 'evil.pth'), marker): 'names posix.system',
      str(truncated): 'is not a readable torch.save file',
      str(tmp_path / 'none.pth'): 'No checkpoint at',
  }
  for path, says in cases.items():
    done = _convert(tmp_path, f'--checkpoint={path}', f'--preset={SUPCON}')
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr[-2000:]
    assert lines[0].startswith('convert_seed.py: error: ')
  assert not marker.exists()
  assert not (tmp_path / 'run').exists()


def test_a_converted_checkpoint_is_a_finished_stage_1(tmp_path, reference):
  # Digits stand in for CIFAR-10 (no download here); the data is not read
  # by the conversion.
  done = _convert(tmp_path, f'--checkpoint={PTH}', f'--preset={SUPCON}',
                  '--input_fn=digits')
  assert done.returncode == 0, done.stderr[-3000:]
  assert '101 tensors from' in done.stdout
  # The SavedModel: raw pixels in, the seed's normalisation inside.
  loaded = tf.saved_model.load(str(tmp_path / 'run' / 'export'))
  got = loaded.signatures['serving_default'](
      images=tf.constant(reference['images'], tf.float32))
  assert _relative(got['logits'].numpy(), reference['eval/logits']) < 1e-4
  # The classifier stage continues from it, the encoder as converted.
  config = dataclasses.replace(
      flags_lib.saved_config(str(tmp_path / 'run')), stage_2_epochs=1,
      export=False, plot=False, progress=False)
  results = run_lib.run(config, stage_indices=(2,))
  assert results['stage_2_steps'] == 5 and 'test_top1' in results
  _, model = _model(input_fn='digits')
  tf.train.Checkpoint(model=model).read(
      str(tmp_path / 'run' / 'stage_2' / 'ckpt-5')).expect_partial()
  state = seed_checkpoint.seed_state_dict(seed_checkpoint.read_pth(PTH))
  np.testing.assert_array_equal(
      model.encoder.stem.kernel.numpy(),
      seed_checkpoint.to_port(state['conv1.weight'], (2, 3, 1, 0)))
  assert not np.array_equal(model.classification_head.dense.kernel.numpy(),
                            state['linear.weight'].T)
