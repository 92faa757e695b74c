"""Question 2: is heavy augmentation needed?

SupCon (stage 1 then the classifier) and cross-entropy, each with AutoAugment
and with crops (and flips) alone (--augmentation_type=IDENTITY). Test top-1 on
held-out images.

With --images (the CIFAR-10 training JPEGs: a folder or a .tar.gz of
`<class>/<name>.jpg`): the seed's recipe (its presets:
seed_cifar10_resnet20_supcon_autoaugment, seed_cifar10_resnet20_ce*) on
--per_class_train images of each class, the last --per_class_test of each held
out; SupCon --epochs then 5 classifier epochs, cross-entropy 2 x --epochs
(about the same time). Writes docs/findings/augmentation_cifar10.{csv,png}.
Without --images: the digits preset (ResNet-20, 14 epochs), writing
docs/findings/augmentation.{csv,png}.

    .venv/bin/python experiments/augmentation.py --images=CIFAR_JPEGS
    .venv/bin/python experiments/augmentation.py
"""
import os

from absl import app, flags

import common

flags.DEFINE_string('images', None, 'CIFAR-10 training JPEGs (folder or '
                    '.tar.gz); the digits if unset.')
flags.DEFINE_integer('per_class_train', 500, 'CIFAR images per class trained.')
flags.DEFINE_integer('per_class_test', 100, 'CIFAR images per class held out.')
flags.DEFINE_integer('epochs', None, 'SupCon stage-1 epochs (default 12 on '
                     'CIFAR, 14 on the digits).')
FLAGS = flags.FLAGS


def _runs(scratch):
  """(method, augmentation, app, flags) of each run."""
  if not FLAGS.images:
    epochs = FLAGS.epochs or 14
    for method in ('supcon', 'ce'):
      for augmentation in ('AUTOAUGMENT', 'IDENTITY'):
        yield method, augmentation, dict(
            **common.DIGITS, augmentation_type=augmentation,
            stage_1_epochs=epochs, knn_every_epochs=0)
    return
  epochs = FLAGS.epochs or 12
  folder = common.cifar_folder(FLAGS.images, scratch, FLAGS.per_class_train,
                               FLAGS.per_class_test)
  data = dict(input_fn='folder', data_dir=folder, progress=False, plot=False,
              export=False)
  for augmentation in ('AUTOAUGMENT', 'IDENTITY'):
    yield 'supcon', augmentation, dict(
        data, preset='seed_cifar10_resnet20_supcon_autoaugment',
        augmentation_type=augmentation, stage_1_epochs=epochs,
        stage_2_epochs=5)
  for augmentation, preset in (('AUTOAUGMENT', 'ce_autoaugment'),
                               ('IDENTITY', 'ce')):
    yield 'ce', augmentation, dict(
        data, preset=f'seed_cifar10_resnet20_{preset}',
        stage_1_epochs=2 * epochs)


def main(_):
  with common.scratch_dir('augmentation_') as scratch:
    name = 'augmentation_cifar10' if FLAGS.images else 'augmentation'
    rows = []
    for method, augmentation, run_flags in _runs(scratch):
      results = common.train_method(
          method, os.path.join(scratch, f'{method}_{augmentation}'),
          **run_flags)
      rows.append((method, augmentation, results['test_top1'],
                   results['val_top1']))
      print(rows[-1], flush=True)
    common.write_csv(name, ('method', 'augmentation', 'test_top1',
                            'val_top1'), rows)
    common.plot(name, {
        method: ([0, 1], [r[2] for r in rows if r[0] == method])
        for method in ('supcon', 'ce')},
                '0: AutoAugment + crops, 1: crops only', 'test top-1',
                'CIFAR-10 subset' if FLAGS.images else 'Digits')
    print(common.table(('method', 'augmentation', 'test top-1', 'val top-1'),
                       rows))


if __name__ == '__main__':
  app.run(main)
