"""The distributed training loop every stage runs.

`strategy.run` of one step (XLA-compiled with `jit_compile`) inside a
`tf.function` that runs `steps_per_loop` steps per call. Per-replica losses
are sums over the replica's examples divided by the global batch, so the
optimizer's all-reduce (a sum) gives the global mean. Each stage has its own
`tf.train.CheckpointManager` under `model_dir/<stage>`; a checkpoint is
written every `save_interval_steps` steps, at every epoch end, on Ctrl-C,
and never after a non-finite loss. A rerun resumes from the latest one with
the same batches it would have seen. On several workers every worker
restores the chief's checkpoint and saves with it (the others to a
temporary directory, removed at once: tf.distribute's rule), and only the
chief writes summaries.
"""
import contextlib
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from supcon_tf import analysis
from supcon_tf.data import augment, decoding, epochs, pipeline
from supcon_tf.models import layers
from supcon_tf.training import checkpoints, evaluation, optimizers, precision
from supcon_tf.training import knn, signals, stages, summaries
from supcon_tf.training import figures as figures_lib
from supcon_tf.training import memory as memory_lib
from supcon_tf.training import objective as objective_lib
from supcon_tf.training import step as step_lib
from supcon_tf.training.checkpoints import converted_from
from supcon_tf.training.errors import LostWorkersError, NonFiniteLossError
from supcon_tf.training.signals import Interrupted

# What a collective raises when a peer dies or does not answer in time.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.CancelledError, tf.errors.AbortedError)


class Trainer:
  """Runs stages on one model under one strategy."""

  def __init__(self, config, strategy, model, source, mean_std, chief=True):
    self.config = config
    self.chief = chief
    self.strategy = strategy
    self.model = model
    self.source = source
    self.mean_std = mean_std
    self.jit_compile = precision.use_jit(config, strategy)
    self.train_split = source.split('train')
    self.classes_per_batch = epochs.sampler_classes(
        config.sampler, config.classes_per_batch, self.train_split)
    # Class-balanced batches come in whole epochs (the pipeline drops the
    # rest of each), so their steps are counted that way.
    self.epoch_remainder = ('drop' if self.classes_per_batch else
                            config.epoch_remainder)
    self.steps_per_epoch = epochs.steps_per_epoch(
        len(self.train_split), config.batch_size, self.epoch_remainder)
    self._forward = {}  # Eval steps by output keys, traced once each.
    self._contrast_state = {}  # Of each stage: contrast_state.
    local_batch = config.batch_size // strategy.num_replicas_in_sync
    if config.micro_batch_size and local_batch % config.micro_batch_size:
      raise ValueError(
          f'--micro_batch_size={config.micro_batch_size} does not divide the '
          f'per-replica batch ({config.batch_size} over '
          f'{strategy.num_replicas_in_sync} replicas: {local_batch}).')
    if (0 < config.micro_batch_size < local_batch and
        config.use_global_batch_norm and
        strategy.num_replicas_in_sync > 1 and
        not isinstance(strategy, tf.distribute.TPUStrategy)):
      # Mirrored and multi-worker all-reduce through merge_call, which
      # TensorFlow refuses inside the loop over chunks.
      raise ValueError(
          '--micro_batch_size with --use_global_batch_norm on several '
          'replicas: this strategy cannot all-reduce BatchNorm statistics '
          'inside the loop over chunks; add --use_global_batch_norm=false '
          '(each chunk normalised with its own statistics).')

  # --- one stage ---------------------------------------------------------------

  def restore_finished(self, stage):
    """Loads the model as `stage` left it; its training must be complete."""
    if self._restore_converted(stage):
      return
    directory = os.path.join(self.config.model_dir, stage.name)
    latest = tf.train.latest_checkpoint(directory)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    total = stages.stage_steps(stage, self.config, self.steps_per_epoch)
    if latest:
      tf.train.Checkpoint(model=self.model, step=step).read(
          latest).expect_partial()
    if int(step.numpy()) < total:
      raise ValueError(
          f'{stage.name} has not finished in {directory} ('
          f'{int(step.numpy())} of {total} steps); run it first '
          '(bin/train_supcon.py).')

  def _restore_converted(self, stage):
    """Loads `stage` when it was converted from another code's checkpoint
    (`converted_from`: finished, never trained here); whether it was."""
    directory = os.path.join(self.config.model_dir, stage.name)
    source = converted_from(directory)
    latest = tf.train.latest_checkpoint(directory)
    if not (source and latest):
      return False
    tf.train.Checkpoint(model=self.model).read(latest).expect_partial()
    logging.info('%s: converted from %s (trained elsewhere); not trained '
                 'here', stage.name, source['checkpoint'])
    return True

  def run_stage(self, stage):
    """Trains `stage` to its last step (resuming from its checkpoint); returns
    {'steps', 'loss', 'seconds'} and, when monitored, 'knn_val_top1'. A
    stage converted from another code's checkpoint (`converted_from`) is
    finished: it is loaded, not trained."""
    config = self.config
    total = stages.stage_steps(stage, config, self.steps_per_epoch)
    figures = figures_lib.StageFigures(total)
    if self._restore_converted(stage):
      return figures.result
    optimizer, variables, step = self.stage_optimizer(stage)
    saved = self._stage_checkpoint(stage, optimizer, step, figures)
    start = saved.last_saved = int(step.numpy())
    # As earlier calls left them: a finished stage reports them as they are.
    result = figures.result
    if start >= total:
      logging.info('%s: already finished (%d steps)', stage.name, total)
      return result
    views = stages.views_for(stage, config)
    dataset = self._train_batches(views, start)
    loop = self.make_loop(stage, optimizer, variables, step)
    log = summaries.StageLog(stage, config, total, start, self.chief, views,
                             self._collapse_watch(stage, views, start))
    layers.freeze_moving_statistics(self.model,
                                    not stage.update_encoder_batch_norm)
    figures.start_clock()
    try:
      with self._stage_errors(stage, step, total, saved):
        iterator = iter(dataset)
        while int(step.numpy()) < total:
          # A signal is a flag (signals.py), read here between calls.
          signals.check('between steps')
          current = int(step.numpy())
          # Summaries are written after each call.
          count = min(config.steps_per_loop, config.summary_interval_steps,
                      self._next_epoch_end(current) - current,
                      total - current)
          tick = time.perf_counter()
          metrics = {k: float(v) for k, v in loop(
              iterator, tf.constant(count, tf.int32)).items()}
          seconds, current = time.perf_counter() - tick, int(step.numpy())
          if not np.isfinite(metrics['loss']):
            raise NonFiniteLossError(
                f'{stage.name}: the loss became {metrics["loss"]} by step '
                f'{current}; stopped. The last good checkpoint is kept: '
                f'{saved.kept()}.')
          log.called(current, metrics, count, seconds,
                     float(optimizer.learning_rate), result)
          self._after_call(log, saved, current, total, metrics, result)
          if signals.budget_spent() and current < total:
            raise signals.BudgetSpent('')
    finally:
      layers.freeze_moving_statistics(self.model, False)
      log.close()
    # The seconds as the last checkpoint keeps them: a call that finds the
    # stage finished reports the same.
    return result

  def _after_call(self, log, saved, current, total, metrics, result):
    """After a loop call that ended at step `current`: the collapse watch,
    at an epoch's end the kNN monitor, then the checkpoint, which keeps
    their figures (a monitor that fails still leaves it written)."""
    epoch_end = current == self._next_epoch_end(current - 1)
    epoch = self._epoch_of(current)
    log.watched(epoch, epoch_end, metrics, result)
    save = (epoch_end or current == total or
            current - saved.last_saved >= self.config.save_interval_steps)
    try:
      if log.knn_due(epoch, epoch_end, current == total):
        log.knn(current, epoch, self.knn_monitor(), result)
    finally:
      if save:
        saved.save(current)

  def _stage_checkpoint(self, stage, optimizer, step, figures):
    """The stage's `checkpoints.StageCheckpoint`, restored from the chief's
    newest readable checkpoint when there is one."""
    config = self.config
    # The memory and key encoder resume with the stage.
    state = self.contrast_state(stage)
    if 'key_encoder' in state:
      state = dict(state, key_encoder=state['key_encoder'].checkpointed())
    saved = checkpoints.StageCheckpoint(
        stage.name, os.path.join(config.model_dir, stage.name),
        None if self.chief else self._worker_directory(), self.chief,
        config.max_checkpoints_to_keep,
        config.keep_checkpoint_interval_secs / 3600., figures,
        model=self.model, optimizer=optimizer, step=step, **state)
    latest = saved.restore()
    if latest:
      logging.info('%s: resumed from %s at step %d', stage.name, latest,
                   int(step.numpy()))
    return saved

  def _train_batches(self, views, start):
    """The distributed training batches of `views` views from `start`."""
    config = self.config
    return pipeline.train_dataset_distributed(
        self.strategy, self.train_split, config.preprocessing,
        config.batch_size, self.mean_std, num_views=views, seed=config.seed,
        start_step=start, epoch_remainder=self.epoch_remainder,
        classes_per_batch=self.classes_per_batch,
        input_threads=config.input_threads or None,
        skip_corrupt=config.skip_corrupt,
        shard_per_host=config.shard_per_host)

  @contextlib.contextmanager
  def _stage_errors(self, stage, step, total, saved):
    """Every way a stage's loop ends early, as one error naming what is
    kept: Ctrl-C, SIGTERM or the time budget (the steps done are saved
    first), a corrupt image found after start-up, a lost worker."""
    try:
      yield
    except KeyboardInterrupt as error:
      # Also a KeyboardInterrupt where no handler is installed (a library
      # caller).
      current = int(step.numpy())
      if current > saved.last_saved:
        saved.save(current)
      latest = saved.latest()
      signum = getattr(error, 'signum', None) or signals.requested()
      kept = (f'checkpoint {latest}' if latest else
              'no checkpoint of this stage yet')
      if isinstance(error, signals.BudgetSpent):
        raise signals.BudgetSpent(
            f'{stage.name}: stopped at step {current} of {total}, the time '
            f'budget spent (--stop_after_minutes='
            f'{self.config.stop_after_minutes:g}); {kept}. Run the same '
            'command to continue.') from None
      raise Interrupted(
          f'{stage.name}: stopped at step {current} ({signals.name(signum)});'
          f' {kept}. Run the same command to resume.',
          *([signum] if signum else [])) from error
    except tf.errors.OpError as error:
      corrupt = decoding.corrupt_data_message(error)
      if corrupt is not None:
        raise decoding.CorruptDataError(
            f'{stage.name}: {corrupt} The last checkpoint is kept: '
            f'{saved.kept()}.') from None
      if (isinstance(error, _PEER_ERRORS) and isinstance(
          self.strategy, tf.distribute.MultiWorkerMirroredStrategy)):
        raise LostWorkersError(
            f'{stage.name}: lost contact with another worker after step '
            f'{int(step.numpy())} ({type(error).__name__}: '
            f'{checkpoints.cause(error)}). Restart every worker with the '
            'same command; the run resumes from '
            f'{saved.latest() or "its start"}.') from error
      raise

  def contrast_state(self, stage):
    """{'memory': memory.CrossBatchMemory, 'key_encoder':
    memory.MomentumEncoder} of a contrastive stage with --memory_size (and
    --momentum_encoder), made once per stage; {} otherwise."""
    config = self.config
    if not config.memory_size or stage.contrastive_loss_weight <= 0:
      return {}
    if stage.name not in self._contrast_state:
      state = {}
      with self.strategy.scope():
        state['memory'] = memory_lib.CrossBatchMemory(
            config.memory_size, stages.views_for(stage, config),
            config.projection_head_layers[-1], config.memory_warmup,
            name='memory')
        if config.momentum_encoder:
          state['key_encoder'] = memory_lib.MomentumEncoder(
              self.model, config.momentum_encoder, name='key_encoder')
      self._contrast_state[stage.name] = state
    return self._contrast_state[stage.name]

  def _collapse_watch(self, stage, views, start):
    """An `analysis.CollapseWatch` of a contrastive stage whose collapsed
    loss is known (else None)."""
    config = self.config
    collapsed = analysis.collapsed_loss(
        views, config.batch_size, config.temperature,
        config.scale_by_temperature, denominator_mode=config.denominator_mode)
    # A memory's samples join the contrast set: another collapsed value.
    if (stage.contrastive_loss_weight <= 0 or collapsed is None or
        config.memory_size):
      return None
    return analysis.CollapseWatch(collapsed, whole_epoch=(
        start == 0 or self._epoch_of(start) != self._epoch_of(start - 1)))

  def stage_optimizer(self, stage):
    """The stage's optimizer (built on what it updates, its schedule on the
    stage's step), those variables, and the step counter."""
    config = self.config
    variables = stages.updated_variables(stage, self.model, config)
    with self.strategy.scope():
      optimizer = optimizers.build_optimizer(
          stage.optimizer, stages.learning_rate(stage, config,
                                                self.steps_per_epoch),
          stage.rmsprop_epsilon,
          lars_adapted=stages.decay_selection(stage, self.model, config))
      if precision.loss_scaled():
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
      optimizer.build(variables)
      step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    return optimizer, variables, step

  def train_on_batches(self, stage, batches, before_step=None):
    """Runs the training step of `stage` once per (views [B, V, H, W, C],
    labels [B]) of `batches`, from the model as it is and a new optimizer,
    as `run_stage` would on those batches (no checkpoint, no summary);
    `before_step(index, optimizer, step)`, when given, runs before each
    (to set the state a step starts from). Returns each step's loss terms
    and the optimizer (its slots)."""
    optimizer, variables, step = self.stage_optimizer(stage)
    loop = self.make_loop(stage, optimizer, variables, step)
    dataset = self.strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_generator(
            lambda: iter(batches), output_signature=(
                tf.TensorSpec([None] + list(batches[0][0].shape[1:])),
                tf.TensorSpec([None], tf.int64))))
    iterator = iter(dataset)
    layers.freeze_moving_statistics(self.model,
                                    not stage.update_encoder_batch_norm)
    terms = []
    try:
      for index in range(len(batches)):
        if before_step is not None:
          before_step(index, optimizer, step)
        terms.append({k: float(v) for k, v in loop(
            iterator, tf.constant(1, tf.int32)).items()})
    finally:
      layers.freeze_moving_statistics(self.model, False)
    return terms, optimizer

  def _worker_directory(self):
    """A non-chief worker's checkpoint directory, removed after each save."""
    resolver = self.strategy.cluster_resolver
    return os.path.join(self.config.model_dir, 'worker_tmp',
                        f'{resolver.task_type}_{resolver.task_id}')

  def _epoch_of(self, step):
    """Whole epochs of examples read by the first `step` steps."""
    return epochs.epoch_of_step(step, len(self.train_split),
                                self.config.batch_size, self.epoch_remainder)

  def _next_epoch_end(self, step):
    """The first step after `step` at which a new epoch has begun: where
    checkpoints and monitors fall (whole epochs of examples read)."""
    return epochs.first_step_of_epoch(
        self._epoch_of(step) + 1, len(self.train_split),
        self.config.batch_size, self.epoch_remainder)

  def stage_step(self, stage, optimizer, variables, step):
    """The `step.Step` of `stage` under this run's config."""
    config = self.config
    replicas = self.strategy.num_replicas_in_sync
    num_views = stages.views_for(stage, config)
    batch_norm_training = config.batch_norm_training
    state = self.contrast_state(stage)
    objective = objective_lib.Objective.for_stage(
        config.loss, stage, config.batch_size, replicas,
        self.source.num_classes, memory=state.get('memory'),
        decayed=stages.decayed_variables(stage, self.model, config))
    # The deferred blur's seed: one sigma per stage and step.
    blur_seed = lambda: tf.stack([
        tf.constant(config.seed, tf.int64) * 3 + stage.index,
        tf.cast(step, tf.int64)])
    train_step = step_lib.Step(
        self.model, variables, optimizer, objective,
        micro_batch_size=config.micro_batch_size,
        # Official: batch statistics in training mode; whether the moving
        # averages move is `freeze_moving_statistics`' switch (run_stage).
        forward_options=dict(
            training=batch_norm_training,
            encoder_training=(batch_norm_training and
                              not stage.encoder_batch_norm_inference)),
        blur_probability=(config.blur_probability
                          if augment.deferred_blur(config) else 0.),
        blur_seed=blur_seed, name=stage.name,
        key_encoder=state.get('key_encoder'))
    train_step.describe_chunks(
        config.batch_size // replicas, num_views,
        config.use_global_batch_norm and replicas > 1)
    return train_step

  def make_loop(self, stage, optimizer, variables, step):
    """The tf.function running `count` steps of `stage`."""
    train_step = self.stage_step(stage, optimizer, variables, step)
    step_fn = train_step.__call__
    if self.jit_compile:
      step_fn = tf.function(step_fn, jit_compile=True)

    def one_step(iterator):
      views, labels = next(iterator)
      terms = self.strategy.run(step_fn, args=(views, labels))
      step.assign_add(1)
      return {k: self.strategy.reduce('SUM', v, axis=None)
              for k, v in terms.items()}

    @tf.function
    def loop(iterator, count):
      # The first step outside the loop gives the sums their structure.
      sums = one_step(iterator)
      for _ in tf.range(count - 1):
        terms = one_step(iterator)
        sums = {k: sums[k] + terms[k] for k in terms}
      return {k: v / tf.cast(count, tf.float32) for k, v in sums.items()}

    return loop

  # --- monitoring and evaluation --------------------------------------------------

  def outputs(self, split_name, keys=('embeddings', 'logits'),
              training_view=False):
    """Model outputs and labels over a split, eval preprocessing; with
    `training_view`, outputs [N, 2, ...] of each example's eval view and a
    training view (the official eval's two views)."""
    config = self.config
    dataset = pipeline.eval_dataset_distributed(
        self.strategy, self.source.split(split_name), config.eval_batch_size,
        self.mean_std, config.image_size,
        eval_crop_method=config.eval_crop_method,
        crop_padding=config.crop_padding,
        training_view=config.preprocessing if training_view else None,
        seed=config.seed)
    keys = tuple(keys)
    if keys not in self._forward:
      self._forward[keys] = evaluation.make_forward(self.model, keys)
    return evaluation.predict(self.strategy, self._forward[keys], dataset)

  def knn_monitor(self):
    """kNN top-1 of validation embeddings against the training embeddings;
    None without a validation split."""
    if 'validation' not in self.source.splits:
      return None
    bank = self.outputs('train')
    queries = self.outputs('validation')
    return knn.knn_accuracy(
        bank['embeddings'], bank['labels'], queries['embeddings'],
        queries['labels'], self.source.num_classes)
