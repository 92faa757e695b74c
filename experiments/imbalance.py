"""Class imbalance: SupCon against cross-entropy on a long-tailed CIFAR-10,
each with and without the class-balanced sampler.

CIFAR-10-LT as Cao et al. (2019, LDAM) build it, at imbalance ratio
--ratio: class i (in name order) keeps the first int(n_max x ratio^(-i / 9))
of its training images, here n_max = --per_class_train (500: 500, 299, 179,
107, 64, 38, 23, 13, 8 and 5 images, 1,236 in all; the usual n_max of 5,000,
12,406 images, is ten times this machine's budget). The test set is balanced: the last
--per_class_test JPEGs of every class. The seed's ResNet-20 recipe at batch
64 with crops and flips alone: SupCon --epochs then 10 classifier epochs
at base rate 0.2 (the seed's 0.05 moves a classifier too little in these
few steps), cross-entropy 2 x --epochs (about the same time); the sampler
(--sampler=class_balanced --classes_per_batch=8: 8 random classes of 8
images a batch, the rare ones repeated) in every stage. Three seeds each.
Writes docs/findings/imbalance.{csv,png}.

    .venv/bin/python experiments/imbalance.py --images=CIFAR_JPEGS
"""
import os

import numpy as np
from absl import app, flags

import common

flags.DEFINE_string('images', None, 'CIFAR-10 training JPEGs (folder or '
                    '.tar.gz).')
flags.mark_flag_as_required('images')
flags.DEFINE_integer('per_class_train', 500, 'n_max: the largest class.')
flags.DEFINE_integer('per_class_test', 100, 'Test images per class.')
flags.DEFINE_float('ratio', 100., 'Largest class over smallest.')
flags.DEFINE_integer('epochs', 30, 'SupCon stage-1 epochs.')
flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds of each setting.')
FLAGS = flags.FLAGS
BATCH, CLASSES_PER_BATCH = 64, 8


def class_sizes(n_max, ratio, classes=10):
  """Cao et al.'s exponential profile: n_max x ratio^(-i / (classes - 1))."""
  return [int(n_max * ratio ** (-i / (classes - 1))) for i in range(classes)]


def long_tailed(folder, sizes):
  """folder_lt/{train,test}: the first sizes[i] training images of class i
  (name order) and every test image, as links."""
  root = folder + '_lt'
  if os.path.isdir(root):
    return root
  for split in ('train', 'test'):
    classes = sorted(os.listdir(os.path.join(folder, split)))
    for i, name in enumerate(classes):
      files = sorted(os.listdir(os.path.join(folder, split, name)))
      if split == 'train':
        files = files[:sizes[i]]
      os.makedirs(os.path.join(root, split, name))
      for f in files:
        os.symlink(os.path.realpath(os.path.join(folder, split, name, f)),
                   os.path.join(root, split, name, f))
  return root


def main(_):
  sizes = class_sizes(FLAGS.per_class_train, FLAGS.ratio)
  print(f'class sizes {sizes}, {sum(sizes)} training images', flush=True)
  with common.scratch_dir('imbalance_') as scratch:
    folder = long_tailed(common.cifar_folder(
        FLAGS.images, scratch, FLAGS.per_class_train, FLAGS.per_class_test),
                         sizes)
    data = dict(input_fn='folder', data_dir=folder, validation_fraction=0.,
                augmentation_type='IDENTITY', batch_size=BATCH,
                progress=False, plot=False, export=False)
    settings = {
        'supcon': dict(preset='seed_cifar10_resnet20_supcon_autoaugment',
                       stage_1_epochs=FLAGS.epochs, stage_2_epochs=10,
                       stage_2_base_learning_rate=0.2),
        'ce': dict(preset='seed_cifar10_resnet20_ce',
                   stage_1_epochs=2 * FLAGS.epochs)}
    samplers = {'uniform': {}, 'class_balanced': dict(
        sampler='class_balanced', classes_per_batch=CLASSES_PER_BATCH)}
    rows = []
    for method, recipe in settings.items():
      for sampler, extra in samplers.items():
        for seed in FLAGS.seeds:
          results = common.train_method(
              method, os.path.join(scratch, f'{method}_{sampler}_{seed}'),
              **data, **recipe, **extra, seed=int(seed))
          rows.append((method, sampler, int(seed), results['test_top1']))
          print(rows[-1], flush=True)
    common.write_csv('imbalance', ('method', 'sampler', 'seed', 'test_top1'),
                     rows)
    labels = [f'{m} {s}' for m in settings for s in samplers]
    means = [float(np.mean([r[3] for r in rows if f'{r[0]} {r[1]}' == k]))
             for k in labels]
    common.plot('imbalance', {
        f'seed {seed}': (list(range(len(labels))),
                         [r[3] for r in rows if r[2] == int(seed)])
        for seed in FLAGS.seeds} | {'mean': (list(range(len(labels))), means)},
                ' / '.join(f'{i}: {k}' for i, k in enumerate(labels)),
                'test top-1 (balanced test set)',
                f'CIFAR-10-LT, ratio {FLAGS.ratio:g}, batch {BATCH}')
    print(common.table(('method, sampler', 'mean test top-1', 'std'), [
        (k, m, float(np.std([r[3] for r in rows if f'{r[0]} {r[1]}' == k])))
        for k, m in zip(labels, means)]))


if __name__ == '__main__':
  app.run(main)
