"""absl flags for every `Config` field, with the official flag names.

Enum flags take the official member names in any case (`--stage_1_optimizer=lars`);
list flags take commas (`--projection_head_layers=2048,128`). `--preset` picks a
named preset; flags given on the command line win over it. `--input_fn` is
the official name of `--dataset`; `--mixed_precision` stands for
`--allow_mixed_precision`.
"""
import dataclasses
import typing

from absl import flags

from supcon_tf.config import CHOICES, PRESETS, Config, make_config

FLAGS = flags.FLAGS
# Other names for fields: the official `input_fn`, and a short one.
ALIASES = {'input_fn': 'dataset', 'mixed_precision': 'allow_mixed_precision'}

HELP = {
    'model_dir': 'Directory for checkpoints, summaries, config.json, '
                 'results.json, the export and the plot. Rerun to resume.',
    'preset': 'A named preset: ' + ', '.join(sorted(PRESETS)) + '.',
    'strategy': 'auto (mirrored over several GPUs, else default), default, '
                'mirrored, multi_worker (TF_CONFIG), tpu.',
    'jit_compile': 'XLA-compile the training step (default: on for GPU/TPU, '
                   'off on CPU).',
    'allow_mixed_precision': 'bfloat16 (float16 with loss scaling on GPUs); '
                             'the loss stays float32.',
    'steps_per_loop': 'Training steps per tf.function call.',
    'checkpoint_every_steps': 'Checkpoint interval; also at every epoch end.',
    'knn_every_epochs': 'kNN monitor on the validation split during stage 1 '
                        '(0: off).',
    'dataset': 'cifar10, cifar100, imagenet2012 or another TFDS name, folder, '
               'digits (bundled).',
    'data_dir': 'CIFAR archives, TFDS data, or the folder source root.',
    'label_type': 'cifar100 labels: fine (100) or coarse (20).',
    'validation_fraction': 'Fraction of train held out (seeded) for '
                           'validation and the kNN monitor.',
    'batch_size': 'Global training batch size (examples; each has num_views '
                  'views).',
    'classes_per_batch': 'Class-balanced batches of this many classes (0: '
                         'off).',
    'crop': 'pad (random crop of the padded image), random_resized (SimCLR), '
            'none.',
    'random_crop_padding': 'Padding of the pad crop.',
    'stage_1_min_learning_rate_ratio': 'COSINE ends at base * this (the '
                                       'ResNet-20 recipe uses 1e-3).',
    'stage_2_min_learning_rate_ratio': 'COSINE ends at base * this.',
    'epoch_remainder': 'span (official): batches run across epoch ends, a '
                       'stage is int(epochs * N / batch_size) steps; drop: '
                       "each epoch's partial batch is dropped.",
    'reference_ckpt': 'If set, initialise the parts chosen by the '
                      '--warm_start_* flags from the latest official '
                      'checkpoint in this directory (or this checkpoint).',
    'warm_start_encoder': 'Whether or not to load in the encoder weights from '
                          'the reference checkpoint.',
    'warm_start_projection_head': 'Whether or not to load in the projection '
                                  'head weights from the reference '
                                  'checkpoint.',
    'warm_start_classifier': 'Whether or not to load in the classification '
                             'head weights from the reference checkpoint.',
    'ignore_missing_checkpoint_vars': 'Skip (rather than refuse) variables '
                                      'missing from or mismatched with the '
                                      'reference checkpoint.',
    'batch_norm_in_train_mode': 'Whether to set batch norm to train mode when '
                                'warm starting from a checkpoint.',
    'input_threads': 'Threads for the input pipeline (0: TensorFlow decides).',
    'weight_init': "official, or seed: the seed's ResNet-20 weights "
                   '(kaiming_normal_ convolutions and Linear kernels, '
                   "PyTorch's default biases, a bias on every head layer).",
    'normalization': 'Whose per-channel mean and std whitening uses: the '
                     "dataset's own, or cifar10 / cifar100 / imagenet2012's.",
    'use_batch_norm_weight_decay': 'Weight decay on BatchNorm gamma and beta '
                                   "too (PyTorch SGD's weight_decay).",
    'learning_rate_per_epoch': 'The schedule moves once per epoch, one epoch '
                               "late, as the seed's adjust_learning_rate.",
    'stage_1_update_encoder_batch_norm': 'Official: False keeps BatchNorm '
                                         'on batch statistics but freezes '
                                         'its moving averages.',
    'stage_2_update_encoder_batch_norm': 'Official: False keeps BatchNorm '
                                         'on batch statistics but freezes '
                                         'its moving averages.',
    'stage_1_encoder_batch_norm_inference': "The encoder's BatchNorm in "
                                            'inference mode during the stage.',
    'stage_2_encoder_batch_norm_inference': "The encoder's BatchNorm in "
                                            'inference mode during the stage '
                                            '(the seed presets).',
    'autoaugment_policy': 'cifar10 / imagenet (Cubuk et al. 2019), or '
                          "seed_cifar10 (the seed's variant: magnitudes drawn "
                          'within bins, ndimage geometry, black fill).',
}


def _kind(field):
  """bool, int, float, str or list, from the field's type annotation."""
  hint = field.type
  if typing.get_origin(hint) is typing.Union:
    hint = [a for a in typing.get_args(hint) if a is not type(None)][0]
  return 'list' if hint is tuple else hint.__name__


def define_flags():
  """Defines one flag per Config field (once)."""
  if 'dataset' in FLAGS:
    return
  for field in dataclasses.fields(Config):
    name, default = field.name, field.default
    help_text = HELP.get(name, 'See supcon_tf.config.Config.')
    kind = _kind(field)
    if name in CHOICES:
      flags.DEFINE_enum(name, default, CHOICES[name], help_text,
                        case_sensitive=False)
    elif kind == 'bool':
      flags.DEFINE_bool(name, default, help_text)
    elif kind == 'int':
      flags.DEFINE_integer(name, default, help_text)
    elif kind == 'float':
      flags.DEFINE_float(name, default, help_text)
    elif kind == 'list':
      flags.DEFINE_list(name, [str(v) for v in default], help_text)
    else:
      flags.DEFINE_string(name, default, help_text)
  for alias, name in ALIASES.items():
    flags.DEFINE_alias(alias, name)


def explicit_flags():
  """The Config fields set on the command line."""
  values = {}
  for field in dataclasses.fields(Config):
    if FLAGS[field.name].present:
      values[field.name] = FLAGS[field.name].value
  for alias, name in ALIASES.items():
    if FLAGS[alias].present:
      values[name] = FLAGS[alias].value
  values.pop('preset', None)
  return values


def config_from_flags(defaults=None, base=None):
  """A Config: `base` (a saved config) or the preset, then `defaults`, then
  the flags given on the command line."""
  values = {**(defaults or {}), **explicit_flags()}
  if base is not None:
    saved = dataclasses.asdict(base)
    saved.pop('preset')
    return make_config(base.preset, **{**saved, **values})
  return make_config(FLAGS.preset, **values)
