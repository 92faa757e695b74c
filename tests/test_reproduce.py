"""docs/REPRODUCE.md: every published cell's command parses into that cell's
recipe and runs its first steps on a tiny CIFAR archive."""
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from supcon_tf import flags as supcon_flags
from supcon_tf.config import RUNTIME_FIELDS
from supcon_tf.presets import PRESETS, XENT_FLAGS, make_config
from supcon_tf.training import run as run_lib
from tests import archives

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _commands():
  with open(os.path.join(ROOT, 'docs', 'REPRODUCE.md')) as f:
    text = f.read()
  blocks = re.findall(r'```sh\n(.*?)```', text, re.S)
  return [line for block in blocks for line in block.splitlines()
          if line.strip()]


def _argv(command, tmp_path):
  """(program, flags) the command runs: a script's through its printed
  command line (PYTHON a printer), the rest as written."""
  words = shlex.split(command)
  if words[0].startswith('scripts/'):
    printer = tmp_path / 'printer'
    printer.write_text(f'#!{sys.executable}\n'
                       'import json, sys\nprint(json.dumps(sys.argv[1:]))\n')
    printer.chmod(0o755)
    done = subprocess.run(['bash', os.path.join(ROOT, words[0]), *words[1:]],
                          env={**os.environ, 'PYTHON': str(printer)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    words = json.loads(done.stdout.strip().splitlines()[-1])
  else:
    assert words[0] == '.venv/bin/python', command
    words = words[1:]
  return os.path.basename(words[0]), words[1:]


def _parse(program, argv):
  from absl import flags as absl_flags
  supcon_flags.define_flags()
  absl_flags.FLAGS(['prog'] + argv)
  try:
    return supcon_flags.config_from_flags(
        XENT_FLAGS if program == 'train_ce.py' else None)
  finally:
    absl_flags.FLAGS.unparse_flags()


def test_the_page_has_one_command_per_published_cell():
  presets = [re.search(r'(?:--preset=|scripts/)(\w+?)(?:\.sh)?(?: |$)',
                       command).group(1) for command in _commands()]
  assert presets == [
      f'seed_{data}_resnet20_{kind}' for data in ('cifar10', 'cifar100')
      for kind in ('ce', 'ce_autoaugment', 'supcon_autoaugment')] + [
          f'{kind}_cifar10_resnet50'
          for kind in ('cross_entropy', 'simclr', 'supcon')]


@pytest.mark.parametrize('index', range(9))
def test_each_command_is_its_cell_and_runs_its_first_steps(tmp_path, index):
  command = _commands()[index]
  data = tmp_path / 'data'
  data.mkdir()
  if 'cifar100' in command:
    archives.tiny_cifar100(data)
  else:
    archives.tiny_cifar10(data)
  command = command.replace('$DATA', str(data)).replace(
      'runs/', f'{tmp_path}/runs/')
  program, argv = _argv(command, tmp_path)
  config = _parse(program, argv)
  preset = re.search(r'--preset=(\w+)', command)
  name = preset.group(1) if preset else os.path.basename(
      command.split()[0])[:-3]
  assert name in PRESETS
  # What the command runs is the cell's recipe (a stage of no epochs
  # aside: bin/train_ce.py's defaults are the official XENT group's).
  want = make_config(name)
  assert not [field for field in want.differences(config)
              if field not in RUNTIME_FIELDS and not (
                  field.startswith('stage_2_') and not want.stage_2_epochs)]
  # Its first steps, on 16 training images in batches of 8, the network
  # narrowed where it is a ResNet-50: every stage trains, the test split is
  # evaluated.
  small = dict(num_images=16, batch_size=8, eval_batch_size=20,
               stage_1_epochs=1, stage_2_epochs=1 if config.stage_2_epochs
               else 0, progress=False, plot=False, export=False,
               knn_every_epochs=0)
  if config.resnet_depth == 50:
    small.update(resnet_width=0.0625, projection_head_layers=(16,))
  results = run_lib.run(dataclasses.replace(config, **small))
  assert results['stage_1_steps'] == 2
  assert results.get('stage_2_steps', 0) == (2 if config.stage_2_epochs
                                             else 0)
  assert np.isfinite(results['test_cross_entropy_loss'])
  assert 0 <= results['test_top1'] <= 1
