"""Beyond one device: global BatchNorm across replicas, and multi-worker runs
on loopback (scripts/local_cluster.sh), killed and restarted."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.models import layers
from tests import archives

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- global BatchNorm on two Mirrored replicas -------------------------------


def _batch_norm_step(layer, strategy, x, weights, jit):
  """Outputs, input gradients and parameter gradients (summed over replicas)
  of sum(weights * BN(x)) in training mode, x split over the replicas."""

  def step(x, w):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x, training=True)
      loss = tf.reduce_sum(w * y)
    dx, dgamma, dbeta = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return y, dx, dgamma, dbeta

  if jit:
    step = tf.function(step, jit_compile=True)
  halves = len(x) // 2
  inputs = strategy.experimental_distribute_values_from_function(
      lambda context: (x[context.replica_id_in_sync_group * halves:][:halves],
                       weights[context.replica_id_in_sync_group * halves:]
                       [:halves]))
  y, dx, dgamma, dbeta = strategy.run(lambda a: step(*a), args=(inputs,))
  local = strategy.experimental_local_results
  return (np.concatenate(local(y)), np.concatenate(local(dx)),
          sum(g.numpy() for g in local(dgamma)),
          sum(g.numpy() for g in local(dbeta)))


def check_global_batch_norm(unbiased):
  """The comparison, in a process of its own (see the test)."""
  # XLA: TensorFlow compiles cross-replica ops only on GPUs and TPUs.
  jit = False
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(2., 3., (8, 5, 5, 4)).astype(np.float32))
  weights = tf.constant(rng.normal(size=(8, 5, 5, 4)).astype(np.float32))
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])

  def make(synchronized):
    with strategy.scope():
      layer = layers.batch_norm(unbiased_moving_variance=unbiased)
      layer.build(x.shape)
    layer.gamma.assign(rng.uniform(0.5, 2., 4).astype(np.float32))
    layer.beta.assign(rng.normal(size=4).astype(np.float32))
    layer.synchronized = synchronized
    return layer

  # The reference: the fused kernel on the whole batch, one device.
  single = layers.batch_norm(unbiased_moving_variance=unbiased)
  single.build(x.shape)
  synced = make(True)
  single.gamma.assign(synced.gamma.numpy())
  single.beta.assign(synced.beta.numpy())
  with tf.GradientTape() as tape:
    tape.watch(x)
    want_y = single(x, training=True)
    loss = tf.reduce_sum(weights * want_y)
  want_dx, want_dgamma, want_dbeta = tape.gradient(
      loss, [x, single.gamma, single.beta])

  y, dx, dgamma, dbeta = _batch_norm_step(synced, strategy, x, weights, jit)
  np.testing.assert_allclose(y, want_y, atol=2e-5)
  np.testing.assert_allclose(dx, want_dx, atol=2e-5)
  np.testing.assert_allclose(dgamma, want_dgamma, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dbeta, want_dbeta, rtol=1e-4, atol=1e-4)
  for name in ('moving_mean', 'moving_variance'):
    for value in strategy.experimental_local_results(getattr(synced, name)):
      np.testing.assert_allclose(value, getattr(single, name).numpy(),
                                 rtol=1e-5, err_msg=name)

  # Per replica (use_global_batch_norm=False): each half's own statistics.
  local = make(False)
  y, _, _, _ = _batch_norm_step(local, strategy, x, weights, jit)
  assert np.abs(y - want_y.numpy()).max() > 1e-2
  half = layers.batch_norm(unbiased_moving_variance=unbiased)
  half.build(x.shape)
  half.gamma.assign(local.gamma.numpy())
  half.beta.assign(local.beta.numpy())
  np.testing.assert_allclose(y[:4], half(x[:4], training=True), atol=2e-5)


@pytest.mark.parametrize('unbiased', [True, False])
def test_global_batch_norm_on_two_replicas_is_the_whole_batch(unbiased):
  # In a fresh process: the collective keys of a MirroredStrategy start
  # again with each new one, so its all-reduces would collide with the
  # all-gathers of other tests' strategies in this process.
  script = (
      'import tensorflow as tf\n'
      'cpu = tf.config.list_physical_devices("CPU")[0]\n'
      'tf.config.set_logical_device_configuration(\n'
      '    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n'
      'from tests import test_distributed\n'
      f'test_distributed.check_global_batch_norm({unbiased})\n')
  process = subprocess.run([sys.executable, '-c', script], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
  assert process.returncode == 0, process.stderr[-4000:]


def test_global_batch_norm_follows_the_flag_in_the_model():
  from supcon_tf.presets import make_config
  from supcon_tf.training import run as run_lib
  config = make_config('supcon_digits_resnet20')
  model = run_lib.build_model(config, 10)
  model(tf.zeros([1, 32, 32, 3]))
  norms = [l for l in model._flatten_layers()
           if isinstance(l, tf.keras.layers.BatchNormalization)
           or type(l).__name__.endswith('BatchNormalization')]
  assert len(norms) >= 19
  assert not any(l.synchronized for l in norms)
  layers.synchronize_batch_norm(model, True)
  assert all(l.synchronized for l in norms)
  layers.synchronize_batch_norm(model, False)
  assert not any(l.synchronized for l in norms)


def test_a_compiled_step_on_several_cpu_replicas_falls_back_in_one_line(
    caplog):
  from supcon_tf.presets import make_config
  from supcon_tf.training import precision
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  with caplog.at_level('WARNING'):
    assert not precision.use_jit(make_config(jit_compile=True), strategy)
  [line] = [r.getMessage() for r in caplog.records
            if '--jit_compile' in r.getMessage()]
  assert 'uncompiled on these 2 CPU replicas' in line and '\n' not in line
  assert not precision.use_jit(make_config(jit_compile=False), strategy)
  assert precision.use_jit(make_config(jit_compile=True),
                      tf.distribute.get_strategy())


# --- multi-worker runs on loopback ------------------------------------------


def _flags(model_dir, data_dir, epochs, **extra):
  flags = dict(
      model_dir=model_dir, input_fn='folder', data_dir=data_dir, mode='train',
      image_size=8, resnet_depth=20, projection_head_layers='32,16',
      weight_init='seed', batch_size=16, eval_batch_size=16,
      validation_fraction=0., augmentation_type='AUTOAUGMENT',
      autoaugment_policy='cifar10', crop='pad', random_crop_padding=1,
      flip=False, epoch_remainder='drop', stage_1_epochs=epochs,
      stage_1_optimizer='MOMENTUM', stage_1_warmup_epochs=0.,
      stage_1_base_learning_rate=0.5, stage_1_weight_decay=1e-4,
      stage_2_epochs=0, steps_per_loop=1, progress=False, plot=False,
      export=False)
  flags.update(extra)
  return [f'--{k}={v}' for k, v in flags.items()]


def _cluster(count, flags, log_dir):
  """scripts/local_cluster.sh: (process, [worker pids])."""
  process = subprocess.Popen(
      ['bash', os.path.join(ROOT, 'scripts', 'local_cluster.sh'), str(count)]
      + flags, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, env={**os.environ, 'PYTHON': sys.executable,
                      'LOG_DIR': str(log_dir)})
  pids = [int(re.search(r'pid (\d+)', process.stdout.readline()).group(1))
          for _ in range(count)]
  return process, pids


def _finish(process, log_dir, timeout=600):
  try:
    output = process.communicate(timeout=timeout)[0]
  except subprocess.TimeoutExpired:
    process.kill()
    raise
  logs = ''.join(f'--- {name}\n' + (log_dir / name).read_text()[-3000:]
                 for name in sorted(os.listdir(log_dir)))
  return process.returncode, output + logs


def _train_single(flags):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, 'bin', 'train_supcon.py')] + flags,
      cwd=ROOT, capture_output=True, text=True, timeout=600)


def _checkpoint_values(model_dir):
  path = tf.train.latest_checkpoint(os.path.join(model_dir, 'stage_1'))
  reader = tf.train.load_checkpoint(path)
  return path, {name: reader.get_tensor(name)
                for name in reader.get_variable_to_shape_map()
                if 'OPTIMIZER_SLOT' not in name
                and '_CHECKPOINTABLE' not in name}


def test_a_step_on_two_workers_equals_the_single_process_step(tmp_path):
  # 16 training images, batch 16: one step. With global BatchNorm, 2 workers
  # of 1 replica compute what one process computes on the whole batch.
  data = str(archives.write_quadrants(tmp_path / 'data', per_class=4,
                                   test_per_class=2))
  single = _train_single(_flags(str(tmp_path / 'single'), data, 1))
  assert single.returncode == 0, single.stderr[-3000:]
  results = {}
  for name, global_norm in (('global', True), ('local', False)):
    model_dir = tmp_path / name
    process, _ = _cluster(2, _flags(str(model_dir), data, 1,
                                    use_global_batch_norm=global_norm),
                          tmp_path / f'{name}.logs')
    code, output = _finish(process, tmp_path / f'{name}.logs')
    assert code == 0, output[-6000:]
    results[name] = json.loads((model_dir / 'results.json').read_text())
    assert results[name]['stage_1_steps'] == 1
  # Only the chief writes: the same files as one process, no worker's.
  listing = lambda d: sorted(os.path.relpath(os.path.join(r, f), d)
                             for r, _, fs in os.walk(d) for f in fs
                             if 'events.out' not in f)
  assert listing(tmp_path / 'global') == listing(tmp_path / 'single')
  assert not (tmp_path / 'global' / 'worker_tmp').exists()

  want_loss = json.loads(
      (tmp_path / 'single' / 'results.json').read_text())['stage_1_final_loss']
  assert results['global']['stage_1_final_loss'] == pytest.approx(
      want_loss, rel=1e-5)
  path, want = _checkpoint_values(str(tmp_path / 'single'))
  assert path.endswith('ckpt-1')
  _, got = _checkpoint_values(str(tmp_path / 'global'))
  _, local = _checkpoint_values(str(tmp_path / 'local'))
  assert got.keys() == want.keys()
  statistics = [k for k in want if 'moving_' in k]
  assert len(statistics) >= 38
  for name in want:
    values = got[name], want[name]
    if name.startswith('figures/'):
      # The stage's figures (StageFigures) but the first, its seconds.
      values = got[name][1:], want[name][1:]
    np.testing.assert_allclose(*values, rtol=2e-4, atol=2e-5, err_msg=name)
  # Per-replica statistics: each worker's half of the batch moves them.
  moved = max(np.abs(local[k] - want[k]).max() for k in statistics)
  assert moved > 1e-3
  assert results['local']['stage_1_final_loss'] != pytest.approx(
      want_loss, rel=1e-5)


def _step_of(checkpoint):
  return int(checkpoint.rsplit('-', 1)[1]) if checkpoint else 0


def test_a_killed_worker_stops_its_peer_and_a_rerun_completes(tmp_path):
  data = str(archives.write_quadrants(tmp_path / 'data', per_class=16,
                                   test_per_class=2))
  epochs = 8  # 4 steps an epoch: 32 steps.
  flags = _flags(str(tmp_path / 'run'), data, epochs)
  process, pids = _cluster(2, flags, tmp_path / 'logs_1')
  stage = tmp_path / 'run' / 'stage_1'
  deadline = time.monotonic() + 600  # A guard against a hang, not a timing.
  while _step_of(tf.train.latest_checkpoint(str(stage))) < 8:
    assert process.poll() is None and time.monotonic() < deadline, (
        _finish(process, tmp_path / 'logs_1')[1][-6000:])
    time.sleep(0.2)
  os.kill(pids[1], signal.SIGKILL)  # kill -9 a worker mid-run.
  started = time.monotonic()
  code, output = _finish(process, tmp_path / 'logs_1', timeout=600)
  assert code != 0
  # The chief stops by itself (its health checks: about a minute on an idle
  # machine), saying what to do.
  assert time.monotonic() - started < 600
  chief_log = (tmp_path / 'logs_1' / 'worker_0.log').read_text()
  assert 'lost contact with another worker' in chief_log, chief_log[-3000:]
  assert 'Restart every worker' in chief_log
  interrupted = tf.train.latest_checkpoint(str(stage))
  assert not interrupted.endswith(f'ckpt-{4 * epochs}')

  process, _ = _cluster(2, flags, tmp_path / 'logs_2')
  code, output = _finish(process, tmp_path / 'logs_2')
  assert code == 0, output[-6000:]
  assert 'resumed from' in (tmp_path / 'logs_2' / 'worker_0.log').read_text()
  results = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert results['stage_1_steps'] == 4 * epochs
  assert tf.train.latest_checkpoint(str(stage)).endswith(
      f'ckpt-{4 * epochs}')
  assert not (tmp_path / 'run' / 'worker_tmp').exists()
