"""One training step: the loss terms of a batch of views, their gradient and
the update. The command-line Trainer's loop (`Trainer.make_loop`) and Keras
`fit` (`ContrastiveModel.train_step`) both run a `Step`, so the loss's
options, cross-replica negatives, the deferred blur and `--micro_batch_size`
behave the same from either.

- `Objective`: what a stage minimises (contrastive and cross-entropy terms,
  the loss floor), as this replica's share of the global batch's mean.
- `Step`: the gradient of the objective plus weight decay, over the whole
  batch or chunk by chunk (gradient caching for contrastive terms,
  accumulation for cross-entropy), the BatchNorm statistics of chunks, the
  optimizer update.
"""
import dataclasses
import types
from typing import Optional

import keras
import tensorflow as tf
from absl import logging

from supcon_tf import analysis, losses
from supcon_tf.data import augment
from supcon_tf.losses import tf_loss
from supcon_tf.models import layers
from supcon_tf.training import optimizers


@dataclasses.dataclass(frozen=True)
class Objective:
  """The loss terms of a stage: `contrastive_weight` x the contrastive loss
  of the projections (labels unless `use_labels` is False) plus
  `cross_entropy_weight` x the cross-entropy of the first view's logits.
  Each term is this replica's share of the mean over `global_batch`
  examples (None: the batch each replica is given, times the replicas);
  `num_classes` (when known) adds the loss floor as a term."""
  global_batch: Optional[int]
  replicas: int = 1
  contrastive_weight: float = 1.
  cross_entropy_weight: float = 0.
  use_labels: bool = True
  temperature: float = 1.
  contrast_mode: str = 'all_views'
  summation_location: str = 'outside'
  denominator_mode: str = 'all'
  positives_cap: int = -1
  scale_by_temperature: bool = True
  base_temperature: Optional[float] = None
  implementation: str = 'auto'
  block_size: Optional[int] = None
  label_smoothing: float = 0.
  num_classes: Optional[int] = None
  memory: Optional['CrossBatchMemory'] = None

  @property
  def contrastive(self):
    return self.contrastive_weight > 0

  @property
  def output_keys(self):
    """The model outputs the terms read."""
    return ((['projection'] if self.contrastive else []) +
            (['logits'] if self.cross_entropy_weight > 0 else []))

  def batch_size(self, labels):
    """The global batch the terms are the mean of (float32)."""
    if self.global_batch:
      return tf.constant(float(self.global_batch))
    return tf.cast(tf.shape(labels)[0] * self.replicas, tf.float32)

  def __call__(self, outputs, labels):
    """(terms, their weighted sum)."""
    terms = {}
    total = tf.constant(0.)
    global_batch = self.batch_size(labels)
    if self.contrastive:
      projection = outputs['projection']
      memory = {} if self.memory is None else dict(
          memory=self.memory.contents(), memory_active=self.memory.active())
      per_anchor = losses.contrastive_loss(
          projection, labels if self.use_labels else None,
          temperature=self.temperature,
          contrast_mode=self.contrast_mode.lower(),
          summation_location=self.summation_location.lower(),
          denominator_mode=self.denominator_mode.lower(),
          positives_cap=self.positives_cap,
          scale_by_temperature=self.scale_by_temperature,
          base_temperature=self.base_temperature,
          implementation=self.implementation, block_size=self.block_size,
          **memory)
      if self.memory is not None:
        # After the loss has read it: a batch is never its own memory. With
        # a key encoder, its projections are what the memory keeps.
        self.memory.push(outputs.get('key_projection', projection), labels)
      terms['contrastive_loss'] = tf.reduce_sum(per_anchor) / global_batch
      total += self.contrastive_weight * terms['contrastive_loss']
      # The floor is the batch's: not with a memory's samples among them.
      if self.num_classes and self.memory is None and analysis.floor_applies(
          self.contrast_mode, self.summation_location, self.denominator_mode,
          self.positives_cap, self.use_labels, projection.shape[1],
          projection.shape[-1], self.num_classes):
        # The global batch's floor, once: each replica adds its share.
        terms['loss_floor'] = analysis.batch_floor(
            tf_loss.cross_replica_concat(labels), self.num_classes,
            projection.shape[1], self.temperature,
            self.temperature if self.scale_by_temperature else 1.
        ) / self.replicas
    if self.cross_entropy_weight > 0:
      terms['cross_entropy_loss'], terms['train_top1'] = cross_entropy(
          outputs['logits'], labels, global_batch, self.label_smoothing)
      total += self.cross_entropy_weight * terms['cross_entropy_loss']
    return terms, total


class CrossBatchMemory(keras.layers.Layer):
  """A queue of the projections (every view) and class ids of the last
  `size` samples trained on, the global batch's on every replica. Once
  full and after `warmup` steps, its samples join each step's contrast set
  (never as anchors, no gradient): more positives and negatives than the
  batch holds, from earlier weights (Wang et al. 2020, "Cross-Batch
  Memory"; pytorch-metric-learning's `CrossBatchMemory`)."""

  def __init__(self, size, num_views, dim, warmup=0, **kwargs):
    super().__init__(trainable=False, **kwargs)
    if size < 1 or warmup < 0:
      raise ValueError(f'memory_size must be >= 1 and memory_warmup >= 0; '
                       f'got {size} and {warmup}.')
    self.size, self.num_views, self.warmup = size, num_views, warmup
    # Every replica pushes the same gathered batch: the first one's write is
    # every copy's.
    weight = dict(trainable=False, aggregation='only_first_replica')
    self.features = self.add_weight(shape=(size, num_views, dim),
                                    initializer='zeros', name='features',
                                    **weight)
    self.labels = self.add_weight(shape=(size,), dtype='int32',
                                  initializer='zeros', name='labels', **weight)
    self.written = self.add_weight(shape=(), dtype='int64',
                                   initializer='zeros', name='written',
                                   **weight)
    self.steps = self.add_weight(shape=(), dtype='int64', initializer='zeros',
                                 name='steps', **weight)

  def active(self):
    return tf.logical_and(self.written.value >= self.size,
                          self.steps.value >= self.warmup)

  def contents(self):
    """(projections [size, views, dim], class ids [size])."""
    return self.features.value, self.labels.value

  def push(self, projection, labels):
    """Writes the global batch over the oldest samples."""
    if labels.shape.rank != 1:
      raise ValueError('A cross-batch memory keeps class ids [batch]; got '
                       f'labels of shape {labels.shape}.')
    if projection.shape[1] != self.num_views:
      raise ValueError(
          f'The memory holds {self.num_views} views a sample (num_views); '
          f'the batch has {projection.shape[1]}.')
    projection = tf.stop_gradient(tf_loss.cross_replica_concat(
        tf.cast(projection, tf.float32)))[-self.size:]
    labels = tf_loss.cross_replica_concat(tf.cast(labels, tf.int32))[
        -self.size:]
    count = tf.shape(labels, out_type=tf.int64)[0]
    where = ((self.written.value + tf.range(count)) % self.size)[:, None]
    self.features.assign(tf.tensor_scatter_nd_update(
        self.features.value, where,
        tf.reshape(projection, [-1] + list(self.features.shape[1:]))))
    self.labels.assign(tf.tensor_scatter_nd_update(self.labels.value, where,
                                                   labels))
    self.written.assign_add(count)
    self.steps.assign_add(1)

  def get_config(self):
    config = super().get_config()
    config.update(size=self.size, num_views=self.num_views,
                  dim=int(self.features.shape[-1]), warmup=self.warmup)
    return config


class MomentumEncoder(keras.layers.Layer):
  """MoCo's key encoder (He et al. 2020) for a cross-batch memory: an
  exponential moving average of `model`'s weights (every trainable weight
  and BatchNorm statistic) that embeds each batch for the memory, without a
  gradient. `project(views, forward_options)` runs `model` on these weights
  (Keras' stateless call), BatchNorm on the batch's statistics as MoCo's key
  encoder, its moving averages left alone; `update()` after each step moves
  them toward the model's: key = momentum x key + (1 - momentum) x weight."""

  def __init__(self, model, momentum, **kwargs):
    super().__init__(trainable=False, **kwargs)
    if not 0 < momentum < 1:
      raise ValueError(f'momentum_encoder must be in (0, 1); got {momentum}.')
    # Held outside Keras' tracking: the model is not a part of this layer.
    self._of = types.SimpleNamespace(model=model)
    self.momentum = float(momentum)
    # Every replica computes the same average of mirrored weights.
    weight = dict(trainable=False, aggregation='only_first_replica')
    self.trained = [self.add_weight(shape=v.shape, dtype=v.dtype,
                                    initializer=_value_of(v), name=f'key_{i}',
                                    **weight)
                    for i, v in enumerate(model.trainable_variables)]
    self.kept = [self.add_weight(shape=v.shape, dtype=v.dtype,
                                 initializer=_value_of(v), name=f'keep_{i}',
                                 **weight)
                 for i, v in enumerate(model.non_trainable_variables)]

  @property
  def model(self):
    return self._of.model

  def checkpointed(self):
    """Its weights as a checkpoint dependency (Keras keeps its weight
    lists where a TensorFlow checkpoint does not look)."""
    return tf.train.Checkpoint(trained=list(self.trained),
                               kept=list(self.kept))

  def project(self, views, forward_options):
    """The key encoder's projections of `views` (no gradient)."""
    with layers.moving_statistics_frozen(self.model):
      outputs, _ = self.model.stateless_call(
          [v.value for v in self.trained], [v.value for v in self.kept],
          views, **forward_options)
    return tf.stop_gradient(outputs['projection'])

  def update(self):
    momentum = self.momentum
    for key, value in zip(self.trained + self.kept,
                          self.model.trainable_variables +
                          self.model.non_trainable_variables):
      if key.dtype != 'bool' and 'int' not in key.dtype:
        key.assign(momentum * key.value + (1. - momentum) *
                   tf.cast(value.value, key.dtype))


def _value_of(variable):
  """An initializer giving `variable`'s value now."""
  value = tf.identity(variable.value)
  return lambda shape, dtype=None: tf.cast(value, dtype or value.dtype)


def cross_entropy(logits, labels, global_batch, label_smoothing=0.):
  """(loss, top-1) of this replica's share of the global batch, on the
  first view's logits [B, V, C] -> [B, C]: the official code splits the
  multi-view logits and keeps the first view's."""
  logits = logits[:, 0]
  one_hot = tf.one_hot(labels, tf.shape(logits)[-1])
  per_example = tf.nn.softmax_cross_entropy_with_logits(
      _smooth(one_hot, label_smoothing), logits)
  correct = tf.cast(tf.equal(tf.argmax(logits, 1, output_type=labels.dtype),
                             labels), tf.float32)
  global_batch = tf.cast(global_batch, tf.float32)
  return (tf.reduce_sum(per_example) / global_batch,
          tf.reduce_sum(correct) / global_batch)


def _smooth(one_hot, label_smoothing):
  if not label_smoothing:
    return one_hot
  classes = tf.cast(tf.shape(one_hot)[-1], one_hot.dtype)
  return one_hot * (1. - label_smoothing) + label_smoothing / classes


class Step:
  """`step(views [b, V, H, W, C], labels [b])` in a replica context: the
  objective's gradient with respect to `variables`, applied by `optimizer`;
  returns the loss terms (`loss` their sum with weight decay).

  `micro_batch_size` (a divisor of b; 0 off) runs the batch in chunks:
  contrastive objectives by gradient caching (the whole batch's outputs
  without a tape, the loss's gradient with respect to them, then each chunk
  again with a tape), others by accumulation; BatchNorm layers normalise
  each chunk and their moving averages take one step toward the chunks'
  mean statistics. `forward_options` go to the model call (`training`,
  `encoder_training`). `weight_decay` x the L2 of `decayed` is added.
  `blur_probability` > 0 blurs the views first, as the official deferred
  blur, seeded by `blur_seed` (a function of nothing giving the step's
  stateless seed). `probe`: (optimizer, variables) of a head that trains
  on the same pass with an optimizer of its own (a linear probe on the
  stop-gradient embedding)."""

  def __init__(self, model, variables, optimizer, objective,
               micro_batch_size=0, forward_options=None, weight_decay=0.,
               decayed=(), blur_probability=0., blur_seed=None, name='step',
               probe=None, key_encoder=None):
    self.model = model
    self.key_encoder = key_encoder
    if key_encoder is not None and micro_batch_size:
      raise ValueError('A key encoder runs on whole batches: no '
                       'micro_batch_size with it.')
    self.updates = [(optimizer, list(variables))]
    if probe is not None:
      self.updates.append((probe[0], list(probe[1])))
    self.variables = [v for _, group in self.updates for v in group]
    self.optimizer = optimizer
    self.objective = objective
    self.micro_batch_size = micro_batch_size
    self.forward_options = dict(forward_options or {'training': True})
    self.weight_decay = weight_decay
    self.decayed = list(decayed)
    self.blur_probability = blur_probability
    self.blur_seed = blur_seed
    self.name = name
    self.batch_norms = {f'{i:04d}': layer for i, layer in
                        enumerate(layers.fused_batch_norms(model))}
    self._recorded = set()  # Keys of the layers that moved (when traced).

  # No Python control flow on tensors: AutoGraph need not convert it.
  @tf.autograph.experimental.do_not_convert
  def __call__(self, views, labels):
    if self.blur_probability > 0:
      views = self._blur(views)
    local_batch = (self.objective.global_batch // self.objective.replicas
                   if self.objective.global_batch else views.shape[0])
    if self.micro_batch_size and local_batch is None:
      raise ValueError(
          f'micro_batch_size={self.micro_batch_size} needs batches of a known '
          'size: batch the dataset with drop_remainder=True.')
    chunks = (local_batch // self.micro_batch_size
              if self.micro_batch_size else 1)
    if chunks > 1:
      if self.objective.contrastive:
        terms, gradients = self._cached(views, labels, chunks)
      else:
        terms, gradients = self._accumulated(views, labels, chunks)
    else:
      terms, gradients = self._whole_batch(views, labels)
    start = 0
    for optimizer, variables in self.updates:
      optimizer.apply(gradients[start:start + len(variables)], variables)
      start += len(variables)
    if self.key_encoder is not None:
      self.key_encoder.update()
    return terms

  def describe_chunks(self, local_batch, num_views, synchronized):
    """Logs how a chunked step normalises (once, when a run starts)."""
    micro = self.micro_batch_size
    if not micro or local_batch // micro < 2:
      return
    replicas = self.objective.replicas
    logging.info(
        '%s: each step runs its %d examples per replica in %d chunks of '
        '%d (--micro_batch_size); BatchNorm normalises over %d images '
        '(%s), not the %d of %s.', self.name, local_batch,
        local_batch // micro, micro,
        micro * num_views * (replicas if synchronized else 1),
        'one chunk of every replica' if synchronized else 'one chunk',
        (local_batch * replicas if synchronized else local_batch) * num_views,
        'the global batch' if synchronized else 'the replica\'s batch')

  def _blur(self, views):
    # As official, on the model's inputs, one sigma per step; which views
    # are blurred is drawn by their place in the global batch, so any
    # layout blurs the same ones.
    flat = tf.reshape(views, [-1] + list(views.shape[2:]))
    local = tf.shape(flat)[0]
    replica = tf.cast(tf.distribute.get_replica_context()
                      .replica_id_in_sync_group, tf.int32)
    with augment.example_positions(replica * local + tf.range(local),
                                   local * self.objective.replicas):
      flat = augment.batch_random_blur(flat, self.blur_seed(),
                                       self.blur_probability)
    return tf.reshape(flat, tf.shape(views))

  def _forward(self, views):
    return self.model(views, **self.forward_options)

  def _scale(self, loss):
    return (self.optimizer.scale_loss(loss)
            if hasattr(self.optimizer, 'scale_loss') else loss)

  def _decay(self):
    # This replica's share: the optimizer's all-reduce sums the replicas.
    return (self.weight_decay * optimizers.l2_loss(self.decayed) /
            self.objective.replicas)

  def _gradient(self, loss, tape):
    # Zeros for the variables `loss` does not reach (the tape's own zeros
    # fail on Keras variables, whose dtype is a string).
    return [tf.zeros(v.shape, v.dtype) if g is None else g
            for g, v in zip(tape.gradient(loss, self.variables),
                            self.variables)]

  def _whole_batch(self, views, labels):
    keys = (None if self.key_encoder is None else
            self.key_encoder.project(views, self.forward_options))
    with tf.GradientTape() as tape:
      outputs = self._forward(views)
      if keys is not None:
        outputs = dict(outputs, key_projection=keys)
      terms, total = self.objective(outputs, labels)
      if self.decayed:
        terms['weight_decay'] = self._decay()
        total += terms['weight_decay']
      terms['loss'] = total
      scaled = self._scale(total)
    return terms, tape.gradient(scaled, self.variables)

  def _with_decay(self, terms, total, gradients):
    if self.decayed:
      with tf.GradientTape() as tape:
        terms['weight_decay'] = self._decay()
        scaled = self._scale(terms['weight_decay'])
      gradients = [g + d for g, d in zip(gradients,
                                         self._gradient(scaled, tape))]
      total += terms['weight_decay']
    terms['loss'] = total
    return terms, gradients

  def _cached(self, views, labels, chunks):
    """Gradient caching: the whole batch's outputs without a tape, the
    objective's gradient with respect to them, then each chunk again with a
    tape, pushing its share of that gradient back."""
    keys = self.objective.output_keys
    micro = self.micro_batch_size
    in_chunks = tf.reshape(views, [chunks, micro] + list(views.shape[1:]))
    shapes = {}  # Of each chunk's outputs (known when traced).

    def embed(i, statistics, arrays):
      with layers.collect_moving_statistics() as sink:
        outputs = self._forward(in_chunks[i])
      self._record(sink)
      shapes.update({k: list(outputs[k].shape[1:]) for k in keys})
      return (self._add_statistics(statistics, sink),
              {k: arrays[k].write(i, tf.stop_gradient(outputs[k]))
               for k in keys})

    statistics, arrays = _chunk_loop(chunks, embed, (
        self._no_statistics(),
        {k: tf.TensorArray(tf.float32, size=chunks) for k in keys}))
    self._move_statistics(statistics)
    local_batch = chunks * micro
    outputs = {k: tf.ensure_shape(
        tf.reshape(arrays[k].stack(), [local_batch] + shapes[k]),
        [local_batch] + shapes[k]) for k in keys}
    with tf.GradientTape() as tape:
      tape.watch(outputs)
      terms, total = self.objective(outputs, labels)
      scaled = self._scale(total)
    cached = {k: tf.reshape(g, [chunks, micro] + shapes[k])
              for k, g in tape.gradient(scaled, outputs).items()}

    def backward(i, sums):
      # The same chunk statistics as the first pass; the averages have
      # moved once already.
      with layers.moving_statistics_frozen(self.model):
        with tf.GradientTape() as tape:
          outputs = self._forward(in_chunks[i])
          surrogate = tf.add_n([tf.reduce_sum(outputs[k] * cached[k][i])
                                for k in keys])
      return ([s + g for s, g in zip(sums, self._gradient(surrogate,
                                                          tape))],)

    gradients, = _chunk_loop(chunks, backward, (self._no_gradients(),))
    return self._with_decay(terms, total, gradients)

  def _accumulated(self, views, labels, chunks):
    """Each example's loss is its own (cross-entropy): plain accumulation
    of the chunks' gradients."""
    micro = self.micro_batch_size
    in_chunks = tf.reshape(views, [chunks, micro] + list(views.shape[1:]))
    labels_in_chunks = tf.reshape(labels, [chunks, micro])

    def accumulate(i, statistics, sums, term_sums, total_sum):
      with layers.collect_moving_statistics() as sink:
        with tf.GradientTape() as tape:
          terms, total = self.objective(self._forward(in_chunks[i]),
                                        labels_in_chunks[i])
          scaled = self._scale(total)
      self._record(sink)
      return (self._add_statistics(statistics, sink),
              [s + g for s, g in zip(sums, self._gradient(scaled, tape))],
              {k: term_sums[k] + terms[k] for k in term_sums},
              total_sum + total)

    statistics, gradients, terms, total = _chunk_loop(chunks, accumulate, (
        self._no_statistics(), self._no_gradients(),
        {'cross_entropy_loss': tf.constant(0.),
         'train_top1': tf.constant(0.)}, tf.constant(0.)))
    self._move_statistics(statistics)
    return self._with_decay(terms, total, gradients)

  # BatchNorm statistics of chunks: {key: (mean sum, variance sum, calls)}.

  def _no_statistics(self):
    return {key: (tf.zeros(layer.moving_mean.shape),
                  tf.zeros(layer.moving_variance.shape), tf.constant(0.))
            for key, layer in self.batch_norms.items()}

  def _no_gradients(self):
    return [tf.zeros(v.shape, v.dtype) for v in self.variables]

  def _record(self, sink):
    self._recorded.update(key for key, layer in self.batch_norms.items()
                          if layer in sink)

  def _add_statistics(self, sums, sink):
    """`sums` plus what the chunk's BatchNorm layers recorded."""
    sums = dict(sums)
    for key, layer in self.batch_norms.items():
      for mean, variance in sink.get(layer, ()):
        total_mean, total_variance, calls = sums[key]
        sums[key] = (total_mean + mean, total_variance + variance,
                     calls + 1.)
    return sums

  def _move_statistics(self, sums):
    # One step of each moving average toward the chunks' mean statistics,
    # as the replicas' (BatchNorm._move).
    layers.move_moving_statistics({
        self.batch_norms[key]: (mean / tf.maximum(calls, 1.),
                                variance / tf.maximum(calls, 1.))
        for key, (mean, variance, calls) in sums.items()
        if key in self._recorded})


def _chunk_loop(chunks, body, state):
  """`state` through `body(i, *state)` for each chunk in a while loop: one
  chunk's activations live at a time (unrolled chunks, or iterations run in
  parallel, would be alive together)."""
  return tf.while_loop(lambda i, *_: i < chunks,
                       lambda i, *rest: (i + 1,) + tuple(body(i, *rest)),
                       (tf.constant(0),) + tuple(state),
                       parallel_iterations=1)[1:]
