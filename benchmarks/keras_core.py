"""A preset's training step through the Keras core (`supcon_tf.training.core`)
on the backend KERAS_BACKEND names, the views made in the step: the seed's
CIFAR-10 SupCon preset by default (ResNet-20, batch 256, two views of pad-4
crop, flip and its AutoAugment, SGD with momentum). Times `--steps` steps
after two of warm-up (the compile) on smooth random 32 x 32 images, and the
same step with identity views (the views' share of the step), and gives the
epoch time at the preset's steps per epoch of CIFAR-10 (50,000 images). On
a GPU machine with JAX:

    KERAS_BACKEND=jax python benchmarks/keras_core.py [--preset P] [--steps 20]

Last line: `seconds per epoch: S`.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--preset',
                      default='seed_cifar10_resnet20_supcon_autoaugment')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--images', type=int, default=50000,
                      help='Training images of an epoch.')
  args = parser.parse_args()

  import keras
  import numpy as np

  from supcon_tf.data import epochs
  from supcon_tf.presets import make_config
  from supcon_tf.training import core, stage_model, stages

  config = make_config(args.preset)
  rng = np.random.default_rng(0)
  size, batch = config.image_size, config.batch_size
  small = rng.integers(0, 256, (batch, 8, 8, 3)).astype('float32')
  images = np.asarray(keras.ops.image.resize(small, (size, size))).clip(
      0, 255).astype('uint8')
  labels = rng.integers(0, 10, batch)
  model = stage_model.built_model(config, 10)
  stage = stages.stage_from_config(config, 1)
  steps_per_epoch = epochs.steps_per_epoch(args.images, config.batch_size,
                                           config.epoch_remainder)
  from supcon_tf.data.device_views import DeviceViews
  mean_std = ((127.5,) * 3, (127.5,) * 3)
  trainer = stage_model.for_stage(config, model, stage, mean_std,
                                  steps_per_epoch)
  identity = stage_model.for_stage(
      config, model, stage, mean_std, steps_per_epoch, views=DeviceViews(
          crop=None, flip=False, mean=mean_std[0], std=mean_std[1]))
  for each in (trainer, identity):
    stage_model.build(each, images)

  def timed(function, repeats):
    for _ in range(2):
      function()
    started = time.perf_counter()
    for _ in range(repeats):
      function()
    return (time.perf_counter() - started) / repeats

  def step(each):
    logs = each.train_on_batch(images, labels, return_dict=True)
    float(logs['loss'])  # Waits for the device.

  plain = timed(lambda: step(identity), args.steps)
  seconds = timed(lambda: step(trainer), args.steps)
  print(f'{keras.backend.backend()} on {_device()}: {args.preset}, batch '
        f'{batch} x {stages.views_for(stage, config)} views of {size} x '
        f'{size}')
  print(f'seconds per step: {seconds:.4f} ({batch / seconds:.0f} examples/s);'
        f' with identity views {plain:.4f}')
  print(f'seconds per epoch: {seconds * int(steps_per_epoch):.1f}')


def _device():
  import keras
  if keras.backend.backend() == 'jax':
    import jax
    return str(jax.devices()[0].device_kind)
  return 'the default device'


if __name__ == '__main__':
  main()
