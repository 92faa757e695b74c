"""What each training stage trains, with which loss, optimizer and schedule.

Stage 1 (contrastive) and stage 2 (classifier) read the `stage_1_*` and
`stage_2_*` fields of the config; the cross-entropy baseline is stage 1 with
the loss weights swapped and no stop-gradient before the classifier. Which
parts of the model train follows from the loss weights and stop-gradients:
the projection head with the contrastive loss, the classifier with
cross-entropy, the encoder with whichever loss reaches it.
"""
import types

from supcon_tf.training import optimizers


def stage_from_config(config, index):
  """Stage 1 or 2: its `index`, `name` ('stage_1') and every field of the
  stage schema (`supcon_tf.config.STAGE`) under its own name."""
  return types.SimpleNamespace(index=index, name=f'stage_{index}',
                               **config.stage(index))


def trained_parts(stage, model, config):
  """The model parts whose variables this stage updates."""
  contrastive = stage.contrastive_loss_weight > 0
  cross_entropy = stage.cross_entropy_loss_weight > 0
  encoder = ((contrastive and not config.stop_gradient_before_projection_head)
             or (cross_entropy and
                 not config.stop_gradient_before_classification_head))
  parts = []
  if encoder:
    parts.append(model.encoder)
  if contrastive:
    parts.append(model.projection_head)
  if cross_entropy:
    parts.append(model.classification_head)
  if not parts:
    raise ValueError(f'{stage.name} trains nothing: both loss weights are 0.')
  return parts


def decay_selection(stage, model, config):
  """Kernels (and biases, with use_bias_weight_decay, and BatchNorm gamma and
  beta, with use_batch_norm_weight_decay) of the parts whose weight-decay
  switch is on, whatever the coefficient: the official exclude list. As
  official, the L2 term reaches a named part whether or not a loss trains it
  (stage 2 decays a frozen encoder whose switch is on); LARS, which the
  official code gives no L2 term, sees only the trained parts."""
  switches = ((model.encoder, stage.use_encoder_weight_decay),
              (model.projection_head, stage.use_projection_head_weight_decay),
              (model.classification_head,
               stage.use_classification_head_weight_decay))
  parts = [part for part, on in switches if on]
  if stage.optimizer == 'LARS':
    trained = [id(p) for p in trained_parts(stage, model, config)]
    parts = [p for p in parts if id(p) in trained]
  return optimizers.decayed_variables(parts, config.use_bias_weight_decay,
                                      config.use_batch_norm_weight_decay)


def decayed_variables(stage, model, config):
  """The variables this stage's weight decay reaches (none at 0)."""
  if stage.weight_decay <= 0:
    return []
  return decay_selection(stage, model, config)


def updated_variables(stage, model, config):
  """What the optimizer updates: the trained parts' variables, then the
  decayed variables of parts no loss reaches."""
  variables = [v for p in trained_parts(stage, model, config)
               for v in p.trainable_variables]
  seen = {id(v) for v in variables}
  return variables + [v for v in decayed_variables(stage, model, config)
                      if id(v) not in seen]


def views_for(stage, config):
  """Views per example: the configured number for the contrastive loss,
  else one (cross-entropy needs no second view)."""
  return config.num_views if stage.contrastive_loss_weight > 0 else 1


def stage_steps(stage, config, steps_per_epoch):
  """Steps of `stage`, as official: stage 1 int(epochs_1 * steps_per_epoch),
  stage 2 up to int((epochs_1 + epochs_2) * steps_per_epoch), where
  steps_per_epoch may be fractional (N / batch)."""
  start = _start_epoch(stage, config)
  return (int((start + stage.epochs) * steps_per_epoch) -
          int(start * steps_per_epoch))


def _start_epoch(stage, config):
  return 0 if stage.index == 1 else config.stage_1_epochs


def learning_rate(stage, config, steps_per_epoch):
  """The schedule on the stage's own step count: base rate * batch / 256,
  warmup, then the decay, then 0, as the official
  build_learning_rate_schedule on the global step (whose step counts it
  truncates: int(epochs * steps_per_epoch) from the run's start)."""
  start = _start_epoch(stage, config)
  offset = int(start * steps_per_epoch)
  decay_start = int((start + stage.warmup_epochs) * steps_per_epoch) - offset
  return optimizers.WarmupDecay(
      peak=stage.base_learning_rate * config.batch_size / 256.,
      decay_steps=int(steps_per_epoch * (stage.epochs - stage.warmup_epochs)),
      warmup_steps=int(stage.warmup_epochs * steps_per_epoch),
      decay_start=decay_start,
      decay=stage.learning_rate_decay, min_ratio=stage.min_learning_rate_ratio,
      decay_rate=stage.decay_rate,
      boundaries=[int(b * steps_per_epoch)
                  for b in stage.decay_boundary_epochs],
      steps_per_decay=stage.epochs_per_decay * steps_per_epoch,
      steps_per_epoch=steps_per_epoch if config.learning_rate_per_epoch
      else None)
