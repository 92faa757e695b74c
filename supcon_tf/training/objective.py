"""What a stage minimises, written once in `keras.ops` for every backend: the
contrastive and cross-entropy terms of a batch's outputs, the loss floor as
a term, and weight decay on the variables the stage decays, each as this
replica's share of the global batch's mean. Built from the config's loss
section and the stage (`Objective.for_stage`) for the command line's step
and the Keras core; `fit` builds it from its compiled loss. Under
TensorFlow the contrastive term keeps its fused and blockwise kernels and
the replicas' gather (`losses.contrastive_loss`)."""
import dataclasses
from typing import Optional

import keras

from supcon_tf import analysis, losses
from supcon_tf.training import optimizers

ops = keras.ops


def _global(labels):
  """The global batch's labels: gathered from the replicas under
  tf.distribute, as they are elsewhere."""
  if keras.backend.backend() != 'tensorflow':
    return labels
  from supcon_tf.losses import tf_loss
  return tf_loss.cross_replica_concat(labels)


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
  """The loss terms of a stage: `contrastive_weight` x the contrastive loss
  of the projections (labels unless `use_labels` is False) plus
  `cross_entropy_weight` x the cross-entropy of the first view's logits
  (with `label_smoothing`), and `decay()`: `weight_decay` x the L2 of
  `decayed`. Each term is this replica's share of the mean over
  `global_batch` examples (None: the batch each replica is given, times the
  replicas); `num_classes` (when known) adds the loss floor as a term."""
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
  weight_decay: float = 0.
  decayed: tuple = ()

  @classmethod
  def for_stage(cls, loss, stage, global_batch, replicas, num_classes=None,
                memory=None, decayed=()):
    """The objective of `stage` (a stages.Stage: the terms' weights and its
    weight decay, on `decayed`, `stages.decayed_variables`) under the
    config's loss section `loss`."""
    return cls(
        global_batch=global_batch, replicas=replicas,
        contrastive_weight=stage.contrastive_loss_weight,
        cross_entropy_weight=stage.cross_entropy_loss_weight,
        use_labels=loss.use_labels, label_smoothing=loss.label_smoothing,
        num_classes=num_classes, memory=memory,
        weight_decay=stage.weight_decay, decayed=tuple(decayed),
        **loss.options())

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
      return ops.convert_to_tensor(float(self.global_batch), 'float32')
    return ops.cast(ops.shape(labels)[0] * self.replicas, 'float32')

  def __call__(self, outputs, labels):
    """(terms, their weighted sum), without weight decay (`decay`)."""
    terms = {}
    total = ops.convert_to_tensor(0., 'float32')
    global_batch = self.batch_size(labels)
    if self.contrastive:
      terms['contrastive_loss'] = self._contrastive(outputs, labels,
                                                    global_batch)
      total += self.contrastive_weight * terms['contrastive_loss']
      floor = self._floor(outputs['projection'], labels)
      if floor is not None:
        terms['loss_floor'] = floor
    if self.cross_entropy_weight > 0:
      terms['cross_entropy_loss'], terms['train_top1'] = cross_entropy(
          outputs['logits'], labels, global_batch, self.label_smoothing)
      total += self.cross_entropy_weight * terms['cross_entropy_loss']
    return terms, total

  @property
  def decays(self):
    """Whether the objective has a weight-decay term."""
    return bool(self.weight_decay and self.decayed)

  def decay(self):
    """This replica's share of weight decay x the L2 of the decayed
    variables (the optimizer's all-reduce sums the replicas); None without
    weight decay."""
    if not self.decays:
      return None
    return self.weight_decay * optimizers.l2_loss(self.decayed) / self.replicas

  def _contrastive(self, outputs, labels, global_batch):
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
      # After the loss has read it: a batch is never its own memory. With a
      # key encoder, its projections are what the memory keeps.
      self.memory.push(outputs.get('key_projection', projection), labels)
    return ops.sum(per_anchor) / global_batch

  def _floor(self, projection, labels):
    """This replica's share of the global batch's loss floor, where it is
    the floor (not with a memory's samples in the contrast set)."""
    if not (self.num_classes and self.memory is None and
            analysis.floor_applies(
                self.contrast_mode, self.summation_location,
                self.denominator_mode, self.positives_cap, self.use_labels,
                projection.shape[1], projection.shape[-1], self.num_classes)):
      return None
    return analysis.batch_floor(
        _global(labels), self.num_classes, projection.shape[1],
        self.temperature,
        self.temperature if self.scale_by_temperature else 1.) / self.replicas


def cross_entropy(logits, labels, global_batch, label_smoothing=0.):
  """(loss, top-1) of this replica's share of the global batch, on the
  first view's logits [B, V, C] -> [B, C]: the official code splits the
  multi-view logits and keeps the first view's."""
  logits = logits[:, 0]
  classes = logits.shape[-1]
  target = ops.one_hot(labels, classes)
  if label_smoothing:
    target = target * (1. - label_smoothing) + label_smoothing / classes
  per_example = ops.categorical_crossentropy(target, logits, from_logits=True)
  correct = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=1), 'int32'),
                               ops.cast(labels, 'int32')), 'float32')
  global_batch = ops.cast(global_batch, 'float32')
  return (ops.sum(per_example) / global_batch,
          ops.sum(correct) / global_batch)
