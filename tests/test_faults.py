"""Faults: a model_dir held by a live run, and writes that fail half-way."""
import json
import os
import socket
import subprocess
import sys

import pytest

from supcon_tf.training import files


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
  from supcon_tf.config import make_config
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
