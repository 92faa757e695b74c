"""The allowed values of the enum-valued settings, without TensorFlow.

Members are the official enums' member names where the official code has
the setting (supcon/enums.py), lower-case names for this project's own.
"""
MODES = ('train', 'eval', 'train_then_eval')
AUGMENTATION_TYPES = ('SIMCLR', 'AUTOAUGMENT', 'RANDAUGMENT',
                      'STACKED_RANDAUGMENT', 'IDENTITY')
# The training crop: the official random crop covering crop_area_range
# ('random_resized'), a random crop of the image padded by random_crop_padding
# ('pad'), or none.
CROPS = ('random_resized', 'pad', 'none')
EVAL_CROP_METHODS = ('RESIZE_THEN_CROP', 'CROP_THEN_RESIZE',
                     'CROP_THEN_DISTORT', 'IDENTITY')
# AUTOAUGMENT's policy: 'v0', the official (TF-Models' AutoAugment policy v0),
# or TF-Models' other policies (simple, reduced_cifar10, svhn,
# reduced_imagenet), or the PIL-exact policies of Cubuk et al. (2019) for
# CIFAR-10 and ImageNet, or the seed's variant of the CIFAR-10 one.
AUTOAUGMENT_POLICIES = ('v0', 'simple', 'reduced_cifar10', 'svhn',
                        'reduced_imagenet', 'cifar10', 'imagenet',
                        'seed_cifar10')
# RANDAUGMENT's ops: the official (TF-Models') op set, or the PIL-exact ones.
RANDAUGMENT_OP_SETS = ('tf_models', 'pil')
CONTRAST_MODES = ('ALL_VIEWS', 'ONE_VIEW')
SUMMATION_LOCATIONS = ('OUTSIDE', 'INSIDE')
DENOMINATOR_MODES = ('ALL', 'ONE_POSITIVE', 'ONLY_NEGATIVES')
OPTIMIZERS = ('RMSPROP', 'MOMENTUM', 'LARS', 'ADAM', 'NESTEROV')
DECAY_TYPES = ('COSINE', 'EXPONENTIAL', 'PIECEWISE_LINEAR', 'NO_DECAY')
ENCODER_ARCHITECTURES = ('RESNET_V1', 'RESNEXT')
RESNET_LAYOUTS = ('official', 'torch')
STRATEGIES = ('auto', 'default', 'mirrored', 'multi_worker', 'tpu')
LABEL_TYPES = ('fine', 'coarse')
# How weights start: 'official', or 'seed' (the seed's PyTorch ResNet-20:
# kaiming_normal_ on every Conv2d and Linear weight, PyTorch's default biases).
WEIGHT_INITS = ('official', 'seed')
# Whose per-channel mean and std whitening uses.
NORMALIZATIONS = ('dataset', 'cifar10', 'cifar100', 'imagenet2012')
# How an epoch ends: 'span', as official, reads every example of every epoch
# and lets a batch run across the end of one epoch into the next (a stage is
# int(epochs * N / batch) steps, epochs may end mid-step); 'drop' reads the
# floor(N / batch) full batches of each epoch and drops the rest.
EPOCH_REMAINDERS = ('span', 'drop')
# Which examples make a batch: a permutation of the epoch; classes_per_batch
# random classes with batch / classes_per_batch examples each; every class
# with batch / classes examples, the same label multiset every batch.
SAMPLERS = ('uniform', 'class_balanced', 'fixed_configuration')
# The model parts a checkpoint of the official or the seed's code restores.
CHECKPOINT_PARTS = ('encoder', 'projection_head', 'classification_head')


def check_parts(parts):
  """A ValueError for parts not in CHECKPOINT_PARTS."""
  unknown = sorted(set(parts) - set(CHECKPOINT_PARTS))
  if unknown:
    raise ValueError(f'Unknown parts {unknown}; parts are '
                     f'{", ".join(CHECKPOINT_PARTS)}.')
