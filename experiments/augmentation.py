"""Question 2: is heavy augmentation needed?

SupCon (stage 1 then the classifier) and cross-entropy on the digits
(ResNet-20, the digits preset's recipe and budget), each with AutoAugment
(CIFAR-10 policy, pad-4 crops) and with the pad-4 crops alone
(--augmentation_type=IDENTITY). Test top-1 on the 360 held-out digits.
Writes docs/findings/augmentation.{csv,png}.

    .venv/bin/python experiments/augmentation.py
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

import common  # noqa: E402

flags.DEFINE_integer('epochs', 14, 'Stage-1 (and cross-entropy) epochs.')
FLAGS = flags.FLAGS


def main(_):
  scratch = tempfile.mkdtemp(prefix='augmentation_')
  rows = []
  for kind in ('supcon', 'ce'):
    for augmentation in ('AUTOAUGMENT', 'IDENTITY'):
      results = common.train_method(
          kind, os.path.join(scratch, f'{kind}_{augmentation}'),
          **common.DIGITS, augmentation_type=augmentation,
          stage_1_epochs=FLAGS.epochs, knn_every_epochs=0)
      rows.append((kind, augmentation, results['test_top1'],
                   results['val_top1']))
      print(rows[-1], flush=True)
  common.write_csv('augmentation', ('method', 'augmentation', 'test_top1',
                                    'val_top1'), rows)
  common.plot('augmentation', {
      method: ([0, 1], [r[2] for r in rows if r[0] == method])
      for method in ('supcon', 'ce')}, '0: AutoAugment + crops, 1: crops only',
              'test top-1', f'Digits, ResNet-20, {FLAGS.epochs} epochs')
  print(common.table(('method', 'augmentation', 'test top-1', 'val top-1'),
                     rows))


if __name__ == '__main__':
  app.run(main)
