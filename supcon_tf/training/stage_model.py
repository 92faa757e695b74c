"""One stage of a preset as a Keras model, on every Keras backend: the stage
model (`StageModel`: the views made from uint8 images, the model with the
stage's BatchNorm modes, the stage's objective as its loss, the variables
its optimizer updates as its trainable ones), built and compiled from the
config (`for_stage`), and its state as a checkpoint keyed by variable path
(`keyed_state`, `save`, `restore`). Keras' own training step runs it:
TensorFlow's tape, JAX's stateless gradient or PyTorch's backward around
the one `compute_loss`. The Keras core's loop (`core.py`) drives it."""
import io
import re

import keras
import numpy as np

from supcon_tf import files
from supcon_tf.data import device_views
from supcon_tf.losses import class_ids
from supcon_tf.models import build_model
from supcon_tf.training import objective as objective_lib
from supcon_tf.training import optimizers, stages

ops = keras.ops


class _StepLoss(keras.metrics.Metric):
  """The last step's loss (Keras' own `loss` is a mean over a call's
  steps)."""

  def __init__(self, name='step_loss', **kwargs):
    super().__init__(name=name, **kwargs)
    self.value = self.add_variable(shape=(), initializer='zeros',
                                   dtype='float32', name='value')

  def update_state(self, value):
    self.value.assign(ops.cast(value, 'float32'))

  def result(self):
    return ops.convert_to_tensor(self.value)  # A value, not the variable.


@keras.saving.register_keras_serializable(package='supcon_tf')
class StageModel(keras.Model):
  """One stage as a Keras model, for Keras' own training step on every
  backend: `call` makes the views from uint8 images (`views`, a
  `DeviceViews`; `num_views` of them) and runs `model` with the stage's
  forward options; `compute_loss` is the stage's `objective.Objective` (one
  replica) with its weight decay. `updated`: the variables the stage's
  optimizer updates (`stages.updated_variables`; None: every trainable
  one); Keras' step takes its gradient with respect to them alone."""

  def __init__(self, model, views, num_views, objective, forward_options=None,
               updated=None, **kwargs):
    super().__init__(**kwargs)
    self.model, self.views = model, views
    self._updated = None if updated is None else {id(v) for v in updated}
    self.num_views = int(num_views)
    self.objective = objective
    self.forward_options = dict(forward_options or {'training': True})
    self.step_loss = _StepLoss()

  # What Keras' step differentiates and its optimizer updates; the rest
  # (a frozen encoder) is state, as BatchNorm's averages are.
  @property
  def trainable_variables(self):
    variables = super().trainable_variables
    return (variables if self._updated is None else
            [v for v in variables if id(v) in self._updated])

  @property
  def non_trainable_variables(self):
    trained = {id(v) for v in self.trainable_variables}
    return [v for v in self.variables if id(v) not in trained]

  trainable_weights = trainable_variables

  @property
  def non_trainable_weights(self):
    trained = {id(v) for v in self.trainable_variables}
    return [v for v in self.weights if id(v) not in trained]

  def call(self, images, training=False):
    if not training:
      return self.model(ops.expand_dims(self.views(images, training=False), 1),
                        training=False)
    views = ops.stack([self.views(images, training=True)
                       for _ in range(self.num_views)], axis=1)
    return self.model(views, **self.forward_options)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    _, total = self.objective(y_pred, class_ids(y))
    decay = self.objective.decay()
    total = total if decay is None else total + decay
    self.step_loss.update_state(total)
    return total


def built_model(config, num_classes):
  """The config's model with its variables: each stage's objective and
  optimizer are made from them."""
  model = build_model(config.model, num_classes)
  model(np.zeros((1, config.image_size, config.image_size, 3), 'float32'))
  return model


def for_stage(config, model, stage, mean_std, steps, views=None):
  """The `StageModel` of `stage` on the built `model` (`built_model`),
  compiled with its optimizer and schedule (`steps`: steps per epoch);
  `views` (a `DeviceViews`) in place of the config's."""
  if views is None:
    views = device_views.DeviceViews.from_preprocessing(
        config.preprocessing, mean_std, seed=config.seed * 3 + stage.index)
  batch_norm_training = config.batch_norm_training
  trainer = StageModel(
      model, views, stages.views_for(stage, config),
      objective_lib.Objective.for_stage(
          config.loss, stage, config.batch_size, replicas=1,
          decayed=stages.decayed_variables(stage, model, config)),
      forward_options=dict(
          training=batch_norm_training,
          encoder_training=(batch_norm_training and
                            not stage.encoder_batch_norm_inference)),
      updated=stages.updated_variables(stage, model, config))
  optimizer = optimizers.build_optimizer(
      stage.optimizer, stages.learning_rate(stage, config, steps),
      stage.rmsprop_epsilon,
      lars_adapted=stages.decay_selection(stage, model, config))
  # --jit_compile unset: Keras' choice (XLA under JAX).
  trainer.compile(optimizer=optimizer, jit_compile=(
      'auto' if config.jit_compile is None else config.jit_compile))
  return trainer


def _relative(path, owner):
  """`path` below `owner` (a layer), without the names Keras numbers by
  creation order: the owner's, or the first one's number (the views' seed
  generator, 'seed_generator_3/seed_generator_state')."""
  first, _, rest = path.partition('/')
  if first == owner.name and rest:
    return rest
  return '/'.join([re.sub(r'_\d+$', '', first)] + ([rest] if rest else []))


def keyed_state(trainer):
  """{key: variable} of everything a checkpoint keeps: the model's
  variables ('model/resnet20/stem_conv/kernel'), the views' seed, the
  optimizer's ('optimizer/iteration', 'optimizer/model/.../momentum'). The
  keys are Keras variable paths without the names Keras numbers by creation
  order, so they are the same on every backend and in every process."""
  state = {}

  def put(key, variable):
    if key in state:  # Never one value saved for two variables.
      raise ValueError(f'Two variables of the stage have the key {key}.')
    state[key] = variable

  for owner, prefix in ((trainer.model, 'model'), (trainer.views, 'views')):
    for v in owner.variables:
      put(f'{prefix}/{_relative(v.path, owner)}', v)
  # A slot's name is its variable's path with '_' for '/', then the slot's.
  slots = {v.path.replace('/', '_') + '_': key for key, v in state.items()}
  for v in trainer.optimizer.variables:
    name = v.name
    owner = max((p for p in slots if name.startswith(p)), key=len,
                default=None)
    put('optimizer/' + (f'{slots[owner]}/{name[len(owner):]}' if owner
                        else name), v)
  return state


def save(trainer, path, figures):
  """Every variable of the stage (`keyed_state`: the model's, the views'
  seed, the optimizer's with its step) and its `figures` (a
  figures.StageFigures), whole or not at all."""
  buffer = io.BytesIO()
  np.savez(buffer, **{key: np.asarray(keras.ops.convert_to_numpy(v.value))
                      for key, v in keyed_state(trainer).items()},
           figures=np.asarray(figures.values(), np.float64))
  files.write_bytes(path, buffer.getvalue())


def restore(trainer, path, figures):
  """Puts a `save`d stage back by key (a file of an earlier release, by
  position), and its figures where the file has them; a file of another
  model or stage says so, naming a variable it lacks or holds in another
  shape."""
  state = keyed_state(trainer)
  with np.load(path) as saved:
    names = [name for name in saved.files if name != 'figures']
    if all(name.startswith('arr_') for name in names):
      values = dict(zip(state, (saved[f'arr_{i}'] for i in range(len(names)))))
    else:
      values = {name: saved[name] for name in names}
    if 'figures' in saved.files:
      figures.load(saved['figures'])
  wrong = [key for key, v in state.items()
           if key not in values or values[key].shape != tuple(v.shape)]
  if wrong or len(values) != len(state):
    what = (f'{wrong[0]} missing or of another shape' if wrong else
            f'{len(values)} variables, {len(state)} expected')
    raise ValueError(f'{path} holds another model or stage ({what}): use a '
                     'new --model_dir, or remove it to start again.')
  for key, variable in state.items():
    variable.assign(values[key])


def build(trainer, images):
  """The stage's variables and optimizer slots, before any step."""
  trainer(images[:1], training=False)
  trainer.optimizer.build(trainer.trainable_variables)
