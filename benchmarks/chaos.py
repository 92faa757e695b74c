"""Crash recovery: N seeded trials of kill -9 at a random moment of a run,
each followed by a rerun of the same command to the end. The trials take
turns: a moment of the whole run (start-up included), a moment of stage 2,
and the first checkpoint write after a random moment.

    .venv/bin/python benchmarks/chaos.py --trials 20

The run: the digits preset (ResNet-20 SupCon) on 512 images in batches of
128, 4 stage-1 and 2 stage-2 epochs, a checkpoint every 2 steps,
--mode=train. A reference run without a kill gives the final step and the
duration the kill moments are drawn from. After each kill the benchmark
checks every checkpoint the stage folders' `checkpoint` index names (a
listed checkpoint that no longer reads is lost), then reruns the command
and compares its results.json with the reference's. One line per trial,
and last:
`trials: N, completed: N, same final step: N, lost checkpoints: 0`.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

flags.DEFINE_integer('trials', 20, 'Kill-and-rerun trials.')
flags.DEFINE_integer('seed', 0, 'Seed of the kill moments.')
FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS_OF_RUN = ['--preset=supcon_digits_resnet20', '--num_images=512',
                '--batch_size=128', '--stage_1_epochs=4', '--stage_2_epochs=2', '--mode=train',
                '--save_interval_steps=2', '--steps_per_loop=1',
                '--knn_every_epochs=0', '--noprogress']


def _command(model_dir):
  return [sys.executable, os.path.join(ROOT, 'bin', 'train_supcon.py'),
          *FLAGS_OF_RUN, f'--model_dir={model_dir}']


def _run_to_end(model_dir):
  """Runs the command to its end: (the last step of each stage's latest
  checkpoint, []) or (None, the error's last line)."""
  done = subprocess.run(_command(model_dir), capture_output=True, text=True)
  if done.returncode or not os.path.exists(os.path.join(model_dir,
                                                        'results.json')):
    return None, done.stderr.strip().splitlines()[-1:]
  import tensorflow as tf
  return tuple(
      int(tf.train.load_checkpoint(tf.train.latest_checkpoint(
          os.path.join(model_dir, stage))).get_tensor(
              'step/.ATTRIBUTES/VARIABLE_VALUE'))
      for stage in ('stage_1', 'stage_2')), []


def _writing_checkpoint(model_dir):
  return bool(glob.glob(os.path.join(model_dir, 'stage_*', '*_temp*')))


def _in_stage_2(model_dir):
  return os.path.exists(os.path.join(model_dir, 'stage_2'))


def _kill_at(model_dir, seconds, moment):
  """Starts the run and kills it (SIGKILL) at `moment`: 'any' (after
  `seconds`), 'stage 2' (`seconds` after stage 2 began) or 'write' (at the
  first checkpoint write seen after `seconds`). Returns where it landed."""
  process = subprocess.Popen(_command(model_dir), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  started = time.perf_counter()
  while process.poll() is None:
    if moment == 'stage 2' and not _in_stage_2(model_dir):
      started = time.perf_counter()
    elapsed = time.perf_counter() - started
    if elapsed >= seconds and (moment != 'write' or
                               _writing_checkpoint(model_dir)):
      writing = _writing_checkpoint(model_dir)
      process.send_signal(signal.SIGKILL)
      process.wait()
      stage = 'stage 2' if _in_stage_2(model_dir) else 'stage 1'
      return f'{stage} ({moment}, {elapsed:.1f} s)' + (
          ', writing a checkpoint' if writing else '')
    time.sleep(0.002 if moment == 'write' else 0.02)
  return f'no kill ({moment}: the run ended first)'


def _stage_seconds(model_dir, stage):
  with open(os.path.join(model_dir, 'results.json')) as f:
    return json.load(f)[f'{stage}_seconds']


def _lost_checkpoints(model_dir):
  """Checkpoints the stages' `checkpoint` index lists that do not read."""
  import tensorflow as tf
  lost = []
  for stage in glob.glob(os.path.join(model_dir, 'stage_*')):
    state = tf.train.get_checkpoint_state(stage)
    for path in (state.all_model_checkpoint_paths if state else []):
      try:
        reader = tf.train.load_checkpoint(path)
        reader.get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE')
      except Exception:  # Any failure to read is a lost checkpoint.
        lost.append(path)
  return lost


def main(_):
  scratch = tempfile.mkdtemp(prefix='chaos_')
  try:
    started = time.perf_counter()
    reference_dir = os.path.join(scratch, 'reference')
    reference, error = _run_to_end(reference_dir)
    if reference is None:
      raise SystemExit(f'The reference run failed: {error}')
    duration = time.perf_counter() - started
    stage_2_seconds = _stage_seconds(reference_dir, 'stage_2')
    print(f'reference: last steps {reference} (stage 1, stage 2), '
          f'{duration:.1f} s, stage 2 {stage_2_seconds:.1f} s', flush=True)
    rng = np.random.default_rng(FLAGS.seed)
    completed = same = lost_total = 0
    for trial in range(FLAGS.trials):
      model_dir = os.path.join(scratch, f'trial_{trial}')
      # In turn: any moment of the run, a moment of stage 2, a checkpoint
      # write.
      moment = ('any', 'stage 2', 'write')[trial % 3]
      seconds = float(rng.uniform(0.05, 0.9) * (
          stage_2_seconds if moment == 'stage 2' else duration))
      where = _kill_at(model_dir, seconds, moment)
      lost = _lost_checkpoints(model_dir)
      results, error = _run_to_end(model_dir)
      completed += results is not None
      equal = results == reference
      same += equal
      lost_total += len(lost)
      print(f'trial {trial}: killed in {where}; lost checkpoints '
            f'{len(lost)}; rerun '
            f'{"completed" if results else "failed: " + " ".join(error)}'
            f'{", same final step" if equal else ""}', flush=True)
      shutil.rmtree(model_dir, ignore_errors=True)
    print(f'trials: {FLAGS.trials}, completed: {completed}, same final step: '
          f'{same}, lost checkpoints: {lost_total}')
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
