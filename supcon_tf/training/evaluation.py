"""Evaluation: model outputs over a split, top-k accuracy, the losses, the
kNN monitor."""
import numpy as np
import tensorflow as tf

from supcon_tf import losses
from supcon_tf.training import signals


def make_forward(model, keys=('embeddings', 'logits')):
  """The per-replica eval step: (images, labels) -> ({key: output}, labels).
  Made once and reused, so repeated evaluations do not retrace it."""

  @tf.function(autograph=False)  # Its branch is a tf.cond already.
  def forward(images, labels):
    def run(batch):
      outputs = model(batch, training=False)
      return {k: outputs[k] for k in keys}
    # At the end of a split some replicas get empty batches, which some CPU
    # convolution kernels reject: run one blank image and keep none of it.
    outputs = tf.cond(
        tf.shape(images)[0] > 0, lambda: run(images),
        lambda: {k: v[:0] for k, v in run(tf.zeros(
            tf.concat([[1], tf.shape(images)[1:]], 0), images.dtype)).items()})
    return outputs, labels

  forward.keys = tuple(keys)
  return forward


def predict(strategy, forward, dataset):
  """The outputs of `forward` (from `make_forward`) and the labels over a
  distributed eval dataset, as NumPy arrays (every example once)."""
  collected = {k: [] for k in forward.keys + ('labels',)}
  for images, labels in dataset:
    signals.check('during an evaluation pass',
                  'the checkpoints are kept; run the same command to go on')
    outputs, labels = strategy.run(forward, args=(images, labels))
    for key in forward.keys:
      collected[key].extend(_values(strategy, outputs[key]))
    collected['labels'].extend(_values(strategy, labels))
  return {k: np.concatenate(v) for k, v in collected.items()}


def _values(strategy, value):
  """A per-replica value as NumPy arrays: this process's replicas', or, on
  several workers, every replica's (each worker reads only its shard)."""
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return [strategy.gather(value, axis=0).numpy()]
  return [t.numpy() for t in strategy.experimental_local_results(value)]


def top_k_accuracy(logits, labels, k):
  """Fraction of examples whose label is among the k highest logits."""
  k = min(k, logits.shape[1])
  top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
  return float(np.mean(np.any(top == labels[:, None], axis=1)))


def cross_entropy(logits, labels):
  """Mean softmax cross-entropy of the logits against integer labels."""
  return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      tf.constant(labels), tf.constant(logits))))


def contrastive_loss(projection, labels, batch_size, **options):
  """The official eval's contrastive loss: projections [N, 2, D] of each
  example's eval view and a training view, over consecutive batches of
  `batch_size` (the contrast set is the batch); the mean over the examples.
  `options` go to `supcon_tf.losses.contrastive_loss`."""
  total, count = 0., 0
  for start in range(0, len(projection), batch_size):
    per_example = losses.contrastive_loss(
        tf.constant(projection[start:start + batch_size]),
        None if labels is None else tf.constant(
            labels[start:start + batch_size]), **options)
    total += float(tf.reduce_sum(per_example))
    count += int(tf.size(per_example))
  return total / count
