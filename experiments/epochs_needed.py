"""Question 4: does contrastive training need more epochs than cross-entropy?

SupCon (stage 1 for E epochs, then 5 classifier epochs) and cross-entropy
(E epochs) on the digits (ResNet-20, the preset's recipe, its learning-rate
schedule stretched over E) for E in 3, 7, 14 and 28. Test top-1 on the 360
held-out digits. Writes docs/findings/epochs_needed.{csv,png}.

    .venv/bin/python experiments/epochs_needed.py
"""
import os

from absl import app, flags

import common

flags.DEFINE_list('epochs', ['3', '7', '14', '28'], 'Budgets to try.')
FLAGS = flags.FLAGS


def main(_):
  with common.scratch_dir('epochs_needed_') as scratch:
    rows = []
    for epochs in [int(e) for e in FLAGS.epochs]:
      for kind in ('supcon', 'ce'):
        results = common.train_method(
            kind, os.path.join(scratch, f'{kind}_{epochs}'), **common.DIGITS,
            stage_1_epochs=epochs, knn_every_epochs=0)
        rows.append((kind, epochs, results['test_top1'], results['val_top1']))
        print(rows[-1], flush=True)
    common.write_csv('epochs_needed', ('method', 'epochs', 'test_top1',
                                       'val_top1'), rows)
    common.plot('epochs_needed', {
        method: ([r[1] for r in rows if r[0] == method],
                 [r[2] for r in rows if r[0] == method])
        for method in ('supcon', 'ce')}, 'training epochs (SupCon: stage 1)',
                'test top-1', 'Digits, ResNet-20: accuracy against budget')
    print(common.table(('method', 'epochs', 'test top-1', 'val top-1'), rows))


if __name__ == '__main__':
  app.run(main)
