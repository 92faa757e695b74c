"""The blockwise kernel: any option set, for contrast sets too large to hold an
[Na, Nc] matrix. Anchors go through in blocks of samples (every anchor view of
`block_size` samples at a time): a block's logits give its rows' losses and a
few numbers per row (`masked.statistics`), and only those numbers are kept.
The backward pass computes each block's logits again and turns them into the
block's gradient (`masked.logit_gradient`), so that nothing larger than
[Va * block_size, Nc] is alive at once: memory O(N x block), one extra matrix
product of time.

Each block's [block, Bg] sample masks are made from the labels when the block
runs, so neither are they ever [B, Bg]. The batch is padded to a multiple of
the block with rows that have neither positives nor negatives (their loss and
gradient are zero and are cut off), so
every block has one static shape: one compilation of the elementwise part, and
a loop XLA compiles when the whole step is compiled. The matrix products stay
outside the compiled elementwise part, where TensorFlow's own kernels run them;
in a compiled step XLA takes them too."""
import tensorflow as tf

from supcon_tf.losses import masked


class Kernels:
  """The compiled elementwise parts for one static option set and block."""

  def __init__(self, anchor_views, num_views, summation_location,
               denominator_mode, block_size):
    self.anchor_views = anchor_views
    self.num_views = num_views
    self.block_size = block_size
    options = dict(anchor_views=anchor_views, num_views=num_views,
                   summation_location=summation_location,
                   denominator_mode=denominator_mode)

    @tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
    def statistics(logits, positive_samples, same_class, self_samples,
                   scale):
      return masked.statistics(logits, positive_samples, same_class,
                               self_samples, scale, **options)

    @tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
    def gradient(upstream, logits, positive_samples, same_class,
                 self_samples, num_positives, numbers, scale,
                 inv_temperature):
      grad = masked.logit_gradient(upstream, logits, positive_samples,
                                   same_class, self_samples, num_positives,
                                   numbers, scale, **options)
      return (tf.reshape(grad, [anchor_views * block_size, -1]) *
              inv_temperature)

    self.statistics = statistics
    self.gradient = gradient


def row_loss(kernels, anchors, contrast, sample_masks, inv_temperature,
             scale):
  """(row loss [Na], positives per row [Na]) for anchors [Va*B, D] against the
  contrast set [V*Bg, D], both view-major; `sample_masks(samples)` gives the
  [len(samples), Bg] (positive, same class, self) masks of local samples."""
  anchor_views, num_views = kernels.anchor_views, kernels.num_views
  block_size = kernels.block_size
  dim = tf.shape(anchors)[-1]
  batch = tf.shape(anchors)[0] // anchor_views
  num_blocks = (batch + block_size - 1) // block_size
  padding = num_blocks * block_size - batch
  anchors_by_view = tf.pad(tf.reshape(anchors, [anchor_views, batch, dim]),
                           [[0, 0], [0, padding], [0, 0]])

  def block(i, anchors_by_view, contrast):
    """Anchors [Va * block, D], logits and masks of block i."""
    start = i * block_size
    rows = tf.reshape(
        tf.slice(anchors_by_view, [0, start, 0], [-1, block_size, -1]),
        [anchor_views * block_size, dim])
    logits = masked.block_logits(rows, contrast, inv_temperature,
                                 anchor_views, num_views)
    samples = tf.range(block_size) + start
    positive_samples, same_class, self_samples = sample_masks(
        tf.minimum(samples, batch - 1))
    # Padded rows: no positives, no negatives.
    valid = (samples < batch)[:, None]
    masks = (tf.logical_and(positive_samples, valid),
             tf.logical_or(same_class, tf.logical_not(valid)),
             tf.logical_and(self_samples, valid))
    return rows, logits, masks

  @tf.custom_gradient
  def core(anchors_by_view, contrast):
    def forward_block(i, outputs):
      _, logits, masks = block(i, anchors_by_view, contrast)
      values = kernels.statistics(logits, *masks, scale)
      values = values[:2] + values[2]
      return i + 1, tuple(ta.write(i, x) for ta, x in zip(outputs, values))

    outputs = tuple(tf.TensorArray(tf.float32, size=num_blocks)
                    for _ in range(6))
    _, outputs = tf.while_loop(lambda i, _: i < num_blocks, forward_block,
                               (tf.constant(0), outputs),
                               parallel_iterations=1)
    # [blocks, Va, block] -> [Va, blocks * block]: rows in batch order.
    losses, num_positives, *numbers = (
        tf.reshape(tf.transpose(ta.stack(), [1, 0, 2]), [anchor_views, -1])
        for ta in outputs)

    def grad(upstream, unused_d_num_positives):
      # upstream: [Va, padded batch], zero past the batch.

      def backward_block(i, d_contrast, d_anchors):
        rows, logits, masks = block(i, anchors_by_view, contrast)
        take = lambda x: tf.slice(x, [0, i * block_size], [-1, block_size])
        logit_grad = kernels.gradient(
            take(upstream), logits, *masks, take(num_positives),
            tuple(take(x) for x in numbers), scale, inv_temperature)
        d_rows = tf.linalg.matmul(logit_grad, contrast)
        d_contrast += tf.linalg.matmul(logit_grad, rows, transpose_a=True)
        return (i + 1, d_contrast,
                d_anchors.write(i, tf.reshape(d_rows,
                                              [anchor_views, block_size, dim])))

      _, d_contrast, d_anchors = tf.while_loop(
          lambda i, *_: i < num_blocks, backward_block,
          (tf.constant(0), tf.zeros_like(contrast),
           tf.TensorArray(tf.float32, size=num_blocks)),
          parallel_iterations=1)
      # [blocks, Va, block, D] -> [Va, padded batch, D].
      d_anchors = tf.reshape(tf.transpose(d_anchors.stack(), [1, 0, 2, 3]),
                             [anchor_views, -1, dim])
      return d_anchors, d_contrast

    return (losses, num_positives), grad

  losses, num_positives = core(anchors_by_view, contrast)
  return (tf.reshape(losses[:, :batch], [-1]),
          tf.reshape(num_positives[:, :batch], [-1]))
