"""SavedModel export with the official outputs and signatures.

`serving_default` takes raw float32 images in 0..255 [N, H, W, 3];
`serving_uint8` takes uint8 images. Both resize to the model's image size
when needed, normalise with the dataset's mean and std, run the model in
inference mode and return `embeddings`, `unnormalized_embeddings`,
`projection`, `logits` and `probabilities`. The loaded object's
`serve(images)` takes either dtype.

The official signatures take what the official model takes, float32 images
[N, S, S, 3] already preprocessed (in [-1, 1], whitened when
`apply_whitening`), and return the four official outputs:
`contrastive_eval` in inference mode, `contrastive_train` with BatchNorm on
the batch's statistics (the moving averages are not touched), or in
inference mode where the official export has it so (a warm-started run
without --batch_norm_in_train_mode).
"""
import tensorflow as tf

from supcon_tf.models import layers
from supcon_tf import files

OFFICIAL_OUTPUTS = ('embeddings', 'unnormalized_embeddings', 'projection',
                    'logits')


class _Serving(tf.Module):

  def __init__(self, model, mean_std, image_size):
    super().__init__()
    self.model = model
    self.mean = tf.constant(mean_std[0], tf.float32)
    self.std = tf.constant(mean_std[1], tf.float32)
    self.image_size = image_size

  @tf.function
  def serve(self, images):
    images = tf.cast(images, tf.float32)
    size = self.image_size
    same = tf.reduce_all(tf.equal(tf.shape(images)[1:3], [size, size]))
    images = tf.cond(same, lambda: images,
                     lambda: tf.image.resize(images, [size, size]))
    images = tf.reshape(images, [-1, size, size, 3])
    outputs = self.model((images - self.mean) / self.std, training=False)
    outputs = dict(outputs)
    outputs['probabilities'] = tf.nn.softmax(outputs['logits'])
    return outputs

  @tf.function
  def contrastive_eval(self, images):
    outputs = self.model(images, training=False)
    return {k: outputs[k] for k in OFFICIAL_OUTPUTS}

  @tf.function
  def contrastive_train(self, images):
    outputs = self.model(images, training=True)
    return {k: outputs[k] for k in OFFICIAL_OUTPUTS}


def export_saved_model(model, path, mean_std, image_size,
                       train_batch_norm=True):
  """Writes the SavedModel to `path`; returns `path`. `train_batch_norm`:
  whether `contrastive_train` normalises with batch statistics."""
  module = _Serving(model, mean_std, image_size)
  float_fn = module.serve.get_concrete_function(
      tf.TensorSpec([None, None, None, 3], tf.float32, name='images'))
  uint8_fn = module.serve.get_concrete_function(
      tf.TensorSpec([None, None, None, 3], tf.uint8, name='images'))
  preprocessed = tf.TensorSpec([None, image_size, image_size, 3], tf.float32,
                               name='images')
  eval_fn = module.contrastive_eval.get_concrete_function(preprocessed)
  # Traced with the moving-average updates off: serving never changes them.
  layers.freeze_moving_statistics(model, True)
  try:
    train_fn = (module.contrastive_train if train_batch_norm
                else module.contrastive_eval).get_concrete_function(
                    preprocessed)
  finally:
    layers.freeze_moving_statistics(model, False)
  # Written beside `path` and renamed over it when complete: a failed export
  # leaves the previous one.
  with files.replaced_directory(path) as partial:
    tf.saved_model.save(module, partial, signatures={
        'serving_default': float_fn, 'serving_uint8': uint8_fn,
        'contrastive_eval': eval_fn, 'contrastive_train': train_fn})
  return path
