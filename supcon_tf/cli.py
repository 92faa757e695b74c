"""What the apps (supcon_tf.apps) share: flags to a Config, run, print the
results; bad input ends in one line and exit status 2."""
import dataclasses
import json
import logging as pylogging
import os
import sys

import tensorflow as tf
from absl import app, logging

from supcon_tf import export as export_lib
from supcon_tf import files
from supcon_tf import flags as supcon_flags
from supcon_tf import official, seed_checkpoint, torch_checkpoint
from supcon_tf.presets import XENT_FLAGS
from supcon_tf.data import decoding, records, sources
from supcon_tf.training import checkpoints, run as run_lib, signals
from supcon_tf.training.errors import (
    LostWorkersError, NonFiniteLossError, UnreadableCheckpointError)

# Class counts of the datasets an official run names with --input_fn.
NUM_CLASSES = {'cifar10': 10, 'cifar100': 100, 'imagenet2012': 1000,
               'tfrecord': records.RECORD_CLASSES}


LOG_FILE = 'log.txt'


class PlainFormatter(pylogging.Formatter):
  """The message alone; warnings and errors say so. On a terminal the line
  first clears the progress bar it would otherwise be written after."""

  def format(self, record):
    message = record.getMessage()
    if record.levelno >= pylogging.WARNING:
      message = f'{record.levelname.lower()}: {message}'
    if record.exc_info:
      message += '\n' + self.formatException(record.exc_info)
    return ('\r\x1b[K' if sys.stderr.isatty() else '') + message


class _ModelDirLog(pylogging.Handler):
  """Appends absl's full log lines to model_dir/log.txt from the moment the
  run has made model_dir (what came before waits in memory): a run that
  stops on bad input leaves nothing behind."""

  def __init__(self, model_dir):
    super().__init__(pylogging.INFO)
    self.path = os.path.join(model_dir, LOG_FILE)
    self.setFormatter(logging.PythonFormatter())
    self.waiting = []
    self.stream = None

  def emit(self, record):
    try:
      line = self.format(record) + '\n'
      if self.stream is None:
        if not os.path.isdir(os.path.dirname(self.path)):
          self.waiting = (self.waiting + [line])[-1000:]
          return
        self.stream = open(self.path, 'a')
        self.stream.writelines(self.waiting)
        self.waiting = []
      self.stream.write(line)
      self.stream.flush()
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


def log_file(model_dir):
  """Sends the run's log to model_dir/log.txt, in absl's format."""
  pylogging.getLogger().addHandler(_ModelDirLog(model_dir))


def main(kind, argv):
  """Runs `kind`: 'supcon' (stage 1 then 2), 'classifier' (stage 2 on the
  stage-1 run in --model_dir) or 'cross_entropy' (the baseline)."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  if not supcon_flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.INFO)
    # Lines for a person, in the progress bar's style; --verbosity keeps
    # absl's format (time, file, line), which the log file always has.
    logging.get_absl_handler().setFormatter(PlainFormatter())
  try:
    if kind == 'classifier':
      base = supcon_flags.saved_config(supcon_flags.FLAGS.model_dir)
      config = supcon_flags.config_from_flags(base=base)
    else:
      # The cross-entropy baseline: the official XENT flag group.
      defaults = XENT_FLAGS if kind == 'cross_entropy' else None
      config = supcon_flags.config_from_flags(defaults)
    run_lib.check_config(config)
  except ValueError as error:
    # A bad flag or value: nothing read or written.
    supcon_flags.fail(argv, error)
  # Ctrl-C and SIGTERM (a cluster's notice before preemption) set a flag
  # (apps.py installs the handlers) that the run reads where it can stop
  # cleanly: the stage checkpoints and the run exits with one line.
  program = os.path.basename(argv[0])
  log_file(config.model_dir)

  def run():
    signals.check('before the run started', 'nothing was written')
    return run_lib.run(config, stage_indices=(2,) if kind == 'classifier'
                       else (1, 2))

  def corrupt_line(error):
    # Data found bad outside a training step (evaluation, the kNN monitor).
    if isinstance(error, tf.errors.OpError):
      return decoding.corrupt_data_message(error)
    return None

  # A dataset (sources.DataError is a ValueError), a held model_dir or a
  # setting found wrong once the run started (what a Config alone cannot
  # tell) is one line.
  results = supcon_flags.run_reported(
      argv, run, (LostWorkersError, UnreadableCheckpointError,
                  NonFiniteLossError, files.WriteError,
                  decoding.CorruptDataError), corrupt_line)
  shown = {k: results[k] for k in (
      'test_top1', 'test_top5', 'val_top1', 'val_top5', 'knn_val_top1',
      'eval_split', 'stage_1_steps',
      'stage_2_steps', 'global_step', 'wall_seconds') if k in results}
  print(json.dumps(shown, indent=2))
  where = os.path.join(config.model_dir, run_lib.RESULTS_FILE)
  print(supcon_flags.result_line(results, config, where))
  # Too late to stop anything: a signal now or during the teardown says so,
  # with the status it asks for.
  sys.stdout.flush()
  signals.finished(f'{program}: {{signal}} after the run had finished; its '
                   f'results are in {where}.')


def _converter_config(argv, defaults=None):
  """The converters' Config from their flags over `defaults` (a bad one:
  one line, exit 2)."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.INFO)
  try:
    return supcon_flags.config_from_flags(defaults)
  except ValueError as error:
    supcon_flags.fail(argv, error)


def convert_official(argv):
  """bin/convert_official.py: an official checkpoint -> this project's
  checkpoint (model_dir/converted), config.json and SavedModel
  (model_dir/export), for the model the run's official flags describe."""
  flags = supcon_flags.FLAGS
  config = _converter_config(argv)
  if not config.model_dir:
    raise app.UsageError('--model_dir is required.')
  num_classes = flags.num_classes or NUM_CLASSES.get(
      sources.OFFICIAL_NAMES.get(config.input_fn, config.input_fn))
  if config.input_fn == 'cifar100' and config.label_type == 'coarse':
    num_classes = flags.num_classes or 20
  if not num_classes:
    raise app.UsageError(f'The class count of --input_fn={config.input_fn} is '
                         'not known here: give --num_classes.')
  model = run_lib.build_model(config.model, num_classes)
  model(tf.zeros([1, config.image_size, config.image_size, 3]))
  try:
    restored = official.restore_official(
        model, flags.checkpoint,
        ignore_missing=config.ignore_missing_checkpoint_vars)
    mean_std = run_lib.normalization(config)
  except ValueError as error:
    # A checkpoint that does not fit: nothing written.
    supcon_flags.fail(argv, error)
  os.makedirs(config.model_dir, exist_ok=True)
  files.write_text(os.path.join(config.model_dir, run_lib.CONFIG_FILE),
                   config.to_json())
  checkpoint = tf.train.Checkpoint(model=model).write(
      os.path.join(config.model_dir, 'converted', 'ckpt'))
  export = export_lib.export_saved_model(
      model, os.path.join(config.model_dir, 'export'), mean_std,
      config.image_size, train_batch_norm=config.batch_norm_training)
  print(f'{len(restored)} variables from '
        f'{official.checkpoint_file(flags.checkpoint)}; checkpoint '
        f'{checkpoint}, SavedModel {export}.')


def convert_seed(argv, checkpoint, state):
  """bin/convert_seed.py: a checkpoint of the seed's train.py (already read:
  `checkpoint`, its `state` dict) -> a finished stage 1 in model_dir/stage_1
  (marked converted: bin/train_classifier.py continues from it, the training
  apps do not train it again), config.json and the SavedModel."""
  flags = supcon_flags.FLAGS
  config = _converter_config(argv)
  num_classes = flags.num_classes or seed_checkpoint.num_classes(state)
  if not num_classes:
    supcon_flags.fail(argv, f'{flags.checkpoint} has no classifier '
                      '(linear.weight): give --num_classes.')
  facts = {k: checkpoint[k] for k in ('epoch', 'acc', 'avg_loss')
           if isinstance(checkpoint, dict) and k in checkpoint}
  _convert_pytorch(argv, config, num_classes, 'seed', facts,
                   lambda model: seed_checkpoint.restore_seed(
                       model, flags.checkpoint, state=state,
                       ignore_missing=config.ignore_missing_checkpoint_vars))


def convert_torch(argv, checkpoint, state, layout):
  """bin/convert_torch.py: a SupContrast or torchvision-layout checkpoint
  (already read: `checkpoint`, its `state` without `module.`, its `layout`)
  -> a finished stage 1, config.json and the SavedModel, as convert_seed.
  The model is the file's; the data fields come from the file's saved
  options under the preset and flags."""
  flags = supcon_flags.FLAGS
  options = torch_checkpoint.options_of(checkpoint)
  config = _converter_config(
      argv, torch_checkpoint.data_fields(layout, options))
  model = torch_checkpoint.model_fields(layout)
  explicit = supcon_flags.explicit_flags()
  clashing = sorted(n for n in model if n in explicit and
                    explicit[n] != model[n])
  if clashing:
    supcon_flags.fail(argv, f'{flags.checkpoint} holds {layout.describe()}, '
                      'which sets ' + ', '.join(
                          f'--{n}={model[n]}' for n in clashing) +
                      ': drop those flags.')
  config = dataclasses.replace(config, **model)
  num_classes = flags.num_classes or torch_checkpoint.num_classes_of(
      layout, options)
  if not num_classes:
    supcon_flags.fail(argv, f'{flags.checkpoint} has no classifier and '
                      'names no dataset: give --num_classes.')
  facts = {k: checkpoint[k] for k in ('epoch', 'arch')
           if isinstance(checkpoint, dict) and
           isinstance(checkpoint.get(k), (int, float, str))}
  facts.update({k: options[k] for k in ('model', 'dataset', 'method', 'temp')
                if isinstance(options.get(k), (int, float, str))})
  if flags.classifier_checkpoint:
    facts['classifier'] = os.path.abspath(flags.classifier_checkpoint)
  _convert_pytorch(argv, config, num_classes, layout.code, facts,
                   lambda built: torch_checkpoint.restore_torch(
                       built, layout, state, flags.checkpoint,
                       config.ignore_missing_checkpoint_vars))


def _convert_pytorch(argv, config, num_classes, code, facts, restore):
  """The converters of PyTorch files: the model, `restore(model)` (a
  ValueError: nothing written), then model_dir/stage_1 marked converted,
  config.json and the SavedModel."""
  flags = supcon_flags.FLAGS
  try:
    run_lib.check_config(config)
  except ValueError as error:
    supcon_flags.fail(argv, error)
  directory = os.path.join(config.model_dir, 'stage_1')
  if (tf.train.latest_checkpoint(directory) and
      not checkpoints.converted_from(directory)):
    supcon_flags.fail(argv, f'{directory} holds a stage 1 trained here; '
                      'convert into another --model_dir.')
  model = run_lib.build_model(config.model, num_classes)
  model(tf.zeros([1, config.image_size, config.image_size, 3]))
  try:
    restored = restore(model)
    mean_std = run_lib.normalization(config)
  except ValueError as error:
    # A checkpoint that does not fit: nothing written.
    supcon_flags.fail(argv, error)
  os.makedirs(directory, exist_ok=True)
  files.write_text(os.path.join(config.model_dir, run_lib.CONFIG_FILE),
                   config.to_json())
  # The mark first: a checkpoint without it would be a stage 1 at step 0.
  files.write_text(
      os.path.join(directory, checkpoints.CONVERTED_FILE), json.dumps(
          {'checkpoint': os.path.abspath(flags.checkpoint), 'code': code,
           **facts}, indent=2))
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
  saved = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model, step=step), directory,
      max_to_keep=1).save(checkpoint_number=0)
  export = export_lib.export_saved_model(
      model, os.path.join(config.model_dir, 'export'), mean_std,
      config.image_size, train_batch_norm=config.batch_norm_training)
  told = ', '.join(f'{k} {v}' for k, v in facts.items())
  then = ('the classifier stage, then the evaluation' if config.stage_2_epochs
          else 'the evaluation')
  print(f'{len(restored)} tensors from {flags.checkpoint}'
        f'{f" ({told})" if told else ""}; stage 1 {saved}, SavedModel '
        f'{export}. Next: bin/train_classifier.py --model_dir='
        f'{config.model_dir} ({then}).')
