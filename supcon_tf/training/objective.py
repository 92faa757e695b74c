"""What a stage minimises: the contrastive and cross-entropy terms of a
batch's outputs (and the loss floor as a term), as this replica's share of
the global batch's mean. Built from the config's loss section
(`Objective.for_stage`) for the command line's step, and the same section's
options give evaluation's contrastive loss."""
import dataclasses
from typing import Optional

import tensorflow as tf

from supcon_tf import analysis, losses
from supcon_tf.losses import tf_loss


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
  memory: Optional[object] = None  # memory.CrossBatchMemory

  @classmethod
  def for_stage(cls, loss, stage, global_batch, replicas, num_classes=None,
                memory=None):
    """The objective of `stage` (a stages.Stage: the terms' weights) under
    the config's loss section `loss`."""
    return cls(
        global_batch=global_batch, replicas=replicas,
        contrastive_weight=stage.contrastive_loss_weight,
        cross_entropy_weight=stage.cross_entropy_loss_weight,
        use_labels=loss.use_labels, label_smoothing=loss.label_smoothing,
        num_classes=num_classes, memory=memory, **loss.options())

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
