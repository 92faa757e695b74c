"""What the experiments share: runs of the bin/ apps in fresh processes, their
results and TensorBoard curves, CSV files and plots under docs/findings/.

Each experiment is a script in experiments/ that writes
docs/findings/<name>.csv and <name>.png and prints its table; the budgets are
this machine's (2 CPU cores): the bundled digits (ResNet-20, 32x32, 1,293
training images) unless a script says otherwise.
"""
import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINDINGS = os.path.join(ROOT, 'docs', 'findings')
APPS = {'supcon': 'train_supcon.py', 'ce': 'train_ce.py',
        'classifier': 'train_classifier.py'}
# Experiments use the digits preset without the evaluation extras, with the
# recipe docs/FINDINGS.md was measured with (batch 128, SupCon at base rate
# 0.2, the classifier 5 epochs at 2.5; the demo now trains at batch 64, 0.4
# and 10 epochs at 20).
DIGITS = dict(preset='supcon_digits_resnet20', progress=False, plot=False,
              export=False, batch_size=128, stage_1_base_learning_rate=0.2,
              stage_2_epochs=5, stage_2_base_learning_rate=2.5)


@contextlib.contextmanager
def scratch_dir(prefix):
  """A temporary directory for an experiment's runs, removed afterwards."""
  path = tempfile.mkdtemp(prefix=prefix)
  try:
    yield path
  finally:
    shutil.rmtree(path, ignore_errors=True)


def train(kind, model_dir, **flags):
  """Runs bin/<kind's app> with --model_dir and `flags` (name=value) in a
  fresh process; returns its results.json. Raises with the output's tail
  when the run fails."""
  command = [sys.executable, os.path.join(ROOT, 'bin', APPS[kind]),
             f'--model_dir={model_dir}']
  for name, value in flags.items():
    if isinstance(value, bool):
      command.append(f'--{name}' if value else f'--no{name}')
    else:
      command.append(f'--{name}={value}')
  process = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  if process.returncode:
    raise RuntimeError(f'{" ".join(command)} failed:\n'
                       f'{process.stderr[-3000:]}')
  with open(os.path.join(model_dir, 'results.json')) as f:
    return json.load(f)


def cifar_folder(images, work_dir, per_class_train, per_class_test):
  """An image folder of CIFAR-10 JPEGs (`images`: a folder or a .tar.gz of
  `<class>/<name>.jpg`): the first `per_class_train` files of each class for
  training, the last `per_class_test` held out (benchmarks/seed_budget.py's
  split)."""
  sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
  import seed_budget
  return seed_budget.prepare_images(images, work_dir, per_class_train,
                                    per_class_test)


def train_method(method, model_dir, **flags):
  """`train` of SupCon (both stages) or the cross-entropy baseline ('ce',
  one stage) on the same flags."""
  if method == 'ce':
    flags = {**flags, 'stage_2_epochs': 0}
  return train(method, model_dir, **flags)


def curve(model_dir, stage, tag):
  """[(step, value)] of a scalar in model_dir/summaries/<stage>."""
  from supcon_tf.training import summaries
  return summaries.read_scalars(
      os.path.join(model_dir, 'summaries', stage)).get(tag, [])


def write_csv(name, columns, rows):
  """docs/findings/<name>.csv; returns its path."""
  os.makedirs(FINDINGS, exist_ok=True)
  path = os.path.join(FINDINGS, f'{name}.csv')
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
      writer.writerow([f'{v:.5g}' if isinstance(v, float) else v
                       for v in row])
  return path


def plot(name, series, xlabel, ylabel, title, log_y=False):
  """docs/findings/<name>.png: one line per {label: (xs, ys)}."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  figure, axes = plt.subplots(figsize=(6.4, 4.2))
  for label, (xs, ys) in series.items():
    axes.plot(xs, ys, label=label, marker='o' if len(xs) < 15 else None,
              markersize=4)
  axes.set_xlabel(xlabel)
  axes.set_ylabel(ylabel)
  axes.set_title(title)
  if log_y:
    axes.set_yscale('log')
  axes.grid(alpha=0.3)
  axes.legend(fontsize=8)
  figure.tight_layout()
  os.makedirs(FINDINGS, exist_ok=True)
  path = os.path.join(FINDINGS, f'{name}.png')
  figure.savefig(path, dpi=110)
  plt.close(figure)
  return path


def table(columns, rows):
  """A Markdown table of the rows, for the console and docs/FINDINGS.md."""
  lines = ['| ' + ' | '.join(columns) + ' |',
           '|' + '---|' * len(columns)]
  for row in rows:
    lines.append('| ' + ' | '.join(f'{v:.4g}' if isinstance(v, float)
                                   else str(v) for v in row) + ' |')
  return '\n'.join(lines)
