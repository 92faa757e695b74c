"""TensorBoard scalars: written through the core summary op and read back
(tests and experiments read the curves), without the tensorboard package."""
import os

import tensorflow as tf


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
