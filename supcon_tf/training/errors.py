"""The errors a run ends with, each one line for the apps to print
(TensorFlow-free: the Keras core raises them too)."""


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or Inf; the last good checkpoint is kept."""


class UnreadableCheckpointError(RuntimeError):
  """Every checkpoint of a stage failed to read."""


class LostWorkersError(RuntimeError):
  """A multi-worker run lost contact with a worker; rerun every worker."""
