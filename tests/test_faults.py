"""Faults: a model_dir held by a live run, and writes that fail half-way."""
import json
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from supcon_tf import files


def _dead_pid():
  process = subprocess.Popen([sys.executable, '-c', 'pass'])
  process.wait()
  return process.pid


def test_a_model_dir_held_by_a_live_run_is_refused(tmp_path):
  sleeper = subprocess.Popen([sys.executable, '-c',
                              'import time; time.sleep(60)'])
  try:
    lock = tmp_path / files.LOCK_FILE
    lock.write_text(json.dumps({'pid': sleeper.pid,
                                'host': socket.gethostname()}))
    with pytest.raises(files.LockedError,
                       match=f'in use by process {sleeper.pid} on '):
      with files.model_dir_lock(str(tmp_path)):
        pass
    assert json.loads(lock.read_text())['pid'] == sleeper.pid  # Untouched.
  finally:
    sleeper.kill()
    sleeper.wait()


def test_a_stale_lock_is_taken_over_and_released(tmp_path, caplog):
  lock = tmp_path / files.LOCK_FILE
  dead = _dead_pid()
  lock.write_text(json.dumps({'pid': dead, 'host': socket.gethostname()}))
  with files.model_dir_lock(str(tmp_path)):
    assert json.loads(lock.read_text())['pid'] == os.getpid()
    # Held: a second run of this process's own is refused too.
    with pytest.raises(files.LockedError):
      with files.model_dir_lock(str(tmp_path)):
        pass
  assert not lock.exists()
  # Another host's lock cannot be checked: refused.
  lock.write_text(json.dumps({'pid': dead, 'host': 'elsewhere'}))
  with pytest.raises(files.LockedError, match='on elsewhere'):
    with files.model_dir_lock(str(tmp_path)):
      pass


def test_a_second_training_run_is_refused_before_writing(tmp_path):
  from supcon_tf.presets import make_config
  from supcon_tf.training import run as run_lib
  config = make_config('supcon_digits_resnet20', model_dir=str(tmp_path),
                       stage_1_epochs=1, stage_2_epochs=0, mode='train',
                       progress=False)
  (tmp_path / 'config.json').write_text(config.to_json())
  with files.model_dir_lock(str(tmp_path)):
    with pytest.raises(files.LockedError, match=str(os.getpid())):
      run_lib.run(config)
  assert not (tmp_path / 'stage_1').exists()
  assert not (tmp_path / 'results.json').exists()


def test_a_failed_write_names_the_path_and_keeps_the_previous_file(
    tmp_path, monkeypatch):
  path = tmp_path / 'results.json'
  files.write_text(str(path), 'old')

  def full_disk(*_):
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(os, 'replace', full_disk)
  with pytest.raises(OSError, match=f'Could not write {path}: No space'):
    files.write_text(str(path), 'new')
  assert path.read_text() == 'old'
  assert os.listdir(tmp_path) == ['results.json']  # No partial file left.


def test_a_failed_export_keeps_the_previous_one(tmp_path):
  export = tmp_path / 'export'
  with files.replaced_directory(str(export)) as partial:
    os.makedirs(partial)
    (tmp_path / 'export.partial' / 'saved_model.pb').write_text('first')
  with pytest.raises(RuntimeError, match='half-way'):
    with files.replaced_directory(str(export)) as partial:
      os.makedirs(partial)
      raise RuntimeError('failed half-way')
  assert (export / 'saved_model.pb').read_text() == 'first'
  assert sorted(os.listdir(tmp_path)) == ['export']


def _quadrant_config(model_dir, data_dir, **values):
  from supcon_tf.presets import make_config
  return make_config(**{**dict(
      model_dir=str(model_dir), input_fn='folder', data_dir=str(data_dir),
      mode='train', image_size=8, resnet_depth=20,
      projection_head_layers=(16,), batch_size=16, validation_fraction=0.,
      augmentation_type='AUTOAUGMENT', autoaugment_policy='cifar10',
      crop='pad', random_crop_padding=1, flip=False, stage_1_epochs=3,
      stage_1_warmup_epochs=0., stage_2_epochs=0, progress=False,
      plot=False, export=False), **values})


def _truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def test_a_corrupt_latest_checkpoint_falls_back_to_the_one_before(
    tmp_path, caplog):
  import tensorflow as tf
  from supcon_tf.training import errors, run as run_lib
  from tests import archives
  data = archives.write_quadrants(tmp_path / 'data', per_class=4,
                                  test_per_class=1)
  config = _quadrant_config(tmp_path / 'run', data)  # One step an epoch.
  assert run_lib.run(config)['stage_1_steps'] == 3
  stage = tmp_path / 'run' / 'stage_1'
  _truncate(str(stage / 'ckpt-3.data-00000-of-00001'))
  # The run resumes from ckpt-2, naming the unreadable one, and finishes.
  run_lib.run(config)
  assert any('ckpt-3 is unreadable' in r.getMessage() for r in caplog.records)
  reader = tf.train.load_checkpoint(str(stage / 'ckpt-3'))
  assert reader.get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE') == 3
  # None readable: one error naming them, every file left in place.
  for name in os.listdir(stage):
    if name.endswith('.data-00000-of-00001'):
      _truncate(str(stage / name))
  before = sorted(os.listdir(stage))
  more = _quadrant_config(tmp_path / 'run', data, stage_1_epochs=3)
  with pytest.raises(errors.UnreadableCheckpointError,
                     match='No readable checkpoint in .*ckpt-3.*ckpt-2'):
    run_lib.run(more)
  assert sorted(os.listdir(stage)) == before


def test_a_stages_figures_resume_with_it_and_older_checkpoints_still_read(
    tmp_path):
  """StageFigures ride in the stage's checkpoint (what results.json reports
  of a stage resumed after its end); a checkpoint written without them
  (before they were kept), or with figures of another length, restores, the
  figures unknown."""
  import tensorflow as tf
  from supcon_tf.training.checkpoints import StageCheckpoint
  from supcon_tf.training.figures import StageFigures

  def stage_checkpoint(figures):
    step = tf.Variable(0, dtype=tf.int64)
    return step, StageCheckpoint('stage_1', str(tmp_path), None, True, 3,
                                 1e4, figures, step=step)

  old = tf.Variable(4, dtype=tf.int64)
  tf.train.CheckpointManager(tf.train.Checkpoint(step=old), str(tmp_path),
                             3).save(4)
  figures = StageFigures(6)
  step, saved = stage_checkpoint(figures)
  assert saved.restore().endswith('ckpt-4') and int(step.numpy()) == 4
  assert figures.result == {'steps': 6, 'loss': None, 'seconds': 0.}

  figures.result.update(loss=0.123456789, knn_val_top1=0.75,
                        collapsed_epochs=2)
  figures.start_clock()
  saved.save(5)
  again = StageFigures(6)
  step, saved = stage_checkpoint(again)
  assert saved.restore().endswith('ckpt-5') and int(step.numpy()) == 4
  result = again.result
  assert result['seconds'] > 0
  assert {k: result[k] for k in ('loss', 'knn_val_top1', 'collapsed_epochs')
          } == {'loss': 0.123456789, 'knn_val_top1': 0.75,
                'collapsed_epochs': 2}
  assert 'loss_floor' not in result

  other = tf.Variable([1., 2.], dtype=tf.float64)
  tf.train.CheckpointManager(tf.train.Checkpoint(step=old, figures=other),
                             str(tmp_path), 3).save(6)
  later = StageFigures(6)
  step, saved = stage_checkpoint(later)
  assert saved.restore().endswith('ckpt-6') and int(step.numpy()) == 4
  assert later.result == {'steps': 6, 'loss': None, 'seconds': 0.}


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch):
  """After the first checkpoint, the process may write no file above 64 KB
  (RLIMIT_FSIZE: the kernel refuses the write, as on a full disk or a
  quota): the next save fails with one error naming the directory, leaves
  nothing of itself, and the rerun resumes from the first and finishes."""
  import resource
  import signal

  import tensorflow as tf
  from supcon_tf.training import run as run_lib
  from tests import archives
  data = archives.write_quadrants(tmp_path / 'data', per_class=4,
                                  test_per_class=1)
  config = _quadrant_config(tmp_path / 'run', data)  # One step an epoch.
  stage = tmp_path / 'run' / 'stage_1'
  original = tf.train.CheckpointManager.save
  limits = resource.getrlimit(resource.RLIMIT_FSIZE)

  def save_then_fill(manager, *args, **kwargs):
    path = original(manager, *args, **kwargs)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))
    return path
  monkeypatch.setattr(tf.train.CheckpointManager, 'save', save_then_fill)
  # Without this handler the kernel's SIGXFSZ would end the process.
  handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  try:
    with pytest.raises(files.WriteError,
                       match=r'stage_1: could not write checkpoint 2 in .*'
                             r'stage_1 \(.*\); the previous one is intact: '
                             r'.*ckpt-1\. Free space'):
      run_lib.run(config)
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    signal.signal(signal.SIGXFSZ, handler)
  assert sorted(os.listdir(stage)) == [
      'checkpoint', 'ckpt-1.data-00000-of-00001', 'ckpt-1.index']
  assert tf.train.latest_checkpoint(str(stage)).endswith('ckpt-1')
  monkeypatch.setattr(tf.train.CheckpointManager, 'save', original)
  assert run_lib.run(config)['stage_1_steps'] == 3
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(stage)))
  assert reader.get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE') == 3


def test_deterministic_runs_give_the_same_losses_step_for_step(tmp_path):
  from supcon_tf.training import summaries
  flags = ['--preset=supcon_digits_resnet20', '--num_images=192',
           '--batch_size=32', '--stage_1_epochs=1', '--stage_2_epochs=0',
           '--mode=train',
           '--steps_per_loop=1', '--summary_interval_steps=1',
           '--knn_every_epochs=0', '--noprogress', '--seed=3',
           '--deterministic']
  runs = [subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'bin', 'train_supcon.py'), *flags,
       f'--model_dir={tmp_path / name}'], stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True) for name in ('a', 'b')]
  for process in runs:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-2000:]
  losses = [summaries.read_scalars(
      str(tmp_path / name / 'summaries' / 'stage_1'))['train/loss']
            for name in ('a', 'b')]
  assert len(losses[0]) == 173 // 32  # 192 less the validation tenth.
  assert losses[0] == losses[1]
  assert len({value for _, value in losses[0]}) > 1


def test_a_nan_loss_ends_the_app_with_one_line(tmp_path):
  done = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'bin', 'train_supcon.py'),
       '--preset=supcon_digits_resnet20', '--num_images=300',
       '--batch_size=32', '--stage_1_epochs=2',
       '--stage_1_base_learning_rate=1e30',
       '--noprogress', f'--model_dir={tmp_path / "run"}'],
      capture_output=True, text=True, timeout=600)
  assert done.returncode == 1, done.stderr[-2000:]
  assert 'Traceback' not in done.stderr
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith('train_supcon.py: stage_1: the loss became nan')
