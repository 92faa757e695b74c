"""A stage's checkpoints: saved and restored (`StageCheckpoint`, the chief's
and the other workers' directories), what a failed save leaves removed, the
newest readable one restored, the marker of a stage converted from another
code's checkpoint, and the line of a TensorFlow error that names the
cause."""
import contextlib
import json
import os
import re
import shutil

import tensorflow as tf
from absl import logging

from supcon_tf import files
from supcon_tf.training.errors import UnreadableCheckpointError


def remove_partial_checkpoint(directory, number):
  """What a failed save of checkpoint `number` left: its temporary folder
  and any files of its prefix (the `checkpoint` index still names the
  previous one)."""
  prefix = os.path.join(directory, f'ckpt-{number}')
  for path in tf.io.gfile.glob(prefix + '.*') + tf.io.gfile.glob(
      prefix + '_temp*'):
    with contextlib.suppress(OSError, tf.errors.OpError):
      (tf.io.gfile.rmtree if tf.io.gfile.isdir(path) else
       tf.io.gfile.remove)(path)


CONVERTED_FILE = 'converted.json'
# A stage's figures (figures.StageFigures) in its checkpoints.
FIGURES_KEY = 'figures/.ATTRIBUTES/VARIABLE_VALUE'


def converted_from(directory):
  """What a stage directory's checkpoint was converted from ({'checkpoint':
  path, ...}, written by the converters), or None for a stage trained
  here."""
  path = os.path.join(directory, CONVERTED_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def cause(error):
  """The line of a TensorFlow error that says what went wrong."""
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  for line in lines:
    if re.search(r'unavailable|deadline|abort|reset|is down|failed|corrupt|'
                 r'truncat|data loss|space|too large|quota|denied', line,
                 re.IGNORECASE) and not (
                     line.startswith('[[')):
      return line[:200]
  return lines[0][:200] if lines else 'no detail'


def restore_readable(checkpoint_for, directory):
  """Restores the newest checkpoint of `directory` that reads into
  `checkpoint_for(path)` (a tf.train.Checkpoint); returns its path (None
  without checkpoints). A truncated or corrupt one is skipped with a warning
  naming it; if none reads, an error names them. Nothing is deleted."""
  state = tf.train.get_checkpoint_state(directory)
  paths = list(state.all_model_checkpoint_paths) if state else []
  if state and state.model_checkpoint_path not in paths:
    paths.append(state.model_checkpoint_path)
  failed = []
  for path in reversed(paths):
    try:
      checkpoint_for(path).restore(path).assert_existing_objects_matched()
      return path
    except (tf.errors.OpError, ValueError, AssertionError, IndexError,
            OSError) as error:
      logging.warning('%s is unreadable (%s); trying the one before.', path,
                      cause(error))
      failed.append(path)
  if failed:
    raise UnreadableCheckpointError(
        f'No readable checkpoint in {directory} (tried {", ".join(failed)}); '
        'nothing was deleted.')
  return None


class StageCheckpoint:
  """A stage's checkpoint: `objects` (model, optimizer, step, ...) and the
  stage's `figures` (a `StageFigures`) saved under `directory` by a
  `tf.train.CheckpointManager`. A worker other than the chief saves to its
  own `save_directory` (tf.distribute's rule), removed after each save;
  every worker restores the chief's."""

  def __init__(self, name, directory, save_directory, chief, max_to_keep,
               keep_every_hours, figures, **objects):
    self.name = name
    self.directory = directory
    self.chief = chief
    self.figures = figures  # A figures.StageFigures.
    self.last_saved = 0  # The step of the last checkpoint saved or restored.
    self.figures_variable = tf.Variable(
        figures.values(), dtype=tf.float64, trainable=False, name='figures')
    self.checkpoint = tf.train.Checkpoint(figures=self.figures_variable,
                                          **objects)
    # For checkpoints written before the figures were kept, or with figures
    # of another length: they resume, their figures unknown.
    self.without_figures = tf.train.Checkpoint(**objects)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory if chief else save_directory,
        max_to_keep=max_to_keep,
        keep_checkpoint_every_n_hours=keep_every_hours)

  def _checkpoint_for(self, path):
    shapes = dict(tf.train.list_variables(path))
    if shapes.get(FIGURES_KEY) == [len(self.figures.KEYS)]:
      return self.checkpoint
    return self.without_figures

  def restore(self):
    """Restores the newest readable checkpoint (`restore_readable`) and the
    figures it holds; its path, or None."""
    path = restore_readable(self._checkpoint_for, self.directory)
    if path and self._checkpoint_for(path) is self.checkpoint:
      self.figures.load(self.figures_variable.numpy())
    return path

  def latest(self):
    """The chief's newest checkpoint, or None."""
    return tf.train.latest_checkpoint(self.directory)

  def kept(self):
    """The last checkpoint written here, for an error message."""
    return self.manager.latest_checkpoint or 'none yet'

  def save(self, number):
    """Writes checkpoint `number`; a failed write leaves nothing of it and
    is a WriteError naming the checkpoint kept."""
    self.last_saved = number
    self.figures_variable.assign(self.figures.values())
    try:
      self.manager.save(checkpoint_number=number)
    except (tf.errors.OpError, OSError) as error:
      remove_partial_checkpoint(self.manager.directory, number)
      raise files.WriteError(
          f'{self.name}: could not write checkpoint {number} in '
          f'{self.manager.directory} ({cause(error)}); the previous one is '
          f'intact: {self.kept()}. Free space and run the same command to '
          'resume.') from error
    if not self.chief:
      shutil.rmtree(self.manager.directory, ignore_errors=True)
      try:  # The shared parent, once no worker uses it.
        os.rmdir(os.path.dirname(self.manager.directory))
      except OSError:
        pass
