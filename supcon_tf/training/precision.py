"""How a step computes: the precision (`--allow_mixed_precision`) and
whether XLA compiles it (`use_jit`, `--jit_compile`).

- GPU: `mixed_float16`, the optimizer wrapped in Keras' LossScaleOptimizer.
- TPU: `mixed_bfloat16`, as the official code.
- CPU: `mixed_bfloat16` only where the CPU computes bfloat16 natively
  (AVX512_BF16 or AMX-BF16) and oneDNN may use it; elsewhere TensorFlow
  emulates bfloat16 several times slower than float32, so the run stays in
  float32 and says so in one line.

The loss is float32 in every case (the model casts its outputs).
"""
import os

import keras
import tensorflow as tf
from absl import logging

# CPU flags (Linux /proc/cpuinfo names) of native bfloat16 arithmetic.
BFLOAT16_FLAGS = ('avx512_bf16', 'amx_bf16')
# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) that still allow its bfloat16 code.
BFLOAT16_ISAS = ('AVX512_CORE_BF16', 'AVX512_CORE_FP16', 'AVX512_CORE_AMX',
                 'AVX512_CORE_AMX_FP16', 'AVX10_1_512', 'AVX10_1_512_AMX',
                 'AVX10_1_512_AMX_FP16', 'AVX10_2_512', 'AVX10_2_512_AMX_2',
                 'ALL', 'DEFAULT')


def _cpu_flags():
  """The CPU's feature flags, or None where /proc/cpuinfo does not say."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          return set(line.split(':', 1)[1].split())
  except OSError:
    pass
  return None


def cpu_bfloat16(cpu_flags=None, environ=None):
  """(native, why): whether TensorFlow computes bfloat16 natively on this
  CPU, from its flags and oneDNN's settings, and the reason in words."""
  environ = os.environ if environ is None else environ
  cpu_flags = _cpu_flags() if cpu_flags is None else set(cpu_flags)
  if cpu_flags is None:
    return False, 'the CPU features are unknown here (no /proc/cpuinfo)'
  native = [flag.upper() for flag in BFLOAT16_FLAGS if flag in cpu_flags]
  if not native:
    return False, 'this CPU has neither AVX512_BF16 nor AMX-BF16'
  if environ.get('TF_ENABLE_ONEDNN_OPTS', '1').lower() in ('0', 'false'):
    return False, 'oneDNN is off (TF_ENABLE_ONEDNN_OPTS=0)'
  for name in ('ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA'):
    cap = environ.get(name, '').strip().upper()
    if cap and cap not in BFLOAT16_ISAS:
      return False, f'{name}={cap} keeps oneDNN from its bfloat16 code'
  return True, f'this CPU computes bfloat16 natively ({", ".join(native)})'


def device_kind(strategy):
  """'TPU', 'GPU' or 'CPU': what `strategy`'s replicas compute on."""
  if isinstance(strategy, tf.distribute.TPUStrategy):
    return 'TPU'
  return 'GPU' if tf.config.list_logical_devices('GPU') else 'CPU'


def policy_name(allow_mixed_precision, device, cpu=cpu_bfloat16):
  """(Keras policy name, the line that says why or None) for `device`
  ('CPU', 'GPU' or 'TPU')."""
  if not allow_mixed_precision:
    return 'float32', None
  if device == 'GPU':
    return 'mixed_float16', None
  if device == 'TPU':
    return 'mixed_bfloat16', None
  native, why = cpu()
  if native:
    return 'mixed_bfloat16', (f'--allow_mixed_precision: bfloat16, as {why}.')
  return 'float32', (
      f'--allow_mixed_precision: float32, as {why}; TensorFlow would emulate '
      'bfloat16 several times slower.')


def set_policy(allow_mixed_precision, device):
  """Sets Keras' global policy (always: a run must not inherit an earlier
  run's in the same process) and logs why, where there is a choice."""
  name, why = policy_name(allow_mixed_precision, device)
  if why:
    (logging.info if name != 'float32' else logging.warning)(why)
  keras.mixed_precision.set_global_policy(name)
  return name


def loss_scaled():
  """Whether the policy computes in float16, whose gradients need loss
  scaling (Keras' LossScaleOptimizer)."""
  return keras.mixed_precision.global_policy().name == 'mixed_float16'


def use_jit(config, strategy):
  """jit_compile: as configured, else on for GPU/TPU and off on CPU (where
  XLA measured slower). TensorFlow compiles the cross-replica ops of a step
  (the loss's all-gather, global BatchNorm) only on GPUs and TPUs: on
  several CPU replicas the step runs uncompiled, and one line says so."""
  if config.jit_compile is None:
    return isinstance(strategy, tf.distribute.TPUStrategy) or _on_gpu()
  if (config.jit_compile and strategy.num_replicas_in_sync > 1 and
      not _on_gpu() and
      not isinstance(strategy, tf.distribute.TPUStrategy)):
    logging.warning(
        '--jit_compile: TensorFlow compiles cross-replica ops with XLA only '
        'on GPUs and TPUs; the step runs uncompiled on these %d CPU '
        'replicas.', strategy.num_replicas_in_sync)
    return False
  return config.jit_compile


def _on_gpu():
  return bool(tf.config.list_logical_devices('GPU'))
