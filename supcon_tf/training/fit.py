"""SupCon the Keras way: `SupConModel`, a `ContrastiveModel` that trains with
`compile` and `fit` on the same step as the command-line Trainer
(`supcon_tf.training.step`).

    model = SupConModel(encoder, num_classes=10)   # any pooled Keras encoder
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=ContrastiveLoss(temperature=0.1),
                  probe_optimizer=keras.optimizers.Adam(1e-3))
    model.fit(views_and_labels, validation_data=images_and_labels, ...)

`fit` takes (views [B, V, H, W, C], labels [B]) batches, or (images
[B, H, W, C], labels) with an `augmentation` layer that makes the views on
the device. Examples of any rank train the same way (`example_rank`: 1 for
tabular rows [B, F] or token ids [B, T]; views [B, V, F]); with
`num_views=1` and no augmentation the examples are contrasted as they are,
each a view of its own whose positives are the batch's other examples of
its class. The compiled `ContrastiveLoss` sees the labels and its options
(SimCLR with `use_labels=False`). With a `probe_optimizer` the
classification head, which reads the stop-gradient embedding, is a linear
probe trained in the same step; `evaluate` (and `validation_data`) report
its top-1 on eval images [B, H, W, C].
Metrics: `loss` (the contrastive loss), `probe_loss`, `probe_top1`.

On every Keras backend, with one objective (`objective.Objective`, in
`keras.ops`). Under TensorFlow the training step is the command line's
(`step.py`: the fused loss, replicas, `micro_batch_size`, the cross-batch
memory). Under JAX and PyTorch it is the objective of `_terms`,
differentiated by the backend (a jitted step under JAX); the encoder's
optimizer and the probe's travel as one (`paired_optimizer.py`), since
Keras' JAX trainer carries one optimizer's state. Evaluation is `_terms` on
every backend.
"""
import keras
import numpy as np

from supcon_tf.losses import ContrastiveLoss, class_ids
from supcon_tf.models.contrastive import ContrastiveModel
from supcon_tf.training import knn
from supcon_tf.training import objective as objective_lib
from supcon_tf.training.paired_optimizer import PairedOptimizer, current_value

ops = keras.ops
_BACKEND = keras.backend.backend()
if _BACKEND == 'tensorflow':
  import tensorflow as tf
  from supcon_tf.training import evaluation, step as step_lib
  from supcon_tf.training import memory as memory_lib

# The metrics' names for the objective's terms.
_METRICS = {'loss': 'contrastive_loss', 'probe_loss': 'cross_entropy_loss',
            'probe_top1': 'train_top1'}


@keras.saving.register_keras_serializable(package='supcon_tf')
class SupConModel(ContrastiveModel):
  """`ContrastiveModel` plus Keras training (`compile`, `fit`, `evaluate`).

  `augmentation`: a Keras layer (or model) called on batches of examples
  in `train_step` to make each of `num_views` views (it must draw anew on
  each call, as Keras' random preprocessing layers do); without it, `fit`
  takes views, or with `num_views=1` the examples themselves. The encoder
  must output a pooled feature [batch, features].

  `memory_size` > 0 keeps a cross-batch memory (`memory.CrossBatchMemory`) of
  the last `memory_size` samples' projections (`num_views` views each) and
  class ids; once full and after `memory_warmup` steps they join each
  step's contrast set. Off by default: see docs/KERAS.md for what it did
  on the digits. TensorFlow only (a ValueError elsewhere)."""

  def __init__(self, encoder, num_classes, augmentation=None, num_views=2,
               memory_size=0, memory_warmup=0, **kwargs):
    super().__init__(encoder, num_classes, **kwargs)
    self.augmentation = augmentation
    self.num_views = int(num_views)
    self.memory_size, self.memory_warmup = int(memory_size), int(memory_warmup)
    self.memory = None
    if self.memory_size:
      if _BACKEND != 'tensorflow':
        raise ValueError('memory_size (a cross-batch memory) needs the '
                         f'TensorFlow backend; this is {_BACKEND}.')
      if not self.projection_head_layers:
        raise ValueError('memory_size needs a projection head '
                         '(projection_head_layers), whose size it keeps.')
      self.memory = memory_lib.CrossBatchMemory(
          self.memory_size, self.num_views, self.projection_head_layers[-1],
          self.memory_warmup, name='memory')
    self.probe_optimizer = None
    self.micro_batch_size = 0
    self._step = None
    self._trackers = {name: keras.metrics.Mean(name=name) for name in (
        'loss', 'probe_loss', 'probe_top1')}

  def compile(self, optimizer='sgd', loss=None, probe_optimizer=None,
              micro_batch_size=0, **kwargs):
    """Keras' compile, with the loss a `ContrastiveLoss` (default
    `ContrastiveLoss()`: SupCon at temperature 1), a `probe_optimizer` for
    the linear probe (None: no probe) and
    `micro_batch_size` (a divisor of each replica's batch: the step in
    chunks, by gradient caching; TensorFlow only)."""
    loss = ContrastiveLoss() if loss is None else loss
    if not isinstance(loss, ContrastiveLoss):
      raise ValueError(f'SupConModel trains with a ContrastiveLoss; got '
                       f'{type(loss).__name__}.')
    if micro_batch_size and _BACKEND != 'tensorflow':
      raise ValueError('micro_batch_size (gradient caching) needs the '
                       f'TensorFlow backend; this is {_BACKEND}.')
    self.probe_optimizer = (keras.optimizers.get(probe_optimizer)
                            if probe_optimizer is not None else None)
    optimizer = keras.optimizers.get(optimizer)
    if _BACKEND != 'tensorflow':
      optimizer = PairedOptimizer(optimizer, self.probe_optimizer,
                              self._probe_variables)
    # The step computes the loss; Keras' own loss handling would map it
    # onto every output of the dict.
    super().compile(optimizer=optimizer, **kwargs)
    self.loss = loss
    self.micro_batch_size = int(micro_batch_size)
    self._step = None

  def get_compile_config(self):
    if not self.compiled:
      # Saved before compile (an encoder to share, a model built to
      # export): it loads uncompiled.
      return None
    config = super().get_compile_config() or {}
    config['optimizer'] = keras.saving.serialize_keras_object(
        self.optimizer.parts()[0] if isinstance(self.optimizer, PairedOptimizer)
        else self.optimizer)
    config['loss'] = keras.saving.serialize_keras_object(self.loss)
    if self.probe_optimizer is not None:
      config['probe_optimizer'] = keras.saving.serialize_keras_object(
          self.probe_optimizer)
    config['micro_batch_size'] = self.micro_batch_size
    return config

  def compile_from_config(self, config):
    config = {k: keras.saving.deserialize_keras_object(v)
              if k in ('optimizer', 'loss', 'probe_optimizer') and
              isinstance(v, dict) else v
              for k, v in config.items()}
    self.compile(**config)
    if self.built:
      # Slots as fit would make them, so that saved optimizer state loads.
      if _BACKEND == 'tensorflow':
        self.optimizer.build(self._trained_variables())
        if self.probe_optimizer is not None:
          self.probe_optimizer.build(self._probe_variables())
      else:
        self.optimizer.build(self.trainable_variables)

  @property
  def metrics(self):
    return list(self._trackers.values())

  def _trained_variables(self):
    return (self.encoder.trainable_variables +
            self.projection_head.trainable_variables)

  def _probe_variables(self):
    return self.classification_head.trainable_variables

  def objective(self, memory=None, contrastive=True):
    """The `objective.Objective` of the compiled loss (and the probe's
    cross-entropy)."""
    replicas = (tf.distribute.get_strategy().num_replicas_in_sync
                if _BACKEND == 'tensorflow' else 1)
    return objective_lib.Objective(
        memory=memory, global_batch=None, replicas=replicas,
        contrastive_weight=1. if contrastive else 0.,
        cross_entropy_weight=1. if self.probe_optimizer is not None else 0.,
        use_labels=self.loss.use_labels, **self.loss.options())

  def make_step(self):
    """The `step.Step` that `train_step` runs."""
    probe = None
    if self.probe_optimizer is not None:
      probe = (self.probe_optimizer, self._probe_variables())
    return step_lib.Step(self, self._trained_variables(), self.optimizer,
                         self.objective(memory=self.memory),
                         micro_batch_size=self.micro_batch_size, probe=probe,
                         name='fit')

  def _views(self, x):
    """The batch as views [B, V, ...]."""
    if self.views_in(x):
      views = x
    elif self.augmentation is not None:
      views = ops.stack([self.augmentation(x, training=True)
                         for _ in range(self.num_views)], axis=1)
    elif self.num_views == 1:
      views = ops.expand_dims(x, 1)
    else:
      views = None
    if views is not None:
      if views.shape[1] == 1 and not self.loss.use_labels:
        raise ValueError('SimCLR (use_labels=False) needs two views or '
                         'more: with one, no anchor has a positive.')
      return views
    raise ValueError(
        f'fit got examples of shape {tuple(x.shape)} and no augmentation: '
        'give views [batch, views, ...] (pipeline.training_views for '
        'images), build SupConModel with an augmentation layer, or with '
        'num_views=1 to contrast the examples as they are.')

  def _eval_views(self, x):
    """Evaluation batches: views, or examples as one view each."""
    return x if self.views_in(x) else ops.expand_dims(x, 1)

  def train_step(self, *args):
    if _BACKEND == 'jax':
      return self._jax_step(*args, training=True)
    if _BACKEND != 'tensorflow':
      return self._stateful_step(*args, training=True)
    data, = args
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    views = self._views(x)
    if self._step is None:
      if not all(layer.built for layer in (
          self, self.encoder, self.projection_head, self.classification_head)):
        # Keras builds a model without a strategy scope when the step is
        # first traced: the variables must exist before the step lists them.
        self(views, training=False)
      self._step = self.make_step()
    return self._track(self._step(views, class_ids(y)))

  def test_step(self, *args):
    """Eval images [B, H, W, C] (or views): the probe's loss and top-1 on
    the first view; the contrastive loss where there are two views or more."""
    if _BACKEND == 'jax':
      return self._jax_step(*args, training=False)
    if _BACKEND != 'tensorflow':
      return self._stateful_step(*args, training=False)
    data, = args
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    return self._track(self._terms(x, y, training=False)[1])

  def _terms(self, x, y, training):
    """The objective of a batch: (its total, its terms). Training (JAX,
    PyTorch): views made from images if need be, the contrastive loss and
    the probe's cross-entropy on the first view. Evaluation (every
    backend): the same, the contrastive loss only with two views or
    more."""
    labels = class_ids(y)
    views = self._views(x) if training else self._eval_views(x)
    outputs = self(views, training=training)
    objective = self.objective(contrastive=training or views.shape[1] >= 2)
    terms, total = objective(outputs, labels)
    return total, terms

  def _stateful_step(self, data, training):
    """`train_step` / `test_step` of the PyTorch backend."""
    import torch  # pylint: disable=import-outside-toplevel
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    if not training:
      with torch.no_grad():
        _, terms = self._terms(x, y, training=False)
      return self._track(terms)
    self.zero_grad()
    total, terms = self._terms(x, y, training=True)
    total.backward()
    variables = self.trainable_variables
    self.optimizer.apply([v.value.grad for v in variables], variables)
    return self._track(terms)

  def _jax_step(self, state, data, training):
    """`train_step` / `test_step` of the JAX trainer: stateless, jitted."""
    import jax  # pylint: disable=import-outside-toplevel
    if training:
      trainable, non_trainable, optimizer_state, metrics = state
    else:
      trainable, non_trainable, metrics = state
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)

    def objective(trainable, non_trainable):
      mapping = (list(zip(self.trainable_variables, trainable)) +
                 list(zip(self.non_trainable_variables, non_trainable)))
      with keras.StatelessScope(state_mapping=mapping) as scope:
        total, terms = self._terms(x, y, training)
      # BatchNorm's moving averages and the augmentation's seeds.
      non_trainable = [current_value(scope, v)
                       for v in self.non_trainable_variables]
      return total, (terms, non_trainable)

    if training:
      (_, (terms, non_trainable)), grads = jax.value_and_grad(
          objective, has_aux=True)(trainable, non_trainable)
      trainable, optimizer_state = self.optimizer.stateless_apply(
          optimizer_state, grads, trainable)
    else:
      _, (terms, non_trainable) = objective(trainable, non_trainable)
    with keras.StatelessScope(
        state_mapping=list(zip(self.metrics_variables, metrics))) as scope:
      logs = self._track(terms)
    metrics = [current_value(scope, v) for v in self.metrics_variables]
    if training:
      return logs, (trainable, non_trainable, optimizer_state, metrics)
    return logs, (trainable, non_trainable, metrics)

  def _track(self, terms):
    """The metrics of the objective's `terms`; their logs."""
    # Under tf.distribute each replica holds its share of the global mean:
    # the sum over replicas.
    context = (tf.distribute.get_replica_context()
               if _BACKEND == 'tensorflow' else None)
    names = [name for name, key in _METRICS.items() if key in terms]
    for name in names:
      value = terms[_METRICS[name]]
      if context is not None:
        value = context.all_reduce('SUM', value)
      self._trackers[name].update_state(value)
    return {name: self._trackers[name].result() for name in names}

  def call(self, inputs, training=None, encoder_training=None):
    # What one example looks like, for `export`'s default signature.
    self._image_spec = (tuple(inputs.shape[len(inputs.shape) -
                                           self.example_rank:]), inputs.dtype)
    return super().call(inputs, training=training,
                        encoder_training=encoder_training)

  def export(self, filepath, format='tf_saved_model', verbose=None,
             input_signature=None, **kwargs):
    """Keras' `export`, whose endpoint `serve` takes images [batch, H, W, C]
    (as `call` takes them, not the views `fit` takes) and returns the outputs
    in inference mode: `embeddings`, `unnormalized_embeddings`, `projection`,
    `logits`. `bin/` apps' SavedModels (raw 0..255 images, the official
    signatures) come from `supcon_tf.export.export_saved_model`."""
    if _BACKEND != 'tensorflow':
      raise ValueError(
          'export writes a TensorFlow SavedModel: save a .keras file here and '
          f'export it under KERAS_BACKEND=tensorflow (this is {_BACKEND}).')
    if input_signature is None:
      if getattr(self, '_image_spec', None) is None:
        raise ValueError('export needs the model built: call it on a batch '
                         'of images first, or pass input_signature.')
      shape, dtype = self._image_spec
      input_signature = [tf.TensorSpec((None,) + shape, dtype, name='images')]
    return super().export(filepath, format=format, verbose=verbose,
                          input_signature=input_signature, **kwargs)

  def get_config(self):
    config = super().get_config()
    config['augmentation'] = (
        None if self.augmentation is None else
        keras.saving.serialize_keras_object(self.augmentation))
    config.update(num_views=self.num_views, memory_size=self.memory_size,
                  memory_warmup=self.memory_warmup)
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    if config.get('augmentation') is not None:
      config['augmentation'] = keras.saving.deserialize_keras_object(
          config['augmentation'])
    return super().from_config(config)


class KnnMonitor(keras.callbacks.Callback):
  """The kNN monitor (Wu et al. 2018; the command line's
  `--knn_every_epochs`) as a Keras callback: after each `every`-th epoch,
  the embeddings of `bank` (labelled images, say the training split with
  eval preprocessing) vote for each image of `queries`; `knn_top1` goes into
  the epoch's logs (list this callback before `keras.callbacks.TensorBoard`).
  Each is a dataset of (images [B, H, W, C], labels [B]) batches (tf.data,
  embedded across the model's replicas, or a `keras.utils.PyDataset`) or a
  pair of arrays (images [N, H, W, C], labels [N])."""

  def __init__(self, bank, queries, k=200, temperature=0.1, every=1,
               batch_size=256):
    super().__init__()
    for name, data in (('bank', bank), ('queries', queries)):
      if not (_is_pair(data) or isinstance(data, keras.utils.PyDataset) or
              (hasattr(data, '__iter__') and not hasattr(data, 'shape'))):
        raise ValueError(f'KnnMonitor {name} must be (images, labels) '
                         'arrays or a dataset of (images, labels) batches; '
                         f'got {type(data).__name__}.')
    if every < 1:
      raise ValueError(f'KnnMonitor every must be >= 1; got {every}.')
    self.bank, self.queries = bank, queries
    self.k, self.temperature, self.every = k, temperature, every
    self.batch_size = batch_size
    self._forward = None

  def _embed(self, data):
    """{'embeddings': [N, D], 'labels': [N]} of `data`."""
    if _BACKEND == 'tensorflow' and isinstance(data, tf.data.Dataset):
      strategy = self.model.distribute_strategy
      if self._forward is None:
        self._forward = evaluation.make_forward(self.model,
                                                keys=('embeddings',))
      return evaluation.predict(strategy, self._forward,
                                strategy.experimental_distribute_dataset(data))
    if _is_pair(data):
      images, labels = data
      batches = ((images[i:i + self.batch_size], labels[i:i + self.batch_size])
                 for i in range(0, len(images), self.batch_size))
    elif isinstance(data, keras.utils.PyDataset):
      batches = (data[i] for i in range(len(data)))
    else:
      batches = data
    embeddings, batch_labels = [], []
    for batch_images, labels_of_batch in batches:
      embeddings.append(keras.ops.convert_to_numpy(self.model.predict_on_batch(
          np.asarray(batch_images))['embeddings']))
      batch_labels.append(np.asarray(labels_of_batch).reshape(-1))
    return {'embeddings': np.concatenate(embeddings),
            'labels': np.concatenate(batch_labels)}

  def top1(self):
    """The kNN top-1 of the model as it is now."""
    bank, queries = self._embed(self.bank), self._embed(self.queries)
    return knn.knn_accuracy(
        bank['embeddings'], bank['labels'], queries['embeddings'],
        queries['labels'], self.model.num_classes, k=self.k,
        temperature=self.temperature)

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None and (epoch + 1) % self.every == 0:
      logs['knn_top1'] = self.top1()


def _is_pair(data):
  return (isinstance(data, tuple) and len(data) == 2 and
          all(hasattr(x, 'shape') for x in data))
