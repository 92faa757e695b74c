"""What results.json reports of a stage (`StageFigures`), kept with each of
its checkpoints (the TensorFlow trainer's and the Keras core's): a stage
finished over several calls (stopped by its budget or a signal, or crashed,
then resumed) reports as the uninterrupted stage, its seconds summed over
the calls. TensorFlow-free."""
import math
import time


class StageFigures:
  """`result` ({'steps', 'seconds', 'loss', and when measured 'loss_floor',
  'excess_loss', 'knn_val_top1', 'collapsed_epochs'}) as one vector of
  floats for a checkpoint: `values()` to save, `load(values)` after a
  restore. Python floats round-trip exactly through float64; NaN is a figure
  not measured."""

  KEYS = ('seconds', 'loss', 'loss_floor', 'excess_loss', 'knn_val_top1',
          'collapsed_epochs')

  def __init__(self, steps):
    self.result = {'steps': steps, 'loss': None, 'seconds': 0.}
    self._clock = None

  def load(self, values):
    """`result` as a checkpoint's `values` left it (a vector of another
    length, from another version, is ignored); returns it."""
    values = [float(v) for v in values]
    if len(values) == len(self.KEYS):
      for key, value in zip(self.KEYS, values):
        if not math.isnan(value):
          self.result[key] = (int(value) if key == 'collapsed_epochs' else
                              value)
    return self.result

  def start_clock(self):
    """This call's training starts: its seconds add to the earlier calls'."""
    self._clock = (time.perf_counter(), self.result['seconds'])

  def values(self):
    """`result`, its seconds brought up to now, as floats for a checkpoint."""
    if self._clock is not None:
      started, before = self._clock
      self.result['seconds'] = before + time.perf_counter() - started
    return [math.nan if self.result.get(key) is None else
            float(self.result[key]) for key in self.KEYS]
