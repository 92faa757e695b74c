"""SupCon on tabular data: scikit-learn's breast cancer table (bundled, no
download; 569 rows of 30 measurements, 2 classes; `--dataset=wine`: 178
rows of 13, 3 classes), an MLP encoder, views made on the
device by Keras layers (Gaussian noise and feature dropout), and a linear
probe trained in the same `fit`, on any Keras backend.

    .venv/bin/python examples/tabular.py
    .venv/bin/python examples/tabular.py --num_views=1 --noise=0 --dropout=0
    KERAS_BACKEND=jax .venv/bin/python examples/tabular.py

`--num_views=1` with no augmentation contrasts the rows as they are: each
row's positives are the batch's other rows of its class. For comparison it
prints the test top-1 of a logistic regression on the raw (standardised)
features. The last line is `probe test top-1: X`.
"""
import argparse

import keras
import numpy as np
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from supcon_tf.losses import ContrastiveLoss
from supcon_tf.training.fit import SupConModel


@keras.saving.register_keras_serializable(package='examples')
class FeatureDropout(keras.layers.Layer):
  """Sets each feature of each row to 0 (the mean, on standardised data)
  with probability `rate` while training; unlike Dropout, no rescaling."""

  def __init__(self, rate, seed=None, **kwargs):
    super().__init__(**kwargs)
    self.rate = rate
    self.seed = seed
    self.generator = keras.random.SeedGenerator(seed)

  def call(self, rows, training=None):
    if not training or not self.rate:
      return rows
    keep = keras.random.uniform(keras.ops.shape(rows),
                                seed=self.generator) >= self.rate
    return keras.ops.where(keep, rows, keras.ops.zeros_like(rows))

  def get_config(self):
    return {**super().get_config(), 'rate': self.rate, 'seed': self.seed}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--epochs', type=int, default=60)
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--num_views', type=int, default=2)
  parser.add_argument('--noise', type=float, default=0.1,
                      help='Std of the Gaussian noise of a view (0: none).')
  parser.add_argument('--dropout', type=float, default=0.2,
                      help='Feature dropout rate of a view (0: none).')
  parser.add_argument('--dataset', default='breast_cancer',
                      choices=['wine', 'breast_cancer'])
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  keras.utils.set_random_seed(args.seed)

  data = {'wine': load_wine, 'breast_cancer': load_breast_cancer}[
      args.dataset]()
  num_classes = len(np.unique(data.target))
  x_train, x_test, y_train, y_test = train_test_split(
      data.data, data.target, test_size=0.3, random_state=0,
      stratify=data.target)
  mean, std = x_train.mean(0), x_train.std(0)
  x_train = ((x_train - mean) / std).astype('float32')
  x_test = ((x_test - mean) / std).astype('float32')

  encoder = keras.Sequential([
      keras.Input((x_train.shape[1],)),
      keras.layers.Dense(64, activation='relu'),
      keras.layers.Dense(32, activation='relu')], name='mlp')
  layers = ([keras.layers.GaussianNoise(args.noise, seed=args.seed)]
            if args.noise else [])
  layers += [FeatureDropout(args.dropout, seed=args.seed)] if args.dropout else []
  augmentation = keras.Sequential(layers, name='views') if layers else None
  model = SupConModel(encoder, num_classes=num_classes, augmentation=augmentation,
                      num_views=args.num_views, projection_head_layers=(16,))
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=ContrastiveLoss(temperature=0.1),
                probe_optimizer=keras.optimizers.Adam(1e-2))
  history = model.fit(x_train, y_train, batch_size=args.batch_size,
                      epochs=args.epochs, verbose=0, shuffle=True)
  losses = history.history['loss']
  print(f'{len(x_train)} training rows, {len(x_test)} test rows; '
        f'{args.num_views} view(s) a row; SupCon loss {losses[0]:.3f} -> '
        f'{losses[-1]:.3f} over {args.epochs} epochs')
  baseline = LogisticRegression(max_iter=1000).fit(x_train, y_train).score(
      x_test, y_test)
  print(f'logistic regression on the features, test top-1: {baseline:.4f}')
  # One batch: the metric is a mean of batch means.
  top1 = model.evaluate(x_test, y_test, batch_size=len(x_test),
                        return_dict=True, verbose=0)['probe_top1']
  print(f'probe test top-1: {top1:.4f}')


if __name__ == '__main__':
  main()
