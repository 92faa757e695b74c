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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- global BatchNorm on two Mirrored replicas ------------------------------------


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


@pytest.mark.parametrize('unbiased', [True, False])
def test_global_batch_norm_on_two_replicas_is_the_whole_batch(unbiased):
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


def test_global_batch_norm_follows_the_flag_in_the_model():
  from supcon_tf.config import make_config
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


def test_a_compiled_step_on_several_cpu_replicas_is_refused_by_name():
  from supcon_tf.config import make_config
  from supcon_tf.training import loop
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  with pytest.raises(ValueError, match='--jit_compile with several CPU'):
    loop.use_jit(make_config(jit_compile=True), strategy)
  assert not loop.use_jit(make_config(jit_compile=False), strategy)
  assert loop.use_jit(make_config(jit_compile=True),
                      tf.distribute.get_strategy())
