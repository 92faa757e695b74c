"""The arithmetic of epochs, steps and replicas, with no TensorFlow: steps
per epoch, the examples each epoch reads, the epoch of a step, how a global
batch splits over replicas and input pipelines, and the class-balanced
sampler's batches. The loop, the Keras core and the readers all count with
it."""
import numpy as np

from supcon_tf import enums


def steps_per_epoch(count, batch_size, epoch_remainder='drop'):
  """Global batches per pass over `count` examples: N / batch (a float) with
  'span', the full batches floor(N / batch) with 'drop'."""
  if epoch_remainder not in enums.EPOCH_REMAINDERS:
    raise ValueError(f'epoch_remainder must be one of '
                     f'{", ".join(enums.EPOCH_REMAINDERS)}; got '
                     f'{epoch_remainder!r}.')
  steps = count // batch_size
  if steps < 1:
    raise ValueError(f'global batch size {batch_size} is larger than '
                     f'the split ({count} examples).')
  if epoch_remainder == 'span':
    return count / batch_size
  return steps


def epoch_length(count, batch_size, epoch_remainder='drop'):
  """Examples read from each epoch's permutation of `count`."""
  steps = steps_per_epoch(count, batch_size, epoch_remainder)
  if epoch_remainder == 'span':
    return count
  return steps * batch_size


def epoch_of_step(step, count, batch_size, epoch_remainder='drop'):
  """The epoch (from 0) in which the examples of batch `step` start."""
  return step * batch_size // epoch_length(count, batch_size, epoch_remainder)


def first_step_of_epoch(epoch, count, batch_size, epoch_remainder='drop'):
  """The first batch that starts in `epoch`: epoch ends fall on its step."""
  length = epoch_length(count, batch_size, epoch_remainder)
  return -(-epoch * length // batch_size)


def layout(global_batch_size, input_context):
  """(replicas, per-replica batch, first chunk of this pipeline, chunks)."""
  if input_context is None:
    return 1, global_batch_size, 0, 1
  replicas = input_context.num_replicas_in_sync
  pipelines = input_context.num_input_pipelines
  if global_batch_size % replicas:
    raise ValueError(f'global batch size {global_batch_size} is not '
                     f'divisible by the {replicas} replicas.')
  if replicas % pipelines:
    raise ValueError(f'{replicas} replicas do not split evenly over '
                     f'{pipelines} input pipelines.')
  local = replicas // pipelines
  return (replicas, global_batch_size // replicas,
          input_context.input_pipeline_id * local, local)


def epoch_and_step(step, global_batch_size, length):
  """The epoch in which global batch `step` starts, and its step in it,
  for epochs of `length` examples."""
  epoch = step * global_batch_size // length
  return epoch, step + (epoch * length) // -global_batch_size


def balanced_order(labels, classes_per_batch, batch_size, seed, epoch):
  """An epoch's indices in batches of `classes_per_batch` classes with
  batch_size / classes_per_batch examples each, every batch the same label
  configuration; classes and examples drawn with (seed, epoch)."""
  labels = np.asarray(labels)
  per_class = batch_size // classes_per_batch
  rng = np.random.default_rng([seed, epoch])
  classes = np.unique(labels)
  pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
  used = dict.fromkeys(classes, 0)
  steps = len(labels) // batch_size
  order = np.empty((steps, batch_size), np.int64)
  for step in range(steps):
    batch = []
    for c in rng.choice(classes, classes_per_batch, replace=False):
      pool = pools[c]
      # Cycle through a class; a class smaller than per_class repeats.
      take = np.arange(used[c], used[c] + per_class) % len(pool)
      batch.append(pool[take])
      used[c] += per_class
    order[step] = rng.permutation(np.concatenate(batch))
  return order.reshape(-1)


def sampler_classes(sampler, classes_per_batch, split):
  """The classes per batch of the class-balanced batches `sampler`
  (supcon_tf.enums.SAMPLERS) asks for: None (uniform), classes_per_batch,
  or every class of the split (fixed_configuration)."""
  if sampler not in enums.SAMPLERS:
    raise ValueError(f'sampler must be one of {", ".join(enums.SAMPLERS)}; '
                     f'got {sampler!r}.')
  if sampler == 'fixed_configuration':
    if split.labels is None:
      raise ValueError('--sampler=fixed_configuration needs the labels in '
                       'advance; this split is a stream.')
    return len(np.unique(split.labels))
  return classes_per_batch or None


def check_balanced(split, classes_per_batch, global_batch_size):
  if split.labels is None:
    raise ValueError('classes_per_batch needs the labels in advance; this '
                     'split is a stream.')
  present = len(np.unique(split.labels))
  if not 0 < classes_per_batch <= present:
    raise ValueError(f'classes_per_batch must be in [1, {present}] (the '
                     f'classes present); got {classes_per_batch}.')
  if global_batch_size % classes_per_batch:
    raise ValueError(f'global batch size {global_batch_size} is not '
                     f'divisible by classes_per_batch={classes_per_batch}.')
