#!/usr/bin/env python3
"""What the seed loss's +1e-5 changes, on the projections of a trained run.

    .venv/bin/python benchmarks/seed_epsilon.py --model_dir=RUN [--batch_size=256]

The seed's loss (its loss/spc.py) adds 1e-5 to every exponential after the
shift by the row maximum; the seed presets compute it without. This takes the
stage-1 checkpoint of a run in `--model_dir` (config.json names its data),
projects one augmented training batch, and computes the seed's loss and its
gradient with respect to the projections with and without the 1e-5. Prints
the share of pairs the epsilon can matter for (cosine below
1 + tau * log(1e-5), where exp((s - 1) / tau) drops under 1e-5), the two
losses, and last `gradient cosine: X`.
"""
import argparse
import math

import numpy as np
import tensorflow as tf

from supcon_tf.config import Config
from supcon_tf.data import pipeline, sources
from supcon_tf.training import run as run_lib


def seed_loss(projections, targets, temperature, epsilon):
  """The seed's SupervisedContrastiveLoss on [2B, d] view-major rows."""
  logits = tf.matmul(projections, projections, transpose_b=True) / temperature
  exp_logits = tf.exp(logits - tf.reduce_max(logits, 1, keepdims=True)) + epsilon
  not_self = 1. - tf.eye(tf.shape(projections)[0], dtype=projections.dtype)
  positives = tf.cast(targets[:, None] == targets[None, :],
                      projections.dtype) * not_self
  log_prob = -tf.math.log(
      exp_logits / tf.reduce_sum(exp_logits * not_self, 1, keepdims=True))
  return tf.reduce_mean(tf.reduce_sum(log_prob * positives, 1) /
                        tf.reduce_sum(positives, 1))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model_dir', required=True)
  parser.add_argument('--batch_size', type=int, default=256)
  args = parser.parse_args()
  with open(f'{args.model_dir}/config.json') as f:
    config = Config.from_json(f.read())
  source = sources.load_source(config.input_fn, config.data_dir,
                               validation_fraction=config.validation_fraction,
                               seed=config.seed, label_type=config.label_type)
  model = run_lib.build_model(config, source.num_classes)
  model(tf.zeros([1, config.image_size, config.image_size, 3]))
  checkpoint = tf.train.latest_checkpoint(f'{args.model_dir}/stage_1')
  if checkpoint is None:
    raise SystemExit(f'--model_dir: no stage-1 checkpoint in {args.model_dir}.')
  tf.train.Checkpoint(model=model).read(checkpoint).expect_partial()
  dataset = pipeline.train_dataset(
      source.split('train'), config, args.batch_size,
      run_lib.normalization(config, source), num_views=2, seed=config.seed + 1)
  views, labels = next(iter(dataset))
  projection = model(views, training=False)['projection']
  z = tf.cast(tf.reshape(tf.transpose(projection, [1, 0, 2]),
                         [-1, projection.shape[-1]]), tf.float64)
  targets = tf.tile(labels, [2])
  results = {}
  for epsilon in (1e-5, 0.):
    with tf.GradientTape() as tape:
      tape.watch(z)
      loss = seed_loss(z, targets, config.temperature, epsilon)
    results[epsilon] = (float(loss), tape.gradient(loss, z).numpy().ravel())
  (with_loss, g1), (without_loss, g0) = results[1e-5], results[0.]
  threshold = 1 + config.temperature * math.log(1e-5)
  similarities = (z @ tf.transpose(z)).numpy()
  print(f'checkpoint: {checkpoint}')
  print(f'pairs with cosine below {threshold:.3f}: '
        f'{(similarities < threshold).mean():.4f}')
  print(f'loss with 1e-5: {with_loss:.6f}, without: {without_loss:.6f}')
  print(f'gradient norm ratio: {np.linalg.norm(g1) / np.linalg.norm(g0):.6f}')
  print(f'gradient cosine: '
        f'{g1 @ g0 / np.linalg.norm(g1) / np.linalg.norm(g0):.6f}')


if __name__ == '__main__':
  main()
