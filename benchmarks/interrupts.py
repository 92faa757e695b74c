"""Ctrl-C and SIGTERM under load: N seeded trials, each a run that gets
SIGINT or SIGTERM (in turn) at a random moment while a busy-looping process
runs on every core beside it. Every fifth trial sends the signal twice, 0.2 s
apart: the second stops at once.

    .venv/bin/python benchmarks/interrupts.py --trials 20

The run: the digits preset (ResNet-20 SupCon) on 128 images in batches of
32, 3 stage-1 and 2 stage-2 epochs, a checkpoint every 2 steps,
--mode=train_then_eval without export and plot, so a signal can land in
start-up, either stage, a checkpoint write or the evaluation. A reference
run under the same load gives the span the moments are drawn from (5% to
95% of it; a run that ends before its moment gets no signal, and the trial
draws again within the shorter span). A trial passes when the run ends with
the signal's status (130 for SIGINT, 143 for SIGTERM), its last line says
where it stopped, and nothing printed a traceback. One line per
trial, and last: `trials: N, right status and line: N`.
"""
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

flags.DEFINE_integer('trials', 20, 'Signalled runs.')
flags.DEFINE_integer('seed', 0, 'Seed of the moments.')
flags.DEFINE_integer('load', 0, 'Busy-looping processes beside the run (0: '
                     'one per core).')
FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS_OF_RUN = ['--preset=supcon_digits_resnet20', '--num_images=128',
                '--batch_size=32', '--stage_1_epochs=3', '--stage_2_epochs=2',
                '--mode=train_then_eval', '--noexport', '--noplot',
                '--save_interval_steps=2', '--steps_per_loop=1',
                '--knn_every_epochs=1', '--noprogress']
# What the last line of an interrupted run says, wherever it stopped.
STOPPED = ('stopped', 'after the run had finished', 'again: stopped at once')


def _busy():
  while True:
    pass


def _command(model_dir):
  return [sys.executable, os.path.join(ROOT, 'bin', 'train_supcon.py'),
          *FLAGS_OF_RUN, f'--model_dir={model_dir}']


def _trial(model_dir, seconds, signum, twice):
  """Runs the command and signals it after `seconds`: (status, last line,
  whether a traceback was printed, the moment it landed); or, when the run
  ended first, the moment it ended."""
  process = subprocess.Popen(_command(model_dir), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  started = time.perf_counter()
  while process.poll() is None and time.perf_counter() - started < seconds:
    time.sleep(0.01)
  landed = time.perf_counter() - started
  if process.poll() is not None:
    process.communicate()
    return landed  # The run ended before its moment (then): nothing sent.
  process.send_signal(signum)
  if twice:
    time.sleep(0.2)
    if process.poll() is None:
      process.send_signal(signum)
  stdout, stderr = process.communicate(timeout=600)
  lines = stderr.strip().splitlines()
  return (process.returncode, lines[-1] if lines else '',
          'Traceback' in stdout + stderr, landed)


def main(_):
  load = [multiprocessing.Process(target=_busy, daemon=True)
          for _ in range(FLAGS.load or os.cpu_count())]
  for process in load:
    process.start()
  scratch = tempfile.mkdtemp(prefix='interrupts_')
  try:
    started = time.perf_counter()
    reference = subprocess.run(_command(os.path.join(scratch, 'reference')),
                               capture_output=True, text=True)
    duration = time.perf_counter() - started
    if reference.returncode:
      raise SystemExit('The reference run failed: ' +
                       reference.stderr.strip().splitlines()[-1])
    print(f'reference under a load of {len(load)} busy processes: '
          f'{duration:.1f} s', flush=True)
    rng = np.random.default_rng(FLAGS.seed)
    passed = 0
    for trial in range(FLAGS.trials):
      signum = (signal.SIGINT, signal.SIGTERM)[trial % 2]
      twice = trial % 5 == 4
      outcome = 0.
      while isinstance(outcome, float):
        seconds = float(rng.uniform(0.05, 0.95) * duration)
        shutil.rmtree(os.path.join(scratch, f'trial_{trial}'),
                      ignore_errors=True)
        outcome = _trial(os.path.join(scratch, f'trial_{trial}'), seconds,
                         signum, twice)
        if isinstance(outcome, float):
          # Faster than the reference: moments within this run's span.
          print(f'trial {trial}: the run ended at {outcome:.1f} s, before '
                f'{seconds:.1f} s; another moment', flush=True)
          duration = outcome
      status, last, traceback, landed = outcome
      want = 130 if signum == signal.SIGINT else 143
      right = (status == want and any(s in last for s in STOPPED) and
               not traceback)
      passed += right
      print(f'trial {trial}: {signal.Signals(signum).name}'
            f'{" twice" if twice else ""} at {landed:.1f} s: status {status}'
            f'{"" if right else " WRONG"}; {last}', flush=True)
    print(f'trials: {FLAGS.trials}, right status and line: {passed}')
  finally:
    for process in load:
      process.terminate()
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
