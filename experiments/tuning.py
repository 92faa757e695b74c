"""Question 7: is SupCon less sensitive to the learning rate than
cross-entropy?

SupCon (stage 1 + classifier) and cross-entropy on the digits (ResNet-20, the
preset's recipe and budget) with the stage-1 base learning rate at 1/8, 1/2,
1, 2 and 8 times the preset's (0.2 per 256 examples). Test top-1 on the 360
held-out digits; the spread (best - worst) is the sensitivity. Writes
docs/findings/tuning.{csv,png}.

    .venv/bin/python experiments/tuning.py
"""
import math
import os

from absl import app, flags

import common

flags.DEFINE_list('factors', ['0.125', '0.5', '1', '2', '8'],
                  'Multiples of the preset learning rate.')
FLAGS = flags.FLAGS
BASE = 0.2


def main(_):
  with common.scratch_dir('tuning_') as scratch:
    rows = []
    for kind in ('supcon', 'ce'):
      for factor in [float(f) for f in FLAGS.factors]:
        try:
          results = common.train_method(
              kind, os.path.join(scratch, f'{kind}_{factor}'), **common.DIGITS,
              stage_1_base_learning_rate=BASE * factor, knn_every_epochs=0)
          top1 = results['test_top1']
        except RuntimeError as error:  # A diverged run (non-finite loss).
          print(str(error)[-300:])
          top1 = 0.
        rows.append((kind, factor, BASE * factor, top1))
        print(rows[-1], flush=True)
    common.write_csv('tuning', ('method', 'factor', 'base_learning_rate',
                                'test_top1'), rows)
    common.plot('tuning', {
        method: ([math.log2(r[1]) for r in rows if r[0] == method],
                 [r[3] for r in rows if r[0] == method])
        for method in ('supcon', 'ce')},
                'log2(stage-1 learning rate / the preset\'s)',
                'test top-1', 'Digits, ResNet-20: learning-rate sensitivity')
    spread = [(m, max(r[3] for r in rows if r[0] == m) -
               min(r[3] for r in rows if r[0] == m)) for m in ('supcon', 'ce')]
    print(common.table(('method', 'factor', 'base lr', 'test top-1'), rows))
    print(common.table(('method', 'spread of test top-1'), spread))


if __name__ == '__main__':
  app.run(main)
