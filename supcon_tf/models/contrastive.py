"""The contrastive model: encoder, projection head and classification head."""
import keras

from supcon_tf.models.heads import ClassificationHead, ProjectionHead


@keras.saving.register_keras_serializable(package='supcon_tf')
class ContrastiveModel(keras.Model):
  """Encoder plus heads; returns the official model outputs as a dict.

  Inputs are examples [N, ...] or views [B, V, ...]: views are folded into
  the batch for the encoder and unfolded in every output. An example has
  `example_rank` dimensions: 3 for images [H, W, C] (the default), 1 for
  tabular rows [F] or token ids [T]; without it, the rank of the encoder's
  declared input (a functional or Sequential model with an Input), else 3. Outputs, all
  float32: `unnormalized_embeddings` (the encoder's pooled feature),
  `embeddings` (L2-normalised), `projection` (the projection head's
  L2-normalised output, what the contrastive loss takes) and `logits` (the
  classification head). The heads read the normalised embedding when
  `normalize_embedding`, else the unnormalised one; the stop-gradients keep a
  head's loss from training the encoder. `weight_init='seed'` builds the
  heads as the seed's ResNet-20 (see `ProjectionHead`, `ClassificationHead`).
  """

  def __init__(self, encoder, num_classes, projection_head_layers=(128,),
               normalize_embedding=True, use_projection_batch_norm=False,
               use_projection_batch_norm_beta=False,
               stop_gradient_before_classification_head=True,
               stop_gradient_before_projection_head=False,
               zero_initialize_classifier=False, weight_init='official',
               example_rank=None, **kwargs):
    super().__init__(**kwargs)
    self.encoder = encoder
    self.example_rank = (int(example_rank) if example_rank is not None
                         else _declared_rank(encoder))
    self.num_classes = num_classes
    self.projection_head_layers = tuple(projection_head_layers)
    self.normalize_embedding = normalize_embedding
    self.use_projection_batch_norm = use_projection_batch_norm
    self.use_projection_batch_norm_beta = use_projection_batch_norm_beta
    self.stop_gradient_before_classification_head = (
        stop_gradient_before_classification_head)
    self.stop_gradient_before_projection_head = (
        stop_gradient_before_projection_head)
    self.zero_initialize_classifier = zero_initialize_classifier
    self.weight_init = weight_init
    self.projection_head = ProjectionHead(
        self.projection_head_layers, use_projection_batch_norm,
        use_projection_batch_norm_beta, weight_init=weight_init,
        name='projection_head')
    self.classification_head = ClassificationHead(
        num_classes, zero_initialize_classifier, weight_init=weight_init,
        name='classification_head')

  def call(self, inputs, training=None, encoder_training=None):
    # `encoder_training=False` keeps the encoder's BatchNorm in inference mode
    # while the heads train (stage 2 on a frozen encoder).
    if encoder_training is None:
      encoder_training = training
    folded = self.views_in(inputs)
    if folded:
      batch, views = keras.ops.shape(inputs)[0], inputs.shape[1]
      inputs = keras.ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))
    unnormalized = self.encoder(inputs, training=encoder_training)
    if len(unnormalized.shape) != 2:
      raise ValueError(
          f'The encoder {self.encoder.name!r} gives features of shape '
          f'{tuple(unnormalized.shape)}; the heads need [batch, features]: '
          "pool them (keras.applications: pooling='avg'; else end the "
          'encoder with keras.layers.GlobalAveragePooling2D()).')
    normalized = keras.ops.normalize(unnormalized, axis=-1, order=2)
    embedding = normalized if self.normalize_embedding else unnormalized
    projection_input = embedding
    if self.stop_gradient_before_projection_head:
      projection_input = keras.ops.stop_gradient(embedding)
    classifier_input = embedding
    if self.stop_gradient_before_classification_head:
      classifier_input = keras.ops.stop_gradient(embedding)
    outputs = {
        'unnormalized_embeddings': unnormalized,
        'embeddings': normalized,
        'projection': self.projection_head(projection_input,
                                           training=training),
        'logits': self.classification_head(classifier_input),
    }
    outputs = {k: keras.ops.cast(v, 'float32') for k, v in outputs.items()}
    if folded:
      # The feature size by name: with a dynamic batch (several replicas)
      # -1 would leave it unknown, and the loss floor needs it.
      outputs = {k: keras.ops.reshape(v, (batch, views, v.shape[-1] or -1))
                 for k, v in outputs.items()}
    return outputs

  def views_in(self, inputs):
    """Whether `inputs` are views [B, V, ...] (else examples [N, ...]); a
    ValueError names a rank that is neither."""
    rank = len(inputs.shape)
    if rank not in (self.example_rank + 1, self.example_rank + 2):
      raise ValueError(
          f'Inputs of shape {tuple(inputs.shape)}: this model takes examples '
          f'of rank {self.example_rank} ([batch, {self.example_rank} dims] or '
          f'views [batch, views, {self.example_rank} dims]); for other '
          'examples build it with example_rank (1: tabular rows or token '
          'ids) or an encoder that declares its input (keras.Input).')
    return rank == self.example_rank + 2

  def get_config(self):
    return {
        'encoder': keras.saving.serialize_keras_object(self.encoder),
        'example_rank': self.example_rank,
        'num_classes': self.num_classes,
        'projection_head_layers': list(self.projection_head_layers),
        'normalize_embedding': self.normalize_embedding,
        'use_projection_batch_norm': self.use_projection_batch_norm,
        'use_projection_batch_norm_beta': self.use_projection_batch_norm_beta,
        'stop_gradient_before_classification_head':
            self.stop_gradient_before_classification_head,
        'stop_gradient_before_projection_head':
            self.stop_gradient_before_projection_head,
        'zero_initialize_classifier': self.zero_initialize_classifier,
        'weight_init': self.weight_init,
        'name': self.name,
    }

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config['encoder'] = keras.saving.deserialize_keras_object(
        config['encoder'])
    return cls(**config)


def _declared_rank(encoder):
  """The rank of one example an encoder declares (its Input, less the
  batch), else 3: images."""
  try:
    inputs = encoder.inputs
  except (AttributeError, ValueError):
    inputs = None
  if inputs and len(inputs) == 1 and inputs[0].shape is not None:
    return len(inputs[0].shape) - 1
  return 3
