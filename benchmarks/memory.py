#!/usr/bin/env python3
"""Peak memory and time of one training step, with and without chunks
(`--micro_batch_size`), and the largest batch within a memory budget.

Each configuration runs in a fresh process (peak resident memory is a
process's high-water mark): the stage-1 training step of a preset (default
the official ResNet-50 CIFAR-10 SupCon script's model, head and loss, float32)
on random views, `--steps` timed steps after one that traces. Then, for no
chunks and for the smallest chunk, the largest batch whose step stays within
`--budget_gib`, found by running steps (doubling, then halving the gap to
`--granularity` examples), up to `--max_batch`.

    python benchmarks/memory.py
    python benchmarks/memory.py --batch=128 --chunks=0,64,32,16 --budget_gib=8
    python benchmarks/memory.py --preset=seed_cifar10_resnet20_supcon_autoaugment \
        --batch=64 --chunks=0,16 --budget_gib=2 --max_batch=1024

Memory is the process's peak resident set (TensorFlow and the model
included); `step` is what the step added to what the process held before it.
The last line is `largest batch within N GiB, chunks of C / unchunked: R`
(with `--budget_gib=0`, the ratios of the last chunk size to the unchunked
step).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

GIB = 2 ** 30


def _resident():
  """This process's resident memory now, in bytes."""
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmRSS:'):
        return int(line.split()[1]) * 1024
  return 0


def _peak():
  """This process's high-water resident memory, in bytes (Linux: KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args):
  """One configuration: prints a JSON line of its figures."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import keras
  import numpy as np
  import tensorflow as tf

  from supcon_tf.presets import make_config
  from supcon_tf.data import sources
  from supcon_tf.training import run as run_lib, stages
  from supcon_tf.training.loop import Trainer

  config = make_config(args.preset, batch_size=args.batch,
                       micro_batch_size=args.micro_batch_size,
                       allow_mixed_precision=args.mixed_precision,
                       progress=False)
  keras.mixed_precision.set_global_policy(
      'mixed_bfloat16' if args.mixed_precision else 'float32')
  keras.utils.set_random_seed(0)
  size = config.image_size
  model = run_lib.build_model(config, 10)
  model(tf.zeros([1, size, size, 3]))
  train = sources.Split(np.zeros(args.batch), images=np.zeros(
      (args.batch, 1, 1, 3), np.uint8))
  trainer = Trainer(config, tf.distribute.get_strategy(), model,
                    sources.Source('random', {'train': train}, 10),
                    sources.UNIT_MEAN_STD)
  stage = stages.stage_from_config(config, 1)
  rng = np.random.default_rng(0)
  views = rng.normal(size=(args.batch, stages.views_for(stage, config), size,
                           size, 3)).astype(np.float32)
  labels = rng.integers(0, 10, args.batch)
  starts = []
  before = _resident()
  terms, _ = trainer.train_on_batches(
      stage, [(views, labels)] * (1 + args.steps),
      lambda index, optimizer, step: starts.append(time.perf_counter()))
  starts.append(time.perf_counter())
  # The fastest step: the least disturbed by other load on the machine.
  seconds = np.diff(starts)[1:]
  print(json.dumps({
      'batch': args.batch, 'micro_batch_size': args.micro_batch_size,
      'peak': _peak(), 'before': before,
      'seconds': float(np.min(seconds)) if len(seconds) else None,
      'loss': terms[-1]['loss']}))


def _resident_of(pid):
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def measure(args, batch, micro_batch_size, steps, limit):
  """The figures of one configuration, run in a fresh process. A process
  whose resident memory passes `limit` bytes is stopped (it would not fit):
  its figures are {'peak': what it had reached, 'stopped': True}; None when
  the process failed otherwise."""
  command = [sys.executable, os.path.abspath(__file__), '--child',
             f'--preset={args.preset}', f'--batch={batch}',
             f'--micro_batch_size={micro_batch_size}', f'--steps={steps}',
             f'--mixed_precision={int(args.mixed_precision)}']
  with tempfile.TemporaryFile('w+') as out, \
      tempfile.TemporaryFile('w+') as err:
    process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
    reached = 0
    while process.poll() is None:
      reached = max(reached, _resident_of(process.pid))
      if reached > limit:
        process.kill()
        process.wait()
        return {'peak': reached, 'stopped': True}
      time.sleep(0.1)
    out.seek(0)
    err.seek(0)
    if process.returncode:
      tail = err.read().strip().splitlines()[-1:] or ['no output']
      print(f'  batch {batch}, {_chunk_name(micro_batch_size)}: failed '
            f'({tail[0][:120]})', flush=True)
      return None
    return json.loads(out.read().strip().splitlines()[-1])


def _chunk_name(micro_batch_size):
  return (f'chunks of {micro_batch_size}' if micro_batch_size
          else 'unchunked')


def _row(micro_batch_size, figures):
  return (f'{_chunk_name(micro_batch_size):>15}: peak '
          f'{figures["peak"] / GIB:6.2f} GiB, step '
          f'{(figures["peak"] - figures["before"]) / GIB:6.2f} GiB, '
          f'{figures["seconds"]:7.2f} s/step, loss {figures["loss"]:.4f}')


def largest_batch(args, micro_batch_size, start):
  """The largest batch (a multiple of the chunk and of `--granularity`)
  whose one step peaks within the budget, and the figures measured on the
  way: {batch: peak bytes or None}."""
  budget = args.budget_gib * GIB
  # Chunked, a multiple of the chunk.
  unit = (-(-args.granularity // micro_batch_size) * micro_batch_size
          if micro_batch_size else args.granularity)
  peaks = {}

  def fits(batch):
    if batch not in peaks:
      # Stopped a little past the budget: enough to know it does not fit.
      figures = measure(args, batch, micro_batch_size, 0, budget + GIB / 4)
      peaks[batch] = figures and figures['peak']
      shown = ('failed' if not figures else
               f'over {budget / GIB:g} GiB, stopped' if 'stopped' in figures
               else f'{peaks[batch] / GIB:.2f} GiB')
      print(f'  {_chunk_name(micro_batch_size)}, batch {batch}: {shown}',
            flush=True)
    return peaks[batch] is not None and peaks[batch] <= budget

  top = max(unit, args.max_batch // unit * unit)
  low, batch = 0, min(top, max(unit, start // unit * unit))
  while fits(batch):  # Doubling from the start.
    low = batch
    if batch >= top:
      return low, peaks
    batch = min(2 * batch, top)
  high = batch  # The smallest known not to fit.
  while not low and high > unit:  # Halving, when even the start failed.
    batch = max(unit, high // 2 // unit * unit)
    if fits(batch):
      low = batch
    else:
      high = batch
  while low and high - low > unit:
    middle = (low + high) // 2 // unit * unit
    if fits(middle):
      low = middle
    else:
      high = middle
  return low, peaks


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--preset', default='supcon_cifar10_resnet50',
                      help='the model, head, loss and optimizer of stage 1')
  parser.add_argument('--batch', type=int, default=128,
                      help='examples per step (each with the preset\'s views)')
  parser.add_argument('--chunks', default='0,64,32,16',
                      help='--micro_batch_size values to compare (0: off)')
  parser.add_argument('--steps', type=int, default=3,
                      help='timed steps after the traced one (the fastest '
                      'counts)')
  parser.add_argument('--repeats', type=int, default=2,
                      help='runs of each configuration, taken in turn')
  parser.add_argument('--budget_gib', type=float, default=8.,
                      help='memory budget of the largest-batch search (0: '
                      'no search)')
  parser.add_argument('--max_batch', type=int, default=2048,
                      help='the largest batch the search tries')
  parser.add_argument('--granularity', type=int, default=16,
                      help='the search stops when it knows the batch to '
                      'this many examples')
  parser.add_argument('--limit_gib', type=float, default=20.,
                      help='a process past this much resident memory is '
                      'stopped (the machine\'s memory, less some)')
  parser.add_argument('--mixed_precision', type=int, choices=[0, 1],
                      default=0, help='bfloat16 compute (the scripts\' '
                      'allow_mixed_precision; float32 by default)')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--micro_batch_size', type=int, default=0,
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child(args)
    return
  chunks = [int(c) for c in args.chunks.split(',')]
  bad = [c for c in chunks if c < 0 or (c and args.batch % c)]
  if bad:
    parser.error(f'--chunks: {bad[0]} does not divide --batch={args.batch}')

  print(f'{args.preset}, batch {args.batch}, one process per line:')
  rows = {}
  # Configurations in turn, `--repeats` times: a slow spell of the machine
  # then falls on each alike; each keeps its fastest step and lowest peak.
  for micro_batch_size in chunks * args.repeats:
    figures = measure(args, args.batch, micro_batch_size, args.steps,
                      args.limit_gib * GIB)
    if figures and 'stopped' in figures:
      print(f'  {_chunk_name(micro_batch_size):>15}: over --limit_gib, '
            'stopped', flush=True)
    if not figures or 'stopped' in figures:
      continue
    print(f'  {_row(micro_batch_size, figures)}', flush=True)
    if micro_batch_size in rows:
      kept = rows[micro_batch_size]
      figures = dict(figures, seconds=min(figures['seconds'],
                                          kept['seconds']))
      if kept['peak'] < figures['peak']:
        figures.update(peak=kept['peak'], before=kept['before'])
    rows[micro_batch_size] = figures
  if args.repeats > 1:
    print(f'the lowest peak and the fastest step of {args.repeats} runs:')
    for micro_batch_size, figures in rows.items():
      print(f'  {_row(micro_batch_size, figures)}')
  unchunked = rows.get(0)
  for micro_batch_size, figures in rows.items():
    if micro_batch_size and unchunked:
      step = figures['peak'] - figures['before']
      print(f'chunks of {micro_batch_size} / unchunked: peak '
            f'{figures["peak"] / unchunked["peak"]:.2f}x, step memory '
            f'{step / (unchunked["peak"] - unchunked["before"]):.2f}x, '
            f'step time {figures["seconds"] / unchunked["seconds"]:.2f}x')
  if not args.budget_gib:
    return
  smallest = min([c for c in chunks if c] or [0])
  budget = args.budget_gib * GIB
  found = {}
  for micro_batch_size in sorted({0, smallest}):
    found[micro_batch_size], peaks = largest_batch(args, micro_batch_size,
                                                   args.batch)
    measured = sorted((b, p) for b, p in peaks.items() if p and p <= budget)
    if len(measured) >= 2:
      (b0, p0), (b1, p1) = measured[0], measured[-1]
      print(f'{_chunk_name(micro_batch_size)}: '
            f'{(p1 - p0) / (b1 - b0) / 2 ** 20:.1f} MiB more per example '
            f'(batches {b0} to {b1})')
    capped = ' (the largest tried)' if found[micro_batch_size] >= \
        args.max_batch else ''
    print(f'largest batch within {args.budget_gib:g} GiB, '
          f'{_chunk_name(micro_batch_size)}: {found[micro_batch_size]}'
          f'{capped}', flush=True)
  if smallest and found.get(0):
    at_least = 'at least ' if found[smallest] >= args.max_batch else ''
    print(f'largest batch within {args.budget_gib:g} GiB, chunks of '
          f'{smallest} / unchunked: {at_least}'
          f'{found[smallest] / found[0]:.1f}')


if __name__ == '__main__':
  main()
