"""The loss memory test's measure: TensorFlow's CPU allocator peak during one
forward + backward of `contrastive_loss`, taken in a child process whose
allocator keeps statistics.

TensorFlow's default CPU allocator keeps none where oneDNN's optimisations are
off by default (CPUs without AVX-512 VNNI/BF16: `reset_memory_stats('CPU:0')`
raises there). The BFC allocator keeps them on every CPU, but it must be
chosen before TensorFlow starts, hence the child, whatever the parent's
environment says.

    python -m tests.loss_memory OUT.npz IMPLEMENTATION [BLOCK_SIZE]
"""
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 1024


def peak_in_child(path, implementation, block_size=None):
  """Runs the measure in a child with the BFC allocator; returns
  (extra peak bytes, loss, gradient)."""
  env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC='true',
             TF_CPP_MIN_LOG_LEVEL='2')
  command = [sys.executable, '-m', 'tests.loss_memory', str(path),
             implementation] + ([str(block_size)] if block_size else [])
  done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  with np.load(path) as saved:
    return int(saved['extra']), saved['loss'], saved['gradient']


def _measure(path, implementation, block_size=None):
  import tensorflow as tf
  from supcon_tf.losses import contrastive_loss
  rng = np.random.default_rng(0)
  features = tf.constant(rng.normal(size=(BATCH, 2, 8)).astype(np.float32))
  labels = tf.constant(rng.integers(0, 10, size=BATCH))
  kernel = dict(implementation=implementation)
  if block_size:
    kernel['block_size'] = block_size

  @tf.function
  def step(f):
    with tf.GradientTape() as tape:
      tape.watch(f)
      loss = tf.reduce_mean(contrastive_loss(f, labels, temperature=0.1,
                                             **kernel))
    return loss, tape.gradient(loss, f)

  step(features)  # Traced, and its constants allocated, before measuring.
  tf.config.experimental.reset_memory_stats('CPU:0')
  before = tf.config.experimental.get_memory_info('CPU:0')['current']
  loss, gradient = step(features)
  extra = tf.config.experimental.get_memory_info('CPU:0')['peak'] - before
  np.savez(path, extra=extra, loss=loss.numpy(), gradient=gradient.numpy())


if __name__ == '__main__':
  _measure(sys.argv[1], sys.argv[2],
           int(sys.argv[3]) if len(sys.argv) > 3 else None)
