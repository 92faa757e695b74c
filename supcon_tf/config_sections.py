"""The config in sections, each taken whole by the code that uses it:
`build_model(config.model, ...)`, the objective and evaluation's loss from
`config.loss`, the dataset from `config.data`, the views from
`config.preprocessing` (a Preprocessing), a stage's fields from
`config.stage_section(i)`.

The flags and `config.json` stay flat, with the official names: `SECTIONS`
is the table from each flat name to its section (every field in exactly
one). A section is a read-only view of the config's values. No
TensorFlow."""
import types

# The flat fields of each section but `preprocessing` (the Preprocessing
# dataclass's fields) and the two stages (`stage_<i>_<name>` of STAGE).
SECTIONS = {
    'run': (
        'mode', 'model_dir', 'hparams', 'preset', 'use_tpu', 'tpu_name',
        'tpu_zone', 'gcp_project', 'master', 'eval_interval_secs',
        'summary_interval_steps', 'save_interval_steps',
        'max_checkpoints_to_keep', 'keep_checkpoint_interval_secs',
        'steps_per_loop', 'stop_after_minutes', 'strategy', 'jit_compile',
        'allow_mixed_precision', 'seed', 'deterministic', 'knn_every_epochs',
        'progress', 'export', 'plot'),
    'data': (
        'input_fn', 'data_dir', 'validation_fraction', 'label_type',
        'num_images', 'label_noise_prob', 'skip_corrupt',
        'require_same_image_size', 'shard_per_host', 'input_threads',
        'batch_size', 'micro_batch_size', 'eval_batch_size', 'num_views',
        'sampler', 'classes_per_batch', 'epoch_remainder', 'apply_whitening',
        'normalization'),
    'model': (
        'resnet_depth', 'resnet_architecture', 'resnet_layout',
        'resnet_width', 'first_conv_kernel_size', 'first_conv_stride',
        'use_initial_max_pool', 'projection_head_layers', 'weight_init',
        'use_projection_batch_norm', 'use_projection_batch_norm_beta',
        'normalize_embedding', 'stop_gradient_before_classification_head',
        'stop_gradient_before_projection_head', 'zero_initialize_classifier',
        'use_global_batch_norm', 'reference_ckpt', 'warm_start_encoder',
        'warm_start_projection_head', 'warm_start_classifier',
        'ignore_missing_checkpoint_vars', 'batch_norm_in_train_mode'),
    'loss': (
        'use_labels', 'temperature', 'scale_by_temperature', 'contrast_mode',
        'summation_location', 'denominator_mode', 'positives_cap',
        'label_smoothing', 'memory_size', 'memory_warmup',
        'momentum_encoder'),
    # Shared by both stages: in each stage's section.
    'stages': ('use_bias_weight_decay', 'use_batch_norm_weight_decay',
               'learning_rate_per_epoch'),
}


# Fields that may change between runs in one model_dir (they do not change
# what is trained); every other field must match the saved config.
RUNTIME_FIELDS = frozenset({
    'mode', 'model_dir', 'preset', 'data_dir', 'strategy', 'jit_compile',
    'steps_per_loop', 'save_interval_steps', 'summary_interval_steps',
    'max_checkpoints_to_keep', 'keep_checkpoint_interval_secs',
    'eval_interval_secs', 'knn_every_epochs', 'progress', 'export', 'plot',
    'eval_batch_size', 'skip_corrupt', 'require_same_image_size',
    'deterministic', 'micro_batch_size', 'stop_after_minutes',
    'input_threads', 'use_tpu', 'tpu_name',
    'tpu_zone', 'gcp_project', 'master', 'shard_per_host',
})


class Section(types.SimpleNamespace):
  """One section's values, by their flat names (a stage's without the
  `stage_<i>_` prefix)."""

  def __setattr__(self, name, value):
    raise AttributeError(f'a config section is read-only: set {name} on the '
                         'Config')


class DataSection(Section):

  def source_options(self):
    """`sources.load_source`'s arguments (all but the seed)."""
    return dict(
        name=self.input_fn, data_dir=self.data_dir,
        validation_fraction=self.validation_fraction,
        label_type=self.label_type, skip_corrupt=self.skip_corrupt,
        require_same_image_size=self.require_same_image_size,
        num_images=self.num_images, label_noise_prob=self.label_noise_prob)


class LossSection(Section):

  def options(self):
    """The contrastive loss's keyword arguments (`losses.contrastive_loss`,
    `evaluation.contrastive_loss`) but the labels."""
    return dict(temperature=self.temperature,
                contrast_mode=self.contrast_mode.lower(),
                summation_location=self.summation_location.lower(),
                denominator_mode=self.denominator_mode.lower(),
                positives_cap=self.positives_cap,
                scale_by_temperature=self.scale_by_temperature)


KINDS = {'data': DataSection, 'loss': LossSection}


def section(config, name):
  """The section `name` of SECTIONS of `config`."""
  return KINDS.get(name, Section)(**{
      field: getattr(config, field) for field in SECTIONS[name]})
