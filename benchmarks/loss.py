#!/usr/bin/env python3
"""Contrastive loss forward + backward: supcon_tf against a tiled-mask implementation.

The tiled implementation is the straightforward one (as the official code does it):
[V*B, V*B] float masks tiled from the class mask, the masked softmax written with
elementwise ops, and autodiff keeping every intermediate. Both run on the same
features in separate child processes, so that each one's extra memory is its own:
the rise of the peak resident set (VmHWM, reset after warm-up) over the resident
set before the timed calls.

    python benchmarks/loss.py                       # batch 4096 x 2 views x 128-d
    python benchmarks/loss.py --batch 1024 --repeats 3

The last line is `speedup: N` (tiled seconds / supcon_tf seconds).
"""
import argparse
import json
import os
import subprocess
import sys
import time


def tiled_contrastive_loss(features, labels, temperature):
  """OUTSIDE / ALL / ALL_VIEWS SupCon with tiled [V*B, V*B] masks."""
  import tensorflow as tf
  batch, views = features.shape[0], features.shape[1]
  flat = tf.reshape(tf.transpose(features, [1, 0, 2]), [views * batch, -1])
  one_hot = tf.one_hot(labels, tf.reduce_max(labels) + 1)
  class_mask = tf.tile(tf.matmul(one_hot, one_hot, transpose_b=True),
                       [views, views])
  not_self = 1. - tf.eye(views * batch)
  positives = class_mask * not_self
  negatives = 1. - class_mask
  logits = tf.matmul(flat, flat, transpose_b=True) / temperature
  logits -= tf.reduce_max(tf.stop_gradient(logits), axis=1, keepdims=True)
  exp_logits = tf.exp(logits)
  denominator = (tf.reduce_sum(exp_logits * negatives, 1, keepdims=True) +
                 tf.reduce_sum(exp_logits * positives, 1, keepdims=True))
  log_probs = tf.reduce_sum((logits - tf.math.log(denominator)) * positives, 1)
  log_probs = tf.math.divide_no_nan(log_probs, tf.reduce_sum(positives, 1))
  loss = -temperature * log_probs
  return tf.reduce_mean(tf.reshape(loss, [views, batch]), axis=0)


def _read_status(field):
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1]) * 1024
  raise RuntimeError(field)


def child(impl, batch, views, dim, repeats, temperature):
  """Runs one implementation; prints a JSON line with seconds and extra bytes."""
  import numpy as np
  import tensorflow as tf
  from supcon_tf.losses import contrastive_loss

  rng = np.random.default_rng(0)
  z = rng.normal(size=(batch, views, dim)).astype(np.float32)
  z /= np.linalg.norm(z, axis=-1, keepdims=True)
  features = tf.constant(z)
  labels = tf.constant(rng.integers(0, 10, size=batch), tf.int32)

  def loss_fn(f):
    if impl == 'tiled':
      return tiled_contrastive_loss(f, labels, temperature)
    return contrastive_loss(f, labels, temperature=temperature)

  @tf.function
  def step(f):
    with tf.GradientTape() as tape:
      tape.watch(f)
      loss = tf.reduce_mean(loss_fn(f))
    return loss, tape.gradient(loss, f)

  loss, grad = step(features)  # Trace and compile.
  loss, grad = step(features)
  baseline = _read_status('VmRSS')
  with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # Resets VmHWM to the current resident set.
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    loss, grad = step(features)
    grad.numpy()
    seconds.append(time.perf_counter() - start)
  extra = _read_status('VmHWM') - baseline
  print(json.dumps(dict(impl=impl, seconds=min(seconds), extra_bytes=extra,
                        loss=float(loss), grad=grad.numpy().ravel()[:4].tolist())))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=4096)
  parser.add_argument('--views', type=int, default=2)
  parser.add_argument('--dim', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--temperature', type=float, default=0.1)
  parser.add_argument('--child', choices=['tiled', 'supcon_tf'])
  args = parser.parse_args()
  if args.child:
    child(args.child, args.batch, args.views, args.dim, args.repeats,
          args.temperature)
    return
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  results = {}
  for impl in ('tiled', 'supcon_tf'):
    out = subprocess.run(
        [sys.executable, __file__, '--child', impl] +
        [f'--{k}={getattr(args, k)}' for k in
         ('batch', 'views', 'dim', 'repeats', 'temperature')],
        env=env, check=True, capture_output=True, text=True).stdout
    results[impl] = json.loads(out.strip().splitlines()[-1])
  tiled, ours = results['tiled'], results['supcon_tf']
  print(f'shape: batch {args.batch} x {args.views} views x {args.dim}-d, '
        f'forward + backward')
  for name, r in results.items():
    print(f'{name}: {r["seconds"]:.3f} s, extra memory '
          f'{r["extra_bytes"] / 2**20:.0f} MiB, loss {r["loss"]:.6f}')
  print(f'memory ratio (supcon_tf / tiled): '
        f'{ours["extra_bytes"] / max(tiled["extra_bytes"], 1):.3f}')
  print(f'speedup: {tiled["seconds"] / ours["seconds"]:.2f}')


if __name__ == '__main__':
  main()
