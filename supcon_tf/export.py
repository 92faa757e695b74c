"""SavedModel export with the official outputs.

`serving_default` (also named `contrastive_eval`, the official name) takes raw
float32 images in 0..255 [N, H, W, 3]; `serving_uint8` takes uint8 images.
Both resize to the model's image size when needed, normalise with the
dataset's mean and std, run the model in inference mode and return
`embeddings`, `unnormalized_embeddings`, `projection`, `logits` and
`probabilities`. The loaded object's `serve(images)` takes either dtype.
"""
import tensorflow as tf


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


def export_saved_model(model, path, mean_std, image_size):
  """Writes the SavedModel to `path`; returns `path`."""
  module = _Serving(model, mean_std, image_size)
  float_fn = module.serve.get_concrete_function(
      tf.TensorSpec([None, None, None, 3], tf.float32, name='images'))
  uint8_fn = module.serve.get_concrete_function(
      tf.TensorSpec([None, None, None, 3], tf.uint8, name='images'))
  tf.saved_model.save(module, path, signatures={
      'serving_default': float_fn, 'contrastive_eval': float_fn,
      'serving_uint8': uint8_fn})
  return path
