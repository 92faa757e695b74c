#!/usr/bin/env python3
"""A one-minute look at the SupCon loss on scikit-learn's bundled digits.

1. Checks the loss against two of the official test vectors.
2. Trains a small MLP encoder with `ContrastiveLoss` (SupCon: two augmented views
   per image, labels as positives) through `model.compile` / `model.fit`, and
   reports the test accuracy of a 5-nearest-neighbour and of a nearest class
   centroid classifier on the L2-normalised embeddings, before and after
   training: SupCon pulls each class to one tight cluster, which the centroid
   classifier shows best.

Runs offline: the digits ship with scikit-learn.

    python bin/demo_loss.py [--epochs 30] [--temperature 0.1]
"""
import argparse
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid  # noqa: E402

from supcon_tf.losses import ContrastiveLoss, contrastive_loss  # noqa: E402


def views_of(images, rng, num_views=2):
  """Random one-pixel shifts plus pixel noise: [N, 64] -> [N, V, 64]."""
  grids = images.reshape(-1, 8, 8)
  out = []
  for _ in range(num_views):
    shifted = np.empty_like(grids)
    for i, grid in enumerate(grids):
      dy, dx = rng.integers(-1, 2, size=2)
      shifted[i] = np.roll(grid, (dy, dx), axis=(0, 1))
    noisy = shifted + rng.normal(scale=0.1, size=shifted.shape)
    out.append(noisy.reshape(-1, 64))
  return np.stack(out, axis=1).astype(np.float32)


def accuracies(encoder, train_x, train_y, test_x, test_y):
  """Test accuracy of 5-NN and of the nearest class centroid, on embeddings."""
  train_z, test_z = (encoder.predict(x[:, None, :], verbose=0)[:, 0]
                     for x in (train_x, test_x))
  knn = KNeighborsClassifier(n_neighbors=5, metric='cosine')
  centroid = NearestCentroid()
  return tuple(c.fit(train_z, train_y).score(test_z, test_y)
               for c in (knn, centroid))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--epochs', type=int, default=30)
  parser.add_argument('--temperature', type=float, default=0.1)
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()

  tetrahedron = (np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]],
                          np.float32) / np.sqrt(3.)).reshape(2, 2, 3)
  simclr = float(np.mean(contrastive_loss(tetrahedron)))
  print(f'official vector, tetrahedron SimCLR loss: {simclr:.6f} '
        f'(expected log 3 = {np.log(3.):.6f})')

  digits = load_digits()
  x = (digits.data / 16.).astype(np.float32)
  train_x, test_x, train_y, test_y = train_test_split(
      x, digits.target, test_size=0.25, random_state=args.seed,
      stratify=digits.target)
  rng = np.random.default_rng(args.seed)
  keras.utils.set_random_seed(args.seed)

  inputs = keras.Input((None, 64))  # [batch, views, pixels]
  h = keras.layers.Dense(256, activation='relu')(inputs)
  h = keras.layers.Dense(64)(h)
  outputs = keras.layers.UnitNormalization(axis=-1)(h)
  encoder = keras.Model(inputs, outputs, name='mlp_encoder')
  encoder.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=ContrastiveLoss(temperature=args.temperature))

  knn, centroid = accuracies(encoder, train_x, train_y, test_x, test_y)
  print(f'untrained encoder:     test accuracy 5-NN {knn:.4f}, '
        f'nearest class centroid {centroid:.4f}')
  for epoch in range(args.epochs):
    history = encoder.fit(views_of(train_x, rng), train_y,
                          batch_size=args.batch_size, epochs=1, shuffle=True,
                          verbose=0)
    if epoch % 5 == 4 or epoch == args.epochs - 1:
      print(f'epoch {epoch + 1:3d}/{args.epochs}  SupCon loss '
            f'{history.history["loss"][-1]:.4f}')
  knn, centroid = accuracies(encoder, train_x, train_y, test_x, test_y)
  print(f'SupCon-trained encoder: test accuracy 5-NN {knn:.4f}, '
        f'nearest class centroid {centroid:.4f}')


if __name__ == '__main__':
  main()
