"""The encoder's optimizer and the linear probe's as one Keras optimizer
(`PairedOptimizer`): Keras' JAX trainer carries one optimizer's state
through its jitted step. Used by `fit.SupConModel`."""
import keras


def current_value(scope, variable):
  """A variable's value in a StatelessScope: what was assigned, else its
  value."""
  value = scope.get_current_value(variable)
  return variable.value if value is None else value


class Parts:
  """Holds the two optimizers out of sight of Keras' saving walk, which
  would write them twice."""

  def __init__(self, *optimizers):
    self.optimizers = optimizers


class PairedOptimizer(keras.optimizers.Optimizer):
  """The encoder's optimizer and the probe's (or none) as one optimizer, as
  Keras' JAX trainer carries one optimizer's state through the jitted step.
  Each updates its own variables (the probe's: `probe_variables()`, read
  when built); the classification head without a probe is left alone. Saved
  and loaded as the encoder's optimizer (the probe's, as the model's
  `probe_optimizer`), so `.keras` files are the TensorFlow backend's."""

  def __init__(self, encoder_optimizer, probe_optimizer, probe_variables):
    super().__init__(learning_rate=0., name='supcon_optimizers')
    self._parts = Parts(encoder_optimizer, probe_optimizer)
    self._probe_variables = probe_variables
    self._is_probe = None

  def parts(self):
    """(the encoder's optimizer, the probe's or None)."""
    return self._parts.optimizers

  def build(self, variables):
    super().build(variables)
    probe = {id(v) for v in self._probe_variables()}
    self._is_probe = [id(v) in probe for v in variables]
    encoder, probe_optimizer = self.parts()
    encoder.build(self._group(variables, False))
    if probe_optimizer is not None:
      probe_optimizer.build(self._group(variables, True))

  def _group(self, items, probe):
    return [x for x, p in zip(items, self._is_probe) if p == probe]

  @property
  def variables(self):
    return super().variables + [v for optimizer in self.parts()
                                if optimizer is not None
                                for v in optimizer.variables]

  @property
  def iterations(self):
    return self.parts()[0].iterations

  @property
  def learning_rate(self):
    return self.parts()[0].learning_rate

  @learning_rate.setter
  def learning_rate(self, value):
    self.parts()[0].learning_rate = value

  def apply(self, grads, trainable_variables=None):
    variables = (self._trainable_variables if trainable_variables is None
                 else list(trainable_variables))
    encoder, probe_optimizer = self.parts()
    encoder.apply(self._group(grads, False), self._group(variables, False))
    if probe_optimizer is not None:
      probe_optimizer.apply(self._group(grads, True),
                            self._group(variables, True))

  def save_own_variables(self, store):
    self.parts()[0].save_own_variables(store)

  def load_own_variables(self, store):
    self.parts()[0].load_own_variables(store)
