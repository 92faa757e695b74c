"""Encoders and heads: `build_encoder(name, **options)`, `ContrastiveModel` and
`build_model(config.model, num_classes)`, a config's model section (or a
whole Config)."""
from supcon_tf.models.cifar_resnet import CIFAR_DEPTHS, CifarResNet
from supcon_tf.models.contrastive import ContrastiveModel
from supcon_tf.models.heads import ClassificationHead, ProjectionHead
from supcon_tf.models.resnet import (RESNET_LAYOUTS, RESNET_STAGES,
                                     RESNEXT_STAGES, ResNet)

ENCODERS = tuple(CIFAR_DEPTHS) + tuple(RESNET_STAGES) + tuple(RESNEXT_STAGES)


def build_encoder(name, cifar_stem=False, **options):
  """An encoder by name: resnet20|32|44|56|110 (CIFAR), resnet18..200 or
  resnext50|101|152|200.

  For the ImageNet ResNets, `cifar_stem=True` sets the official CIFAR stem
  (3x3 stride-1 first convolution, no initial max-pool); other options go to
  `CifarResNet` or `ResNet`.
  """
  if name in CIFAR_DEPTHS:
    if cifar_stem:
      raise ValueError(f'cifar_stem applies to ResNet-18..200, not {name}.')
    return CifarResNet(CIFAR_DEPTHS[name], name=name, **options)
  if name in RESNET_STAGES or name in RESNEXT_STAGES:
    if cifar_stem:
      options = dict(dict(first_conv_kernel_size=3, first_conv_stride=1,
                          use_initial_max_pool=False), **options)
    if name in RESNEXT_STAGES:
      return ResNet(int(name[len('resnext'):]), name=name,
                    architecture='RESNEXT', **options)
    return ResNet(int(name[len('resnet'):]), name=name, **options)
  raise ValueError(f'Unknown encoder name {name!r}. Valid names: '
                   f'{", ".join(ENCODERS)}.')


def build_model(config, num_classes):
  """The encoder named by resnet_depth with the configured heads; `config`:
  the model section (`Config.model`) or a Config."""
  name = encoder_name(config)
  if name in CIFAR_DEPTHS:
    encoder = build_encoder(name, weight_init=config.weight_init)
  else:
    encoder = build_encoder(
        name, resnet_width=config.resnet_width,
        first_conv_kernel_size=config.first_conv_kernel_size,
        first_conv_stride=config.first_conv_stride,
        use_initial_max_pool=config.use_initial_max_pool,
        layout=config.resnet_layout)
  # The model's options are Config fields of the same names.
  return ContrastiveModel(encoder, num_classes, **{
      name: getattr(config, name) for name in (
          'projection_head_layers', 'normalize_embedding',
          'use_projection_batch_norm', 'use_projection_batch_norm_beta',
          'stop_gradient_before_classification_head',
          'stop_gradient_before_projection_head',
          'zero_initialize_classifier', 'weight_init')})


def encoder_name(config):
  """The encoder `build_model` builds: the CIFAR ResNet of that depth, else
  the ResNet (or, with resnet_architecture=RESNEXT, ResNeXt) one."""
  depth = config.resnet_depth
  if f'resnet{depth}' in CIFAR_DEPTHS:
    return f'resnet{depth}'
  prefix = 'resnext' if config.resnet_architecture == 'RESNEXT' else 'resnet'
  return f'{prefix}{depth}'


__all__ = ['build_encoder', 'build_model', 'encoder_name', 'ENCODERS',
           'CifarResNet', 'ResNet',
           'ProjectionHead', 'ClassificationHead', 'ContrastiveModel']
