"""One typed configuration for a run, and named presets.

Field names are the official launcher's flag names wherever the official code
has the setting (REFERENCE.md section 4); `supcon_tf.flags` turns every field
into an absl flag. Enum-valued fields hold the official member names
(`'MOMENTUM'`, `'ALL_VIEWS'`, ...). A preset is a dict of fields over the
defaults; explicit values win over the preset.
"""
import dataclasses
import json
from typing import Optional

from supcon_tf.data.augment import (AUGMENTATION_TYPES, CROPS,
                                    EVAL_CROP_METHODS, POLICY_NAMES)
from supcon_tf.data.pipeline import EPOCH_REMAINDERS
from supcon_tf.data.sources import MEAN_STD
from supcon_tf.models.layers import WEIGHT_INITS

OPTIMIZERS = ('MOMENTUM', 'NESTEROV', 'LARS', 'RMSPROP', 'ADAM')
DECAY_TYPES = ('COSINE', 'EXPONENTIAL', 'PIECEWISE_LINEAR', 'NO_DECAY')
CONTRAST_MODES = ('ALL_VIEWS', 'ONE_VIEW')
SUMMATION_LOCATIONS = ('OUTSIDE', 'INSIDE')
DENOMINATOR_MODES = ('ALL', 'ONE_POSITIVE', 'ONLY_NEGATIVES')
STRATEGIES = ('auto', 'default', 'mirrored', 'multi_worker', 'tpu')
LABEL_TYPES = ('fine', 'coarse')

# Allowed values of the enum-valued fields.
CHOICES = {
    'augmentation_type': AUGMENTATION_TYPES,
    'crop': CROPS,
    'eval_crop_method': EVAL_CROP_METHODS,
    'autoaugment_policy': POLICY_NAMES,
    'contrast_mode': CONTRAST_MODES,
    'summation_location': SUMMATION_LOCATIONS,
    'denominator_mode': DENOMINATOR_MODES,
    'stage_1_optimizer': OPTIMIZERS,
    'stage_2_optimizer': OPTIMIZERS,
    'stage_1_learning_rate_decay': DECAY_TYPES,
    'stage_2_learning_rate_decay': DECAY_TYPES,
    'strategy': STRATEGIES,
    'label_type': LABEL_TYPES,
    'weight_init': WEIGHT_INITS,
    'resnet_architecture': ('RESNET_V1', 'RESNEXT'),
    'normalization': ('dataset',) + tuple(MEAN_STD),
    'epoch_remainder': EPOCH_REMAINDERS,
}
# Enum fields whose values are lower-case names rather than official members.
LOWER_CASE_CHOICES = ('strategy', 'label_type', 'crop', 'autoaugment_policy',
                      'weight_init', 'normalization', 'epoch_remainder')

# Fields that may change between runs in one model_dir (they do not change
# what is trained); every other field must match the saved config.
RUNTIME_FIELDS = frozenset({
    'model_dir', 'preset', 'data_dir', 'strategy', 'jit_compile',
    'steps_per_loop', 'checkpoint_every_steps', 'knn_every_epochs',
    'progress', 'export', 'plot', 'eval_batch_size', 'skip_corrupt',
    'input_threads',
})


@dataclasses.dataclass
class Config:
  """Everything a run needs. Defaults: the seed repo's ResNet-20 SupCon on
  the bundled digits."""
  # Run.
  model_dir: Optional[str] = None
  preset: Optional[str] = None
  strategy: str = 'auto'
  jit_compile: Optional[bool] = None  # None: on for GPU/TPU, off on CPU.
  allow_mixed_precision: bool = False
  seed: int = 0
  steps_per_loop: int = 10
  checkpoint_every_steps: int = 500
  knn_every_epochs: int = 0
  progress: bool = True
  export: bool = True
  plot: bool = True
  input_threads: int = 0
  # Data.
  dataset: str = 'digits'
  data_dir: Optional[str] = None
  label_type: str = 'fine'
  validation_fraction: float = 0.1
  skip_corrupt: bool = False
  batch_size: int = 256
  eval_batch_size: int = 512
  num_views: int = 2
  classes_per_batch: int = 0
  # 'span' (official): batches run across epoch ends and a stage is
  # int(epochs * N / batch_size) steps; 'drop': each epoch's partial batch is
  # dropped (floor(N / batch_size) steps an epoch).
  epoch_remainder: str = 'span'
  # Preprocessing.
  image_size: int = 32
  augmentation_type: str = 'AUTOAUGMENT'
  augmentation_magnitude: float = 0.5
  crop: str = 'pad'
  random_crop_padding: int = 4
  flip: bool = True
  crop_area_range: tuple = (0.08, 1.0)
  blur_probability: float = 0.0
  use_pytorch_color_jitter: bool = False
  autoaugment_policy: str = 'cifar10'
  posterize_bits_fix: bool = False
  randaugment_layers: int = 2
  cutout_size: int = 0
  apply_whitening: bool = True
  # Whose per-channel statistics whitening uses: the dataset's own, or a
  # named dataset's (the seed normalises with fixed CIFAR constants).
  normalization: str = 'dataset'
  eval_crop_method: str = 'IDENTITY'
  crop_padding: int = 32
  # Model.
  resnet_depth: int = 20
  resnet_architecture: str = 'RESNET_V1'
  resnet_width: float = 1.0
  first_conv_kernel_size: int = 3
  first_conv_stride: int = 1
  use_initial_max_pool: bool = False
  projection_head_layers: tuple = (64, 64)
  # 'seed': the seed's ResNet-20 weights (kaiming_normal_ convolutions and
  # Linear kernels, PyTorch's default biases, a bias on every head layer).
  weight_init: str = 'official'
  use_projection_batch_norm: bool = False
  use_projection_batch_norm_beta: bool = True
  normalize_embedding: bool = True
  stop_gradient_before_classification_head: bool = True
  stop_gradient_before_projection_head: bool = False
  zero_initialize_classifier: bool = False
  # Warm start from a checkpoint of the official code (the official flags):
  # the chosen parts are read from the latest checkpoint in reference_ckpt,
  # and without batch_norm_in_train_mode every BatchNorm then runs in
  # inference mode while training, as official.
  reference_ckpt: str = ''
  warm_start_encoder: bool = False
  warm_start_projection_head: bool = False
  warm_start_classifier: bool = False
  ignore_missing_checkpoint_vars: bool = False
  batch_norm_in_train_mode: bool = False
  # Loss.
  use_labels: bool = True
  temperature: float = 0.07
  scale_by_temperature: bool = True
  contrast_mode: str = 'ALL_VIEWS'
  summation_location: str = 'OUTSIDE'
  denominator_mode: str = 'ALL'
  positives_cap: int = -1
  label_smoothing: float = 0.0
  use_bias_weight_decay: bool = True
  # Weight decay on BatchNorm gamma and beta too (PyTorch SGD's weight_decay
  # reaches every parameter it updates; the official code never decays them).
  use_batch_norm_weight_decay: bool = False
  # The schedule moves once per epoch, as the seed's adjust_learning_rate
  # called after each epoch: epoch e (from 0) runs at the value of epoch
  # max(e - 1, 0). False: it moves every step.
  learning_rate_per_epoch: bool = False
  # Stage 1 (contrastive).
  stage_1_epochs: int = 500
  stage_1_warmup_epochs: float = 0.0
  stage_1_base_learning_rate: float = 0.1
  stage_1_optimizer: str = 'MOMENTUM'
  stage_1_learning_rate_decay: str = 'COSINE'
  stage_1_min_learning_rate_ratio: float = 1e-3
  stage_1_decay_rate: float = 0.1
  stage_1_decay_boundary_epochs: tuple = (30, 60, 80, 90)
  stage_1_epochs_per_decay: float = 2.4
  stage_1_weight_decay: float = 1e-4
  stage_1_contrastive_loss_weight: float = 1.0
  stage_1_cross_entropy_loss_weight: float = 0.0
  stage_1_use_encoder_weight_decay: bool = True
  stage_1_use_projection_head_weight_decay: bool = True
  stage_1_use_classification_head_weight_decay: bool = False
  stage_1_update_encoder_batch_norm: bool = True
  # The encoder's BatchNorm in inference mode (moving statistics) while the
  # stage trains, rather than the official batch statistics.
  stage_1_encoder_batch_norm_inference: bool = False
  stage_1_rmsprop_epsilon: float = 1.0
  # Stage 2 (classifier on the frozen encoder).
  stage_2_epochs: int = 100
  stage_2_warmup_epochs: float = 0.0
  stage_2_base_learning_rate: float = 0.05
  stage_2_optimizer: str = 'MOMENTUM'
  stage_2_learning_rate_decay: str = 'COSINE'
  stage_2_min_learning_rate_ratio: float = 0.0
  stage_2_decay_rate: float = 0.1
  stage_2_decay_boundary_epochs: tuple = (30, 60, 80, 90)
  stage_2_epochs_per_decay: float = 2.4
  stage_2_weight_decay: float = 0.0
  stage_2_contrastive_loss_weight: float = 0.0
  stage_2_cross_entropy_loss_weight: float = 1.0
  stage_2_use_encoder_weight_decay: bool = True
  stage_2_use_projection_head_weight_decay: bool = True
  stage_2_use_classification_head_weight_decay: bool = False
  stage_2_update_encoder_batch_norm: bool = False
  stage_2_encoder_batch_norm_inference: bool = False
  stage_2_rmsprop_epsilon: float = 0.001

  def __post_init__(self):
    for name, allowed in CHOICES.items():
      value = getattr(self, name)
      if isinstance(value, str):
        value = value.rsplit('.', 1)[-1]  # 'Optimizer.LARS' -> 'LARS'.
        if name not in LOWER_CASE_CHOICES:
          value = value.upper()
        setattr(self, name, value)
      if value not in allowed:
        raise ValueError(f'{name} must be one of {", ".join(allowed)}; got '
                         f'{getattr(self, name)!r}.')
    for name in ('projection_head_layers', 'crop_area_range',
                 'stage_1_decay_boundary_epochs',
                 'stage_2_decay_boundary_epochs'):
      setattr(self, name, tuple(float(v) if name == 'crop_area_range'
                                else int(float(v)) for v in getattr(self, name)))
    checks = (
        ('batch_size', self.batch_size >= 1),
        ('eval_batch_size', self.eval_batch_size >= 1),
        ('num_views', self.num_views >= 1),
        ('steps_per_loop', self.steps_per_loop >= 1),
        ('checkpoint_every_steps', self.checkpoint_every_steps >= 1),
        ('stage_1_epochs', self.stage_1_epochs >= 0),
        ('stage_2_epochs', self.stage_2_epochs >= 0),
        ('temperature', self.temperature > 0),
        ('validation_fraction', 0 <= self.validation_fraction < 1),
    )
    for name, ok in checks:
      if not ok:
        raise ValueError(f'{name} has an invalid value: '
                         f'{getattr(self, name)!r}.')
    if self.learning_rate_per_epoch and self.epoch_remainder != 'drop':
      raise ValueError('learning_rate_per_epoch moves the schedule at whole '
                       'epochs of steps: it needs epoch_remainder=drop.')
    if self.reference_ckpt and not self.warm_start_parts:
      raise ValueError('reference_ckpt is set but no part is chosen: add '
                       '--warm_start_encoder, --warm_start_projection_head '
                       'or --warm_start_classifier.')
    if self.num_views < 2 and self.stage_1_contrastive_loss_weight > 0:
      raise ValueError('The contrastive loss needs num_views >= 2; got '
                       f'{self.num_views}.')

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  def differences(self, other):
    """Names of the non-runtime fields whose values differ from `other`."""
    return [f.name for f in dataclasses.fields(self)
            if f.name not in RUNTIME_FIELDS and
            getattr(self, f.name) != getattr(other, f.name)]

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
    values = json.loads(text)
    known = {f.name for f in dataclasses.fields(cls)}
    # Written before epoch_remainder existed, when every epoch dropped its
    # partial batch.
    values.setdefault('epoch_remainder', 'drop')
    return cls(**{k: v for k, v in values.items() if k in known})


# The seed's recipe (REFERENCE.md section 3; its train.py, loss/spc.py,
# models/resnet_contrastive.py, data_augmentation/auto_augment.py): ResNet-20
# with its weights and heads, all training images, its normalisation
# constants, pad-4 crop and flip then its AutoAugment, SGD momentum 0.9 with
# weight decay 1e-4 on every parameter it updates, a cosine per epoch to
# lr * 1e-3. Its classifier stage: lr 0.05, 100 epochs, on the frozen
# encoder with BatchNorm in inference mode (the seed's code lets the
# statistics drift there; README).
_SEED_RECIPE = dict(
    resnet_depth=20, weight_init='seed', projection_head_layers=(64, 64),
    normalize_embedding=True, batch_size=256, validation_fraction=0.,
    crop='pad', random_crop_padding=4, flip=True,
    autoaugment_policy='seed_cifar10', eval_crop_method='IDENTITY',
    apply_whitening=True, use_bias_weight_decay=True,
    use_batch_norm_weight_decay=True, learning_rate_per_epoch=True,
    epoch_remainder='drop',
    stage_1_optimizer='MOMENTUM', stage_1_learning_rate_decay='COSINE',
    stage_1_min_learning_rate_ratio=1e-3, stage_1_weight_decay=1e-4,
    stage_1_warmup_epochs=0., stage_2_optimizer='MOMENTUM',
    stage_2_learning_rate_decay='COSINE', stage_2_min_learning_rate_ratio=1e-3,
    stage_2_weight_decay=1e-4, stage_2_warmup_epochs=0.,
    # PyTorch's SGD decays only what has a gradient: the classifier here.
    stage_2_use_encoder_weight_decay=False,
    stage_2_use_projection_head_weight_decay=False,
    stage_2_use_classification_head_weight_decay=True,
    stage_2_update_encoder_batch_norm=False,
    stage_2_encoder_batch_norm_inference=True, knn_every_epochs=0)
# SupCon: temperature 0.07 and the loss not multiplied by it (the seed's
# loss has no factor tau), lr 0.1 for 500 epochs, then the classifier.
_SEED_SUPCON = dict(
    _SEED_RECIPE, augmentation_type='AUTOAUGMENT', temperature=0.07,
    scale_by_temperature=False, stage_1_epochs=500,
    stage_1_base_learning_rate=0.1, stage_2_epochs=100,
    stage_2_base_learning_rate=0.05)
# Cross-entropy: one stage through the encoder, lr 0.05 for 100 epochs.
_SEED_CROSS_ENTROPY = dict(
    _SEED_RECIPE, stage_1_contrastive_loss_weight=0.,
    stage_1_cross_entropy_loss_weight=1.,
    stop_gradient_before_classification_head=False, num_views=1,
    stage_1_use_projection_head_weight_decay=False,
    stage_1_use_classification_head_weight_decay=True, stage_1_epochs=100,
    stage_1_base_learning_rate=0.05, stage_2_epochs=0)


def _seed_presets():
  presets = {}
  for dataset in ('cifar10', 'cifar100'):
    data = dict(dataset=dataset, normalization=dataset)
    prefix = f'seed_{dataset}_resnet20'
    presets[f'{prefix}_ce'] = dict(_SEED_CROSS_ENTROPY, **data,
                                   augmentation_type='IDENTITY')
    presets[f'{prefix}_ce_autoaugment'] = dict(
        _SEED_CROSS_ENTROPY, **data, augmentation_type='AUTOAUGMENT')
    presets[f'{prefix}_supcon_autoaugment'] = dict(_SEED_SUPCON, **data)
  return presets


PRESETS = {
    **_seed_presets(),
    # The official supcon_cifar10_resnet50 script.
    'supcon_cifar10_resnet50': dict(
        dataset='cifar10', resnet_depth=50, first_conv_kernel_size=3,
        first_conv_stride=1, use_initial_max_pool=False, image_size=32,
        blur_probability=0.0, apply_whitening=True, crop_area_range=(0.2, 1.0),
        use_pytorch_color_jitter=True, eval_crop_method='IDENTITY',
        crop_padding=0, label_smoothing=0.0, crop='random_resized',
        batch_size=4096, augmentation_type='SIMCLR',
        augmentation_magnitude=0.5, temperature=0.1,
        stage_1_weight_decay=1e-4, stage_2_weight_decay=0.0,
        stage_1_epochs=1000, stage_2_epochs=100, stage_1_warmup_epochs=10,
        stage_2_warmup_epochs=0, stage_1_base_learning_rate=0.5,
        stage_2_base_learning_rate=2.5, stage_1_learning_rate_decay='COSINE',
        stage_1_min_learning_rate_ratio=0.0,
        stage_2_learning_rate_decay='PIECEWISE_LINEAR', stage_2_decay_rate=0.2,
        stage_2_decay_boundary_epochs=(60, 75, 90),
        stage_1_optimizer='MOMENTUM', stage_2_optimizer='MOMENTUM',
        normalize_embedding=False, use_projection_batch_norm=False,
        projection_head_layers=(2048, 128)),
    # The demo: ResNet-20 SupCon on the bundled digits in a few minutes on
    # 2 CPU cores, with the seed's weights, loss scaling and optimizer (SGD
    # momentum 0.9; base lr 0.2, so 0.1 at this batch of 128). Digits are
    # not mirror-symmetric: no flip.
    'supcon_digits_resnet20': dict(
        dataset='digits', resnet_depth=20, projection_head_layers=(64, 64),
        weight_init='seed', batch_size=128, temperature=0.1,
        scale_by_temperature=False, augmentation_type='AUTOAUGMENT',
        crop='pad', flip=False, epoch_remainder='drop', stage_1_epochs=14,
        stage_1_optimizer='MOMENTUM', stage_1_base_learning_rate=0.2,
        stage_1_min_learning_rate_ratio=1e-2, stage_1_weight_decay=1e-4,
        stage_2_epochs=5, stage_2_encoder_batch_norm_inference=True,
        stage_2_optimizer='MOMENTUM',
        stage_2_base_learning_rate=2.5, knn_every_epochs=7, steps_per_loop=10,
        checkpoint_every_steps=50),
}


def make_config(preset=None, **values):
  """A Config from a preset (or the defaults) with `values` over it."""
  if preset is not None and preset not in PRESETS:
    raise ValueError(f'Unknown preset {preset!r}. Presets: '
                     f'{", ".join(sorted(PRESETS))}.')
  fields = {f.name for f in dataclasses.fields(Config)}
  unknown = sorted(set(values) - fields)
  if unknown:
    raise ValueError(f'Unknown config fields: {", ".join(unknown)}.')
  return Config(**{**PRESETS.get(preset, {}), **values, 'preset': preset})
