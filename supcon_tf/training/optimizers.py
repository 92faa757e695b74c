"""Optimizers (with LARS), learning-rate schedules and weight decay, in
`keras.ops`: the command line's (TensorFlow) and the Keras core's (every
backend)."""
import math

import keras

ops = keras.ops


def _is_batch_norm(variable):
  # The backing tf.Variable reaches update_step: its name is 'scope/leaf:0'.
  leaf = variable.name.split(':')[0].rsplit('/', 1)[-1]
  return leaf in ('gamma', 'beta')


@keras.saving.register_keras_serializable(package='supcon_tf')
class LARS(keras.optimizers.Optimizer):
  """LARS (You et al. 2017) as in the official SupCon code (classic
  momentum): v = momentum v + lr * trust * g, w -= v, with the trust ratio
  eta * ||w|| / ||g|| for the adapted variables and 1 for the others.

  The official code adapts exactly the variables it decays (one exclude list
  for both: BatchNorm always, biases without use_bias_weight_decay, the
  parts whose decay switch is off): pass them as `adapted`; without it every
  variable but BatchNorm's is adapted (the official default list). Weight
  decay itself is not applied here: it is part of the loss (L2), so `g`
  already holds the wd * w the official LARS adds."""

  def __init__(self, learning_rate=0.1, momentum=0.9, eta=0.001, adapted=None,
               name='lars', **kwargs):
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)
    self.momentum = momentum
    self.eta = eta
    self._adapted_ids = (None if adapted is None
                         else {id(v) for v in adapted})

  def build(self, variables):
    if self.built:
      return
    super().build(variables)
    self.momenta = [self.add_variable_from_reference(v, 'momentum')
                    for v in variables]
    self._adapt = [not _is_batch_norm(v) if self._adapted_ids is None
                   else id(v) in self._adapted_ids for v in variables]

  def update_step(self, gradient, variable, learning_rate):
    learning_rate = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    index = self._get_variable_index(variable)
    if self._adapt[index]:
      w_norm = ops.norm(variable)
      g_norm = ops.norm(gradient)
      trust = ops.where((w_norm > 0) & (g_norm > 0),
                        self.eta * w_norm / ops.maximum(g_norm, 1e-12), 1.)
      learning_rate = learning_rate * trust
    momentum = self.momenta[index]
    self.assign(momentum, self.momentum * momentum + learning_rate * gradient)
    self.assign_sub(variable, momentum)

  def get_config(self):
    return {**super().get_config(), 'momentum': self.momentum,
            'eta': self.eta}


@keras.saving.register_keras_serializable(package='supcon_tf')
class Momentum(keras.optimizers.Optimizer):
  """SGD with momentum in the form of TF1's MomentumOptimizer (the official
  code's) and PyTorch's SGD (the seed's): accumulator = momentum *
  accumulator + gradient, variable -= lr * accumulator; with `nesterov`,
  variable -= lr * (gradient + momentum * accumulator). The learning rate is
  outside the accumulator, so a schedule step changes the whole step at once
  (Keras' SGD keeps lr inside its velocity)."""

  def __init__(self, learning_rate=0.1, momentum=0.9, nesterov=False,
               name='momentum', **kwargs):
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)
    self.momentum = momentum
    self.nesterov = nesterov

  def build(self, variables):
    if self.built:
      return
    super().build(variables)
    self.accumulators = [self.add_variable_from_reference(v, 'momentum')
                         for v in variables]

  def update_step(self, gradient, variable, learning_rate):
    learning_rate = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    accumulator = self.accumulators[self._get_variable_index(variable)]
    accumulated = self.momentum * accumulator + gradient
    self.assign(accumulator, accumulated)
    step = (gradient + self.momentum * accumulated if self.nesterov
            else accumulated)
    self.assign_sub(variable, learning_rate * step)

  def get_config(self):
    return {**super().get_config(), 'momentum': self.momentum,
            'nesterov': self.nesterov}


@keras.saving.register_keras_serializable(package='supcon_tf')
class RMSProp(keras.optimizers.Optimizer):
  """TF1's RMSPropOptimizer, the official code's: the mean-square slot starts
  at 1 (Keras' starts at 0, which makes the first steps huge), and momentum
  accumulates the scaled step: ms = rho ms + (1 - rho) g^2;
  mom = momentum mom + lr g / sqrt(ms + epsilon); variable -= mom."""

  def __init__(self, learning_rate=0.1, rho=0.9, momentum=0.9, epsilon=1.0,
               name='rmsprop', **kwargs):
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)
    self.rho = rho
    self.momentum = momentum
    self.epsilon = epsilon

  def build(self, variables):
    if self.built:
      return
    super().build(variables)
    self.mean_squares = [
        self.add_variable_from_reference(v, 'rms', initializer='ones')
        for v in variables]
    self.moments = [self.add_variable_from_reference(v, 'momentum')
                    for v in variables]

  def update_step(self, gradient, variable, learning_rate):
    learning_rate = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    index = self._get_variable_index(variable)
    mean_square, moment = self.mean_squares[index], self.moments[index]
    new_mean_square = (self.rho * mean_square +
                       (1. - self.rho) * ops.square(gradient))
    new_moment = (self.momentum * moment + learning_rate * gradient /
                  ops.sqrt(new_mean_square + self.epsilon))
    self.assign(mean_square, new_mean_square)
    self.assign(moment, new_moment)
    self.assign_sub(variable, new_moment)

  def get_config(self):
    return {**super().get_config(), 'rho': self.rho,
            'momentum': self.momentum, 'epsilon': self.epsilon}


@keras.saving.register_keras_serializable(package='supcon_tf')
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
  """As the official build_learning_rate_schedule: linear warmup from 0 to
  `peak` over `warmup_steps`; from step `decay_start` (default: the end of
  warmup) the decay over `decay_steps`: COSINE (to peak * min_ratio),
  EXPONENTIAL (decay_rate every `steps_per_decay`), PIECEWISE_LINEAR (the
  official name for a piecewise constant schedule: times decay_rate once
  past each boundary, boundaries counted from `decay_start`), NO_DECAY;
  0 once the decay is over.

  With `steps_per_epoch`, the schedule moves once per epoch and one epoch
  late, as the seed's adjust_learning_rate(epoch) called after each epoch:
  epoch e (from 0) runs at the per-step value of step
  max(e - 1, 0) * steps_per_epoch."""

  def __init__(self, peak, decay_steps, warmup_steps=0, decay_start=None,
               decay='COSINE', min_ratio=0., decay_rate=0.1, boundaries=(),
               steps_per_decay=1, steps_per_epoch=None):
    self.peak = float(peak)
    self.decay_steps = int(decay_steps)
    self.warmup_steps = int(warmup_steps)
    self.decay_start = int(warmup_steps if decay_start is None
                           else decay_start)
    self.decay = decay
    self.min_ratio = float(min_ratio)
    self.decay_rate = float(decay_rate)
    self.boundaries = tuple(int(b) for b in boundaries)
    self.steps_per_decay = max(float(steps_per_decay), 1.)
    self.steps_per_epoch = steps_per_epoch and int(steps_per_epoch)

  def __call__(self, step):
    step = ops.cast(step, 'float32')
    if self.steps_per_epoch:
      epoch = ops.floor(step / self.steps_per_epoch)
      step = ops.maximum(epoch - 1., 0.) * self.steps_per_epoch
    peak = ops.convert_to_tensor(self.peak, 'float32')
    after = step - self.decay_start
    if self.decay == 'COSINE':
      progress = ops.clip(after / max(self.decay_steps, 1), 0., 1.)
      low = peak * self.min_ratio
      decayed = low + (peak - low) * 0.5 * (1. + ops.cos(math.pi * progress))
    elif self.decay == 'EXPONENTIAL':
      decayed = peak * ops.power(self.decay_rate, ops.floor(
          ops.maximum(after, 0.) / self.steps_per_decay))
    elif self.decay == 'PIECEWISE_LINEAR':
      # tf.train.piecewise_constant: the rate changes once the step passes
      # a boundary.
      passed = sum((ops.cast(after > b, 'float32') for b in self.boundaries),
                   ops.zeros_like(after))
      decayed = peak * ops.power(self.decay_rate, passed)
    else:
      decayed = peak
    decayed = ops.where(after > self.decay_steps, 0., decayed)
    if self.warmup_steps:
      warm = peak * step / self.warmup_steps
      return ops.where(step < self.warmup_steps, warm, decayed)
    return decayed

  def get_config(self):
    return dict(peak=self.peak, decay_steps=self.decay_steps,
                warmup_steps=self.warmup_steps, decay_start=self.decay_start,
                decay=self.decay, min_ratio=self.min_ratio,
                decay_rate=self.decay_rate, boundaries=self.boundaries,
                steps_per_decay=self.steps_per_decay,
                steps_per_epoch=self.steps_per_epoch)


def build_optimizer(name, learning_rate, rmsprop_epsilon=1.0,
                    lars_adapted=None):
  """The official optimizer names with TF1's semantics (the official code's
  tf.train optimizers); momentum 0.9 throughout. `lars_adapted`: the
  variables LARS adapts (see `LARS`)."""
  if name == 'MOMENTUM':
    return Momentum(learning_rate, momentum=0.9)
  if name == 'NESTEROV':
    return Momentum(learning_rate, momentum=0.9, nesterov=True)
  if name == 'LARS':
    return LARS(learning_rate, momentum=0.9, eta=0.001, adapted=lars_adapted)
  if name == 'RMSPROP':
    return RMSProp(learning_rate, rho=0.9, momentum=0.9,
                   epsilon=rmsprop_epsilon)
  if name == 'ADAM':
    # Keras' Adam is TF1's update; TF1's epsilon is 1e-8 (Keras' 1e-7).
    return keras.optimizers.Adam(learning_rate, epsilon=1e-8)
  raise ValueError(f'Unknown optimizer {name!r}.')


def decayed_variables(parts, use_bias, use_batch_norm=False):
  """The variables weight decay applies to: kernels of the chosen parts,
  their biases when `use_bias`, BatchNorm gamma and beta when
  `use_batch_norm`."""
  leaves = {'kernel'} | ({'bias'} if use_bias else set()) | (
      {'gamma', 'beta'} if use_batch_norm else set())
  return [variable for part in parts for variable in part.trainable_variables
          if variable.path.rsplit('/', 1)[-1] in leaves]


def l2_loss(variables):
  """sum ||v||^2 / 2, the official tf.nn.l2_loss sum."""
  return sum((ops.sum(ops.square(ops.cast(v, 'float32'))) / 2.
              for v in variables), ops.convert_to_tensor(0., 'float32'))
