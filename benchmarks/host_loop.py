"""The Keras core's host loop against the bare jitted step, under JAX: the
same stage, the same batches. The loop is `core.train_stage` as a run calls
it (batches drawn and gathered on the host, fit calls of up to
`--summary_interval_steps` steps, the loss read once per call, checkpoints
at epoch ends); the bare step is Keras' jitted `train_step` called on
batches already on the device, its state threaded by hand, read once at
the end. Both run after a warm-up (the compile), alternately, `--repeats`
times; the best time per step of each is compared.

    KERAS_BACKEND=jax python benchmarks/host_loop.py [--preset P] [--steps 40]

Last line: `loop over bare step: R` (1.00: the host costs nothing).
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--preset', default='supcon_digits_resnet20')
  parser.add_argument('--batch_size', type=int, default=0,
                      help='0: the preset\'s')
  parser.add_argument('--steps', type=int, default=40,
                      help='timed steps of each, per repeat')
  parser.add_argument('--summary_interval_steps', type=int, default=100)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  os.environ.setdefault('KERAS_BACKEND', 'jax')

  import jax
  import keras
  import numpy as np

  from supcon_tf.presets import make_config
  from supcon_tf.training import core, stage_model, stages
  if keras.backend.backend() != 'jax':
    parser.error('the bare step is JAX\'s: run with KERAS_BACKEND=jax')

  directory = tempfile.mkdtemp()
  config = make_config(args.preset, model_dir=directory, progress=False,
                       summary_interval_steps=args.summary_interval_steps,
                       **({'batch_size': args.batch_size}
                          if args.batch_size else {}))
  rng = np.random.default_rng(0)
  # An epoch of `--steps` batches: one checkpoint per timed run, as a
  # run's epoch of a few hundred steps has.
  count = args.steps * config.batch_size
  small = rng.integers(0, 256, (count, 4, 4, 3)).astype('float32')
  images = np.asarray(keras.ops.image.resize(
      small, (config.image_size,) * 2)).clip(0, 255).astype('uint8')
  labels = rng.integers(0, 10, count)
  stage = stages.stage_from_config(config, 1)
  steps_per_epoch = count // config.batch_size
  trainer = stage_model.for_stage(
      config, stage_model.built_model(config, 10), stage,
      ((127.5,) * 3, (127.5,) * 3), steps_per_epoch)
  stage_model.build(trainer, images)

  def batch(step):
    index = core.batch_indices(count, config.batch_size, step, config.seed,
                               config.epoch_remainder)
    return images[index], labels[index]

  def gen(first):
    step = first
    while True:
      yield batch(step)
      step += 1

  core.run_steps(trainer, gen(0), 2)  # The compile.
  trainer.make_train_function()
  bare = jax.jit(trainer.train_step, donate_argnums=0)
  on_device = [jax.device_put(batch(s)) for s in range(args.steps)]

  def run_bare():
    # Keras' own state tuple, copied: the step donates its buffers.
    state = jax.tree.map(jax.numpy.copy, trainer._get_jax_state(
        trainable_variables=True, non_trainable_variables=True,
        optimizer_variables=True, metrics_variables=True))
    logs, state = bare(state, on_device[0] + (None,))  # Compiled here once.
    jax.block_until_ready(state)
    start = time.perf_counter()
    for images_labels in on_device:
      logs, state = bare(state, images_labels + (None,))
    jax.block_until_ready((logs, state))
    seconds = time.perf_counter() - start
    return seconds / len(on_device)

  def run_loop():
    first = int(trainer.optimizer.iterations)
    # train_stage runs the stage to its total: set it `--steps` ahead.
    stage_steps = stages.stage_steps
    stages.stage_steps = lambda *_: first + args.steps
    start = time.perf_counter()
    try:
      core.train_stage(trainer, stage, config, (images, labels),
                       steps_per_epoch, directory)
    finally:
      stages.stage_steps = stage_steps
    return (time.perf_counter() - start) / args.steps

  loop, bare_step = [], []
  for _ in range(args.repeats):
    bare_step.append(run_bare())
    loop.append(run_loop())
  print(f'preset {args.preset}, batch {config.batch_size}, {args.steps} '
        f'steps x {args.repeats}, {jax.devices()[0].device_kind}')
  print(f'bare jitted step: {min(bare_step) * 1e3:.1f} ms per step '
        f'(all: {", ".join(f"{s * 1e3:.1f}" for s in bare_step)})')
  print(f'host loop: {min(loop) * 1e3:.1f} ms per step '
        f'(all: {", ".join(f"{s * 1e3:.1f}" for s in loop)})')
  print(f'loop over bare step: {min(loop) / min(bare_step):.3f}')


if __name__ == '__main__':
  main()
