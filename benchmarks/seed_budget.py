#!/usr/bin/env python3
"""The seed presets against the seed's own code, on real CIFAR-10 images at one budget.

    .venv/bin/python benchmarks/seed_budget.py --images=DIR_OR_TAR \
        --seed_repo=CHECKOUT --seed_python=VENV/bin/python [--work_dir=DIR]

`--images` is the CIFAR-10 training set as JPEGs, `<class>/<name>.jpg` (a
folder, or a .tar.gz of one; the `train/` level is found by itself). Per
class, the first 1,000 files (sorted) are the training set and the last 1,000
the held-out test set. Four runs on those images:
  port supcon: `bin/train_supcon.py --preset=seed_cifar10_resnet20_supcon_autoaugment`,
      11 SupCon epochs then 5 classifier epochs;
  port ce: `bin/train_ce.py --preset=seed_cifar10_resnet20_ce_autoaugment`, 25 epochs;
  seed supcon / seed ce: the seed repository's own train.py (a checkout of
      GuillaumeErhard/Supervised_contrastive_loss_pytorch, `--seed_repo`) with the same
      epochs, run by `--seed_python` (a virtual environment with torch, torchvision,
      scipy and tensorboard: `make peers` builds it as .peer-venv). A driver written into the work
      directory swaps torchvision's CIFAR10 for these images in memory and
      records the scalars train.py writes; train.py itself runs unchanged.
The seed's code reports the best test accuracy over its classifier epochs (it
picks its checkpoint on the test set); the comparison uses the last epoch's,
as the port reports, and prints the best beside it.

Each run writes `result.json` in its folder under `--work_dir`; with `--reuse`
a finished run is read back instead of run again (a benchmark interrupted
half-way goes on where it stopped). Prints one line per run, the port/seed
ratio per method, and last `port/seed top-1 ratio: X` (their mean).
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = ('seed_supcon', 'seed_ce', 'port_supcon', 'port_ce')

# Runs the seed's train.py on the folder images; written next to each run.
SEED_DRIVER = r'''
import json, os, random, sys
import numpy as np
import torch
from PIL import Image
from torchvision.datasets import VisionDataset

seed_repo, data_dir, out_path, seed = sys.argv[1:5]
args = sys.argv[5:]
random.seed(int(seed)); np.random.seed(int(seed)); torch.manual_seed(int(seed))
sys.path.insert(0, seed_repo)


def load(split):
  classes = sorted(os.listdir(os.path.join(data_dir, split)))
  images, labels = [], []
  for label, name in enumerate(classes):
    folder = os.path.join(data_dir, split, name)
    for file in sorted(os.listdir(folder)):
      images.append(np.asarray(Image.open(os.path.join(folder, file)).convert('RGB')))
      labels.append(label)
  return np.stack(images), labels

SPLITS = {True: load('train'), False: load('test')}


class FolderImages(VisionDataset):
  """Stands in for torchvision's CIFAR10: the same (PIL image, label) items."""

  def __init__(self, root, train=True, transform=None, target_transform=None,
               download=False):
    super().__init__(root, transform=transform, target_transform=target_transform)
    self.data, self.targets = SPLITS[train]

  def __len__(self):
    return len(self.data)

  def __getitem__(self, index):
    image = Image.fromarray(self.data[index])
    if self.transform is not None:
      image = self.transform(image)
    return image, self.targets[index]


import train  # The seed's train.py, unchanged.

scalars = {}


class RecordingWriter(train.SummaryWriter):
  def add_scalar(self, tag, value, step=None, *a, **k):
    scalars.setdefault(tag, []).append([step, float(value)])
    with open(out_path, 'w') as f:
      json.dump(scalars, f)
    return super().add_scalar(tag, value, step, *a, **k)


train.datasets.CIFAR10 = FolderImages
train.SummaryWriter = RecordingWriter
sys.argv = ['train.py'] + args
train.main()
'''


def prepare_images(images, work_dir, per_class_train, per_class_test):
  """`work_dir/folder/{train,test}/<class>/` with links to the first
  `per_class_train` and last `per_class_test` files of each class."""
  root = os.path.join(work_dir, 'folder')
  if os.path.isdir(root):
    return root
  if tarfile.is_tarfile(images):
    extracted = os.path.join(work_dir, 'extracted')
    if not os.path.isdir(extracted):
      with tarfile.open(images) as archive:
        archive.extractall(extracted + '.partial', filter='data')
      os.rename(extracted + '.partial', extracted)
    images = extracted
  # Descend to the folder whose subfolders hold the images.
  while True:
    entries = sorted(e for e in os.listdir(images) if not e.startswith('.'))
    if 'train' in entries:
      images = os.path.join(images, 'train')
      break
    if len(entries) == 1 and os.path.isdir(os.path.join(images, entries[0])):
      images = os.path.join(images, entries[0])
      continue
    break
  classes = sorted(e for e in os.listdir(images)
                   if os.path.isdir(os.path.join(images, e)))
  if len(classes) < 2:
    raise SystemExit(f'--images: no class folders found in {images}.')
  partial = root + '.partial'
  for name in classes:
    files = sorted(f for f in os.listdir(os.path.join(images, name))
                   if f.lower().endswith(('.jpg', '.jpeg', '.png')))
    if len(files) < per_class_train + per_class_test:
      raise SystemExit(f'--images: {name} has {len(files)} images, fewer than '
                       f'{per_class_train} + {per_class_test}.')
    for split, chosen in (('train', files[:per_class_train]),
                          ('test', files[len(files) - per_class_test:])):
      folder = os.path.join(partial, split, name)
      os.makedirs(folder, exist_ok=True)
      for f in chosen:
        os.symlink(os.path.abspath(os.path.join(images, name, f)),
                   os.path.join(folder, f))
  os.rename(partial, root)
  return root


def run_logged(command, log_path, cwd=None):
  """Runs `command`, output to `log_path`; exits naming the log on failure."""
  started = time.perf_counter()
  with open(log_path, 'w') as log:
    code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT,
                           cwd=cwd)
  if code:
    raise SystemExit(f'{command[1]} failed (exit {code}); see {log_path}.')
  return time.perf_counter() - started


def port_run(name, args, data_dir, run_dir):
  supcon = name == 'port_supcon'
  script = 'train_supcon.py' if supcon else 'train_ce.py'
  preset = ('seed_cifar10_resnet20_supcon_autoaugment' if supcon
            else 'seed_cifar10_resnet20_ce_autoaugment')
  epochs = ([f'--stage_1_epochs={args.supcon_epochs}',
             f'--stage_2_epochs={args.classifier_epochs}'] if supcon
            else [f'--stage_1_epochs={args.ce_epochs}'])
  seconds = run_logged(
      [sys.executable, os.path.join(REPO, 'bin', script), f'--preset={preset}',
       '--input_fn=folder', f'--data_dir={data_dir}',
       f'--model_dir={os.path.join(run_dir, "model")}', f'--seed={args.seed}',
       '--export=false', '--plot=false', '--progress=false'] + epochs,
      os.path.join(run_dir, 'log.txt'))
  with open(os.path.join(run_dir, 'model', 'results.json')) as f:
    results = json.load(f)
  return {'top1': results['test_top1'], 'seconds': seconds,
          'final_loss': results.get('stage_1_final_loss')}


def seed_run(name, args, data_dir, run_dir):
  if not (args.seed_repo and args.seed_python):
    raise SystemExit(f'{name} needs --seed_repo and --seed_python.')
  if not os.path.exists(os.path.join(args.seed_repo, 'train.py')):
    raise SystemExit(f'--seed_repo: no train.py in {args.seed_repo}.')
  driver = os.path.join(run_dir, 'driver.py')
  with open(driver, 'w') as f:
    f.write(SEED_DRIVER)
  if name == 'seed_supcon':
    options = ['--training_mode', 'contrastive', '--n_epochs_contrastive',
               str(args.supcon_epochs), '--n_epochs_cross_entropy',
               str(args.classifier_epochs)]
  else:
    options = ['--training_mode', 'cross-entropy', '--n_epochs_cross_entropy',
               str(args.ce_epochs)]
  scalars_path = os.path.join(run_dir, 'scalars.json')
  seconds = run_logged(
      [args.seed_python, driver, os.path.abspath(args.seed_repo), data_dir,
       scalars_path, str(args.seed), '--auto-augment', 'True'] + options,
      os.path.join(run_dir, 'log.txt'), cwd=run_dir)
  with open(scalars_path) as f:
    scalars = json.load(f)
  accuracy = [v / 100. for _, v in scalars['Accuracy validation | Cross Entropy']]
  losses = scalars.get('Loss train | Supervised Contrastive')
  return {'top1': accuracy[-1], 'best_top1': max(accuracy),
          'per_epoch_top1': accuracy, 'seconds': seconds,
          'final_loss': losses[-1][1] if losses else None}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--images', required=True,
                      help='CIFAR-10 train JPEGs: <class>/*.jpg, or a .tar.gz.')
  parser.add_argument('--work_dir', default='/tmp/supcon_seed_budget')
  parser.add_argument('--seed_repo', help="Checkout of the seed's repository.")
  parser.add_argument('--seed_python', help='Python with torch + torchvision.')
  parser.add_argument('--runs', default=','.join(RUNS))
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--supcon_epochs', type=int, default=11)
  parser.add_argument('--classifier_epochs', type=int, default=5)
  parser.add_argument('--ce_epochs', type=int, default=25)
  parser.add_argument('--per_class_train', type=int, default=1000)
  parser.add_argument('--per_class_test', type=int, default=1000)
  parser.add_argument('--reuse', action='store_true',
                      help='Read back runs already finished in --work_dir.')
  args = parser.parse_args()
  runs = [r for r in args.runs.split(',') if r]
  unknown = sorted(set(runs) - set(RUNS))
  if unknown:
    parser.error(f'--runs: unknown {", ".join(unknown)}; valid: '
                 f'{", ".join(RUNS)}.')
  if not os.path.exists(args.images):
    parser.error(f'--images: {args.images} does not exist.')
  os.makedirs(args.work_dir, exist_ok=True)
  data_dir = prepare_images(args.images, args.work_dir, args.per_class_train,
                            args.per_class_test)
  budget = (f'{args.supcon_epochs}+{args.classifier_epochs}',
            f'{args.ce_epochs}')
  results = {}
  for name in runs:
    run_dir = os.path.join(args.work_dir, f'{name}_seed{args.seed}')
    result_path = os.path.join(run_dir, 'result.json')
    if args.reuse and os.path.exists(result_path):
      with open(result_path) as f:
        result = json.load(f)
    else:
      if os.path.isdir(run_dir):
        raise SystemExit(f'{run_dir} exists: remove it, or pass --reuse to '
                         'read a finished run back.')
      os.makedirs(run_dir)
      result = (port_run if name.startswith('port') else seed_run)(
          name, args, data_dir, run_dir)
      with open(result_path, 'w') as f:
        json.dump(result, f, indent=2)
    results[name] = result
    epochs = budget[0] if name.endswith('supcon') else budget[1]
    best = (f' (best epoch {result["best_top1"]:.4f})'
            if 'best_top1' in result else '')
    print(f'{name.replace("_", " ")} ({epochs} epochs): test top-1 '
          f'{result["top1"]:.4f}{best}, {result["seconds"]:.0f} s', flush=True)
  ratios = []
  for method in ('supcon', 'ce'):
    if f'port_{method}' in results and f'seed_{method}' in results:
      ratio = results[f'port_{method}']['top1'] / results[f'seed_{method}']['top1']
      difference = 100 * (results[f'port_{method}']['top1'] -
                          results[f'seed_{method}']['top1'])
      print(f'{method} port - seed: {difference:+.2f} points, ratio {ratio:.3f}')
      ratios.append(ratio)
  if ratios:
    print(f'port/seed top-1 ratio: {sum(ratios) / len(ratios):.3f}')


if __name__ == '__main__':
  main()
