"""The floor of the contrastive loss: its minimum over unit embeddings for a
batch's label configuration.

The SupCon loss cannot reach zero: an anchor's positives share the softmax
with the other positives, so even a perfect embedding pays for them. For the
default options (every view an anchor, the sum over positives outside the
log, every other view in the denominator) and a dimension of at least
K - 1 for K classes, a minimiser collapses each class to one point and
places the classes on a regular simplex (Graf et al., ICML 2021, for classes
of equal size). Then an anchor of class c, with m_c = n_c V views of its class
among M views, has the loss

    log((m_c - 1) + (M - m_c) exp(-K / ((K - 1) tau)))

(`simplex_loss`), and the batch's floor is its mean over the samples. For
classes of unequal size the regular simplex is no longer the exact minimum
(the numerical minimiser finds configurations up to a few thousandths lower
at tau = 0.5; at tau = 0.1 the difference is below 1e-4), and for a smaller
dimension or the other options there is no closed form: `loss_floor` then
minimises the loss itself (`minimise_loss`).
"""
import numpy as np

from supcon_tf import losses

_DEFAULTS = dict(contrast_mode='all_views', summation_location='outside',
                 denominator_mode='all', positives_cap=-1)


def class_counts(labels):
  """Samples per class present in integer `labels` (classes in id order)."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be integer class ids [batch], got '
                     f'{labels.dtype} of shape {labels.shape}.')
  return np.unique(labels, return_counts=True)[1]


def _scale(temperature, scale_by_temperature, base_temperature):
  if not scale_by_temperature:
    return 1.
  return temperature / (base_temperature or 1.)


def simplex_loss(counts, num_views, temperature, scale_by_temperature=True,
                 base_temperature=None):
  """The default loss of a batch whose classes (samples per class `counts`)
  each collapse to a vertex of a regular simplex: the floor for classes of
  equal size and dimension >= K - 1; an upper bound on it otherwise."""
  counts = np.asarray(counts, np.float64)
  if temperature <= 0:
    raise ValueError(f'temperature must be positive, got {temperature}.')
  if num_views < 1 or (num_views == 1 and counts.min() < 2):
    raise ValueError('every anchor needs a positive: num_views >= 2, or at '
                     'least two samples of each class with one view.')
  # One formula: the training step's, on labels with these counts.
  labels = np.repeat(np.arange(len(counts)), counts.astype(int))
  return float(batch_floor(
      labels, len(counts), num_views, temperature,
      _scale(temperature, scale_by_temperature, base_temperature)))


def loss_floor(labels, num_views, temperature, dimension=None, seed=0,
               **loss_options):
  """The minimum of `losses.contrastive_loss` (mean over the batch) over unit
  embeddings of `dimension` (None: large enough) for integer `labels`.

  Closed form (`simplex_loss`) for the default options, classes of equal size
  and dimension None or >= K - 1; else `minimise_loss`'s lowest value.
  `loss_options` are contrastive_loss's (scale_by_temperature,
  base_temperature, contrast_mode, summation_location, denominator_mode,
  positives_cap)."""
  counts = class_counts(labels)
  scale_options = {k: loss_options.pop(k) for k in
                   ('scale_by_temperature', 'base_temperature')
                   if k in loss_options}
  unknown = set(loss_options) - set(_DEFAULTS)
  if unknown:
    raise ValueError(f'Unknown loss options: {", ".join(sorted(unknown))}.')
  default = all(str(loss_options.get(k, v)).lower() == str(v)
                for k, v in _DEFAULTS.items())
  if (default and len(set(counts)) == 1 and
      (dimension is None or dimension >= len(counts) - 1)):
    return simplex_loss(counts, num_views, temperature, **scale_options)
  return minimise_loss(labels, num_views, temperature,
                       dimension or max(len(counts) - 1, 2), seed=seed,
                       **scale_options, **loss_options)[0]


def minimise_loss(labels, num_views, temperature, dimension, steps=800,
                  restarts=3, learning_rate=0.05, seed=0, **loss_options):
  """Projected gradient descent on the sphere (Adam steps on the loss of the
  normalised embeddings) of the mean contrastive loss from `restarts`
  random starts: (lowest loss, its embeddings [batch, views, dimension])."""
  import tensorflow as tf
  labels = np.asarray(labels)
  shape = [len(labels), num_views, dimension]
  best, best_features = np.inf, None
  for restart in range(restarts):
    # The loss of the normalised variable: its gradient is the projection of
    # the loss gradient onto the sphere's tangent space.
    weights = tf.Variable(tf.random.stateless_normal(shape, [seed, restart]))
    optimizer = tf.keras.optimizers.Adam(learning_rate)

    def mean_loss():
      return tf.reduce_mean(losses.contrastive_loss(
          tf.math.l2_normalize(weights, -1), labels, temperature=temperature,
          **loss_options))

    @tf.function
    def step():
      with tf.GradientTape() as tape:
        value = mean_loss()
      optimizer.apply_gradients([(tape.gradient(value, weights), weights)])
      return value

    for _ in range(steps):
      step()
    value = float(mean_loss())
    if value < best:
      best = value
      best_features = tf.math.l2_normalize(weights, -1).numpy()
  return best, best_features


def batch_floor(labels, num_classes, num_views, temperature, scale=1.):
  """`simplex_loss` of each training batch, in the training step: integer
  labels [B] (the global batch's) of `num_classes` classes -> a float32
  scalar, in `keras.ops` (every backend). Fixed shapes, so it compiles with
  XLA."""
  import keras
  ops = keras.ops
  counts = ops.sum(ops.one_hot(labels, num_classes, dtype='float32'), axis=0)
  present = counts > 0
  k = ops.sum(ops.cast(present, 'float32'))
  views = counts * num_views
  total = ops.sum(views)
  spread = ops.exp(-k / (ops.maximum(k - 1., 1.) * temperature))
  other = ops.where(k > 1., (total - views) * spread, 0.)
  per_sample = ops.log(ops.where(present, views - 1. + other, 1.))
  return ops.sum(per_sample * counts) / ops.sum(counts) * scale


def floor_applies(contrast_mode, summation_location, denominator_mode,
                  positives_cap, labelled, num_views, dimension, num_classes):
  """Whether `batch_floor` is the floor of the training loss: the default
  options, labels, two views or more, dimension >= classes - 1."""
  return (labelled and num_views >= 2 and positives_cap < 0 and
          dimension is not None and dimension >= num_classes - 1 and
          (str(contrast_mode).lower(), str(summation_location).lower(),
           str(denominator_mode).lower()) ==
          (_DEFAULTS['contrast_mode'], _DEFAULTS['summation_location'],
           _DEFAULTS['denominator_mode']))


def collapsed_loss(num_views, global_batch, temperature,
                   scale_by_temperature=True, base_temperature=None,
                   denominator_mode='all'):
  """The contrastive loss when every projection is the same point: all of
  an anchor's logits are equal, so with the ALL denominator its loss is
  log(V x B - 1) times the temperature scale, whatever its positives and
  the summation. None where it depends on the batch's labels (the other
  denominators) or on its positives (one view: the official division)."""
  if str(denominator_mode).lower() != 'all' or num_views < 2:
    return None
  return float(np.log(num_views * global_batch - 1.) *
               _scale(temperature, scale_by_temperature, base_temperature))


class CollapseWatch:
  """Whether the contrastive loss stayed within `margin` (relative) of its
  collapsed value (`collapsed_loss`) over a whole epoch: `update(loss)`
  with each logged value, `epoch_ended()` at each epoch's end. A watch
  started inside an epoch (a resumed run) judges from the next one."""

  def __init__(self, collapsed, margin=0.01, whole_epoch=True):
    self.collapsed, self.margin = collapsed, margin
    self.whole, self.near, self.seen = whole_epoch, True, 0

  def update(self, loss):
    self.seen += 1
    self.near = self.near and abs(loss - self.collapsed) <= (
        self.margin * self.collapsed)

  def epoch_ended(self):
    """Whether the epoch that ended sat at the collapsed value."""
    collapsed = self.whole and self.seen > 0 and self.near
    self.whole, self.near, self.seen = True, True, 0
    return collapsed

  def message(self, stage_name, epoch, views, batch):
    return (f'{stage_name} epoch {epoch}: the contrastive loss stayed within '
            f'{self.margin:.0%} of {self.collapsed:.4f}, its value when '
            f'every projection is alike (log({views} x {batch} - 1) x the '
            'temperature scale), the whole epoch: nothing is being '
            'learned yet. What usually moves it: a lower learning rate or '
            'a warm-up (--stage_1_warmup_epochs), a higher --temperature, '
            'batches with several examples of each class '
            '(--sampler=class_balanced).')
