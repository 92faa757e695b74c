"""Encoders and heads: `build_encoder(name, **options)` and `ContrastiveModel`."""
from supcon_tf.models.cifar_resnet import CIFAR_DEPTHS, CifarResNet
from supcon_tf.models.contrastive import ContrastiveModel
from supcon_tf.models.heads import ClassificationHead, ProjectionHead
from supcon_tf.models.resnet import RESNET_STAGES, RESNEXT_STAGES, ResNet

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


__all__ = ['build_encoder', 'ENCODERS', 'CifarResNet', 'ResNet',
           'ProjectionHead', 'ClassificationHead', 'ContrastiveModel']
