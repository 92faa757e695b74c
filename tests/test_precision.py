"""The branches an accelerator takes, run here on CPU first.

- `--allow_mixed_precision` on a CPU: bfloat16 only where the CPU computes it
  natively, float32 elsewhere, with the reason.
- The GPU branch, forced by setting Keras' policy to `mixed_float16`: the
  Trainer wraps the optimizer in a LossScaleOptimizer, and a step of every
  kind (SupCon, SimCLR, cross-entropy, the classifier stage; whole and in
  chunks; compiled with XLA or not) is the float32 step within what float16
  rounding allows. A step whose scaled gradients overflow is skipped and
  halves the scale; the scale is in the checkpoint and comes back on resume.
- XLA (`jit_compile=True`) on one CPU device: every kind of step, whole and
  in chunks, is the uncompiled step within float32 rounding.
"""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.presets import make_config
from supcon_tf.training import precision, run as run_lib, signals, stages
from tests import archives, stops, trainers

SUPCON = 'seed_cifar10_resnet20_supcon_autoaugment'
CROSS_ENTROPY = 'seed_cifar10_resnet20_ce'
SIZE, BATCH = 8, 8
KINDS = {
    'supcon': (SUPCON, 1, {}),
    'simclr': (SUPCON, 1, {'use_labels': False}),
    'cross_entropy': (CROSS_ENTROPY, 1, {}),
    'classifier': (SUPCON, 2, {}),
}


# --- The CPU's choice ---------------------------------------------------------


@pytest.mark.parametrize('flags,environ,native', [
    ({'avx2', 'avx512f', 'avx512_bf16'}, {}, True),
    ({'avx2', 'amx_bf16'}, {}, True),
    ({'avx2', 'avx512f', 'avx512_bf16'}, {'ONEDNN_MAX_CPU_ISA': 'AVX2'}, False),
    ({'avx2', 'avx512f', 'avx512_bf16'},
     {'ONEDNN_MAX_CPU_ISA': 'avx512_core_bf16'}, True),
    ({'avx2', 'avx512f', 'avx512_bf16'}, {'DNNL_MAX_CPU_ISA': 'AVX512_CORE'},
     False),
    ({'avx2', 'avx512f', 'avx512_bf16'}, {'TF_ENABLE_ONEDNN_OPTS': '0'},
     False),
    ({'avx2', 'fma'}, {}, False),
    ({'avx2', 'avx512f', 'avx512_vnni'}, {}, False),
])
def test_a_cpu_computes_bfloat16_only_with_native_instructions(flags, environ,
                                                               native):
  got, why = precision.cpu_bfloat16(flags, environ)
  assert got is native
  name, line = precision.policy_name(True, 'CPU',
                                     cpu=lambda: (got, why))
  assert name == ('mixed_bfloat16' if native else 'float32')
  assert line.startswith('--allow_mixed_precision: ')
  assert ('emulate' in line) is not native
  assert '\n' not in line
  # Accelerators and runs without the flag do not depend on the CPU.
  assert precision.policy_name(True, 'GPU')[0] == 'mixed_float16'
  assert precision.policy_name(True, 'TPU')[0] == 'mixed_bfloat16'
  assert precision.policy_name(False, 'CPU') == ('float32', None)


def test_this_cpu_is_read_from_its_flags():
  native, why = precision.cpu_bfloat16()
  assert isinstance(native, bool) and why
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      flags = next(line for line in f if line.startswith('flags')).split()
    assert native == (('avx512_bf16' in flags or 'amx_bf16' in flags) and
                      precision.cpu_bfloat16(flags)[0])


# --- One step of each kind, float16 and XLA against float32 -------------------


def _step(kind, policy, weights=None, before_step=None, **values):
  """One step of `kind` under `policy`: (loss terms, weights before and
  after, the optimizer)."""
  preset, index, kind_values = KINDS[kind]
  keras.mixed_precision.set_global_policy(policy)
  try:
    config, model, trainer = trainers.small_trainer(
        preset, weights=weights, **{**kind_values, **values})
    stage = stages.stage_from_config(config, index)
    rng = np.random.default_rng(0)
    views = stages.views_for(stage, config)
    batch = (rng.normal(size=(BATCH, views, SIZE, SIZE, 3)).astype(np.float32),
             rng.integers(0, 3, BATCH))
    start = [np.array(w) for w in model.get_weights()]
    terms, optimizer = trainer.train_on_batches(stage, [batch], before_step)
    return terms[0], start, [np.array(w) for w in model.get_weights()], (
        optimizer, model)
  finally:
    keras.mixed_precision.set_global_policy('float32')


def _updates(start, end):
  return np.concatenate([(e - s).ravel() for s, e in zip(start, end)])


@pytest.mark.parametrize('micro_batch_size', [0, BATCH // 2],
                         ids=['whole', 'chunks'])
@pytest.mark.parametrize('kind', list(KINDS))
def test_float16_and_xla_steps_are_the_float32_step(kind, micro_batch_size):
  reference, start, want, _ = _step(kind, 'float32', jit_compile=False,
                                    micro_batch_size=micro_batch_size)
  want_update = _updates(start, want)
  assert np.abs(want_update).max() > 0
  for policy, jit in (('float32', True), ('mixed_float16', False),
                      ('mixed_float16', True)):
    terms, _, got, (optimizer, model) = _step(
        kind, policy, start, jit_compile=jit,
        micro_batch_size=micro_batch_size)
    got_update = _updates(start, got)
    where = f'{policy} jit={jit}'
    if policy == 'float32':
      # XLA's fusions round differently: float32 rounding, not equality.
      for key in reference:
        assert terms[key] == pytest.approx(reference[key], rel=1e-4,
                                           abs=1e-6), (where, key)
      np.testing.assert_allclose(got_update, want_update, rtol=0,
                                 atol=1e-4 * np.abs(want_update).max())
      continue
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer), where
    assert model.encoder.compute_dtype == 'float16'
    # float16 carries 11 bits: the losses within 1%, and the update is the
    # same direction and length within a few percent.
    for key in reference:
      assert terms[key] == pytest.approx(reference[key], rel=1e-2,
                                         abs=1e-3), (where, key)
    cosine = got_update @ want_update / (
        np.linalg.norm(got_update) * np.linalg.norm(want_update))
    assert cosine > 0.995, (where, cosine)
    assert np.linalg.norm(got_update) == pytest.approx(
        np.linalg.norm(want_update), rel=0.05), where
    assert all(np.isfinite(w).all() for w in got)


def test_model_outputs_are_float32_from_float16_layers():
  keras.mixed_precision.set_global_policy('mixed_float16')
  try:
    _, model, _ = trainers.small_trainer(SUPCON)
    outputs = model(tf.zeros([2, 2, SIZE, SIZE, 3]), training=True)
    assert model.projection_head.compute_dtype == 'float16'
    assert {v.dtype for v in outputs.values()} == {tf.float32}
    assert {v.dtype for v in model.weights} == {'float32'}
  finally:
    keras.mixed_precision.set_global_policy('float32')


@pytest.mark.parametrize('micro_batch_size', [0, BATCH // 2],
                         ids=['whole', 'chunks'])
def test_an_overflowing_step_is_skipped_and_halves_the_scale(
    micro_batch_size):
  def huge_scale(index, optimizer, step):
    # float16 holds 65504: a scale of 2^40 overflows the gradients.
    optimizer.dynamic_scale.assign(2.**40)

  _, start, end, (optimizer, model) = _step(
      'supcon', 'mixed_float16', before_step=huge_scale,
      micro_batch_size=micro_batch_size)
  assert float(optimizer.dynamic_scale.numpy()) == 2.**39
  # No update; BatchNorm's moving statistics move in the forward pass, as
  # they do in Keras, and stay finite.
  for weight, before, after in zip(model.weights, start, end):
    assert np.isfinite(after).all(), weight.path
    if weight.trainable:
      np.testing.assert_array_equal(after, before, err_msg=weight.path)


def test_the_loss_scale_is_checkpointed_and_resumed(tmp_path, monkeypatch):
  # The GPU branch of a run, forced: the policy a run gets on a GPU.
  monkeypatch.setattr(precision, 'device_kind', lambda strategy: 'GPU')
  values = dict(
      model_dir=str(tmp_path / 'run'), input_fn='folder',
      data_dir=str(archives.write_quadrants(tmp_path / 'data')),
      mode='train', image_size=SIZE, resnet_depth=20, weight_init='seed',
      projection_head_layers=(16,), batch_size=16, validation_fraction=0.,
      augmentation_type='AUTOAUGMENT', autoaugment_policy='cifar10',
      crop='pad', random_crop_padding=1, flip=False,
      allow_mixed_precision=True, jit_compile=False, stage_1_epochs=2,
      stage_2_epochs=0, knn_every_epochs=0, steps_per_loop=1, progress=False,
      plot=False, export=False)
  directory = str(tmp_path / 'run' / 'stage_1')
  try:
    # A Ctrl-C after the second step (of eight).
    with stops.ctrl_c_at_check(monkeypatch, 2):
      with pytest.raises(signals.Interrupted):
        run_lib.run(make_config(**values))
    assert keras.mixed_precision.global_policy().name == 'mixed_float16'
    first = tf.train.latest_checkpoint(directory)
    reader = tf.train.load_checkpoint(first)
    scale = [name for name, _ in tf.train.list_variables(first)
             if 'dynamic_scale' in name]
    assert len(scale) == 1 and reader.get_tensor(scale[0]) == 2.**15
    stopped = int(reader.get_tensor(STEP))
    assert 0 < stopped < 8
    # A scale of 1024 in that checkpoint comes back on resume and the run
    # ends with it (no overflow, and too few steps to grow it).
    _rewrite(first, scale[0], 1024.)
    results = run_lib.run(make_config(**values))
    assert results['stage_1_steps'] == 8
    last = tf.train.load_checkpoint(tf.train.latest_checkpoint(directory))
    assert int(last.get_tensor(STEP)) == 8
    assert last.get_tensor(scale[0]) == 1024.
  finally:
    keras.mixed_precision.set_global_policy('float32')


STEP = 'step/.ATTRIBUTES/VARIABLE_VALUE'


def _rewrite(prefix, name, value):
  """Sets one variable of a checkpoint to `value`, in place."""
  reader = tf.train.load_checkpoint(prefix)
  names = [n for n, _ in tf.train.list_variables(prefix)]
  tensors = [tf.constant(value, tf.float32) if n == name else
             tf.constant(reader.get_tensor(n)) for n in names]
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[''] * len(names), tensors=tensors)
