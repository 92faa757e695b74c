"""PyTorch checkpoints of other codes (bin/convert_torch.py), against the
outputs of the code that wrote them.

The files are written here with torch.save as SupContrast's
util.save_model and MoCo's trainer save them, with the keys SupContrast's
networks/resnet_big.py and torchvision's resnet50 give (tests/torch_weights.py;
tests/fixtures/make_torch_fixtures.py checked the containers against
util.save_model's and recorded the models' eval-mode outputs). Tolerance:
relative 1e-5 of each output's largest value; float32 summation order alone
moves these outputs by about 1e-6.
"""
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import seed_checkpoint, torch_checkpoint
from supcon_tf.data.arrays import MEAN_STD
from supcon_tf.presets import make_config
from supcon_tf.training import run as run_lib
from tests import torch_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = torch_weights.cases()
needs_torch = pytest.mark.skipif(importlib.util.find_spec('torch') is None,
                                 reason='torch writes the files')


@pytest.fixture(scope='module')
def outputs():
  return dict(np.load(os.path.join(torch_weights.FIXTURES, 'outputs.npz')))


class _Files(dict):
  """Each case's checkpoint file, written when first asked for (they are
  45 to 225 MB)."""

  def __init__(self, folder):
    super().__init__()
    self.folder = folder

  def __missing__(self, name):
    self[name] = torch_weights.write(CASES[name],
                                     str(self.folder / f'{name}.pth'))
    return self[name]


@pytest.fixture(scope='module')
def written(tmp_path_factory):
  files = _Files(tmp_path_factory.mktemp('torch'))
  yield files
  for path in files.values():  # Not left for pytest's kept temp folders.
    os.remove(path)


def _relative(got, want):
  return np.abs(got - want).max() / np.abs(want).max()


def test_the_fixture_images_are_normalised_as_here(outputs):
  for images, dataset in (('cifar', 'cifar10'), ('imagenet', 'imagenet2012')):
    mean, std = (np.array(c) for c in MEAN_STD[dataset])
    np.testing.assert_allclose(outputs[f'{images}/normalized'],
                               (outputs[f'{images}/raw'] - mean) / std,
                               rtol=1e-6, atol=1e-6)


EXPECTED = {
    # code, encoder prefix, depth, stem, projection units, classifier,
    # classes, keys not read.
    'supcon_resnet50': ('supcontrast', 'encoder.', 50, 3, (2048, 128), '',
                        0, 0),
    'ce_resnet18': ('supcontrast', 'encoder.', 18, 3, (), 'fc', 10, 0),
    'moco_resnet50': ('torchvision', 'encoder_q.', 50, 7, (2048, 128), '',
                      0, 322 + 2),  # encoder_k.*, the queue and its pointer.
    'torchvision_resnet50': ('torchvision', '', 50, 7, (), 'fc', 1000, 0),
}


@needs_torch
@pytest.mark.parametrize('name', sorted(CASES))
def test_the_layout_is_read_from_the_keys(name, written):
  checkpoint = seed_checkpoint.read_pth(written[name])
  _, layout = torch_checkpoint.read_checkpoint(checkpoint, written[name])
  got = (layout.code, layout.encoder, layout.depth, layout.stem,
         tuple(u for _, u in layout.projection), layout.classifier,
         layout.num_classes, len(layout.skipped))
  assert got == EXPECTED[name]
  options = torch_checkpoint.options_of(checkpoint)
  if CASES[name]['container'] == 'supcontrast':
    # The argparse options and the epoch, read as data.
    assert options['model'] == name.split('_')[1] and options['temp'] == 0.1
    assert checkpoint['epoch'] == CASES[name]['epoch']
    assert set(checkpoint['optimizer']) == {'state', 'param_groups'}
  else:
    assert options == {}


def _converted(name, written, classifier=None, **values):
  checkpoint = seed_checkpoint.read_pth(written[name])
  state, layout = torch_checkpoint.read_checkpoint(
      checkpoint, written[name],
      classifier and seed_checkpoint.read_pth(classifier))
  options = torch_checkpoint.options_of(checkpoint)
  config = make_config(**{**torch_checkpoint.data_fields(layout, options),
                          **torch_checkpoint.model_fields(layout), **values})
  model = run_lib.build_model(
      config, torch_checkpoint.num_classes_of(layout, options) or 10)
  size = config.image_size
  model(tf.zeros([1, size, size, 3]))
  restored = torch_checkpoint.restore_torch(model, layout, state,
                                            written[name])
  return model, restored, state, layout


@needs_torch
@pytest.mark.parametrize('name', ['supcon_resnet50', 'moco_resnet50',
                                  'torchvision_resnet50'])
def test_converted_models_give_the_pytorch_outputs(name, written, outputs):
  model, restored, state, layout = _converted(name, written)
  # Every variable of the encoder and of the heads the file has.
  read = [n for n in state if n not in layout.skipped]
  assert sorted(restored) == sorted(
      n for n in read if not n.endswith('num_batches_tracked'))
  images = 'cifar' if name.startswith('supcon') else 'imagenet'
  got = model(tf.constant(outputs[f'{images}/normalized']), training=False)
  assert _relative(got['unnormalized_embeddings'].numpy(),
                   outputs[f'{name}/features']) < 1e-5
  key = 'logits' if f'{name}/logits' in outputs else 'projection'
  assert _relative(got[key].numpy(), outputs[f'{name}/{key}']) < 1e-5


@needs_torch
def test_a_linear_classifier_file_becomes_the_classifier(tmp_path, written,
                                                         outputs):
  import torch
  # SupContrast's LinearClassifier, trained on the SupCon encoder's
  # features, saved as its state_dict.
  weight = torch_weights.tensor('fc.weight', (10, 2048))
  bias = torch_weights.tensor('fc.bias', (10,))
  path = str(tmp_path / 'linear.pth')
  torch.save({'fc.weight': torch.from_numpy(weight),
              'fc.bias': torch.from_numpy(bias)}, path)
  model, restored, _, _ = _converted('supcon_resnet50', written,
                                     classifier=path)
  assert {'fc.weight', 'fc.bias'} <= set(restored)
  got = model(tf.constant(outputs['cifar/normalized']), training=False)
  want = outputs['supcon_resnet50/features'] @ weight.T + bias
  assert _relative(got['logits'].numpy(), want) < 1e-5
  assert _relative(got['projection'].numpy(),
                   outputs['supcon_resnet50/projection']) < 1e-5
  torch.save({'fc.weight': torch.from_numpy(weight), 'extra': torch.ones(1)},
             path)
  with pytest.raises(ValueError, match='is not a LinearClassifier'):
    _converted('supcon_resnet50', written, classifier=path)


@needs_torch
def test_the_official_layout_does_not_compute_them(written, outputs):
  # The official ResNet-18 projects in the first block: PyTorch's weights
  # do not fit it.
  with pytest.raises(ValueError, match='layer1.0.shortcut.0.weight is not in '
                     'the checkpoint'):
    _converted('ce_resnet18', written, resnet_layout='official')
  # ResNet-50's weights fit, but TensorFlow's 'same' max-pool windows start
  # a pixel later than PyTorch's.
  model, _, _, _ = _converted('torchvision_resnet50', written,
                              resnet_layout='official')
  got = model(tf.constant(outputs['imagenet/normalized']), training=False)
  assert _relative(got['unnormalized_embeddings'].numpy(),
                   outputs['torchvision_resnet50/features']) > 1e-2


def _convert(tmp_path, *flags):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, 'bin', 'convert_torch.py'),
       f'--model_dir={tmp_path / "run"}', *flags],
      capture_output=True, text=True, timeout=600)


@needs_torch
def test_a_converted_checkpoint_is_a_finished_stage_1(tmp_path, written,
                                                      outputs):
  # SupContrast's options name CIFAR-10: its image size and normalisation.
  done = _convert(tmp_path, f'--checkpoint={written["ce_resnet18"]}',
                  '--stage_2_epochs=0')
  assert done.returncode == 0, done.stderr[-3000:]
  tensors = [k for k, _ in CASES['ce_resnet18']['keys']
             if not k.endswith('num_batches_tracked')]
  assert f'{len(tensors)} tensors from' in done.stdout
  assert 'epoch 500, model resnet18, dataset cifar10, method CE' in done.stdout
  run = tmp_path / 'run'
  config = json.loads((run / 'config.json').read_text())
  assert (config['resnet_depth'], config['resnet_layout'],
          config['image_size'], config['input_fn'],
          config['normalization']) == (18, 'torch', 32, 'cifar10', 'cifar10')
  mark = json.loads((run / 'stage_1' / 'converted.json').read_text())
  assert mark['code'] == 'supcontrast' and mark['epoch'] == 500
  # The SavedModel: raw pixels in, the normalisation inside.
  loaded = tf.saved_model.load(str(run / 'export'))
  got = loaded.signatures['serving_default'](
      images=tf.constant(outputs['cifar/raw']))
  assert _relative(got['logits'].numpy(), outputs['ce_resnet18/logits']) < 1e-5
  assert _relative(got['unnormalized_embeddings'].numpy(),
                   outputs['ce_resnet18/features']) < 1e-5
  # A flag that contradicts the file is refused, nothing written.
  done = _convert(tmp_path / 'other', f'--checkpoint={written["ce_resnet18"]}',
                  '--resnet_depth=50')
  assert done.returncode == 2
  assert done.stderr.strip().endswith('which sets --resnet_depth=18: drop '
                                      'those flags.')
  assert not (tmp_path / 'other').exists()


def _evil_pickle(marker):
  return (b'\x80\x02cposix\nsystem\nq\x00X' +
          len(f'touch {marker}').to_bytes(4, 'little') +
          f'touch {marker}'.encode() + b'\x85R.')


def test_files_that_would_run_code_or_are_no_resnet_end_in_one_line(tmp_path):
  marker = tmp_path / 'ran'
  zipped = tmp_path / 'evil.pth'
  with zipfile.ZipFile(zipped, 'w') as archive:
    archive.writestr('ckpt/data.pkl', _evil_pickle(marker))
  # The format before PyTorch 1.6: the magic number, then the same payload.
  legacy = tmp_path / 'evil_legacy.pth'
  legacy.write_bytes(pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) +
                     pickle.dumps(1001, protocol=2) + _evil_pickle(marker))
  cases = {
      zipped: 'names posix.system, which is not a tensor',
      legacy: 'names posix.system, which is not a tensor',
      # The seed's CIFAR ResNet-20: three groups, not a torchvision layout.
      os.path.join(ROOT, 'tests', 'fixtures', 'seed', 'resnet20.pth'):
          'holds a basic-block ResNet with [3, 3, 3, 0] blocks per group',
  }
  for path, says in cases.items():
    done = _convert(tmp_path, f'--checkpoint={path}')
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr[-2000:]
    assert lines[0].startswith('convert_torch.py: error: ')
  assert not marker.exists()
  assert not (tmp_path / 'run').exists()
