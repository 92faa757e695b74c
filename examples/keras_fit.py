"""SupCon with Keras `fit`: a keras.applications encoder on scikit-learn's
digits (bundled, no download), the project's AutoAugment views, a linear
probe trained in the same `fit` and the kNN monitor, then save, load,
export and embed.

    .venv/bin/python examples/keras_fit.py             # from any directory
    .venv/bin/python examples/keras_fit.py --epochs 1 --steps_per_epoch 2
    KERAS_BACKEND=jax .venv/bin/python examples/keras_fit.py   # on JAX

The views come from tf.data on any backend (TensorFlow installed); the
SavedModel export runs under TensorFlow only.

The last line is `probe test top-1: X`.
"""
import argparse
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from supcon_tf.config import Preprocessing
from supcon_tf.data import pipeline, sources
from supcon_tf.losses import ContrastiveLoss
from supcon_tf.training.fit import KnnMonitor, SupConModel


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--epochs', type=int, default=8)
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--steps_per_epoch', type=int, default=0,
                      help='Fewer steps an epoch (0: the whole digits).')
  parser.add_argument('--memory_size', type=int, default=0,
                      help='A cross-batch memory of this many samples (0: '
                      'none).')
  parser.add_argument('--memory_warmup', type=int, default=0,
                      help='Steps before the memory joins the loss.')
  parser.add_argument('--model_path', default=os.path.join(
      tempfile.gettempdir(), 'supcon_digits.keras'))
  args = parser.parse_args()
  keras.utils.set_random_seed(0)

  # The digits as 32 x 32 RGB; two AutoAugment views of each, as
  # bin/train_supcon.py makes them, normalised to [-1, 1].
  digits = sources.load_source('digits')
  train, test = digits.split('train'), digits.split('test')
  views = Preprocessing(augmentation_type='AUTOAUGMENT',
                        autoaugment_policy='cifar10', image_size=32,
                        crop='pad', random_crop_padding=2, flip=False)
  dataset, steps = pipeline.training_views(
      train.images, train.labels, views, args.batch_size, seed=0)
  evaluation = pipeline.eval_dataset(test, args.batch_size,
                                     sources.UNIT_MEAN_STD, 32)
  # The kNN monitor's bank: the training images without augmentation.
  bank = pipeline.eval_dataset(train, args.batch_size, sources.UNIT_MEAN_STD,
                               32)

  # Any Keras encoder that ends in a pooled feature [batch, features].
  encoder = keras.applications.ResNet50V2(
      input_shape=(32, 32, 3), weights=None, include_top=False,
      pooling='avg')
  model = SupConModel(encoder, num_classes=10, projection_head_layers=(128,),
                      memory_size=args.memory_size,
                      memory_warmup=args.memory_warmup)
  model.compile(
      # Cosine decay to 0: the weights settle by the end, so BatchNorm's
      # moving averages (which the probe is tested on) catch up with them.
      optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
          1e-3, decay_steps=args.epochs * (args.steps_per_epoch or steps))),
      loss=ContrastiveLoss(temperature=0.1),
      probe_optimizer=keras.optimizers.Adam(1e-2))
  model.fit(dataset, steps_per_epoch=args.steps_per_epoch or steps,
            epochs=args.epochs,
            validation_data=evaluation, verbose=2,
            callbacks=[KnnMonitor(bank, evaluation)])

  model.save(args.model_path)
  loaded = keras.saving.load_model(args.model_path)
  images = np.asarray(next(iter(evaluation))[0])
  outputs = loaded(images, training=False)
  same = np.allclose(outputs['embeddings'],
                     model(images, training=False)['embeddings'])
  print(f'saved to {args.model_path}; reloaded outputs equal: {same}')
  print(f'embeddings of {images.shape[0]} test images: '
        f'{tuple(outputs["embeddings"].shape)}')
  # A SavedModel for serving: images in, embeddings (and the rest) out.
  exported = os.path.splitext(args.model_path)[0] + '_served'
  if keras.backend.backend() == 'tensorflow':
    model.export(exported, verbose=False)
    served = tf.saved_model.load(exported)  # Held: its variables live with it.
    embeddings = served.serve(images)['embeddings']
    print(f'exported to {exported}; serves the same embeddings: '
          f'{np.allclose(embeddings, outputs["embeddings"], atol=1e-5)}')
  else:
    print(f'not exported under {keras.backend.backend()}: load '
          f'{args.model_path} under KERAS_BACKEND=tensorflow to export it')
  top1 = loaded.evaluate(evaluation, return_dict=True, verbose=0)[
      'probe_top1']
  print(f'probe test top-1: {top1:.4f}')


if __name__ == '__main__':
  tf.get_logger().setLevel('ERROR')
  main()
