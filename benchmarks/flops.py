#!/usr/bin/env python3
"""Training FLOPs of each published cell (docs/REPRODUCE.md), from the model.

The forward FLOPs of one image are counted from the model's graph: 2 x the
multiply-adds of every convolution and matrix product (BatchNorm, ReLU and
pooling are left out, as published counts do). A training step costs about
3 x the forward pass of its images (the backward pass is about twice the
forward); a stage that trains only the classifier on a frozen encoder costs
about 1 x. With `--micro_batch_size`, gradient caching runs the forward pass
twice: about 4 x.

    python benchmarks/flops.py
    python benchmarks/flops.py --presets=supcon_cifar10_resnet50

Prints one row per preset: forward GFLOPs per image, the steps of each
stage on CIFAR's 50,000 training images, and the training PFLOPs of each
stage. The last line is `total training PFLOPs: X` over the presets.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

CELLS = ('seed_cifar10_resnet20_ce', 'seed_cifar10_resnet20_ce_autoaugment',
         'seed_cifar10_resnet20_supcon_autoaugment',
         'seed_cifar100_resnet20_ce', 'seed_cifar100_resnet20_ce_autoaugment',
         'seed_cifar100_resnet20_supcon_autoaugment',
         'cross_entropy_cifar10_resnet50', 'simclr_cifar10_resnet50',
         'supcon_cifar10_resnet50')
TRAIN_IMAGES = 50_000


def forward_flops(model, image_size):
  """2 x the multiply-adds of one image's forward pass (inference mode)."""
  import tensorflow as tf
  graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(
      tf.TensorSpec([1, image_size, image_size, 3], tf.float32)).graph
  total = 0
  for op in _operations(graph):
    if op.type == 'Conv2D':
      out, kernel = op.outputs[0].shape, op.inputs[1].shape
      total += 2 * out[1] * out[2] * out[3] * kernel[0] * kernel[1] * kernel[2]
    elif op.type == 'DepthwiseConv2dNative':
      out, kernel = op.outputs[0].shape, op.inputs[1].shape
      total += 2 * out[1] * out[2] * out[3] * kernel[0] * kernel[1]
    elif op.type in ('MatMul', 'BatchMatMulV2'):
      a = op.inputs[0].shape
      out = op.outputs[0].shape
      inner = a[-2] if op.get_attr(
          'transpose_a' if op.type == 'MatMul' else 'adj_x') else a[-1]
      total += 2 * out.num_elements() * inner
  return total


def _operations(graph):
  """The graph's operations and those of the functions it calls."""
  seen = set()
  stack = [graph]
  while stack:
    current = stack.pop()
    for op in current.get_operations():
      yield op
    for function in getattr(current, '_functions', {}).values():
      name = getattr(function, 'name', None)
      if name not in seen and hasattr(function, 'graph'):
        seen.add(name)
        stack.append(function.graph)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--presets', default=','.join(CELLS))
  args = parser.parse_args()
  import tensorflow as tf
  from supcon_tf.presets import make_config
  from supcon_tf.training import run as run_lib, stages

  print(f'{"preset":45s} {"GFLOPs/image":>12s} {"stage 1 steps":>13s} '
        f'{"stage 1 PFLOPs":>14s} {"stage 2 steps":>13s} '
        f'{"stage 2 PFLOPs":>14s}')
  total = 0.
  for preset in args.presets.split(','):
    config = make_config(preset)
    classes = 100 if 'cifar100' in preset else 10
    model = run_lib.build_model(config, classes)
    model(tf.zeros([1, config.image_size, config.image_size, 3]))
    flops = forward_flops(model, config.image_size)
    per_epoch = TRAIN_IMAGES / config.batch_size
    row = [f'{preset:45s} {flops / 1e9:12.3f}']
    for index in (1, 2):
      stage = stages.stage_from_config(config, index)
      steps, stage_flops = 0, 0.
      if stage.epochs:
        steps = stages.stage_steps(stage, config, per_epoch)
        images = steps * config.batch_size * stages.views_for(stage, config)
        trains_encoder = model.encoder in stages.trained_parts(stage, model,
                                                                config)
        stage_flops = (3 if trains_encoder else 1) * flops * images / 1e15
      total += stage_flops
      row.append(f'{steps:13d} {stage_flops:14.2f}')
    print(' '.join(row))
  print(f'total training PFLOPs: {total:.2f}')


if __name__ == '__main__':
  main()
