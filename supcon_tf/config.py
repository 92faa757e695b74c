"""One typed configuration for a run: the schema.

The schema follows the official hparams: `Preprocessing` (what the training
and evaluation views need; the augmentation takes it, or a Config), `STAGE`
(one training stage, generated twice as the `stage_1_*` and `stage_2_*`
fields), and the rest of `Config`. Every field is defined once, with its
default and a one-line help (the official help where the official code has
the setting); `supcon_tf.flags` turns each into an absl flag of the same
name. The defaults are the official defaults. Enum-valued fields hold the
official member names (`'MOMENTUM'`, `'ALL_VIEWS'`, ...; see
`supcon_tf.enums`). Named presets over these defaults are in
`supcon_tf.presets`; the checks are `config_checks`', the sections
(`config.data`, `.model`, `.loss`, ...) `config_sections`'. No TensorFlow.
"""
import dataclasses
import json
from typing import Optional

from supcon_tf import config_checks, config_sections, enums
from supcon_tf.config_checks import CHOICES  # noqa: F401 (its old place)
from supcon_tf.config_sections import RUNTIME_FIELDS


def _field(default, help_text):
  return dataclasses.field(default=default, metadata={'help': help_text})


@dataclasses.dataclass
class Preprocessing:
  """The training views and the evaluation view."""
  image_size: int = _field(
      224, 'The side length, in pixels, of the preprocessing outputs, '
      'irrespective of the natural size of the images.')
  augmentation_type: str = _field(
      'AUTOAUGMENT', 'Augmentation type: ' +
      ', '.join(enums.AUGMENTATION_TYPES) + '.')
  augmentation_magnitude: float = _field(
      0.5, 'Strength parameter of the augmentation. Equivalent to m parameter '
      'of RandAugment or s parameter in SimCLR augmentation.')
  crop: str = _field(
      'random_resized', 'The training crop: random_resized (a random crop '
      'covering crop_area_range of the image, resized), pad (a random crop '
      'of the image padded by random_crop_padding), none.')
  random_crop_padding: int = _field(4, 'Padding of the pad crop.')
  flip: bool = _field(True, 'Random horizontal flip of the training views.')
  crop_area_range: tuple = _field(
      (0.08, 1.0), 'The range of allowed values for the fraction of the '
      'original pixels that need to be included in any crop.')
  warp_probability: float = _field(
      0., 'The probability of warping (SIMCLR and STACKED_RANDAUGMENT views, '
      'after grayscale): official hparams wp.')
  blur_probability: float = _field(
      0.5, 'The probability of blurring as part of the data augmentation, if '
      '`augmentation_type` includes a blur stage. 0 disables blurring.')
  defer_blurring: bool = _field(
      True, 'If True and `augmentation_type` applies blurring and '
      '`blur_probability` is greater than 0, the blur is applied on the batch '
      'in the training step rather than in the input pipeline.')
  use_pytorch_color_jitter: bool = _field(
      False, 'Whether to use a color jittering algorithm that aims to '
      'replicate `torchvision.transforms.ColorJitter` rather than the standard '
      'TensorFlow color jittering. Only used for augmentation_types SIMCLR '
      'and STACKED_RANDAUGMENT.')
  autoaugment_policy: str = _field(
      'v0', "AUTOAUGMENT's policy: v0 (official: TF-Models' policy v0), "
      "TF-Models' simple, reduced_cifar10, svhn, reduced_imagenet; cifar10 / "
      "imagenet (Cubuk et al. 2019, PIL-exact ops); seed_cifar10 (the seed's "
      'variant).')
  randaugment_ops: str = _field(
      'tf_models', "RANDAUGMENT's and STACKED_RANDAUGMENT's ops: tf_models "
      "(official: TF-Models' op set) or pil (PIL-exact ops).")
  posterize_bits_fix: bool = _field(
      False, "Posterize keeps torchvision's 8 - round(level * 4 / 10) bits "
      "rather than the policy's.")
  randaugment_layers: int = _field(2, 'RandAugment ops per image.')
  cutout_size: int = _field(0, 'Side of a Cutout square after the '
                            'augmentation (0: none).')
  eval_crop_method: str = _field(
      'RESIZE_THEN_CROP', 'The strategy for obtaining the desired square '
      'crop in eval mode: ' + ', '.join(enums.EVAL_CROP_METHODS) + '.')
  crop_padding: int = _field(
      32, 'For eval_crop_methods other than IDENTITY, this value is used to '
      'determine how to perform the central crop.')

  def __post_init__(self):
    config_checks.check_preprocessing(self)


# One training stage: (name, type, help, stage-1 default, stage-2 default).
STAGE = (
    ('epochs', int, 'The number of epochs for stage {i} of training.', 700,
     200),
    ('warmup_epochs', float, 'The number of epochs over which warmup is '
     'applied to the learning rate for stage {i} of training.', 12., 12.),
    ('base_learning_rate', float, 'The base learning rate used for stage {i} '
     'of training for a batch size of 256. The true learning rate is '
     'multiplied by batch_size/256.', 0.3, 0.05),
    ('optimizer', str, 'The optimizer to use for stage {i} of training: ' +
     ', '.join(enums.OPTIMIZERS) + '.', 'RMSPROP', 'RMSPROP'),
    ('learning_rate_decay', str, 'The decay type for the stage {i} learning '
     'rate: ' + ', '.join(enums.DECAY_TYPES) + '.', 'COSINE', 'COSINE'),
    ('min_learning_rate_ratio', float, 'COSINE decays to the base rate times '
     'this in stage {i} (official: 0).', 0., 0.),
    ('decay_rate', float, 'The rate of learning rate decay. Only used for '
     'learning_rate_decay types PIECEWISE_LINEAR and EXPONENTIAL.', 0.1, 0.1),
    ('decay_boundary_epochs', tuple, 'The epochs at which decay occurs when '
     'using piecewise-linear learning rate decay.', (30, 60, 80, 90),
     (30, 60, 80, 90)),
    ('epochs_per_decay', float, 'The learning rate decays by a factor of '
     '`decay_rate` every `epochs_per_decay` when using exponential learning '
     'rate decay.', 2.4, 2.4),
    ('weight_decay', float, 'The weight applied to weight decay during stage '
     '{i} of training.', 0., 0.),
    ('contrastive_loss_weight', float, 'The weight applied to the contrastive '
     'loss during stage {i} of training.', 1., 0.),
    ('cross_entropy_loss_weight', float, 'The weight applied to the '
     'cross-entropy loss during stage {i} of training.', 0., 1.),
    ('use_encoder_weight_decay', bool, 'Whether to include the encoder in '
     'weight decay during stage {i} of training.', True, True),
    ('use_projection_head_weight_decay', bool, 'Whether to include the '
     'projection head in weight decay during stage {i} of training.', True,
     True),
    ('use_classification_head_weight_decay', bool, 'Whether to include the '
     'classification head in weight decay during stage {i} of training.',
     False, False),
    ('update_encoder_batch_norm', bool, 'Whether encoder batch norm '
     'statistics should be updated during stage {i} of training (False: '
     'batch statistics, frozen moving averages).', True, True),
    ('encoder_batch_norm_inference', bool, "The encoder's BatchNorm in "
     'inference mode (moving statistics) during stage {i}.', False, False),
    ('rmsprop_epsilon', float, 'The epsilon parameter of the RMSProp '
     'optimizer. Only used if `stage_{i}_optimizer` is RMSPROP.', 1.0, 0.001),
)
STAGE_FIELDS = tuple(name for name, *_ in STAGE)

_Stages = dataclasses.make_dataclass(
    '_Stages',
    [(f'stage_{i}_{name}', kind,
      _field(default[i - 1], text.format(i=i)))
     for i in (1, 2) for name, kind, text, *default in STAGE])


@dataclasses.dataclass
class Config(_Stages, Preprocessing):
  """Everything a run needs; the official defaults."""
  # Run (the official launcher's flags first).
  mode: str = _field(
      'train', 'The mode for this job: train, eval (evaluate the checkpoints '
      'of model_dir as they appear, until the last), train_then_eval.')
  model_dir: Optional[str] = _field(
      None, 'Root of the tree containing all files for the current model '
      '(checkpoints, summaries, config.json, results.json, the export). Run '
      'again to resume.')
  hparams: Optional[str] = _field(
      None, 'A serialized hparams string representing the hyperparameters to '
      'use. If not set, fall back to using the individual hyperparameter '
      'flags.')
  preset: Optional[str] = _field(None, 'A named preset (see README).')
  use_tpu: bool = _field(
      True, 'Whether this is running on a TPU: with a TPU named by '
      '--tpu_name or --master (or a local one), the TPU strategy; without '
      'one, the other devices.')
  tpu_name: Optional[str] = _field(
      None, 'The Cloud TPU to use for training: its name or a '
      'grpc://ip.address.of.tpu:8470 url.')
  tpu_zone: Optional[str] = _field(
      None, '[Optional] GCE zone where the Cloud TPU is located in.')
  gcp_project: Optional[str] = _field(
      None, '[Optional] Project name for the Cloud TPU-enabled project.')
  master: Optional[str] = _field(
      None, 'Address of the TensorFlow runtime (a TPU when --use_tpu).')
  eval_interval_secs: int = _field(
      60, 'Time interval between evals: how often --mode=eval looks for a '
      'new checkpoint.')
  summary_interval_steps: int = _field(
      100, 'Number of steps in between logging training summaries.')
  save_interval_steps: int = _field(
      1000, 'Number of steps in between saving model checkpoints (also at '
      'every epoch end).')
  max_checkpoints_to_keep: int = _field(
      5, 'Maximum number of recent checkpoints to keep.')
  keep_checkpoint_interval_secs: float = _field(
      60 * 60 * 1000 * 10,
      'Number of seconds in between permanently retained checkpoints.')
  steps_per_loop: int = _field(
      1000, 'Number of training steps per tf.function call (checkpoints are '
      'taken between calls).')
  stop_after_minutes: float = _field(
      0., 'Stop the run cleanly at the first step boundary after this many '
      'minutes of this call, with a checkpoint (exit status 75); the same '
      'command continues it. 0: no time budget.')
  strategy: str = _field(
      'auto', 'auto (a TPU with --use_tpu and one named, else mirrored over '
      'several GPUs, else default), default, mirrored, multi_worker '
      '(TF_CONFIG, or Slurm\'s variables), tpu.')
  jit_compile: Optional[bool] = _field(
      None, 'XLA-compile the training step (default: on for GPU/TPU, off on '
      'CPU).')
  allow_mixed_precision: bool = _field(
      False, 'Use bfloat16 (float16 with loss scaling on GPUs), if the '
      'hardware supports it; the loss stays float32.')
  seed: int = _field(0, 'Seed of the data order, augmentation and weights.')
  deterministic: bool = _field(
      False, "TensorFlow's op determinism: two runs with the same seed give "
      'the same losses step for step (slower; some GPU ops refuse it).')
  knn_every_epochs: int = _field(
      0, 'kNN monitor on the validation split during stage 1 (0: off).')
  progress: bool = _field(True, 'A progress bar on the terminal.')
  export: bool = _field(True, 'Write the SavedModel after evaluation.')
  plot: bool = _field(True, 'Plot the test embeddings after evaluation.')
  input_threads: int = _field(
      0, 'Threads for the input pipeline (0: TensorFlow decides).')
  # Data.
  input_fn: str = _field(
      'imagenet', 'The input_fn to use: cifar10, imagenet (TFDS '
      'imagenet2012), or cifar100, folder (an image folder), tfrecord '
      '(ImageNet TFRecord shards), digits (bundled), any TFDS name.')
  data_dir: Optional[str] = _field(
      None, 'TFDS data, CIFAR archives, the folder source root, or the '
      'TFRecord shards.')
  num_images: int = _field(
      0, 'The maximum number of samples to use from the dataset (the first '
      'ones of the training split; 0: all).')
  label_noise_prob: float = _field(
      0., 'The fraction of true labels to replace with random labels (drawn '
      'once per example).')
  shard_per_host: bool = _field(
      True, 'Whether to shard the dataset between TPU hosts: with '
      '--input_fn=tfrecord each input pipeline reads its own shards; other '
      'sources read their own part of every global batch either way.')
  label_type: str = _field('fine', 'cifar100 labels: fine (100) or coarse '
                           '(20).')
  validation_fraction: float = _field(
      0., 'Fraction of train held out (seeded) for validation and the kNN '
      'monitor.')
  skip_corrupt: bool = _field(
      False, 'Skip unreadable images of a folder source (with a warning).')
  require_same_image_size: bool = _field(
      False, 'Refuse a folder source whose images differ in size (by default '
      'each is cropped and resized as its view says).')
  batch_size: int = _field(2048, 'Train batch size.')
  micro_batch_size: int = _field(
      0, 'Examples per chunk of each replica\'s batch (0: off): a training '
      'step runs its batch in chunks of this many examples and applies the '
      'whole batch\'s gradient once (contrastive stages by gradient '
      'caching, cross-entropy stages by accumulation), so activation memory '
      'is one chunk\'s. BatchNorm normalises each chunk with its own '
      'statistics, as one replica per chunk would. Must divide the '
      'per-replica batch.')
  eval_batch_size: int = _field(128, 'The batch size to use for eval.')
  num_views: int = _field(2, 'Augmented views of each training example.')
  classes_per_batch: int = _field(
      0, 'Class-balanced batches of this many classes (0: off); sets '
      '--sampler=class_balanced.')
  sampler: str = _field(
      'uniform', 'uniform (a permutation of each epoch), class_balanced '
      '(--classes_per_batch random classes, batch / classes_per_batch '
      'examples each), fixed_configuration (every class, batch / classes '
      'examples each: the same label multiset in every batch).')
  memory_size: int = _field(
      0, 'A cross-batch memory of the projections and labels of the last '
      'this many samples, which join each contrastive step\'s contrast set '
      'once full (0: off; Wang et al. 2020).')
  memory_warmup: int = _field(
      0, 'Steps of the contrastive stage before the memory joins the loss.')
  momentum_encoder: float = _field(
      0., 'With a memory: the momentum of a key encoder (MoCo), an '
      'exponential moving average of the encoder and projection head that '
      'embeds what the memory keeps (0: the memory keeps the trained '
      'projections; MoCo: 0.999).')
  epoch_remainder: str = _field(
      'span', 'span (official): batches run across epoch ends, a stage is '
      "int(epochs * N / batch_size) steps; drop: each epoch's partial batch "
      'is dropped.')
  apply_whitening: bool = _field(
      True, 'Whether or not to apply whitening to datasets that specify '
      'whitening parameters.')
  normalization: str = _field(
      'dataset', "Whose per-channel mean and std whitening uses: the "
      "dataset's own, or cifar10 / cifar100 / imagenet2012's.")
  # Model.
  resnet_depth: int = _field(
      50, 'Depth of the Resnet model (18..200; 20, 32, 44, 56, 110: the CIFAR '
      'ResNets).')
  resnet_architecture: str = _field(
      'RESNET_V1', 'Name of the resnet architecture to be used in the model: '
      'RESNET_V1, RESNEXT.')
  resnet_layout: str = _field(
      'official', "official, or torch: PyTorch's ResNet (torchvision's, "
      "SupContrast's resnet_big), a projection shortcut only where a block "
      'changes shape and the initial max-pool padded on every side.')
  resnet_width: float = _field(1., 'Width of the resnet to be used in the '
                               'model.')
  first_conv_kernel_size: int = _field(
      7, 'The kernel size of the first convolution in the Encoder network. '
      'Generally it is 7 for ImageNet and 3 for CIFAR10.')
  first_conv_stride: int = _field(
      2, 'The stride of the first convolution in the Encoder network. '
      'Generally it is 2 for ImageNet and 1 for CIFAR10.')
  use_initial_max_pool: bool = _field(
      True, 'Whether to include a max-pool layer between the initial '
      'convolution and the first residual block in the Encoder network.')
  projection_head_layers: tuple = _field(
      (2048, 128), 'The number of units for each dense layer in the '
      'projection head.')
  weight_init: str = _field(
      'official', "official, or seed: the seed's ResNet-20 weights "
      '(kaiming_normal_ convolutions and Linear kernels, PyTorch default '
      'biases, a bias on every head layer).')
  use_projection_batch_norm: bool = _field(
      False, 'Whether to use batch norm in the projection head.')
  use_projection_batch_norm_beta: bool = _field(
      True, 'Whether projection head batch norm layers should have a beta '
      '(bias) parameter.')
  normalize_embedding: bool = _field(
      True, 'If the outputs of the encoder should be normalized before being '
      'input to the projections and classification heads.')
  stop_gradient_before_classification_head: bool = _field(
      True, 'Whether there is a stop gradient between the encoder and '
      'classification head.')
  stop_gradient_before_projection_head: bool = _field(
      False, 'Whether there is a stop gradient between the encoder and '
      'projection head.')
  zero_initialize_classifier: bool = _field(
      False, 'Whether or not to initialize parameters in the classification '
      'head to 0. Otherwise uses glorot uniform.')
  use_global_batch_norm: bool = _field(
      True, 'Whether to use global batch norm, where statistics are '
      'aggregated across all replicas (TPU cores, GPUs, workers); per replica '
      'when false. Only has impact with several replicas.')
  # Warm start from a checkpoint of the official code.
  reference_ckpt: str = _field(
      '', '[Optional] If set, initialise the parts chosen by the '
      '--warm_start_* flags from the latest official checkpoint in this '
      'directory (or this checkpoint).')
  warm_start_encoder: bool = _field(
      False, 'Whether or not to load in the encoder weights from reference '
      'checkpoint.')
  warm_start_projection_head: bool = _field(
      False, 'Whether or not to load in the projection head weights from '
      'reference checkpoint.')
  warm_start_classifier: bool = _field(
      False, 'Whether or not to load in the classification head weights from '
      'reference checkpoint.')
  ignore_missing_checkpoint_vars: bool = _field(
      False, 'When warm-starting using `reference_ckpt`, determines whether '
      'or not to raise an error if the checkpoint does not contain all '
      'expected variables.')
  batch_norm_in_train_mode: bool = _field(
      False, 'Whether to set batch norm to train mode when warm starting from '
      'a checkpoint.')
  # Loss.
  use_labels: bool = _field(
      True, 'Whether to use labels for determining the positives in the '
      'contrastive loss (SupCon), rather than acting fully self-supervised '
      '(SimCLR).')
  temperature: float = _field(
      0.07, 'The temperature parameter of the contrastive loss.')
  scale_by_temperature: bool = _field(
      True, 'Whether the contrastive loss gets scaled by the temperature, '
      'which helps normalize the loss gradient.')
  contrast_mode: str = _field(
      'ALL_VIEWS', 'Contrast mode: ALL_VIEWS (contrast all views against all '
      'other views) or ONE_VIEW (contrast one view against all other views).')
  summation_location: str = _field(
      'OUTSIDE', 'Location of the summation: OUTSIDE or INSIDE.')
  denominator_mode: str = _field(
      'ALL', 'Denominator mode: ALL, ONE_POSITIVE, ONLY_NEGATIVES.')
  positives_cap: int = _field(
      -1, 'Integer maximum number of positives other than augmentations of '
      'anchor. Infinite if -1. Must be multiple of 2 (number of views).')
  label_smoothing: float = _field(0., 'The label smoothing rate.')
  use_bias_weight_decay: bool = _field(
      True, 'Whether to include bias variables in weight decay.')
  use_batch_norm_weight_decay: bool = _field(
      False, "Weight decay on BatchNorm gamma and beta too (PyTorch SGD's "
      'weight_decay; the official code never decays them).')
  learning_rate_per_epoch: bool = _field(
      False, 'The schedule moves once per epoch, one epoch late, as the '
      "seed's adjust_learning_rate called after each epoch.")

  def __post_init__(self):
    for name in ('projection_head_layers', 'crop_area_range',
                 'stage_1_decay_boundary_epochs',
                 'stage_2_decay_boundary_epochs'):
      setattr(self, name, tuple(
          float(v) if name == 'crop_area_range' else int(float(v))
          for v in getattr(self, name)))
    Preprocessing.__post_init__(self)
    config_checks.check_fields(self)

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  def differences(self, other):
    """Names of the non-runtime fields whose values differ from `other`."""
    return [f.name for f in dataclasses.fields(self)
            if f.name not in RUNTIME_FIELDS and
            getattr(self, f.name) != getattr(other, f.name)]

  def stage(self, index):
    """{STAGE field: value} of stage 1 or 2."""
    return {name: getattr(self, f'stage_{index}_{name}')
            for name in STAGE_FIELDS}

  # The sections (config_sections.py), each a read-only view.
  data = property(lambda self: config_sections.section(self, 'data'))
  model = property(lambda self: config_sections.section(self, 'model'))
  loss = property(lambda self: config_sections.section(self, 'loss'))
  run = property(lambda self: config_sections.section(self, 'run'))

  @property
  def preprocessing(self):
    return Preprocessing(**{f.name: getattr(self, f.name)
                            for f in dataclasses.fields(Preprocessing)})

  def stage_section(self, index):
    """Stage `index`'s fields unprefixed, and those both stages share."""
    return config_sections.Section(index=index, **self.stage(index), **{
        name: getattr(self, name)
        for name in config_sections.SECTIONS['stages']})

  @property
  def warm_start_parts(self):
    """The model parts read from reference_ckpt."""
    return tuple(part for part, on in (
        ('encoder', self.warm_start_encoder),
        ('projection_head', self.warm_start_projection_head),
        ('classification_head', self.warm_start_classifier)) if on)

  @property
  def batch_norm_training(self):
    """Whether BatchNorm uses batch statistics in training steps (and the
    export's contrastive_train): not after an official warm start unless
    batch_norm_in_train_mode, as official."""
    return not self.reference_ckpt or self.batch_norm_in_train_mode

  @classmethod
  def from_json(cls, text):
    """A saved config.json; one written before a field existed takes what
    that run did (no `epoch_remainder`: whole batches each epoch; the old
    names `dataset` and `checkpoint_every_steps`)."""
    values = json.loads(text)
    values.setdefault('epoch_remainder', 'drop')
    for old, new in (('dataset', 'input_fn'),
                     ('checkpoint_every_steps', 'save_interval_steps')):
      if old in values:
        values.setdefault(new, values.pop(old))
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})
