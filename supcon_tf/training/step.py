"""One training step: the loss terms of a batch of views, their gradient and
the update. The command-line Trainer's loop (`Trainer.make_loop`) and Keras
`fit` (`ContrastiveModel.train_step`) both run a `Step`, so the loss's
options, cross-replica negatives, the deferred blur and `--micro_batch_size`
behave the same from either.

- `Step`: the gradient of the objective plus weight decay, over the whole
  batch or chunk by chunk (gradient caching for contrastive terms,
  accumulation for cross-entropy), the BatchNorm statistics of chunks, the
  optimizer update.

What it minimises is an `objective.Objective`; the cross-batch memory and
the key encoder are `memory.py`'s.
"""
import tensorflow as tf
from absl import logging

from supcon_tf.data import augment
from supcon_tf.models import layers


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
  `encoder_training`). The objective's weight decay (`Objective.decay`)
  is added.
  `blur_probability` > 0 blurs the views first, as the official deferred
  blur, seeded by `blur_seed` (a function of nothing giving the step's
  stateless seed). `probe`: (optimizer, variables) of a head that trains
  on the same pass with an optimizer of its own (a linear probe on the
  stop-gradient embedding)."""

  def __init__(self, model, variables, optimizer, objective,
               micro_batch_size=0, forward_options=None,
               blur_probability=0., blur_seed=None, name='step',
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
      if self.objective.decays:
        terms['weight_decay'] = self.objective.decay()
        total += terms['weight_decay']
      terms['loss'] = total
      scaled = self._scale(total)
    return terms, tape.gradient(scaled, self.variables)

  def _with_decay(self, terms, total, gradients):
    if self.objective.decays:
      with tf.GradientTape() as tape:
        terms['weight_decay'] = self.objective.decay()
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
