"""Trainers over a fixture source, for running a stage's steps on batches a
test gives (`Trainer.train_on_batches`)."""
import numpy as np
import tensorflow as tf

from supcon_tf.data import sources
from supcon_tf.models import layers
from supcon_tf.presets import make_config
from supcon_tf.training import run as run_lib
from supcon_tf.training.loop import Trainer


def fixture_trainer(config, model, strategy=None):
  """A Trainer of `model` whose training split is five batches of blank
  images (ten classes): five steps an epoch, for the schedules."""
  batch, size = config.batch_size, config.image_size
  train = sources.Split(np.zeros(5 * batch), images=np.zeros(
      (5 * batch, size, size, 3), np.uint8))
  return Trainer(config, strategy or tf.distribute.get_strategy(), model,
                 sources.Source('fixture', {'train': train}, 10),
                 sources.UNIT_MEAN_STD)


def small_trainer(preset, strategy=None, weights=None, **values):
  """(config, model, Trainer) of `preset` at batch 8 of 8 x 8 images with
  per-replica BatchNorm (`values` over these), built in `strategy`'s scope,
  with `weights` when given."""
  strategy = strategy or tf.distribute.get_strategy()
  config = make_config(preset, **{
      'batch_size': 8, 'use_global_batch_norm': False, 'image_size': 8,
      **values})
  with strategy.scope():
    model = run_lib.build_model(config, 10)
    model(tf.zeros([1, config.image_size, config.image_size, 3]))
  layers.synchronize_batch_norm(model, config.use_global_batch_norm)
  if weights is not None:
    model.set_weights(weights)
  return config, model, fixture_trainer(config, model, strategy)
