"""Question 1: what does a contrastive epoch cost against a cross-entropy one?

Runs benchmarks/epoch_time.py (one epoch of each through the training loop on
the digits: ResNet-20, batch 128, SupCon with two views against
cross-entropy with one, after a warm-up epoch) `--runs` times. Writes
docs/findings/epoch_cost.{csv,png}.

    .venv/bin/python experiments/epoch_cost.py
"""
import os
import re
import subprocess
import sys

from absl import app, flags

import common

flags.DEFINE_integer('runs', 2, 'Benchmark runs.')
FLAGS = flags.FLAGS


def main(_):
  rows = []
  for run in range(1, FLAGS.runs + 1):
    output = subprocess.run(
        [sys.executable, os.path.join(common.ROOT, 'benchmarks',
                                      'epoch_time.py')],
        cwd=common.ROOT, capture_output=True, text=True, check=True).stdout
    supcon = float(re.search(r'SupCon ([\d.]+) s', output).group(1))
    ce = float(re.search(r'cross-entropy ([\d.]+) s', output).group(1))
    rows.append((run, supcon, ce, supcon / ce))
  common.write_csv('epoch_cost', ('run', 'supcon_epoch_s', 'ce_epoch_s',
                                  'ratio'), rows)
  common.plot('epoch_cost', {
      'SupCon (2 views)': ([r[0] for r in rows], [r[1] for r in rows]),
      'cross-entropy (1 view)': ([r[0] for r in rows], [r[2] for r in rows])},
              'run', 'seconds per epoch', 'Digits epoch, ResNet-20, batch 128')
  print(common.table(('run', 'SupCon epoch (s)', 'cross-entropy epoch (s)',
                      'ratio'), rows))


if __name__ == '__main__':
  app.run(main)
