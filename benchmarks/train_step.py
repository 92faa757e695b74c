#!/usr/bin/env python3
"""SupCon training-step throughput: the model, the loss and SGD in one step.

The same work as the PyTorch peer `benchmarks/peers/torch_reference.py`: a CIFAR
ResNet-20 (option-A shortcuts), L2-normalised 64-d embedding, 64-64 projection
head, SupCon at temperature 0.07, SGD with momentum 0.9 and weight decay 1e-4,
on `--batch` samples x 2 views of random 32x32 images.

    python benchmarks/train_step.py --model resnet20 --batch 128
    python benchmarks/train_step.py --steps_per_loop 5 --onednn 0

The last line is `images/s: N` (views per second, both views counted).
"""
import argparse
import os
import time


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', default='resnet20')
  parser.add_argument('--batch', type=int, default=128,
                      help='samples per step; two views each')
  parser.add_argument('--steps', type=int, default=10, help='timed steps')
  parser.add_argument('--steps_per_loop', type=int, default=1,
                      help='training steps inside one tf.function call')
  parser.add_argument('--jit_compile', action='store_true',
                      help='compile the step with XLA')
  parser.add_argument('--intra_threads', type=int, default=0,
                      help='0 keeps TensorFlow\'s default')
  parser.add_argument('--inter_threads', type=int, default=0,
                      help='0 keeps TensorFlow\'s default')
  parser.add_argument('--onednn', type=int, choices=[0, 1], default=1,
                      help='TF_ENABLE_ONEDNN_OPTS for this run (supcon_tf '
                      'turns it on unless it is set)')
  args = parser.parse_args()
  if args.steps % args.steps_per_loop:
    parser.error('--steps must be a multiple of --steps_per_loop')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  # Read when TensorFlow loads, so it is set before the first import.
  os.environ['TF_ENABLE_ONEDNN_OPTS'] = str(args.onednn)

  import keras
  import numpy as np
  import tensorflow as tf

  from supcon_tf.losses import contrastive_loss
  from supcon_tf.models import ContrastiveModel, build_encoder

  if args.intra_threads:
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_threads)
  if args.inter_threads:
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
  keras.utils.set_random_seed(0)
  model = ContrastiveModel(build_encoder(args.model), num_classes=10,
                           projection_head_layers=(64, 64))
  optimizer = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-4)
  rng = np.random.default_rng(0)
  views = tf.constant(
      rng.uniform(size=(args.batch, 2, 32, 32, 3)).astype(np.float32))
  labels = tf.constant(rng.integers(0, 10, size=args.batch), tf.int32)
  model(views[:1])
  optimizer.build(model.trainable_variables)

  def step():
    with tf.GradientTape() as tape:
      projection = model(views, training=True)['projection']
      loss = tf.reduce_mean(
          contrastive_loss(projection, labels, temperature=0.07))
    # The classification head gets no gradient from the contrastive loss.
    pairs = [(g, v) for g, v in zip(
        tape.gradient(loss, model.trainable_variables),
        model.trainable_variables) if g is not None]
    optimizer.apply(*zip(*pairs))
    return loss

  @tf.function(jit_compile=args.jit_compile)
  def loop():
    loss = tf.constant(0.)
    for _ in tf.range(args.steps_per_loop):
      loss = step()
    return loss

  for _ in range(2):
    loop().numpy()
  start = time.perf_counter()
  for _ in range(args.steps // args.steps_per_loop):
    loss = loop()
  loss.numpy()
  seconds = (time.perf_counter() - start) / args.steps
  print(f'params: {sum(int(np.prod(v.shape)) for v in model.trainable_variables)}')
  print(f'step seconds: {seconds:.4f}')
  print(f'images/s: {2 * args.batch / seconds:.1f}')


if __name__ == '__main__':
  main()
