#!/usr/bin/env python3
"""Contrastive loss forward + backward: supcon_tf's kernels against a tiled-mask
implementation.

The tiled implementation is the straightforward one (as the official code does it):
[V*B, V*B] float masks tiled from the class mask, the masked softmax written with
elementwise ops, and autodiff keeping every intermediate. supcon_tf runs as
`implementation='fused'` (the whole [N, N] matrix, hand-written gradient) and
'blockwise' (blocks of anchors, memory O(N x block)); 'auto' is fused up to
4,096 x 2 views and blockwise above. Each one runs in its own child process on
the same features, with TensorFlow's BFC allocator (TF_CPU_ALLOCATOR_USE_BFC=true,
set for the child: it keeps statistics on every CPU). Extra memory is its peak
during one timed call over what it held before (the resident set is no measure:
freed tensors stay mapped on some machines).

    python benchmarks/loss.py                   # batch 4096 x 2 views x 128-d
    python benchmarks/loss.py --batch 1024 --repeats 3
    python benchmarks/loss.py --sweep --plot docs/loss_sweep.png
                                                # 2,048 to 32,768 views
    python benchmarks/loss.py --products        # the [N, N] products' forms

The last line is `speedup: N` (tiled seconds / fused seconds), or with --sweep
`blockwise_mib_at_32768_views: N`.
"""
import argparse
import json
import os
import subprocess
import sys
import time

IMPLEMENTATIONS = ('tiled', 'fused', 'blockwise')
# The tiled step's peak is about 7 float32 [N, N] matrices (measured: 1,796 MiB
# at N = 8,192); it is skipped where that would not fit.
TILED_MATRICES = 7


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
    return contrastive_loss(f, labels, temperature=temperature,
                            implementation=impl)

  @tf.function
  def step(f):
    with tf.GradientTape() as tape:
      tape.watch(f)
      loss = tf.reduce_mean(loss_fn(f))
    return loss, tape.gradient(loss, f)

  loss, grad = step(features)  # Trace and compile.
  seconds, extra = [], 0
  for _ in range(repeats):
    tf.config.experimental.reset_memory_stats('CPU:0')
    held = tf.config.experimental.get_memory_info('CPU:0')['current']
    start = time.perf_counter()
    loss, grad = step(features)
    grad.numpy()
    seconds.append(time.perf_counter() - start)
    peak = tf.config.experimental.get_memory_info('CPU:0')['peak']
    extra = max(extra, peak - held)
  print(json.dumps(dict(impl=impl, seconds=min(seconds), extra_bytes=extra,
                        loss=float(loss))))


def run(impl, batch, args):
  # The BFC allocator keeps statistics on every CPU; the default one keeps
  # none where oneDNN's optimisations are off by default (no AVX-512 VNNI).
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             TF_CPU_ALLOCATOR_USE_BFC='true')
  command = [sys.executable, __file__, '--child', impl, f'--batch={batch}'] + [
      f'--{k}={getattr(args, k)}' for k in ('views', 'dim', 'repeats',
                                            'temperature')]
  out = subprocess.run(command, env=env, check=True, capture_output=True,
                       text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def _available_bytes():
  with open('/proc/meminfo') as f:
    for line in f:
      if line.startswith('MemAvailable:'):
        return int(line.split()[1]) * 1024
  return 0


def compare(args):
  results = {impl: run(impl, args.batch, args) for impl in IMPLEMENTATIONS}
  print(f'shape: batch {args.batch} x {args.views} views x {args.dim}-d, '
        f'forward + backward')
  for name, r in results.items():
    print(f'{name}: {r["seconds"]:.3f} s, extra memory {_mib(r)}, '
          f'loss {r["loss"]:.6f}')
  tiled = results['tiled']
  for name in ('fused', 'blockwise'):
    memory = (f', {results[name]["extra_bytes"] / tiled["extra_bytes"]:.3f} '
              'of the memory')
    print(f'{name} against tiled: '
          f'{tiled["seconds"] / results[name]["seconds"]:.2f}x the speed'
          f'{memory}')
  print(f'speedup: {tiled["seconds"] / results["fused"]["seconds"]:.2f}')


def _mib(result):
  return f'{result["extra_bytes"] / 2**20:,.0f} MiB'


def sweep(args):
  rows = []
  for views_total in (2048, 4096, 8192, 16384, 32768):
    batch = views_total // args.views
    row = dict(views=views_total)
    for impl in IMPLEMENTATIONS:
      need = TILED_MATRICES * views_total ** 2 * 4
      if impl == 'tiled' and need > 0.8 * _available_bytes():
        row[impl] = None
        continue
      row[impl] = run(impl, batch, args)
      print(f'{views_total} views, {impl}: {row[impl]["seconds"]:.3f} s, '
            f'{_mib(row[impl])}', flush=True)
    rows.append(row)

  def cell(r):
    if r is None:
      return '-'
    return f'{r["seconds"]:.2f} s, {_mib(r)}'
  print('| views | ' + ' | '.join(IMPLEMENTATIONS) + ' |')
  print('|---|' + '---|' * len(IMPLEMENTATIONS))
  for row in rows:
    print(f'| {row["views"]:,} | ' +
          ' | '.join(cell(row[impl]) for impl in IMPLEMENTATIONS) + ' |')
  if args.plot:
    plot(rows, args.plot)
    print(f'plot: {args.plot}')
  print(f'blockwise_mib_at_{rows[-1]["views"]}_views: '
        f'{rows[-1]["blockwise"]["extra_bytes"] / 2**20:.0f}')


def plot(rows, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
  for impl, marker in zip(IMPLEMENTATIONS, 'osD'):
    points = [(r['views'], r[impl]) for r in rows if r[impl] is not None]
    views = [p[0] for p in points]
    time_axis.plot(views, [p[1]['seconds'] for p in points], marker=marker,
                   label=impl)
    memory_axis.plot(views, [p[1]['extra_bytes'] / 2**20
                             for p in points], marker=marker, label=impl)
  for axis, label in ((time_axis, 'seconds, forward + backward'),
                      (memory_axis, 'extra memory, MiB')):
    axis.set_xscale('log', base=2)
    axis.set_yscale('log')
    axis.set_xlabel('views in the batch (N)')
    axis.set_ylabel(label)
    axis.grid(True, which='both', alpha=.3)
    axis.legend()
  figure.suptitle('Contrastive loss, 128-d, 2 views per sample')
  figure.tight_layout()
  figure.savefig(path, dpi=100)


def products(args):
  """Seconds of the loss's three [N, N]-sized matrix products (N = batch x
  views) in each form, by TensorFlow's kernels (oneDNN) and by XLA: where the
  loss's time goes, and why each product runs where it runs."""
  import numpy as np
  import tensorflow as tf
  n = args.batch * args.views
  rng = np.random.default_rng(0)
  features = tf.constant(rng.normal(size=(n, args.dim)).astype(np.float32))
  weights = tf.constant(rng.normal(size=(n, n)).astype(np.float32))
  forms = {
      'logits Z Z^T': (lambda z, g: tf.linalg.matmul(z, z, transpose_b=True)),
      'E @ Z': (lambda z, g: tf.linalg.matmul(g, z)),
      'E^T @ Z': (lambda z, g: tf.linalg.matmul(g, z, transpose_a=True)),
      '(Z^T E)^T': (lambda z, g: tf.transpose(
          tf.linalg.matmul(z, g, transpose_a=True))),
      'exp and row sum': (lambda z, g: tf.reduce_sum(tf.exp(g), axis=1)),
  }
  print(f'N = {n}, {args.dim}-d: seconds, best of {args.repeats}')
  print("| product | TensorFlow's kernels | XLA |")
  print('|---|---|---|')
  for name, form in forms.items():
    cells = []
    for jit in (False, True):
      fn = tf.function(form, jit_compile=jit)
      fn(features, weights).numpy()
      times = []
      for _ in range(args.repeats):
        start = time.perf_counter()
        fn(features, weights).numpy()
        times.append(time.perf_counter() - start)
      cells.append(f'{min(times):.3f}')
    print(f'| {name} | ' + ' | '.join(cells) + ' |')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=4096)
  parser.add_argument('--views', type=int, default=2)
  parser.add_argument('--dim', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--temperature', type=float, default=0.1)
  parser.add_argument('--sweep', action='store_true',
                      help='2,048 to 32,768 views; --repeats 2 is enough')
  parser.add_argument('--plot', help='with --sweep: write the plot here')
  parser.add_argument('--products', action='store_true',
                      help="time the loss's matrix products in each form")
  parser.add_argument('--child', choices=IMPLEMENTATIONS)
  args = parser.parse_args()
  if args.child:
    child(args.child, args.batch, args.views, args.dim, args.repeats,
          args.temperature)
  elif args.sweep:
    sweep(args)
  elif args.products:
    products(args)
  else:
    compare(args)


if __name__ == '__main__':
  main()
