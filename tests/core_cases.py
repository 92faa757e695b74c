"""The Keras core's side of tests/test_core.py, without TensorFlow, so a JAX
or PyTorch process runs it too."""
import numpy as np

from supcon_tf.data.device_views import DeviceViews
from supcon_tf.models import layers
from supcon_tf.training import core, stage_model, stages


def _identity(mean_std):
  return DeviceViews(crop=None, flip=False, mean=mean_std[0],
                     std=mean_std[1])


def core_steps(config, model, batches, mean_std, steps_per_epoch=5):
  """Runs stage 1 then stage 2 of `config` on `batches` each through the
  Keras core with identity views; the weights after each stage."""
  after = []
  for index in (1, 2):
    stage = stages.stage_from_config(config, index)
    trainer = stage_model.for_stage(config, model, stage, mean_std,
                                    steps_per_epoch, views=_identity(mean_std))
    stage_model.build(trainer, batches[0][0])
    layers.freeze_moving_statistics(model, not stage.update_encoder_batch_norm)
    for images, labels in batches:
      trainer.train_on_batch(images, labels)
    layers.freeze_moving_statistics(model, False)
    after.append([np.asarray(w) for w in model.get_weights()])
  return after
