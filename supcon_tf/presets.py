"""Named presets: dicts of Config fields over the official defaults.

The official launch scripts (`OFFICIAL_SCRIPTS`, from the flag groups of
supcon/scripts/configs.sh), the seed's ResNet-20 recipe (`seed_*`), the demo
and the folder preset. `make_config(preset, **values)` builds a Config from
one, explicit values winning over the preset. This module does not import
TensorFlow.
"""
import dataclasses

from supcon_tf.config import Config

# The official scripts' flag groups (supcon/scripts/configs.sh; scripts/ here).
TPU_FLAGS = dict(allow_mixed_precision=True, defer_blurring=True)
RESNET50x1_FLAGS = dict(resnet_architecture='RESNET_V1', resnet_depth=50,
                        resnet_width=1)
RESNET101x1_FLAGS = dict(RESNET50x1_FLAGS, resnet_depth=101)
RESNET200x1_FLAGS = dict(RESNET50x1_FLAGS, resnet_depth=200)
CIFAR10_FLAGS = dict(
    input_fn='cifar10', shard_per_host=False, first_conv_kernel_size=3,
    first_conv_stride=1, use_initial_max_pool=False, image_size=32,
    blur_probability=0., apply_whitening=True, crop_area_range=(0.2, 1.0),
    use_pytorch_color_jitter=True, eval_crop_method='IDENTITY',
    crop_padding=0, label_smoothing=0.)
IMAGENET_FLAGS = dict(
    input_fn='imagenet', shard_per_host=True, first_conv_kernel_size=7,
    first_conv_stride=2, use_initial_max_pool=True, image_size=224,
    blur_probability=0.5, label_smoothing=0.05)
CONTRASTIVE_FLAGS = dict(
    stop_gradient_before_classification_head=True, contrast_mode='ALL_VIEWS',
    summation_location='OUTSIDE', denominator_mode='ALL',
    stage_1_contrastive_loss_weight=1., stage_1_cross_entropy_loss_weight=0.,
    stage_2_contrastive_loss_weight=0., stage_2_cross_entropy_loss_weight=1.,
    stage_1_use_encoder_weight_decay=True,
    stage_1_use_projection_head_weight_decay=True,
    stage_1_use_classification_head_weight_decay=False,
    stage_2_use_encoder_weight_decay=False,
    stage_2_use_projection_head_weight_decay=False,
    stage_2_use_classification_head_weight_decay=True,
    stage_1_update_encoder_batch_norm=True,
    stage_2_update_encoder_batch_norm=False)
SUPCON_FLAGS = dict(
    CONTRASTIVE_FLAGS, use_labels=True, normalize_embedding=True,
    use_bias_weight_decay=True, use_projection_batch_norm=False,
    projection_head_layers=(128,), zero_initialize_classifier=False,
    scale_by_temperature=True)
SIMCLR_FLAGS = dict(
    CONTRASTIVE_FLAGS, use_labels=False, normalize_embedding=False,
    use_bias_weight_decay=True, use_projection_batch_norm=True,
    projection_head_layers=(2048, 2048, 128), zero_initialize_classifier=True,
    scale_by_temperature=False)
XENT_FLAGS = dict(
    stage_2_epochs=0, stage_2_warmup_epochs=0.,
    stop_gradient_before_classification_head=False,
    stage_1_contrastive_loss_weight=0., stage_1_cross_entropy_loss_weight=1.,
    stage_2_contrastive_loss_weight=0., stage_2_cross_entropy_loss_weight=0.,
    stage_1_use_encoder_weight_decay=True,
    stage_1_use_projection_head_weight_decay=False,
    stage_1_use_classification_head_weight_decay=True,
    stage_2_use_encoder_weight_decay=False,
    stage_2_use_projection_head_weight_decay=False,
    stage_2_use_classification_head_weight_decay=False,
    stage_1_update_encoder_batch_norm=True,
    stage_2_update_encoder_batch_norm=False, normalize_embedding=False)
# Not defined by the official configs.sh, which its
# train_classification_head_from_pretrained_encoder.sh uses: what that script
# describes, the classification head alone on the reference checkpoint's
# encoder and projection head.
ONLY_CLASSIFIER_FLAGS = dict(
    warm_start_encoder=True, warm_start_projection_head=True,
    stage_1_contrastive_loss_weight=0., stage_1_cross_entropy_loss_weight=1.,
    stage_1_use_encoder_weight_decay=False,
    stage_1_use_projection_head_weight_decay=False,
    stage_1_use_classification_head_weight_decay=True,
    stage_1_update_encoder_batch_norm=False,
    stop_gradient_before_classification_head=True, stage_2_epochs=0)

def _merge(*groups, **values):
  """Flag groups in order, later ones winning, as on a command line."""
  merged = {}
  for group in groups + (values,):
    merged.update(group)
  return merged


# Each official launch script, by its name: the groups it uses, then its own
# flags (the train_classification_head script also takes --reference_ckpt).
OFFICIAL_SCRIPTS = {
    'supcon_cifar10_resnet50': _merge(
        TPU_FLAGS, RESNET50x1_FLAGS, CIFAR10_FLAGS, SUPCON_FLAGS,
        dict(batch_size=4096, augmentation_type='SIMCLR',
             augmentation_magnitude=0.5, temperature=0.1,
             stage_1_weight_decay=1e-4, stage_2_weight_decay=0.,
             stage_1_epochs=1000, stage_2_epochs=100,
             stage_1_warmup_epochs=10., stage_2_warmup_epochs=0.,
             stage_1_base_learning_rate=0.5, stage_2_base_learning_rate=2.5,
             stage_2_learning_rate_decay='PIECEWISE_LINEAR',
             stage_2_decay_rate=0.2,
             stage_2_decay_boundary_epochs=(60, 75, 90),
             stage_1_optimizer='MOMENTUM', stage_2_optimizer='MOMENTUM',
             normalize_embedding=False, use_projection_batch_norm=False,
             projection_head_layers=(2048, 128),
             use_global_batch_norm=False)),
    'simclr_cifar10_resnet50': _merge(
        TPU_FLAGS, RESNET50x1_FLAGS, CIFAR10_FLAGS, SIMCLR_FLAGS,
        dict(batch_size=1024, augmentation_type='SIMCLR',
             augmentation_magnitude=0.5, temperature=0.5,
             stage_1_weight_decay=1e-4, stage_2_weight_decay=0.,
             label_smoothing=0., stage_1_epochs=400, stage_2_epochs=90,
             stage_1_warmup_epochs=10., stage_2_warmup_epochs=0.,
             stage_1_base_learning_rate=0.5,
             stage_2_base_learning_rate=0.25,
             stage_1_learning_rate_decay='COSINE',
             stage_2_learning_rate_decay='COSINE',
             stage_1_optimizer='MOMENTUM', stage_2_optimizer='MOMENTUM')),
    'cross_entropy_cifar10_resnet50': _merge(
        TPU_FLAGS, RESNET50x1_FLAGS, CIFAR10_FLAGS, XENT_FLAGS,
        dict(batch_size=1024, augmentation_type='SIMCLR',
             augmentation_magnitude=0.5, stage_1_weight_decay=5e-4,
             stage_1_epochs=1000, stage_1_base_learning_rate=0.1,
             stage_1_optimizer='NESTEROV', label_smoothing=0.)),
}
_IMAGENET_SUPCON = _merge(
    TPU_FLAGS, IMAGENET_FLAGS, SUPCON_FLAGS,
    dict(augmentation_magnitude=1.0, temperature=0.1,
         stage_2_weight_decay=1e-6, stage_2_epochs=90,
         stage_1_base_learning_rate=0.4, stage_2_base_learning_rate=0.05,
         stage_2_learning_rate_decay='EXPONENTIAL', stage_1_optimizer='LARS',
         stage_2_optimizer='RMSPROP', stage_2_decay_rate=0.97,
         stage_2_epochs_per_decay=0.5))
_IMAGENET_XENT = _merge(
    TPU_FLAGS, IMAGENET_FLAGS, XENT_FLAGS,
    dict(augmentation_magnitude=1.0, stage_1_weight_decay=1e-4,
         stage_1_base_learning_rate=0.1, stage_1_optimizer='NESTEROV'))
OFFICIAL_SCRIPTS.update({
    'supcon_imagenet_resnet50': dict(
        _IMAGENET_SUPCON, **RESNET50x1_FLAGS, batch_size=6144,
        augmentation_type='AUTOAUGMENT', stage_1_weight_decay=1e-3,
        stage_1_epochs=350),
    'supcon_imagenet_resnet101': dict(
        _IMAGENET_SUPCON, **RESNET101x1_FLAGS, batch_size=4096,
        augmentation_type='AUTOAUGMENT', stage_1_weight_decay=1e-4,
        stage_1_epochs=350),
    'supcon_imagenet_resnet200': dict(
        _IMAGENET_SUPCON, **RESNET200x1_FLAGS, batch_size=4096,
        augmentation_type='STACKED_RANDAUGMENT', stage_1_weight_decay=1e-4,
        stage_1_epochs=700, stage_1_base_learning_rate=0.2),
    'simclr_imagenet_resnet50': _merge(
        TPU_FLAGS, RESNET50x1_FLAGS, IMAGENET_FLAGS, SIMCLR_FLAGS,
        dict(batch_size=6144, augmentation_type='SIMCLR',
             augmentation_magnitude=1.0, temperature=0.1,
             stage_1_weight_decay=1e-4, stage_2_weight_decay=1e-6,
             stage_1_epochs=100, stage_2_epochs=90,
             stage_1_base_learning_rate=0.3, stage_2_base_learning_rate=0.1,
             stage_1_optimizer='LARS', stage_2_optimizer='NESTEROV')),
    'cross_entropy_imagenet_resnet50': dict(
        _IMAGENET_XENT, **RESNET50x1_FLAGS, batch_size=6144,
        augmentation_type='AUTOAUGMENT', stage_1_epochs=200),
    'cross_entropy_imagenet_resnet200': dict(
        _IMAGENET_XENT, **RESNET200x1_FLAGS, batch_size=4096,
        augmentation_type='STACKED_RANDAUGMENT', stage_1_epochs=700),
    'train_classification_head_from_pretrained_encoder': _merge(
        TPU_FLAGS, RESNET50x1_FLAGS, IMAGENET_FLAGS,
        SIMCLR_FLAGS, ONLY_CLASSIFIER_FLAGS,
        dict(batch_size=6144, augmentation_type='SIMCLR',
             augmentation_magnitude=1.0, stage_1_weight_decay=1e-6,
             stage_1_epochs=90, stage_1_base_learning_rate=0.1,
             stage_1_optimizer='NESTEROV')),
})


# The seed's recipe (its train.py, loss/spc.py,
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
    image_size=32, crop='pad', random_crop_padding=4, flip=True,
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
    stage_2_encoder_batch_norm_inference=True, knn_every_epochs=0,
    mode='train_then_eval', steps_per_loop=10, eval_batch_size=512)
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
    data = dict(input_fn=dataset, normalization=dataset)
    prefix = f'seed_{dataset}_resnet20'
    presets[f'{prefix}_ce'] = dict(_SEED_CROSS_ENTROPY, **data,
                                   augmentation_type='IDENTITY')
    presets[f'{prefix}_ce_autoaugment'] = dict(
        _SEED_CROSS_ENTROPY, **data, augmentation_type='AUTOAUGMENT')
    presets[f'{prefix}_supcon_autoaugment'] = dict(_SEED_SUPCON, **data)
  return presets


PRESETS = {
    **_seed_presets(),
    **OFFICIAL_SCRIPTS,
    # The demo: ResNet-20 SupCon on the bundled digits in a few minutes on
    # 2 CPU cores, with the seed's weights, loss scaling and optimizer (SGD
    # momentum 0.9; base lr 0.4, so 0.1 at this batch of 64). Digits are
    # not mirror-symmetric: no flip.
    'supcon_digits_resnet20': dict(
        input_fn='digits', validation_fraction=0.1, image_size=32,
        resnet_depth=20, projection_head_layers=(64, 64), weight_init='seed',
        # Batch 64: twice the steps of batch 128 for the same images. The
        # loss first sits near its collapsed value, log(2 x batch - 1), for
        # some 30-50 steps wherever it starts; at batch 128 (140 steps) how
        # soon it left decided the run on some CPUs (0.74 to 0.98).
        batch_size=64, eval_batch_size=512, temperature=0.1,
        scale_by_temperature=False, augmentation_type='AUTOAUGMENT',
        autoaugment_policy='cifar10', crop='pad', flip=False,
        eval_crop_method='IDENTITY', epoch_remainder='drop',
        stage_1_epochs=14, stage_1_warmup_epochs=0.,
        stage_1_optimizer='MOMENTUM', stage_1_base_learning_rate=0.4,
        stage_1_min_learning_rate_ratio=1e-2, stage_1_weight_decay=1e-4,
        # The classifier on the normalised embedding needs its 200 steps at
        # this rate (lr 5 at batch 64): 50 at lr 1.25 ended at test loss 1.4
        # on some CPUs.
        stage_2_epochs=10, stage_2_warmup_epochs=0.,
        stage_2_update_encoder_batch_norm=False,
        stage_2_encoder_batch_norm_inference=True,
        stage_2_optimizer='MOMENTUM', stage_2_base_learning_rate=20.,
        knn_every_epochs=7, steps_per_loop=10, save_interval_steps=50,
        mode='train_then_eval'),
}


# A folder of labelled images of any size (data_dir/train/<class>/*, and
# data_dir/test/<class>/* when there is one, else the validation split
# carved from train is evaluated): the CIFAR ResNet-20 at 32 x 32, images
# resized to that, pad-4 crops, flips and AutoAugment, SupCon as the demo
# trains it, then the classifier (README, "Training on your own images").
PRESETS['supcon_folder_resnet20'] = dict(
    PRESETS['supcon_digits_resnet20'], input_fn='folder', flip=True,
    batch_size=256, stage_1_base_learning_rate=0.2,
    stage_2_base_learning_rate=10., stage_1_epochs=100, stage_2_epochs=10,
    knn_every_epochs=10, save_interval_steps=500)


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
