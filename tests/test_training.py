"""Training: the stages learn, freeze, resume, distribute, export and fail
cleanly. On a tiny separable image folder the tests write themselves."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from supcon_tf import losses
from supcon_tf.config import Config
from supcon_tf.models import layers
from supcon_tf.presets import PRESETS, make_config
from supcon_tf.training import loop, optimizers, precision, run as run_lib
from supcon_tf.training import summaries
from supcon_tf.training import stages
from supcon_tf.training import memory as memory_lib
from supcon_tf.training import objective as objective_lib
from supcon_tf.training import step as step_lib
from tests import archives

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return archives.write_quadrants(tmp_path_factory.mktemp('quadrants'))


def _config(model_dir, data_dir, **values):
  base = dict(
      model_dir=str(model_dir), input_fn='folder', data_dir=str(data_dir),
      mode='train_then_eval', image_size=8, resnet_depth=20,
      projection_head_layers=(32, 16), weight_init='seed', batch_size=16,
      eval_batch_size=32, validation_fraction=0.25, temperature=0.1,
      augmentation_type='AUTOAUGMENT', autoaugment_policy='cifar10',
      crop='pad', random_crop_padding=1, flip=False,
      eval_crop_method='IDENTITY', stage_1_epochs=8, stage_1_optimizer='ADAM',
      stage_1_warmup_epochs=0., stage_1_weight_decay=1e-4,
      stage_1_base_learning_rate=0.02, stage_1_min_learning_rate_ratio=0.1,
      stage_2_epochs=4, stage_2_warmup_epochs=0., stage_2_optimizer='MOMENTUM',
      stage_2_update_encoder_batch_norm=False, stage_2_base_learning_rate=40.,
      knn_every_epochs=4, steps_per_loop=3, progress=False, plot=False,
      export=False)
  return make_config(**{**base, **values})


def _scalar_tags(directory):
  """The summary tags written in a directory of event files."""
  return set(summaries.read_scalars(str(directory)))


def _restored(config, stage):
  """A fresh model holding `stage`'s latest checkpoint."""
  model = run_lib.build_model(config, 4)
  model(tf.zeros([1, config.image_size, config.image_size, 3]))
  tf.train.Checkpoint(model=model).read(tf.train.latest_checkpoint(
      os.path.join(config.model_dir, stage))).expect_partial()
  return model


def test_supcon_learns_and_stage_2_leaves_the_encoder_alone(tmp_path,
                                                            data_dir):
  config = _config(tmp_path / 'run', data_dir, export=True, plot=True)
  results = run_lib.run(config)
  assert results['knn_val_top1'] >= 0.9
  assert results['test_top1'] >= 0.9 and results['val_top1'] >= 0.9
  assert results['stage_1_steps'] == 8 * 3 and results['stage_2_steps'] == 12
  saved = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert saved['test_top1'] == results['test_top1']
  assert np.isfinite(saved['stage_1_final_loss'])
  assert (tmp_path / 'run' / 'embeddings.png').stat().st_size > 1000
  assert _scalar_tags(tmp_path / 'run' / 'summaries' / 'stage_1') >= {
      'train/loss', 'train/contrastive_loss', 'train/learning_rate',
      'train/examples_per_second', 'monitor/knn_val_top1', 'train/loss_floor',
      'train/excess_loss'}
  assert 0 < saved['stage_1_final_loss_floor'] < saved['stage_1_final_loss']
  assert saved['stage_1_final_excess_loss'] > 0
  # What the official evaluation reports, and the validation top-1.
  assert _scalar_tags(tmp_path / 'run' / 'summaries' / 'eval') == {
      'eval/top_1_accuracy', 'eval/top_5_accuracy',
      'eval/loss/contrastive_loss', 'eval/loss/cross_entropy_loss',
      'eval/validation_top_1_accuracy'}
  assert Config.from_json((tmp_path / 'run' / 'config.json').read_text()) == (
      config)
  # Stage 2 changed the classifier and nothing of the encoder, BatchNorm
  # moving statistics included.
  before, after = _restored(config, 'stage_1'), _restored(config, 'stage_2')
  initial = run_lib.build_model(config, 4)
  initial(tf.zeros([1, 8, 8, 3]))
  assert any('moving_mean' in v.path for v in before.encoder.weights)
  for b, a, i in zip(before.encoder.weights, after.encoder.weights,
                     initial.encoder.weights):
    np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=b.path)
  # ... while stage 1 had trained the encoder, statistics included.
  assert not np.array_equal(before.encoder.weights[0].numpy(),
                            initial.encoder.weights[0].numpy())
  assert any('moving_mean' in v.path and not np.allclose(v.numpy(), 0.)
             for v in before.encoder.weights)
  for b, a in zip(before.classification_head.weights,
                  after.classification_head.weights):
    assert not np.array_equal(b.numpy(), a.numpy()), b.path

  # The SavedModel, loaded in a fresh process, gives the logits of the
  # checkpointed model.
  images = np.stack([np.asarray(Image.open(os.path.join(dirpath, f)))
                     for dirpath, _, files in sorted(os.walk(
                         data_dir / 'test')) for f in sorted(files)])
  np.save(tmp_path / 'images.npy', images)
  script = (
      'import numpy as np, tensorflow as tf\n'
      f'm = tf.saved_model.load({str(tmp_path / "run" / "export")!r})\n'
      f'x = np.load({str(tmp_path / "images.npy")!r})\n'
      'out = m.signatures["serving_default"](images=tf.constant(x, tf.float32))\n'
      'u8 = m.serve(tf.constant(x))\n'
      'np.savez(%r, **{k: v.numpy() for k, v in out.items()}, u8=u8["logits"].numpy())\n'
      % str(tmp_path / 'served.npz'))
  subprocess.run([sys.executable, '-c', script], check=True, cwd=ROOT,
                 capture_output=True)
  served = np.load(tmp_path / 'served.npz')
  assert set(served.files) >= {'embeddings', 'unnormalized_embeddings',
                               'projection', 'logits', 'probabilities'}
  model = after
  mean, std = (np.array(v, np.float32) for v in
               run_lib.sources.load_source('folder', str(data_dir)).mean_std)
  want = model((images - mean) / std, training=False)['logits'].numpy()
  np.testing.assert_allclose(served['logits'], want, atol=1e-5)
  np.testing.assert_allclose(served['u8'], want, atol=1e-5)
  np.testing.assert_allclose(served['probabilities'].sum(1), 1., atol=1e-5)
  assert np.mean(want.argmax(1) == np.repeat(np.arange(4), 6)) >= 0.9


def test_cross_entropy_baseline_trains_the_encoder(tmp_path, data_dir):
  from supcon_tf.presets import XENT_FLAGS  # What bin/train_ce.py applies.
  config = _config(tmp_path / 'ce', data_dir, **XENT_FLAGS,
                   stage_1_epochs=6, stage_1_optimizer='MOMENTUM',
                   stage_1_base_learning_rate=0.5)
  results = run_lib.run(config)
  assert 'stage_2_steps' not in results and results['test_top1'] >= 0.9
  initial = run_lib.build_model(config, 4)
  initial(tf.zeros([1, 8, 8, 3]))
  trained = _restored(config, 'stage_1')
  for name in ('encoder', 'classification_head'):
    assert not np.array_equal(getattr(trained, name).weights[0].numpy(),
                              getattr(initial, name).weights[0].numpy())


def test_two_replicas_run_both_stages(tmp_path, data_dir):
  # In a fresh process: collectives of strategies made by earlier tests in
  # this one can collide with the new strategy's. With a memory and a key
  # encoder, whose averages every replica computes alike.
  config = _config(tmp_path / 'mirrored', data_dir, strategy='mirrored',
                   stage_1_epochs=2, stage_2_epochs=1, knn_every_epochs=0,
                   memory_size=32, momentum_encoder=0.9)
  (tmp_path / 'config.json').write_text(config.to_json())
  script = (
      'import tensorflow as tf\n'
      'cpu = tf.config.list_physical_devices("CPU")[0]\n'
      'tf.config.set_logical_device_configuration(\n'
      '    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n'
      'from supcon_tf.config import Config\n'
      'from supcon_tf.training import run\n'
      f'config = Config.from_json(open({str(tmp_path / "config.json")!r}).read())\n'
      'strategy = run.make_strategy(config)\n'
      'assert strategy.num_replicas_in_sync == 2\n'
      'run.run(config)\n')
  process = subprocess.run([sys.executable, '-c', script], cwd=ROOT,
                           capture_output=True, text=True)
  assert process.returncode == 0, process.stderr[-6000:]
  results = json.loads((tmp_path / 'mirrored' / 'results.json').read_text())
  assert results['stage_1_steps'] == 6 and results['stage_2_steps'] == 3
  assert np.isfinite(results['stage_1_final_loss'])
  assert np.isfinite(results['stage_2_final_loss'])
  assert 0 <= results['test_top1'] <= 1


def test_a_model_dir_with_another_config_is_refused_untouched(tmp_path,
                                                              data_dir):
  first = _config(tmp_path / 'run', data_dir, stage_1_epochs=1,
                  stage_2_epochs=0, knn_every_epochs=0)
  ran = run_lib.run(first)
  saved = (tmp_path / 'run' / 'config.json').read_text()
  files = sorted(os.listdir(tmp_path / 'run' / 'stage_1'))
  other = _config(tmp_path / 'run', data_dir, stage_1_epochs=1,
                  stage_2_epochs=0, temperature=0.5)
  with pytest.raises(ValueError, match=r'temperature=0\.5 \(saved 0\.1\)'):
    run_lib.run(other)
  assert (tmp_path / 'run' / 'config.json').read_text() == saved
  assert sorted(os.listdir(tmp_path / 'run' / 'stage_1')) == files
  # Runtime settings may change; a finished stage is not redone.
  again = run_lib.run(_config(tmp_path / 'run', data_dir, stage_1_epochs=1,
                              stage_2_epochs=0, knn_every_epochs=0,
                              steps_per_loop=1))
  # Its figures as the call that ran it left them.
  assert again['stage_1_seconds'] == ran['stage_1_seconds'] > 0
  assert again['stage_1_final_loss'] == ran['stage_1_final_loss']
  # Stage 2 alone on the finished stage 1 (bin/train_classifier.py); its
  # settings may change until it has started.
  classifier = run_lib.run(_config(tmp_path / 'run', data_dir,
                                   stage_1_epochs=1, stage_2_epochs=1,
                                   knn_every_epochs=0), stage_indices=(2,))
  assert classifier['stage_2_steps'] == 3 and 'stage_1_steps' not in classifier
  with pytest.raises(ValueError, match='stage_1 has not finished'):
    run_lib.run(_config(tmp_path / 'other', data_dir, stage_1_epochs=1,
                        stage_2_epochs=1), stage_indices=(2,))
  # A missing dataset: a clear error, and no model_dir is made.
  with pytest.raises(ValueError, match='does not exist'):
    run_lib.run(_config(tmp_path / 'new', tmp_path / 'missing'))
  assert not (tmp_path / 'new').exists()


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path, data_dir):
  config = _config(tmp_path / 'nan', data_dir, stage_1_optimizer='MOMENTUM',
                   stage_1_base_learning_rate=1e35, steps_per_loop=1,
                   save_interval_steps=1, knn_every_epochs=0)
  with pytest.raises(loop.NonFiniteLossError, match=r'by step (\d+)') as info:
    run_lib.run(config)
  failed = int(re.search(r'by step (\d+)', str(info.value)).group(1))
  latest = tf.train.latest_checkpoint(str(tmp_path / 'nan' / 'stage_1'))
  assert latest is not None and int(latest.rsplit('-', 1)[1]) < failed
  for variable in _restored(config, 'stage_1').weights:
    assert np.all(np.isfinite(variable.numpy())), variable.path


def _train_process(model_dir, data_dir, epochs):
  flags = [f'--model_dir={model_dir}', '--input_fn=folder',
           f'--data_dir={data_dir}', '--image_size=8', '--batch_size=16',
           '--validation_fraction=0.25', f'--stage_1_epochs={epochs}',
           '--stage_2_epochs=1', '--steps_per_loop=1',
           '--projection_head_layers=16', '--knn_every_epochs=0',
           '--noexport', '--noplot', '--stage_1_optimizer=adam',
           '--stage_1_base_learning_rate=0.01', '--resnet_depth=20',
           '--autoaugment_policy=cifar10', '--crop=pad',
           '--random_crop_padding=1', '--eval_crop_method=IDENTITY',
           '--stage_1_warmup_epochs=0', '--stage_2_warmup_epochs=0']
  return subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'bin', 'train_supcon.py')] + flags,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_checkpoint(model_dir, minimum, process, timeout=600):
  deadline = time.time() + timeout
  while time.time() < deadline:
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, 'stage_1'))
    if latest and int(latest.rsplit('-', 1)[1]) >= minimum:
      return int(latest.rsplit('-', 1)[1])
    assert process.poll() is None, process.stdout.read()
    time.sleep(0.2)
  raise AssertionError('no checkpoint appeared')


def test_sigterm_checkpoints_and_exits_with_one_line(tmp_path, data_dir):
  # What a cluster sends before preemption: as Ctrl-C, a checkpoint and a
  # clean exit naming it; the same command resumes.
  model_dir = tmp_path / 'sigterm'
  process = _train_process(model_dir, data_dir, 8)
  _wait_for_checkpoint(model_dir, 3, process)
  process.send_signal(signal.SIGTERM)
  output = process.communicate(timeout=600)[0]
  assert process.returncode == 143, output[-3000:]
  last = output.strip().splitlines()[-1]
  stopped = int(re.search(r'stopped at step (\d+) \(SIGTERM\)', last).group(1))
  latest = tf.train.latest_checkpoint(str(model_dir / 'stage_1'))
  assert latest.endswith(f'ckpt-{stopped}') and latest in last
  assert 'Traceback' not in output
  rerun = _train_process(model_dir, data_dir, 8)
  output = rerun.communicate(timeout=600)[0]
  assert rerun.returncode == 0, output[-3000:]
  assert f'at step {stopped}' in output
  assert json.loads((model_dir / 'results.json').read_text())[
      'stage_1_steps'] == 24


def test_the_logged_floor_is_the_batches_floor_and_the_excess_what_is_left(
    tmp_path, data_dir):
  from supcon_tf import analysis
  # fixed_configuration: every batch 3 x 4 classes, one floor for all.
  config = _config(tmp_path / 'fixed', data_dir, sampler='fixed_configuration',
                   validation_fraction=0., stage_1_epochs=3, stage_2_epochs=0,
                   knn_every_epochs=0, mode='train', scale_by_temperature=True,
                   batch_size=12)
  results = run_lib.run(config)
  # Its epochs are whole batches: 5 of 12 from 64 images (not 64 / 12).
  assert results['stage_1_steps'] == 15
  floor = analysis.simplex_loss((3,) * 4, 2, 0.1, scale_by_temperature=True)
  assert results['stage_1_final_loss_floor'] == pytest.approx(floor, rel=1e-5)
  assert results['stage_1_final_excess_loss'] > 0
  # The floor of a batch is below any loss the model reaches on it.
  assert results['stage_1_final_loss'] > floor
  # SimCLR (no labels) has no closed form in this dimension: no floor.
  config = _config(tmp_path / 'simclr', data_dir, use_labels=False,
                   stage_1_epochs=1, stage_2_epochs=0, knn_every_epochs=0,
                   mode='train')
  assert 'stage_1_final_loss_floor' not in run_lib.run(config)
  with pytest.raises(ValueError, match='class_balanced needs'):
    _config(tmp_path / 'x', data_dir, sampler='class_balanced')


def test_the_deferred_blur_runs_in_the_training_step(tmp_path, data_dir):
  results = {}
  for defer in (True, False):
    # 20 x 20 views: a 3-tap kernel (a tenth of the side, made odd).
    config = _config(tmp_path / str(defer), data_dir, augmentation_type='SIMCLR',
                     crop='random_resized', blur_probability=1., image_size=20,
                     defer_blurring=defer, stage_1_epochs=2, stage_2_epochs=1,
                     knn_every_epochs=0, mode='train')
    results[defer] = run_lib.run(config)['stage_1_final_loss']
  assert np.isfinite(results[True])
  # Blurring the whitened batch is not blurring the images: other losses.
  assert results[True] != results[False]


def test_fractional_epochs_run_the_official_step_counts(tmp_path, data_dir):
  # 48 training images in batches of 20: 2.4 steps an epoch. Official: stage 1
  # int(3 * 2.4) = 7 steps, the run int(5 * 2.4) = 12, so stage 2 is 5.
  config = _config(tmp_path / 'span', data_dir, batch_size=20,
                   stage_1_epochs=3, stage_2_epochs=2, knn_every_epochs=0,
                   save_interval_steps=100, epoch_remainder='span')
  results = run_lib.run(config)
  assert results['steps_per_epoch'] == 2.4
  assert (results['stage_1_steps'], results['stage_2_steps']) == (7, 5)
  # Checkpoints at the steps that complete an epoch (3: 60 of 48 read;
  # 5: 100 of 96) and at the end.
  saved = tf.train.get_checkpoint_state(
      str(tmp_path / 'span' / 'stage_1')).all_model_checkpoint_paths
  assert [int(p.rsplit('-', 1)[1]) for p in saved] == [3, 5, 7]


def test_a_run_sliced_by_its_time_budget_ends_as_the_whole_run(tmp_path,
                                                                data_dir):
  """Two calls stop at their budget (spent by the first step boundary: one
  loop call of an epoch each, a checkpoint each); the second ends stage 1
  and stops in stage 2; the third, without a budget, finishes: every weight
  of both stages, and every figure of results.json, as the uninterrupted
  run's, the seconds summed over the calls."""
  import json
  from supcon_tf.training import signals
  options = dict(stage_1_epochs=2, stage_2_epochs=2, steps_per_loop=3,
                 knn_every_epochs=1, mode='train')
  whole = _config(tmp_path / 'whole', data_dir, **options)
  run_lib.run(whole)
  sliced = _config(tmp_path / 'sliced', data_dir, **options)
  budget = _config(tmp_path / 'sliced', data_dir, stop_after_minutes=1e-9,
                   **options)
  for stage, stopped in (('stage_1', 3), ('stage_2', 3)):
    with pytest.raises(signals.BudgetSpent,
                       match=f'{stage}: stopped at step {stopped} of 6, the '
                       'time budget spent') as stop:
      run_lib.run(budget)
    assert stop.value.status == 75
    assert tf.train.latest_checkpoint(
        str(tmp_path / 'sliced' / stage)).endswith(f'ckpt-{stopped}')
  first_call = tf.train.load_checkpoint(str(tmp_path / 'sliced' / 'stage_1' /
                                            'ckpt-3')).get_tensor(
      'figures/.ATTRIBUTES/VARIABLE_VALUE')[0]
  run_lib.run(sliced)
  signals.reset()
  for stage in ('stage_1', 'stage_2'):
    want = _restored(whole, stage).get_weights()
    got = _restored(sliced, stage).get_weights()
    assert len(got) == len(want) > 50
    for a, b in zip(got, want):
      np.testing.assert_allclose(a, b, atol=1e-5 * max(np.abs(b).max(), 1.))
  want, got = (json.loads((tmp_path / name / run_lib.RESULTS_FILE).read_text())
               for name in ('whole', 'sliced'))
  assert sorted(got) == sorted(want)
  assert {'stage_1_final_loss', 'stage_2_final_loss',
          'knn_val_top1'} <= set(got)
  # Stage 1's seconds: the first two calls', none of the third's.
  assert got['stage_1_seconds'] > round(first_call, 2) > 0
  for key, value in want.items():
    if key.endswith('seconds'):
      assert got[key] > 0, key
    elif isinstance(value, float):
      np.testing.assert_allclose(got[key], value, rtol=1e-4, err_msg=key)
    else:
      assert got[key] == value, key


def test_interrupt_kill_and_resume_end_with_the_same_step_count(tmp_path,
                                                                data_dir):
  model_dir = tmp_path / 'resume'
  epochs = 10  # 3 steps an epoch: 30 steps.
  first = _train_process(model_dir, data_dir, epochs)
  _wait_for_checkpoint(model_dir, 3, first)
  first.send_signal(signal.SIGINT)  # Ctrl-C: saves, then exits.
  output = first.communicate(timeout=600)[0]
  assert first.returncode == 130, output[-3000:]
  last = output.strip().splitlines()[-1]
  stopped = int(re.search(r'stopped at step (\d+) \(Ctrl-C\)', last).group(1))
  assert tf.train.latest_checkpoint(
      str(model_dir / 'stage_1')).endswith(f'ckpt-{stopped}')

  second = _train_process(model_dir, data_dir, epochs)
  _wait_for_checkpoint(model_dir, stopped + 3, second)
  second.kill()  # kill -9: no chance to save.
  second.communicate(timeout=600)

  third = _train_process(model_dir, data_dir, epochs)
  output = third.communicate(timeout=600)[0]
  assert third.returncode == 0, output[-3000:]
  assert 'resumed from' in output
  results = json.loads((model_dir / 'results.json').read_text())
  assert results['stage_1_steps'] == 3 * epochs
  assert np.isfinite(results['stage_1_final_loss'])
  assert tf.train.latest_checkpoint(str(model_dir / 'stage_1')).endswith(
      f'ckpt-{3 * epochs}')


def test_a_signal_is_a_flag_and_a_second_one_stops_at_once():
  # The handlers only set a flag (read between steps); a second signal ends
  # the process at once with one line and the signal's exit status.
  script = (
      'import os, signal, time\n'
      'from supcon_tf.training import signals\n'
      'signals.install("app")\n'
      'os.kill(os.getpid(), signal.SIGTERM)\n'
      'time.sleep(0.05)\n'
      'assert signals.requested() == signal.SIGTERM\n'
      'try:\n'
      '  signals.check("between steps", "kept")\n'
      'except signals.Interrupted as error:\n'
      '  print(error.status, error)\n'
      'os.kill(os.getpid(), signal.SIGTERM)\n'
      'time.sleep(5)\n'
      'print("not reached")\n')
  done = subprocess.run([sys.executable, '-c', script], capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 143, done.stderr
  assert done.stdout.strip() == '143 stopped between steps (SIGTERM); kept'
  assert done.stderr.strip() == (
      'app: SIGTERM again: stopped at once; the checkpoints already written '
      'are kept.')
  # Once the run's work is done (its teardown can take seconds), a signal
  # ends the process at once, saying so.
  done = subprocess.run([sys.executable, '-c', (
      'import os, signal, time\n'
      'from supcon_tf.training import signals\n'
      'signals.install("app")\n'
      'signals.finished("app: {signal} after the run had finished")\n'
      'os.kill(os.getpid(), signal.SIGINT)\n'
      'time.sleep(5)\n')], capture_output=True, text=True, timeout=600)
  assert done.returncode == 130
  assert done.stderr.strip() == 'app: Ctrl-C after the run had finished'
  # A signal that came before the work was done says the same, then.
  done = subprocess.run([sys.executable, '-c', (
      'import os, signal, time\n'
      'from supcon_tf.training import signals\n'
      'signals.install("app")\n'
      'os.kill(os.getpid(), signal.SIGTERM)\n'
      'time.sleep(0.05)\n'
      'signals.finished("app: {signal} after the run had finished")\n'
      'print("not reached")\n')], capture_output=True, text=True,
      timeout=600)
  assert (done.returncode, done.stdout) == (143, '')
  assert done.stderr.strip() == 'app: SIGTERM after the run had finished'
  # The apps end through `leave`: the exit functions and the streams run,
  # then os._exit, skipping the interpreter's teardown (where no handler
  # runs): an object finalised there would print, and does not.
  done = subprocess.run([sys.executable, '-c', (
      'import atexit, sys\n'
      'from supcon_tf.training import signals\n'
      'class Late:\n'
      '  def __del__(self): print("torn down")\n'
      'late = Late()\n'
      'atexit.register(lambda: print("exit function"))\n'
      'sys.stdout.write("results")\n'
      'signals.leave(3)\n')], capture_output=True, text=True, timeout=600)
  assert (done.returncode, done.stdout) == (3, 'resultsexit function\n')


# --- optimizers, schedules, config and flags -----------------------------------


def test_schedules_warm_up_then_decay():
  cosine = optimizers.WarmupDecay(2., 100, warmup_steps=10, min_ratio=0.1)
  values = [float(cosine(s)) for s in (0, 5, 10, 60, 110, 111)]
  np.testing.assert_allclose(values, [0., 1., 2., 1.1, 0.2, 0.], rtol=1e-6)
  piecewise = optimizers.WarmupDecay(1., 100, decay='PIECEWISE_LINEAR',
                                     decay_rate=0.2, boundaries=(30, 60))
  np.testing.assert_allclose(
      [float(piecewise(s)) for s in (29, 30, 31, 60, 61, 99)],
      [1., 1., 0.2, 0.2, 0.04, 0.04], rtol=1e-6)
  exponential = optimizers.WarmupDecay(1., 100, decay='EXPONENTIAL',
                                       decay_rate=0.5, steps_per_decay=10)
  np.testing.assert_allclose([float(exponential(s)) for s in (9, 10, 35)],
                             [1., 0.5, 0.125], rtol=1e-6)
  assert float(optimizers.WarmupDecay(3., 10, decay='NO_DECAY')(7)) == 3.


@pytest.mark.parametrize('bias_adapted', [True, False])
def test_lars_scales_the_steps_of_the_adapted_variables_by_the_trust_ratio(
    bias_adapted):
  import keras
  dense = keras.layers.Dense(3)
  dense.build((None, 4))
  kernel, bias = dense.kernel, dense.bias
  bias.assign([0.5, -1., 2.])
  w0, b0 = kernel.numpy().copy(), bias.numpy().copy()
  g_kernel = np.full((4, 3), 0.3, np.float32)
  g_bias = np.array([1., 2., 3.], np.float32)
  # Official: one exclude list for decay and adaptation; the default adapts
  # every variable but BatchNorm's, biases included.
  lars = optimizers.LARS(learning_rate=0.1, momentum=0.9, eta=0.001,
                         adapted=None if bias_adapted else [kernel])
  for _ in range(2):
    lars.apply([tf.constant(g_kernel), tf.constant(g_bias)], [kernel, bias])
  # The official LARS, classic momentum: v = 0.9 v + lr * trust * g; w -= v
  # (trust from the current w).
  def official(w, g, adapt):
    w, v = w.astype(np.float64), np.zeros_like(w, np.float64)
    for _ in range(2):
      trust = 0.001 * np.linalg.norm(w) / np.linalg.norm(g) if adapt else 1.
      v = 0.9 * v + 0.1 * trust * g
      w = w - v
    return w
  np.testing.assert_allclose(kernel.numpy(), official(w0, g_kernel, True),
                             rtol=1e-5)
  np.testing.assert_allclose(bias.numpy(),
                             official(b0, g_bias, bias_adapted), rtol=1e-5)


def test_lars_adapts_what_the_switches_decay_even_without_decay():
  config = make_config(model_dir='/unused', stage_1_optimizer='LARS',
                       stage_1_weight_decay=0.,
                       stage_1_use_projection_head_weight_decay=False,
                       use_bias_weight_decay=False)
  model = run_lib.build_model(config, 10)
  model(tf.zeros([1, 32, 32, 3]))
  stage = stages.stage_from_config(config, 1)
  assert stages.decayed_variables(stage, model, config) == []
  adapted = {v.path for v in stages.decay_selection(stage, model, config)}
  assert adapted == {v.path for v in model.encoder.trainable_variables
                     if v.path.endswith('kernel')}


def test_weight_decay_takes_kernels_not_batch_norm():
  config = make_config(model_dir='/unused')
  model = run_lib.build_model(config, 10)
  model(tf.zeros([1, 32, 32, 3]))
  chosen = {v.path.rsplit('/', 1)[1] for v in optimizers.decayed_variables(
      [model.encoder, model.projection_head], use_bias=True)}
  assert chosen == {'kernel', 'bias'}
  no_bias = optimizers.decayed_variables([model.encoder], use_bias=False)
  assert {v.path.rsplit('/', 1)[1] for v in no_bias} == {'kernel'}


def test_config_errors_name_the_field_and_presets_build():
  with pytest.raises(ValueError, match='stage_1_optimizer must be one of'):
    make_config(stage_1_optimizer='SGD')
  with pytest.raises(ValueError, match='Unknown preset'):
    make_config('imagenet_tiny')
  with pytest.raises(ValueError, match='Unknown config fields: lr'):
    make_config(lr=0.1)
  with pytest.raises(ValueError, match='num_views >= 2'):
    make_config(num_views=1)
  for name in PRESETS:
    assert make_config(name).preset == name
  official = make_config('supcon_cifar10_resnet50')
  assert official.projection_head_layers == (2048, 128)
  assert official.stage_2_decay_boundary_epochs == (60, 75, 90)
  assert make_config(stage_1_optimizer='Optimizer.lars').stage_1_optimizer == (
      'LARS')


@pytest.mark.parametrize('preset', sorted(PRESETS))
def test_every_preset_builds_its_model(preset):
  config = make_config(preset)
  model = run_lib.build_model(config, 10)
  out = model(tf.zeros([1, config.image_size, config.image_size, 3]))
  assert out['logits'].shape == (1, 10)
  assert out['projection'].shape[-1] == config.projection_head_layers[-1]


def test_resnext_architecture_flag_builds_a_resnext():
  config = make_config('supcon_cifar10_resnet50',
                       resnet_architecture='resnext')
  model = run_lib.build_model(config, 10)
  model(tf.zeros([1, 32, 32, 3]))
  assert model.encoder.name == 'resnext50'
  assert model.encoder.architecture == 'RESNEXT'


@pytest.mark.parametrize('width,channels', [(1.0, 2048), (1.5, 3072),
                                            (0.5, 1024)])
def test_float_resnet_width_gives_whole_channel_counts(width, channels):
  # The official int(64 * 2**i * width): a float width must not reach Conv2D.
  config = make_config('supcon_cifar10_resnet50', resnet_width=width)
  model = run_lib.build_model(config, 10)
  out = model(tf.zeros([1, 32, 32, 3]))
  assert out['unnormalized_embeddings'].shape == (1, channels)


def test_official_flag_names_parse_into_the_config():
  from absl import flags as absl_flags

  from supcon_tf import flags
  flags.define_flags()
  argv = ['prog', '--preset=supcon_cifar10_resnet50', '--input_fn=cifar100',
          '--stage_1_optimizer=lars', '--projection_head_layers=512,64',
          '--use_labels=false', '--crop_area_range=0.2,1.0',
          '--allow_mixed_precision', '--model_dir=/tmp/x']
  absl_flags.FLAGS(argv)
  try:
    config = flags.config_from_flags()
  finally:
    absl_flags.FLAGS.unparse_flags()
  assert config.input_fn == 'cifar100' and config.stage_1_optimizer == 'LARS'
  assert config.projection_head_layers == (512, 64)
  assert config.use_labels is False and config.crop_area_range == (0.2, 1.0)
  assert config.batch_size == 4096  # From the preset.
  assert config.allow_mixed_precision is True


def test_mixed_precision_and_xla_compiled_steps_train(tmp_path, data_dir):
  import keras
  config = _config(tmp_path / 'bf16', data_dir, allow_mixed_precision=True,
                   jit_compile=True, stage_1_epochs=1, stage_2_epochs=1,
                   knn_every_epochs=0)
  try:
    results = run_lib.run(config)
    # bfloat16 where this CPU computes it natively, float32 elsewhere.
    assert keras.mixed_precision.global_policy().name == (
        precision.policy_name(True, 'CPU')[0])
    # The next run in the same process does not inherit the policy.
    run_lib.run(_config(tmp_path / 'f32', data_dir, stage_1_epochs=1,
                        stage_2_epochs=0, knn_every_epochs=0))
    assert keras.mixed_precision.global_policy().name == 'float32'
  finally:
    keras.mixed_precision.set_global_policy('float32')
  assert np.isfinite(results['stage_1_final_loss'])
  assert np.isfinite(results['stage_2_final_loss'])


@pytest.mark.parametrize('name', ['MOMENTUM', 'NESTEROV', 'RMSPROP', 'ADAM'])
def test_optimizers_step_as_the_tf1_optimizers_of_the_official_code(name):
  import keras
  steps = 20
  rng = np.random.default_rng(7)
  start = rng.normal(size=(4, 3))
  gradients = rng.normal(size=(steps, 4, 3))
  rates = rng.uniform(0.01, 0.2, size=steps)  # A schedule that moves.
  epsilon = 0.5
  # The oracle: tf.compat.v1.train in a graph, as the official code builds it.
  v1 = tf.compat.v1
  with tf.Graph().as_default(), v1.Session() as session:
    variable = v1.get_variable('w', initializer=start)
    gradient = v1.placeholder(tf.float64, start.shape)
    rate = v1.placeholder(tf.float64, [])
    oracle = {
        'MOMENTUM': lambda: v1.train.MomentumOptimizer(rate, 0.9),
        'NESTEROV': lambda: v1.train.MomentumOptimizer(rate, 0.9,
                                                        use_nesterov=True),
        'RMSPROP': lambda: v1.train.RMSPropOptimizer(rate, 0.9, 0.9, epsilon),
        'ADAM': lambda: v1.train.AdamOptimizer(rate),
    }[name]()
    train = oracle.apply_gradients([(gradient, variable)])
    session.run(v1.global_variables_initializer())
    for g, r in zip(gradients, rates):
      session.run(train, {gradient: g, rate: r})
    want = session.run(variable)

  class Rates(keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
      return tf.gather(tf.constant(rates, tf.float64), step)

  ours = tf.Variable(start)
  optimizer = optimizers.build_optimizer(name, Rates(), epsilon)
  for g in gradients:
    optimizer.apply([tf.constant(g)], [ours])
  # Keras hands the learning rate over in float32: differences of 1e-7 relative.
  np.testing.assert_allclose(ours.numpy(), want, rtol=1e-5, atol=1e-5)


def _official_learning_rate(peak, decay, start, end, warmup, steps_per_epoch,
                            boundaries, epochs_per_decay, decay_rate):
  """The official build_learning_rate_schedule (utils.py) on the global step,
  written with the tf.compat.v1.train decays: a function of the step."""
  v1 = tf.compat.v1
  graph = tf.Graph()
  with graph.as_default():
    global_step = v1.placeholder(tf.int64, [])
    as_step = lambda epochs: tf.cast(epochs * steps_per_epoch, tf.int64)
    step = global_step - as_step(start + warmup)
    total = as_step(end - (start + warmup))
    decayed = {
        'COSINE': lambda: v1.train.cosine_decay(peak, step, total),
        'EXPONENTIAL': lambda: v1.train.exponential_decay(
            peak, step, steps_per_epoch * epochs_per_decay, decay_rate,
            staircase=True),
        'PIECEWISE_LINEAR': lambda: v1.train.piecewise_constant(
            step, [as_step(b) for b in boundaries],
            [peak * decay_rate**n for n in range(len(boundaries) + 1)]),
    }[decay]()
    decayed = tf.cond(step <= total, lambda: tf.cast(decayed, tf.float32),
                      lambda: 0.)
    counter = global_step - as_step(start)
    warmup_steps = as_step(warmup)
    rate = tf.cond(
        tf.logical_and(warmup_steps > 0, counter < warmup_steps),
        lambda: peak * tf.cast(counter, tf.float32) / tf.cast(warmup_steps,
                                                              tf.float32),
        lambda: decayed)
  session = v1.Session(graph=graph)
  return lambda s: session.run(rate, {global_step: s})


@pytest.mark.parametrize('decay', ['COSINE', 'EXPONENTIAL', 'PIECEWISE_LINEAR'])
def test_stage_schedules_equal_the_official_schedule_on_fractional_epochs(decay):
  # 37 examples in batches of 8: 4.625 steps an epoch, as official (N / batch).
  steps_per_epoch = 37 / 8
  config = make_config(
      batch_size=8, stage_1_epochs=7, stage_2_epochs=5,
      stage_1_warmup_epochs=1.5, stage_2_warmup_epochs=0.7,
      stage_1_learning_rate_decay=decay, stage_2_learning_rate_decay=decay,
      stage_1_min_learning_rate_ratio=0., stage_2_min_learning_rate_ratio=0.,
      stage_1_decay_rate=0.3, stage_2_decay_rate=0.5,
      stage_1_decay_boundary_epochs=(2, 4), stage_2_decay_boundary_epochs=(1,),
      stage_1_epochs_per_decay=1.3, stage_2_epochs_per_decay=0.9,
      stage_1_base_learning_rate=0.8, stage_2_base_learning_rate=3.)
  offset = 0
  for index, (start, end) in ((1, (0, 7)), (2, (7, 12))):
    stage = stages.stage_from_config(config, index)
    steps = stages.stage_steps(stage, config, steps_per_epoch)
    # Official: stage 1 is int(7 * 4.625) steps, the run int(12 * 4.625).
    assert offset + steps == int(end * steps_per_epoch)
    official = _official_learning_rate(
        stage.base_learning_rate * 8 / 256, decay, start, end,
        stage.warmup_epochs, steps_per_epoch, stage.decay_boundary_epochs,
        stage.epochs_per_decay, stage.decay_rate)
    schedule = stages.learning_rate(stage, config, steps_per_epoch)
    got = [float(schedule(s)) for s in range(steps + 2)]
    want = [official(offset + s) for s in range(steps + 2)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    offset += steps
  # Past the end of its decay a stage's rate is 0, as official.
  assert float(schedule(steps + 5)) == 0.


def test_frozen_moving_statistics_still_normalise_with_batch_statistics():
  from supcon_tf.models import layers
  bn = layers.batch_norm()
  x = tf.constant(np.random.default_rng(3).normal(2., 3., (8, 4, 4, 5)),
                  tf.float32)
  bn(x, training=False)
  layers.freeze_moving_statistics(bn)
  before = [v.numpy().copy() for v in (bn.moving_mean, bn.moving_variance)]
  out = bn(x, training=True).numpy()
  mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
  np.testing.assert_allclose(out, (x - mean) / tf.sqrt(variance + 1e-5),
                             atol=1e-4)
  for b, v in zip(before, (bn.moving_mean, bn.moving_variance)):
    np.testing.assert_array_equal(b, v.numpy())
  layers.freeze_moving_statistics(bn, False)
  bn(x, training=True)
  assert not np.array_equal(before[0], bn.moving_mean.numpy())


def test_cross_entropy_takes_the_first_views_logits_as_official():
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(6, 2, 4)).astype(np.float32)
  labels = np.array([0, 1, 2, 3, 0, 1])
  loss, top1 = objective_lib.cross_entropy(
      tf.constant(logits), tf.constant(labels), global_batch=12)
  first = logits[:, 0].astype(np.float64)
  log_softmax = first - np.log(np.exp(first).sum(1, keepdims=True))
  # This replica's 6 of a global batch of 12: its share of the mean.
  np.testing.assert_allclose(float(loss),
                             -log_softmax[np.arange(6), labels].sum() / 12,
                             rtol=1e-5)
  assert float(top1) == pytest.approx(
      (first.argmax(1) == labels).sum() / 12)


def test_weight_decay_reaches_the_parts_its_switches_name_even_untrained():
  config = make_config(model_dir='/unused', stage_2_weight_decay=1e-3,
                       stage_2_use_classification_head_weight_decay=True)
  model = run_lib.build_model(config, 10)
  model(tf.zeros([1, 32, 32, 3]))
  stage = stages.stage_from_config(config, 2)
  updated = {v.path for v in stages.updated_variables(stage, model, config)}
  kernels = lambda part: {v.path for v in part.trainable_variables
                          if v.path.endswith(('kernel', 'bias'))}
  # Official: the L2 term names the frozen encoder and the projection head
  # too, and the optimizer updates every variable it reaches.
  assert updated == (kernels(model.encoder) | kernels(model.projection_head) |
                     {v.path for v in
                      model.classification_head.trainable_variables})
  lars = stages.stage_from_config(
      make_config(model_dir='/unused', stage_2_weight_decay=1e-3,
                  stage_2_optimizer='LARS'), 2)
  assert {v.path for v in stages.updated_variables(lars, model, config)} == {
      v.path for v in model.classification_head.trainable_variables}


def test_eval_mode_skips_a_checkpoint_removed_after_it_was_listed(
    tmp_path, monkeypatch):
  # The training job keeps --max_checkpoints_to_keep: one listed by the
  # evaluator can be gone when it reads it; it evaluates the newer one.
  import keras
  model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
  kept = tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt-6'))
  listings = iter([({5: str(tmp_path / 'ckpt-5')}, 6),
                   ({5: str(tmp_path / 'ckpt-5'), 6: kept}, 6)])
  monkeypatch.setattr(run_lib, '_checkpoints',
                      lambda config, trainer: next(listings))
  evaluated = []
  monkeypatch.setattr(run_lib, '_evaluate', lambda config, setup, global_step:
                      evaluated.append(global_step) or {})
  monkeypatch.setattr(run_lib, '_write_results', lambda config, results: None)
  monkeypatch.setattr(run_lib, '_finish', lambda config, setup: {})
  config = make_config(model_dir=str(tmp_path), eval_interval_secs=0)
  results = run_lib.evaluate_continuously(
      config, {'trainer': None, 'model': model}, timeout=60)
  assert evaluated == [6] and results['checkpoint'] == kept


def test_a_loss_at_its_collapsed_value_for_an_epoch_is_one_warning(
    tmp_path, data_dir):
  from supcon_tf import analysis
  # Identical projections: the loss is log(V x B - 1) x the scale, for
  # any labels.
  labels = np.array([0, 0, 1, 2, 2, 2, 3, 1])
  same = np.tile(np.array([0.6, 0.8], np.float32), (8, 2, 1))
  collapsed = analysis.collapsed_loss(2, 8, 0.1, scale_by_temperature=True)
  assert collapsed == pytest.approx(0.1 * np.log(15.))
  assert np.mean(losses.contrastive_loss(same, labels, temperature=0.1)) == (
      pytest.approx(collapsed, rel=1e-5))
  assert analysis.collapsed_loss(2, 8, 0.1, denominator_mode='ONE_POSITIVE') \
      is None and analysis.collapsed_loss(1, 8, 0.1) is None
  watch = analysis.CollapseWatch(collapsed)
  for loss in (collapsed * 1.005, collapsed * 0.995):
    watch.update(loss)
  assert watch.epoch_ended()
  for loss in (collapsed, collapsed * 0.98):
    watch.update(loss)
  assert not watch.epoch_ended()
  # A run whose rate throws every projection to one point after its first
  # steps: a warning for each epoch after the first; at 1e2 the loss moves
  # (by 2-7% in each epoch): none.
  config = _config(tmp_path / 'stuck', data_dir, stage_1_epochs=3,
                   stage_2_epochs=0, knn_every_epochs=0, mode='train',
                   stage_1_optimizer='MOMENTUM',
                   stage_1_base_learning_rate=1e4, steps_per_loop=1)
  with mock.patch.object(loop.logging, 'warning') as warned:
    results = run_lib.run(config)
  said = [c.args[0] for c in warned.call_args_list
          if 'its value when every projection is alike' in c.args[0]]
  assert results['stage_1_collapsed_epochs'] == 2 == len(said)
  assert said[0].startswith('stage_1 epoch 2: the contrastive loss stayed '
                            f'within 1% of {0.1 * np.log(31.):.4f}')
  config = _config(tmp_path / 'moving', data_dir, stage_1_epochs=3,
                   stage_2_epochs=0, knn_every_epochs=0, mode='train',
                   stage_1_optimizer='MOMENTUM',
                   stage_1_base_learning_rate=1e2, steps_per_loop=1)
  assert 'stage_1_collapsed_epochs' not in run_lib.run(config)


def test_the_key_encoder_is_a_moving_average_that_embeds_for_the_memory():
  config = make_config(
      'seed_cifar10_resnet20_supcon_autoaugment', image_size=8,
      projection_head_layers=(16, 8))
  model = run_lib.build_model(config, 10)
  views = tf.random.stateless_normal([4, 2, 8, 8, 3], seed=[0, 1])
  model(views, training=True)
  statistics = [v.numpy() for v in model.non_trainable_variables]
  key = memory_lib.MomentumEncoder(model, 0.9)
  with layers.moving_statistics_frozen(model):
    want = model(views, training=True)['projection'].numpy()
  np.testing.assert_allclose(key.project(views, dict(training=True)), want,
                             atol=1e-6)
  # The key encoder leaves the model's BatchNorm averages alone.
  for before, after in zip(statistics, model.non_trainable_variables):
    np.testing.assert_array_equal(before, after.numpy())
  before = [v.numpy() for v in model.trainable_variables]
  for v in model.trainable_variables:
    v.assign(v * 1.5 + 0.01)
  key.update()
  for k, old, new in zip(key.trained, before, model.trainable_variables):
    np.testing.assert_allclose(k.numpy(), 0.9 * old + 0.1 * new.numpy(),
                               rtol=1e-6, atol=1e-7)
  # It embeds with those averages: a model holding them gives the same.
  averaged = run_lib.build_model(config, 10)
  averaged(views, training=True)
  for target, k in zip(averaged.trainable_variables, key.trained):
    target.assign(k.value)
  with layers.moving_statistics_frozen(averaged):
    want = averaged(views, training=True)['projection'].numpy()
  np.testing.assert_allclose(key.project(views, dict(training=True)), want,
                             atol=1e-5)
  with pytest.raises(ValueError, match='momentum_encoder embeds the memory'):
    make_config(momentum_encoder=0.99)


def test_a_run_with_a_memory_and_key_encoder_trains_and_keeps_them(tmp_path,
                                                                 data_dir):
  config = _config(tmp_path / 'moco', data_dir, stage_1_epochs=2,
                   stage_2_epochs=1, knn_every_epochs=0, memory_size=32,
                   memory_warmup=1, momentum_encoder=0.9)
  results = run_lib.run(config)
  assert np.isfinite(results['stage_1_final_loss'])
  assert 'stage_1_final_loss_floor' not in results  # Not with a memory.
  saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(
      str(tmp_path / 'moco' / 'stage_1')))
  names = saved.get_variable_to_shape_map()
  assert any(n.startswith('memory/') for n in names)
  assert any(n.startswith('key_encoder/') for n in names)
  features = [n for n in names if n.startswith('memory/') and
              saved.get_variable_to_shape_map()[n] == [32, 2, 16]]
  assert features and np.abs(saved.get_tensor(features[0])).sum() > 0
