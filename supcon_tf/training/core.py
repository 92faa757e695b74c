"""The published recipes through the Keras core, on any Keras backend: a
preset's stages (SupCon or cross-entropy, then the classifier on the frozen
encoder) with its optimizer, schedule, weight decay, batch size and epochs,
the views made in the training step (`supcon_tf.data.device_views`),
checkpoints at every epoch's end and at the time budget, test top-1 in
results.json.

    KERAS_BACKEND=jax supcon-train-keras \\
        --preset=seed_cifar10_resnet20_supcon_autoaugment \\
        --data_dir=DIR --model_dir=runs/seed

What it shares with the command line's Trainer (`loop.py`): the Config and
its presets, `models.build_model`, each stage's choices (`stages.py`: the
parts trained, weight decay, the schedule, step counts), `optimizers.py`
and the loss; from the same weights and views its steps are the Trainer's
(tests/test_core.py). What it does its own way: the training images held
in memory as NumPy (`data.arrays`: the CIFAR archives, the digits), one
device, the stage as a Keras model (`stage_model.StageModel`, Keras' own
step on each backend) driven in `fit` calls of many steps, checkpoints as
.npz files keyed by variable path (`stage_model.save`).
"""
import functools
import itertools
import json
import os
import time

import keras
import numpy as np
from absl import logging

from supcon_tf import config_checks, files
from supcon_tf.data import arrays, epochs
from supcon_tf.models import layers
from supcon_tf.training import figures as figures_lib
from supcon_tf.training import signals, stage_model, stages
from supcon_tf.training.errors import NonFiniteLossError
from supcon_tf.training.progress import Progress

# The datasets the Keras core reads (into memory, as NumPy).
INPUTS = ('cifar10', 'cifar100', 'digits', 'folder')
CHECKPOINT = '{}.npz'  # model_dir/core/stage_N.npz
RESULTS_FILE = 'results.json'
KERAS_FILE = 'model.keras'  # model_dir/model.keras, the trained model


# What the command line does and the Keras core does not (yet): flag ->
# the value the core takes. A run that sets another says so in one line.
COMMAND_LINE_ONLY = {
    'sampler': 'uniform', 'micro_batch_size': 0, 'allow_mixed_precision': False,
    'reference_ckpt': '', 'num_images': 0, 'label_noise_prob': 0.,
    'skip_corrupt': False, 'memory_size': 0, 'momentum_encoder': 0.,
}


def check_config(config):
  """A one-line ValueError for what the Keras core does not do."""
  if not config.model_dir:
    raise ValueError('--model_dir is required: where the checkpoints and '
                     'results.json go.')
  if config.mode not in ('train', 'train_then_eval'):
    raise ValueError(f'--mode={config.mode}: the Keras core trains (train, '
                     'train_then_eval); evaluate under '
                     'KERAS_BACKEND=tensorflow.')
  for name, value in COMMAND_LINE_ONLY.items():
    if (getattr(config, name) or value) != value:
      raise ValueError(f'--{name}={getattr(config, name)} needs the '
                       'TensorFlow trainer for now (KERAS_BACKEND='
                       f'tensorflow); the Keras core takes {name}={value!r}.')
  if config.strategy not in ('auto', 'default'):
    raise ValueError(f'--strategy={config.strategy} needs the TensorFlow '
                     'trainer for now (KERAS_BACKEND=tensorflow); the Keras '
                     'core runs on one device.')
  check_model_dir(config)


def check_model_dir(config):
  """Refuses a model_dir that holds the TensorFlow trainer's run, or a run
  of the core with another configuration. Reads, never writes."""
  for stage in ('stage_1', 'stage_2'):
    if os.path.exists(os.path.join(config.model_dir, stage, 'checkpoint')):
      raise ValueError(
          f'{config.model_dir} holds a run of the TensorFlow trainer '
          f'({stage}/): resume it under KERAS_BACKEND=tensorflow, or use '
          'another --model_dir.')
  config_checks.check_saved_config(config, os.path.exists(
      os.path.join(config.model_dir, 'core', CHECKPOINT.format('stage_2'))))


def load_data(config):
  """({'train': (images, labels), 'test' or 'validation': ...}, number of
  classes, the whitening statistics) of `config.input_fn`, uint8 images
  [N, H, W, 3]; with validation_fraction the command line's validation
  split carved out. As the command line's: digits and folders whiten with
  their own statistics (of the whole train split), CIFAR with the known."""
  if config.input_fn not in INPUTS:
    raise arrays.DataError(
        f'input_fn={config.input_fn} has no Keras-core reader; '
        f'{", ".join(INPUTS)} have (under KERAS_BACKEND=tensorflow every '
        'source reads).')
  if config.input_fn == 'digits':
    splits, names = arrays.load_digits(), range(10)
  elif config.input_fn == 'folder':
    splits, names = arrays.load_folder(config.data_dir)
  else:
    splits, names = arrays.load_cifar(config.input_fn, config.data_dir,
                                      config.label_type)
  mean_std = arrays.normalization(
      config, arrays.mean_std_of(splits['train'][0])
      if config.input_fn in ('digits', 'folder') else None)
  if config.validation_fraction > 0:
    images, labels = splits['train']
    validation, train = arrays.validation_order(
        len(images), config.validation_fraction, config.seed)
    splits['validation'] = (images[validation], labels[validation])
    splits['train'] = (images[train], labels[train])
  if 'test' not in splits and 'validation' not in splits:
    raise arrays.DataError(
        f'{config.input_fn}: no test split to evaluate on '
        '(--validation_fraction carves one from train).')
  return splits, len(names), mean_std


@functools.lru_cache(maxsize=2)
def _epoch_order(count, seed, epoch):
  # One permutation per epoch, drawn once (each step reads its slice).
  return np.random.default_rng([seed, epoch]).permutation(count)


def batch_indices(count, batch_size, step, seed, epoch_remainder):
  """The examples of global batch `step`: a seeded permutation of each
  epoch (its partial batch dropped with 'drop'), epochs end to end."""
  length = epochs.epoch_length(count, batch_size, epoch_remainder)
  first, last = step * batch_size, (step + 1) * batch_size
  out = []
  for epoch in range(first // length, (last - 1) // length + 1):
    order = _epoch_order(count, seed, epoch)[:length]
    start = max(first - epoch * length, 0)
    out.append(order[start:min(last - epoch * length, length)])
  return np.concatenate(out)


class _StepBoundary(keras.callbacks.Callback):
  """Before each step, on the host and reading nothing from the device: the
  progress bar's count, and a signal or the time budget ends the call after
  the step under way."""

  def __init__(self, progress):
    super().__init__()
    self.progress, self.first, self.values = progress, 0, {}

  def on_train_batch_begin(self, batch, logs=None):
    if batch:
      self.progress.update(self.first + batch, **self.values)
    if signals.requested() or signals.budget_spent():
      self.model.stop_training = True


def _batches(images, labels, config, first):
  """The (images, labels) of the global batches from step `first` on."""
  for step in itertools.count(first):
    index = batch_indices(len(images), config.batch_size, step, config.seed,
                          config.epoch_remainder)
    yield images[index], labels[index]


def run_steps(trainer, batches, count, callbacks=()):
  """Up to `count` steps on the (images, labels) `batches` yields, in one
  Keras `fit` call: each batch goes to the device ahead of its step, and
  nothing is read back until the call ends (a callback's `stop_training`
  ends it early); returns the last step's loss."""
  history = trainer.fit(batches, steps_per_epoch=count, epochs=1, verbose=0,
                        shuffle=False, callbacks=list(callbacks))
  return float(history.history['step_loss'][-1])


def _stop(name, step, total, path, minutes):
  """Raises what ended the stage at `step`, its checkpoint written: a
  signal (`signals.Interrupted`) or the time budget (`BudgetSpent`)."""
  if signals.requested():
    raise signals.Interrupted(
        f'{name}: stopped at step {step} ({signals.name()}); checkpoint '
        f'{path}. Run the same command to resume.', signals.requested())
  raise signals.BudgetSpent(
      f'{name}: stopped at step {step} of {total}, the time budget spent '
      f'(--stop_after_minutes={minutes:g}); checkpoint {path}. Run the same '
      'command to continue.')


def train_stage(trainer, stage, config, data, steps, directory,
                finished_only=False):
  """Runs `stage` from its checkpoint to its last step; returns its
  {'steps', 'loss', 'seconds'} (`figures.StageFigures`: a stage finished in
  an earlier call reports that call's). The steps run in calls of up to
  `summary_interval_steps` (and `steps_per_loop`), ending at each epoch's
  end; the loss is read once per call. A signal or the time budget ends
  the call after the step under way: a checkpoint, then
  `signals.Interrupted` or `signals.BudgetSpent`. `finished_only`: only
  restores the stage, which must have ended (a ValueError if not)."""
  images, labels = data
  total = stages.stage_steps(stage, config, steps)
  path = os.path.join(directory, CHECKPOINT.format(stage.name))
  stage_model.build(trainer, images)
  figures = figures_lib.StageFigures(total)
  if os.path.exists(path):
    stage_model.restore(trainer, path, figures)
    logging.info('%s: resumed from %s at step %d', stage.name, path,
                 int(trainer.optimizer.iterations))
  step = saved = int(trainer.optimizer.iterations)
  result = figures.result
  if finished_only and step < total:
    raise ValueError(f'{stage.name} is not finished in {directory} (step '
                     f'{step} of {total}): supcon-train with the same flags '
                     'finishes it.')
  if step >= total:
    return result
  # The step at which the epoch of step `s` ends.
  epoch_end_of = lambda s: epochs.first_step_of_epoch(
      epochs.epoch_of_step(s, len(images), config.batch_size,
                           config.epoch_remainder) + 1,
      len(images), config.batch_size, config.epoch_remainder)
  progress = Progress(stage.name, total, step, enabled=config.progress)
  boundary = _StepBoundary(progress)
  figures.start_clock()
  layers.freeze_moving_statistics(trainer.model,
                                  not stage.update_encoder_batch_norm)
  try:
    while step < total:
      epoch_end = epoch_end_of(step)
      count = min(config.steps_per_loop, config.summary_interval_steps,
                  epoch_end - step, total - step)
      boundary.first = step
      loss = run_steps(trainer, _batches(images, labels, config, step),
                       count, [boundary])
      step = int(trainer.optimizer.iterations)
      if not np.isfinite(loss):
        raise NonFiniteLossError(
            f'{stage.name}: the loss became {loss} by step {step}; stopped. '
            f'The last good checkpoint is kept: {path}.')
      result['loss'] = boundary.values['loss'] = loss
      progress.update(step, loss=loss)
      stopping = signals.requested() or (
          signals.budget_spent() and step < total)
      if (step in (epoch_end, total) or stopping or
          step - saved >= config.save_interval_steps):
        stage_model.save(trainer, path, figures)
        saved = step
      if stopping:
        _stop(stage.name, step, total, path, config.stop_after_minutes)
  finally:
    layers.freeze_moving_statistics(trainer.model, False)
    progress.close()
  # The seconds as the last checkpoint keeps them.
  return result


def test_top1(trainer, images, labels, batch_size):
  """Top-1 of the classification head on eval images (normalised only)."""
  correct = 0
  for start in range(0, len(images), batch_size):
    logits = trainer.predict_on_batch(images[start:start + batch_size])
    correct += int(np.sum(np.argmax(np.asarray(logits['logits'])[:, 0], -1) ==
                          labels[start:start + batch_size]))
  return correct / len(images)


def export_model(model, model_dir):
  """Writes the trained model to model_dir/model.keras, whole or not at all
  (every Keras backend loads it); returns its path. The SavedModel with the
  official signatures is TensorFlow's: one line says so."""
  path = os.path.join(model_dir, KERAS_FILE)
  partial = os.path.join(model_dir, 'model.partial.keras')  # Keras' suffix.
  try:
    model.save(partial)
    os.replace(partial, path)
  except OSError as error:
    raise files.WriteError(f'Could not write {path}: '
                           f'{error.strerror or error}') from error
  backend = keras.backend.backend()
  logging.warning(
      'No SavedModel under %s: the export with the official signatures '
      'needs %s; the trained model is %s.', backend,
      'supcon-train (the TensorFlow trainer)' if backend == 'tensorflow'
      else 'TensorFlow (KERAS_BACKEND=tensorflow)', path)
  return path


def run(config, stage_indices=(1, 2)):
  """A preset's stages and the test top-1 through the Keras core, on the
  backend Keras runs on; returns the results (also model_dir/results.json).
  `stage_indices` (2,): stage 2 on the finished stage 1 in model_dir. With
  `config.stop_after_minutes`, raises `signals.BudgetSpent` at the first
  step boundary past the budget, the stage checkpointed."""
  started = time.perf_counter()
  check_config(config)
  signals.start_budget(config.stop_after_minutes)
  splits, num_classes, mean_std = load_data(config)
  train_images, train_labels = splits['train']
  steps = epochs.steps_per_epoch(len(train_images), config.batch_size,
                                 config.epoch_remainder)
  directory = os.path.join(config.model_dir, 'core')
  os.makedirs(directory, exist_ok=True)
  with files.model_dir_lock(config.model_dir):
    files.write_text(
        os.path.join(config.model_dir, config_checks.CONFIG_FILE),
        config.to_json())
    keras.utils.set_random_seed(config.seed)
    model = stage_model.built_model(config, num_classes)
    results = {'backend': keras.backend.backend(),
               'input_fn': config.input_fn, 'num_classes': num_classes,
               'steps_per_epoch': steps}
    trainer = None
    for index in (1, 2):
      stage = stages.stage_from_config(config, index)
      if stage.epochs == 0:
        continue
      trainer = stage_model.for_stage(config, model, stage, mean_std, steps)
      outcome = train_stage(trainer, stage, config,
                            (train_images, train_labels), steps, directory,
                            finished_only=index not in stage_indices)
      if index not in stage_indices:
        continue
      results[f'{stage.name}_steps'] = outcome['steps']
      results[f'{stage.name}_seconds'] = round(outcome['seconds'], 2)
      if outcome['loss'] is not None:
        results[f'{stage.name}_final_loss'] = outcome['loss']
    if config.mode == 'train_then_eval' and trainer is not None:
      # The test split, or (a folder without one) the validation split.
      name = 'test' if 'test' in splits else 'validation'
      results['eval_split'] = name
      results['test_top1' if name == 'test' else 'val_top1'] = test_top1(
          trainer, *splits[name], config.eval_batch_size)
    if config.export and trainer is not None:
      results['export'] = export_model(model, config.model_dir)
    results['wall_seconds'] = round(time.perf_counter() - started, 2)
    files.write_text(os.path.join(config.model_dir, RESULTS_FILE),
                     json.dumps(results, indent=2))
  return results


def main(argv, kind='supcon'):
  """supcon-train-keras, and supcon-train (`kind` 'supcon') and
  supcon-train-ce ('cross_entropy': the official XENT flag group) under
  another backend than TensorFlow: the flags (a preset and the official
  names) to `run`; bad flags and data are one line (exit 2), a time budget
  spent exits 75, Ctrl-C 130, SIGTERM 143."""
  from absl import app

  from supcon_tf import flags as supcon_flags
  from supcon_tf.presets import XENT_FLAGS
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  if not supcon_flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.INFO)
  try:
    if kind == 'classifier':
      config = supcon_flags.config_from_flags(
          base=supcon_flags.saved_config(supcon_flags.FLAGS.model_dir))
    else:
      config = supcon_flags.config_from_flags(
          XENT_FLAGS if kind == 'cross_entropy' else None)
  except ValueError as error:
    supcon_flags.fail(argv, error)
  results = supcon_flags.run_reported(
      argv, lambda: run(config, (2,) if kind == 'classifier' else (1, 2)),
      (NonFiniteLossError, files.WriteError))
  print(json.dumps(results, indent=2))
  print(supcon_flags.result_line(
      results, config, os.path.join(config.model_dir, RESULTS_FILE)))
