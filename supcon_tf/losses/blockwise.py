"""The blockwise kernel: any option set, for contrast sets too large to hold an
[Na, Nc] matrix. Anchors go through in blocks of samples (every anchor view of
`block_size` samples at a time): a block's logits give its rows' losses and a
few numbers per row (`masked.statistics`), and only those numbers are kept.
The backward pass computes each block's logits again and turns them into the
block's gradient (`masked.logit_gradient`), so that nothing larger than
[Va * block_size, Nc] is alive at once: memory O(N x block), one extra matrix
product of time. The official SupCon and SimCLR option sets (the linear
kernel's) keep each row's maximum, denominator and sum of positive features
and compute their exponentials again (`linear.exponentials`); the others keep
the masked kernel's row numbers.

Each block's [block, Bg] sample masks are made from the labels when the block
runs, so neither are they ever [B, Bg]. The batch is padded to a multiple of
the block with rows that have neither positives nor negatives (their loss and
gradient are zero and are cut off), so every block has one static shape: one
compilation of each block function, and a loop XLA compiles when the whole
step is compiled. The linear kernel's products sit as in its fused form (the
logits inside its compiled function, the backward products split between XLA
and TensorFlow, `linear.backward`); the masked kernel's run outside its
compiled elementwise part, by TensorFlow's kernels."""
import tensorflow as tf

from supcon_tf.losses import linear, masked


class Kernels:
  """One block's forward and backward work for one static option set."""

  def __init__(self, anchor_views, num_views, summation_location,
               denominator_mode, block_size, use_linear, self_supervised,
               symmetric):
    self.anchor_views = anchor_views
    self.num_views = num_views
    self.block_size = block_size
    self.use_linear = use_linear
    # The anchors are the contrast set itself (one device, every view an
    # anchor view, no memory): one product per block in the backward pass.
    self.symmetric = use_linear and symmetric
    views = dict(anchor_views=anchor_views, num_views=num_views)
    self.linear_options = dict(views, self_supervised=self_supervised)
    options = dict(views, denominator_mode=denominator_mode)
    if not use_linear:
      options['summation_location'] = summation_location
    compiled = lambda f: tf.function(f, jit_compile=True, autograph=False,
                                     reduce_retracing=True)
    if use_linear:
      def statistics(*args):
        row_loss, num_positives, residuals, row_max = linear.forward(
            *args, **options, self_supervised=self_supervised)
        # Not the exponentials: XLA then never writes them out.
        _, denominator, _, positive_features, self_positive = residuals
        return (row_loss, num_positives,
                (row_max, denominator, positive_features, self_positive))

      self.statistics = compiled(statistics)
      self.exponentials = compiled(
          lambda *args, row_max: linear.exponentials(*args, **options,
                                                     row_max=row_max)[0])
      self.symmetric_weights = compiled(
          lambda *args: linear.symmetric_weights(*args, **options))
    else:
      self.statistics = compiled(
          lambda *args: masked.statistics(*args, **options))
      self.gradient = compiled(
          lambda *args: masked.logit_gradient(*args, **options))

  def forward(self, rows, contrast, masks, offset, inv_temperature, scale):
    """(row loss [Va, b], positives [Va, b], what the backward pass keeps)."""
    if self.use_linear:
      row_loss, num_positives, kept = self.statistics(
          rows, contrast, *masks, offset, inv_temperature, scale)
      rows_shape = [self.anchor_views, -1]
      return (tf.reshape(row_loss, rows_shape),
              tf.reshape(num_positives, rows_shape), kept)
    logits = masked.block_logits(rows, contrast, inv_temperature,
                                 self.anchor_views, self.num_views)
    return self.statistics(logits, *masks, scale)

  def backward(self, upstream, rows, contrast, masks, offset, num_positives,
               kept, inv_temperature, scale, columns):
    """(d rows, d contrast) of sum upstream * row loss over the block;
    `columns` (every row's maximum and w / D, [V, Bg] each) for symmetric."""
    if self.symmetric:
      row_max, denominator, positive_features, self_positive = kept
      positive_weight, denominator_weight = linear.gradient_weights(
          upstream, num_positives, denominator, scale)
      d_rows, d_contrast = linear.positive_part(
          positive_weight, rows, masks[0], offset, positive_features,
          self_positive, self.num_views,
          self.linear_options['self_supervised'])
      weights = self.symmetric_weights(
          rows, contrast, *masks, offset, inv_temperature, row_max,
          denominator_weight, *columns)
      d_rows -= tf.reshape(linear.compiled_matmul(weights, contrast),
                           tf.shape(d_rows))
      dim = tf.shape(rows)[-1]
      return (tf.reshape(d_rows, [-1, dim]) * inv_temperature,
              tf.reshape(d_contrast, [-1, dim]) * inv_temperature)
    if self.use_linear:
      row_max, denominator, positive_features, self_positive = kept
      exp_logits = self.exponentials(rows, contrast, *masks, offset,
                                     inv_temperature, row_max=row_max)
      residuals = (exp_logits, denominator, num_positives,
                   positive_features, self_positive)
      return linear.backward(upstream, rows, contrast, masks[0], offset,
                             residuals, inv_temperature, scale,
                             **self.linear_options)
    logits = masked.block_logits(rows, contrast, inv_temperature,
                                 self.anchor_views, self.num_views)
    logit_grad = self.gradient(upstream, logits, *masks, num_positives, kept,
                               scale)
    return masked.feature_gradients(logit_grad, rows, contrast,
                                    inv_temperature)


def row_loss(kernels, anchors, contrast, sample_masks, offset,
             inv_temperature, scale):
  """(row loss [Na], positives per row [Na]) for anchors [Va*B, D] against the
  contrast set [V*Bg, D], both view-major; `sample_masks(samples)` gives the
  [len(samples), Bg] (positive, same class, self) masks of local samples, and
  `offset` is the global index of the first local sample."""
  blocks = _Blocks(kernels, anchors, sample_masks, offset, inv_temperature,
                   scale)

  @tf.custom_gradient
  def core(anchors_by_view, contrast):
    losses, num_positives, kept = blocks.forward(anchors_by_view, contrast)

    def grad(upstream, unused_d_num_positives):
      return blocks.backward(upstream, anchors_by_view, contrast,
                             num_positives, kept)

    return (blocks.in_order(losses), blocks.in_order(num_positives)), grad

  losses, num_positives = core(blocks.by_view(anchors), contrast)
  return (tf.reshape(losses[:, :blocks.batch], [-1]),
          tf.reshape(num_positives[:, :blocks.batch], [-1]))


class _Blocks:
  """The anchors of `row_loss` in blocks of `kernels.block_size` samples
  (all their views), the last padded; each block's loss and gradient by a
  loop over blocks, so memory is O(block x contrast set)."""

  def __init__(self, kernels, anchors, sample_masks, offset, inv_temperature,
               scale):
    self.kernels, self.sample_masks, self.offset = kernels, sample_masks, offset
    self.inv_temperature, self.scale = inv_temperature, scale
    self.anchor_views = kernels.anchor_views
    self.block_size = kernels.block_size
    self.dim = tf.shape(anchors)[-1]
    self.batch = tf.shape(anchors)[0] // self.anchor_views
    self.num_blocks = (self.batch + self.block_size - 1) // self.block_size

  def by_view(self, anchors):
    """[Va * B, D] -> [Va, padded batch, D]."""
    padding = self.num_blocks * self.block_size - self.batch
    return tf.pad(tf.reshape(anchors, [self.anchor_views, self.batch,
                                       self.dim]),
                  [[0, 0], [0, padding], [0, 0]])

  def block(self, i, anchors_by_view):
    """Anchors [Va * block, D], masks and global offset of block i."""
    block_size = self.block_size
    start = i * block_size
    rows = tf.reshape(
        tf.slice(anchors_by_view, [0, start, 0], [-1, block_size, -1]),
        [self.anchor_views * block_size, self.dim])
    samples = tf.range(block_size) + start
    positive_samples, same_class, self_samples = self.sample_masks(
        tf.minimum(samples, self.batch - 1))
    # Padded rows: no positives, no negatives.
    valid = (samples < self.batch)[:, None]
    masks = (tf.logical_and(positive_samples, valid),
             tf.logical_or(same_class, tf.logical_not(valid)),
             tf.logical_and(self_samples, valid))
    return rows, masks, self.offset + start

  def in_order(self, x):
    """[blocks, Va, block] -> [Va, padded batch]: rows in batch order."""
    return tf.reshape(tf.transpose(x, [1, 0, 2]), [self.anchor_views, -1])

  def forward(self, anchors_by_view, contrast):
    """(losses, positives, the four tensors either kernel keeps), each
    [blocks, Va, block, ...]."""
    def forward_block(i, outputs):
      rows, masks, first = self.block(i, anchors_by_view)
      row_loss, num_positives, kept = self.kernels.forward(
          rows, contrast, masks, first, self.inv_temperature, self.scale)
      values = (row_loss, num_positives) + tuple(kept)
      return i + 1, tuple(ta.write(i, x) for ta, x in zip(outputs, values))

    outputs = tuple(tf.TensorArray(tf.float32, size=self.num_blocks)
                    for _ in range(6))
    _, outputs = tf.while_loop(lambda i, _: i < self.num_blocks,
                               forward_block, (tf.constant(0), outputs),
                               parallel_iterations=1)
    losses, num_positives, *kept = (ta.stack() for ta in outputs)
    return losses, num_positives, kept

  def backward(self, upstream, anchors_by_view, contrast, num_positives,
               kept):
    """(d anchors [Va, padded batch, D], d contrast) of `upstream` [Va,
    padded batch], zero past the batch."""
    anchor_views, num_blocks, dim = self.anchor_views, self.num_blocks, self.dim
    columns = ()
    if self.kernels.symmetric:
      column_max, denominator = (self.in_order(x)[:, :self.batch]
                                 for x in kept[:2])
      _, column_weight = linear.gradient_weights(
          upstream[:, :self.batch],
          self.in_order(num_positives)[:, :self.batch], denominator,
          self.scale)
      columns = (column_max, column_weight)
    upstream = tf.transpose(
        tf.reshape(upstream, [anchor_views, num_blocks, self.block_size]),
        [1, 0, 2])

    def backward_block(i, d_contrast, d_anchors):
      rows, masks, first = self.block(i, anchors_by_view)
      d_rows, d_block_contrast = self.kernels.backward(
          upstream[i], rows, contrast, masks, first, num_positives[i],
          tuple(x[i] for x in kept), self.inv_temperature, self.scale,
          columns)
      return (i + 1, d_contrast + d_block_contrast,
              d_anchors.write(i, tf.reshape(
                  d_rows, [anchor_views, self.block_size, dim])))

    _, d_contrast, d_anchors = tf.while_loop(
        lambda i, *_: i < num_blocks, backward_block,
        (tf.constant(0), tf.zeros_like(contrast),
         tf.TensorArray(tf.float32, size=num_blocks)),
        parallel_iterations=1)
    # [blocks, Va, block, D] -> [Va, padded batch, D].
    d_anchors = tf.reshape(tf.transpose(d_anchors.stack(), [1, 0, 2, 3]),
                           [anchor_views, -1, dim])
    return d_anchors, d_contrast
