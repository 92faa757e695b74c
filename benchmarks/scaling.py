"""Multi-worker overhead: training examples per second of ResNet-20 SupCon
(the digits preset, stage 1) on 1, 2 and 4 workers on loopback
(scripts/local_cluster.sh), beside the single process without a cluster.

Every worker runs on this machine, so with more workers than cores this
measures what the cluster costs (collectives over gRPC, one input pipeline
and model per worker), not a speedup. The global batch stays the same
(--batch_size, split over the workers).

    .venv/bin/python benchmarks/scaling.py --workers 1,2,4 --epochs 3

Examples per second are the chief's TensorBoard `train/examples_per_second`
(median over the calls after the first, which traces). Prints one line per
layout and, last, `examples/s of 2 workers over 1 process: R`.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

flags.DEFINE_string('workers', '1,2,4', 'Worker counts to run.')
flags.DEFINE_integer('epochs', 3, 'Stage-1 epochs of the digits per run.')
flags.DEFINE_integer('batch_size', 128, 'Global batch.')
FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _examples_per_second(model_dir):
  from supcon_tf.training import summaries
  values = [v for _, v in summaries.read_scalars(os.path.join(
      model_dir, 'summaries', 'stage_1'))['train/examples_per_second']]
  return float(np.median(values[1:] if len(values) > 1 else values))


def _run(workers, scratch):
  model_dir = os.path.join(scratch, f'workers_{workers}')
  flags_ = [f'--model_dir={model_dir}', '--preset=supcon_digits_resnet20',
            f'--stage_1_epochs={FLAGS.epochs}', '--stage_2_epochs=0',
            '--mode=train', '--knn_every_epochs=0', '--progress=false',
            f'--batch_size={FLAGS.batch_size}', '--steps_per_loop=2']
  if workers:
    command = ['bash', os.path.join(ROOT, 'scripts', 'local_cluster.sh'),
               str(workers)] + flags_
  else:
    command = [sys.executable, os.path.join(ROOT, 'bin', 'train_supcon.py'),
               '--strategy=default'] + flags_
  env = {**os.environ, 'PYTHON': sys.executable,
         'LOG_DIR': os.path.join(scratch, f'logs_{workers}')}
  result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True,
                          text=True)
  if result.returncode:
    raise RuntimeError(f'{workers} workers failed:\n{result.stdout[-2000:]}'
                       f'{result.stderr[-2000:]}')
  return _examples_per_second(model_dir)


def main(_):
  scratch = tempfile.mkdtemp(prefix='scaling_')
  try:
    single = _run(0, scratch)
    print(f'one process (no cluster): {single:.1f} examples/s')
    figures = {}
    for workers in [int(w) for w in FLAGS.workers.split(',')]:
      figures[workers] = _run(workers, scratch)
      print(f'{workers} worker(s) on loopback: {figures[workers]:.1f} '
            f'examples/s ({figures[workers] / single:.2f} of one process)',
            flush=True)
    if 2 in figures:
      print(f'examples/s of 2 workers over 1 process: '
            f'{figures[2] / single:.2f}')
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
