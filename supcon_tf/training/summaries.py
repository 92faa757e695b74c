"""What a stage reports: TensorBoard scalars written through the core
summary op and read back (tests and experiments read the curves), without
the tensorboard package; the progress bar, the collapse warning and the kNN
monitor of each call and epoch (`StageLog`)."""
import os

import tensorflow as tf
from absl import logging

from supcon_tf.training.progress import Progress


def _scalars_metadata():
  from tensorflow.core.framework import summary_pb2
  metadata = summary_pb2.SummaryMetadata()
  metadata.plugin_data.plugin_name = 'scalars'
  return metadata.SerializeToString()


def write_scalars(writer, step, values):
  """TensorBoard scalars through the core summary op (tf.summary.scalar
  needs the tensorboard package; writing the events does not)."""
  metadata = _scalars_metadata()
  with writer.as_default(step=step):
    for name, value in values.items():
      tf.summary.write(name, tf.constant(value, tf.float32),
                       metadata=metadata)
  # On disk now: the process may end without the interpreter's teardown
  # (signals.leave).
  writer.flush()


def read_scalars(directory):
  """The scalars of the event files in `directory`, as `write_scalars` wrote
  them: {tag: [(step, value), ...]} in step order."""
  from tensorflow.core.util import event_pb2
  scalars = {}
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    for record in tf.data.TFRecordDataset(path):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append(
            (event.step, float(tf.make_ndarray(value.tensor))))
  return {tag: sorted(points) for tag, points in scalars.items()}


class StageLog:
  """What a stage reports as it trains: each call's scalars (TensorBoard,
  chief only), the progress bar, the result's loss terms; at each epoch's
  end the collapse warning (`watch`, an analysis.CollapseWatch or None) and
  the kNN monitor's top-1."""

  def __init__(self, stage, config, total, start, chief, views, watch):
    self.stage, self.config, self.views = stage, config, views
    self.watch = watch
    self.writer = (tf.summary.create_file_writer(
        os.path.join(config.model_dir, 'summaries', stage.name))
                   if chief else tf.summary.create_noop_writer())
    self.progress = Progress(stage.name, total, start,
                             enabled=config.progress)

  def called(self, step, metrics, count, seconds, learning_rate, result):
    """One loop call of `count` steps, ended at `step` after `seconds`."""
    if 'loss_floor' in metrics:
      # What training can still remove: the loss above its floor.
      metrics['excess_loss'] = (metrics['contrastive_loss'] -
                                metrics['loss_floor'])
    examples_per_second = count * self.config.batch_size / seconds
    write_scalars(self.writer, step, {
        **{f'train/{k}': v for k, v in metrics.items()},
        'train/learning_rate': learning_rate,
        'train/examples_per_second': examples_per_second})
    shown = ({'excess': metrics['excess_loss']}
             if 'excess_loss' in metrics else {})
    self.progress.update(step, loss=metrics['loss'], **shown,
                         lr=learning_rate,
                         **{'ex/s': int(examples_per_second)})
    result['loss'] = metrics['loss']
    for key in ('loss_floor', 'excess_loss'):
      if key in metrics:
        result[key] = metrics[key]

  def watched(self, epoch, epoch_end, metrics, result):
    """After a call (before its checkpoint, which keeps the count): the
    collapse watch, and at an epoch's end its warning."""
    if self.watch is None:
      return
    self.watch.update(metrics['contrastive_loss'])
    if epoch_end and self.watch.epoch_ended():
      logging.warning(self.watch.message(self.stage.name, epoch, self.views,
                                         self.config.batch_size))
      result['collapsed_epochs'] = result.get('collapsed_epochs', 0) + 1

  def knn_due(self, epoch, epoch_end, last):
    """Whether the kNN monitor runs now: at a contrastive stage's epoch end,
    every knn_every_epochs epochs and at the stage's `last` step."""
    config = self.config
    return bool(epoch_end and self.stage.contrastive_loss_weight > 0 and
                config.knn_every_epochs and
                (epoch % config.knn_every_epochs == 0 or last))

  def knn(self, step, epoch, top1, result):
    """The kNN monitor's validation top-1 (None: no validation split)."""
    if top1 is not None:
      result['knn_val_top1'] = top1
      write_scalars(self.writer, step, {'monitor/knn_val_top1': top1})
      logging.info('%s epoch %d: kNN validation top-1 %.4f', self.stage.name,
                   epoch, top1)

  def close(self):
    self.progress.close()
    self.writer.flush()
