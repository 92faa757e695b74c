"""The contrastive loss under the TensorFlow backend (the equations and the
arguments: `api.py`). The elementwise work is compiled with XLA and the
gradient is written out by hand (`tf.custom_gradient`), by one of three
kernels: the linear one for the official SupCon and SimCLR settings
(`linear.py`), the masked one for every other option set (`masked.py`), and
either over blocks of anchors above a size (`blockwise.py`). Inside a
`tf.distribute` replica context with several replicas, features and labels
are all-gathered (differentiably): the local samples are the anchors, the
global batch the contrast set."""

import functools
import types

import tensorflow as tf

from supcon_tf.losses import blockwise, checks, linear, masked, reference
from supcon_tf.losses.modes import (ContrastMode, DenominatorMode,
                                    SummationLocation)
# Above this many [Na, Nc] logits (4,096 samples of 2 views against their
# 8,192 views), 'auto' goes blockwise.
AUTO_BLOCKWISE_ENTRIES = 8192 * 8192
# A block's logits: 2^23 float32 (32 MiB) by default: 512 samples of 2 views
# against 8,192 views.
BLOCK_ENTRIES = 1 << 23


def cross_replica_concat(tensor):
  """Concatenates `tensor` along axis 0 over all replicas, differentiably.

  Outside a replica context, or with a single replica, returns `tensor`. The
  gradient of the gathered tensor is summed over replicas and sliced back, so
  per-replica losses summed give the gradient of the global loss.
  """
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return tensor
  # A copy made here is placed on this replica's device: a multi-worker
  # all-gather refuses tensors without a device (the iterator's labels).
  return context.all_gather(tf.identity(tensor), axis=0)


def _replica_offset(local_batch_size):
  """Index of this replica's first sample in the gathered batch."""
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return tf.constant(0, tf.int32)
  # Gather the sizes rather than assume equal shards: correct for any split.
  sizes = context.all_gather(tf.reshape(local_batch_size, [1]), axis=0)
  return tf.reduce_sum(sizes[:context.replica_id_in_sync_group])


def _same_class_mask(labels, global_labels):
  """[B_local, B_global] bool: anchor sample and contrast sample share a class."""
  if labels.shape.rank == 1:
    return tf.equal(labels[:, None], global_labels[None, :])
  # One-hot or multi-hot: any shared label makes a positive. For 0/1 one-hot
  # labels this is the official labels @ labels^T mask.
  overlap = tf.linalg.matmul(
      tf.cast(labels, tf.float32), tf.cast(global_labels, tf.float32),
      transpose_b=True)
  return overlap > 0.


def _cap_positives(same_class, self_mask, positives_per_anchor):
  """Keeps the first `positives_per_anchor` same-class other samples per row."""
  others = tf.logical_and(same_class, tf.logical_not(self_mask))
  rank = tf.cumsum(tf.cast(others, tf.int32), axis=1)
  kept = tf.logical_and(others, rank <= positives_per_anchor)
  return tf.logical_or(kept, tf.logical_and(same_class, self_mask))


_CORE_CACHE = {}


def _core(anchor_views, num_views, summation_location, denominator_mode,
          self_supervised, capped):
  """A custom-gradient, XLA-compiled row loss for one static option set."""
  key = (anchor_views, num_views, summation_location, denominator_mode,
         self_supervised, capped)
  if key in _CORE_CACHE:
    return _CORE_CACHE[key]
  views = dict(anchor_views=anchor_views, num_views=num_views)
  use_linear = _linear(summation_location, denominator_mode, capped)

  @tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
  def forward(anchors, contrast, positive_samples, same_class, self_samples,
              offset, inv_temperature, scale):
    if use_linear:
      return linear.forward(anchors, contrast, positive_samples, same_class,
                            self_samples, offset, inv_temperature, scale,
                            denominator_mode=denominator_mode,
                            self_supervised=self_supervised, **views)[:3]
    return masked.forward(anchors, contrast, positive_samples, same_class,
                          self_samples, inv_temperature, scale,
                          summation_location=summation_location,
                          denominator_mode=denominator_mode, **views)

  # The linear backward pass is matrix products with the kept exponentials,
  # each run where it is fastest (`linear.backward`), not in one XLA function.
  @tf.function(jit_compile=not use_linear, autograph=False,
               reduce_retracing=True)
  def backward(upstream, anchors, contrast, positive_samples, same_class,
               self_samples, offset, residuals, inv_temperature, scale):
    if use_linear:
      return linear.backward(upstream, anchors, contrast, positive_samples,
                             offset, residuals, inv_temperature, scale,
                             self_supervised=self_supervised, **views)
    return masked.backward(upstream, anchors, contrast, positive_samples,
                           same_class, self_samples, residuals,
                           inv_temperature, scale,
                           summation_location=summation_location,
                           denominator_mode=denominator_mode, **views)

  @tf.custom_gradient
  def core(anchors, contrast, positive_samples, same_class, self_samples,
           offset, inv_temperature, scale):
    row_loss, num_positives, residuals = forward(
        anchors, contrast, positive_samples, same_class, self_samples, offset,
        inv_temperature, scale)

    def grad(d_row_loss, unused_d_num_positives):
      d_anchors, d_contrast = backward(
          d_row_loss, anchors, contrast, positive_samples, same_class,
          self_samples, offset, residuals, inv_temperature, scale)
      return d_anchors, d_contrast, None, None, None, None, None, None

    return (row_loss, num_positives), grad

  _CORE_CACHE[key] = core
  return core


def _choose(implementation, anchor_rows, contrast_rows):
  """The kernel for `implementation`; 'auto' by the static sizes (fused when
  a size is only known when the step runs)."""
  if implementation != 'auto':
    return implementation
  anchor_rows = tf.get_static_value(anchor_rows)
  contrast_rows = tf.get_static_value(contrast_rows)
  if anchor_rows is None or contrast_rows is None:
    return 'fused'
  if int(anchor_rows) * int(contrast_rows) > AUTO_BLOCKWISE_ENTRIES:
    return 'blockwise'
  return 'fused'


def _block(block_size, anchor_views, contrast_rows):
  """Samples per anchor block: `block_size`, or BLOCK_ENTRIES logits."""
  if block_size is not None:
    return block_size
  contrast_rows = tf.get_static_value(contrast_rows)
  if contrast_rows is None:
    return 256
  return max(1, BLOCK_ENTRIES // (anchor_views * int(contrast_rows)))


def _linear(summation_location, denominator_mode, capped):
  """Whether an option set takes the linear kernel. Its ALL row maximum is
  over every column but the anchor's own; with a cap, a dropped column must
  not reach the row (a NaN there would), so capped losses take the masked
  one."""
  return (summation_location == SummationLocation.OUTSIDE and
          denominator_mode != DenominatorMode.ONE_POSITIVE and not capped)


def _blockwise_kernels(*args):
  key = ('blockwise',) + args
  if key not in _CORE_CACHE:
    _CORE_CACHE[key] = blockwise.Kernels(*args)
  return _CORE_CACHE[key]


def contrastive_loss(features, labels, temperature, contrast_mode,
                     summation_location, denominator_mode, positives_cap,
                     scale_by_temperature, base_temperature, implementation,
                     block_size, memory, memory_active):
  """`supcon_tf.losses.contrastive_loss` under TensorFlow (its docstring
  gives the arguments): gathered across replicas, the kernel chosen by
  `implementation`."""
  contrast_mode, summation_location, denominator_mode = checks.parse_options(
      contrast_mode, summation_location, denominator_mode, implementation,
      block_size)
  features = tf.convert_to_tensor(features)
  if labels is not None:
    labels = tf.convert_to_tensor(labels)
  num_views = checks.check_inputs(
      None if features.shape.rank is None else tuple(features.shape),
      None if labels is None else (
          None if labels.shape.rank is None else tuple(labels.shape)),
      None if labels is None else labels.dtype.name, positives_cap)
  checks.check_temperature(tf.get_static_value(temperature))
  if base_temperature is not None:
    checks.check_temperature(tf.get_static_value(base_temperature),
                             'base_temperature')

  batch_size = tf.shape(features)[0]
  features = tf.reshape(tf.cast(features, tf.float32),
                        [batch_size, num_views, -1])
  global_features = cross_replica_concat(features)
  global_labels = None if labels is None else cross_replica_concat(labels)
  offset = _replica_offset(batch_size)
  if labels is not None and (labels.shape[0] is None or
                             features.shape[0] is None):
    tf.debugging.assert_equal(
        tf.shape(labels)[0], batch_size,
        message='labels batch differs from features batch')
  temperature = tf.cast(temperature, tf.float32)
  local = types.SimpleNamespace(
      features=features, labels=labels, batch_size=batch_size, offset=offset,
      num_views=num_views, contrast_mode=contrast_mode,
      summation_location=summation_location,
      denominator_mode=denominator_mode, positives_cap=positives_cap,
      implementation=implementation, block_size=block_size,
      temperature=temperature,
      scale=_scale(temperature, scale_by_temperature, base_temperature))
  if memory is None:
    return _per_sample(local, global_features, global_labels)
  with_memory = _with_memory(memory, global_features, global_labels,
                             num_views)
  if memory_active is True:
    return _per_sample(local, *with_memory)
  # Both, and one kept: a tf.cond can hold neither the replicas' all-gather
  # nor the kernels' custom gradient, and XLA needs static shapes.
  return tf.where(tf.convert_to_tensor(memory_active),
                  _per_sample(local, *with_memory),
                  _per_sample(local, global_features, global_labels))


def _scale(temperature, scale_by_temperature, base_temperature):
  """The loss's factor: temperature / base_temperature, or 1."""
  if not scale_by_temperature:
    return tf.constant(1., tf.float32)
  if base_temperature is None:
    return temperature
  return temperature / tf.cast(base_temperature, tf.float32)


def _sample_masks(local, global_labels, global_batch_size, samples):
  """[len(samples), Bg] masks of these local samples: positives (capped),
  same class, self."""
  self_samples = tf.equal((samples + local.offset)[:, None],
                          tf.range(global_batch_size)[None, :])
  if local.labels is None:
    same_class = self_samples
  else:
    same_class = _same_class_mask(tf.gather(local.labels, samples),
                                  global_labels)
  positive_samples = same_class
  if local.positives_cap > -1:
    positive_samples = _cap_positives(same_class, self_samples,
                                      local.positives_cap // local.num_views)
  return positive_samples, same_class, self_samples


def _per_sample(local, global_features, global_labels):
  """Each local sample's loss [B] against the global contrast set: the
  mean over its anchor views of their row losses."""
  features, batch_size = local.features, local.batch_size
  num_views = local.num_views
  global_batch_size = tf.shape(global_features)[0]
  # View-major rows: row = view * batch + sample.
  contrast = tf.reshape(tf.transpose(global_features, [1, 0, 2]),
                        [num_views * global_batch_size, -1])
  if local.contrast_mode == ContrastMode.ONE_VIEW:
    anchor_views = 1
    anchors = features[:, 0]
  else:
    anchor_views = num_views
    anchors = tf.reshape(tf.transpose(features, [1, 0, 2]),
                         [num_views * batch_size, -1])
  sample_masks = functools.partial(_sample_masks, local, global_labels,
                                   global_batch_size)
  row_loss, num_positives = _row_loss(
      local, anchors, contrast, num_views * global_batch_size, anchor_views,
      sample_masks, own_contrast=(anchor_views == num_views and
                                  global_features is features))
  row_loss = tf.reshape(row_loss, [anchor_views, batch_size])
  if num_views != 1:
    return tf.reduce_mean(row_loss, axis=0)
  # One view: not every sample has a positive; the official code divides
  # the (already positive-averaged) loss once more by the number of
  # positives.
  return tf.math.divide_no_nan(row_loss[0], tf.reshape(num_positives,
                                                       [batch_size]))


def _row_loss(local, anchors, contrast, contrast_rows, anchor_views,
              sample_masks, own_contrast):
  """(row loss, positives per row) of the anchors by the kernel
  `local.implementation` chooses."""
  num_views, batch_size = local.num_views, local.batch_size
  summation_location = local.summation_location
  denominator_mode = local.denominator_mode
  capped = local.positives_cap > -1
  inv_temperature = 1. / local.temperature
  kind = _choose(local.implementation, anchor_views * batch_size,
                 contrast_rows)
  if kind == 'blockwise':
    kernels = _blockwise_kernels(
        anchor_views, num_views, summation_location, denominator_mode,
        _block(local.block_size, anchor_views, contrast_rows),
        _linear(summation_location, denominator_mode, capped),
        local.labels is None, own_contrast)
    return blockwise.row_loss(kernels, anchors, contrast, sample_masks,
                              local.offset, inv_temperature, local.scale)
  positive_samples, same_class, self_samples = sample_masks(
      tf.range(batch_size))
  if kind == 'reference':
    return reference.row_loss(
        anchors, contrast, positive_samples, same_class, self_samples,
        inv_temperature, local.scale, anchor_views, num_views,
        summation_location, denominator_mode)
  core = _core(anchor_views, num_views, summation_location, denominator_mode,
               self_supervised=local.labels is None, capped=capped)
  return core(anchors, contrast, positive_samples, same_class, self_samples,
              local.offset, inv_temperature, local.scale)


def _with_memory(memory, global_features, global_labels, num_views):
  """The contrast samples and their labels with the memory's after them."""
  features, labels = memory
  features = tf.convert_to_tensor(features)
  if features.shape.rank is None or features.shape.rank < 3 or (
      features.shape[1] != num_views):
    raise ValueError(
        f'memory features must be [samples, {num_views} views, ...] like the '
        f'batch; got shape {features.shape}.')
  features = tf.stop_gradient(tf.reshape(
      tf.cast(features, tf.float32),
      [tf.shape(features)[0], num_views, tf.shape(global_features)[-1]]))
  if global_labels is not None:
    if labels is None:
      raise ValueError('memory needs labels when the batch has labels.')
    labels = tf.cast(tf.convert_to_tensor(labels), global_labels.dtype)
    if labels.shape.rank != global_labels.shape.rank:
      raise ValueError(
          f'memory labels {labels.shape} are not of the kind of the batch '
          f'labels {global_labels.shape}.')
    global_labels = tf.concat([global_labels, labels], 0)
  return tf.concat([global_features, features], 0), global_labels
