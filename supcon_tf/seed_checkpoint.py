"""Checkpoints written by the seed's PyTorch code
(GuillaumeErhard/Supervised_contrastive_loss_pytorch).

Its train.py saves `checkpoint/ckpt_contrastive.pth` and
`checkpoint/ckpt_cross_entropy.pth` with `torch.save`: a dict holding the
`state_dict` of its `ResNetContrastive` under 'net' (and 'epoch', 'avg_loss'
or 'acc'). `read_pth` (torch_files) reads such a file without PyTorch and without
running code from it; `seed_names(model)` maps the seed's parameter names onto a
`ContrastiveModel` built by the seed presets (the CIFAR ResNet with option-A
shortcuts, the two-layer projection head with biases, the classifier), and
`restore_seed` reads a checkpoint in, with the same contract as
`official.restore_official`.
"""
from absl import logging

from supcon_tf.enums import CHECKPOINT_PARTS as PARTS
from supcon_tf.enums import check_parts
from supcon_tf.torch_files import (CONV, batch_norm_names, linear_names,
                                   read_pth, restore_named, state_dict_in,
                                   to_port)

# TensorFlow (and the model modules) load only in the functions that need a
# model: `read_pth` refuses a bad file before TensorFlow loads.
__all__ = ['read_pth', 'seed_state_dict', 'seed_names', 'to_port',
           'num_classes', 'restore_seed']


def seed_state_dict(checkpoint, path='the checkpoint'):
  """The state_dict in what read_pth returned: under 'net' (train.py's
  checkpoints) or the dict itself."""
  return state_dict_in(checkpoint, ('net',), path)


def _encoder_names(encoder):
  from supcon_tf.models.cifar_resnet import CifarResNet
  from supcon_tf.models.layers import conv_kernel
  if not isinstance(encoder, CifarResNet):
    raise ValueError(
        "The seed's code has the CIFAR ResNet-20..1202 encoders; this model "
        f'has {type(encoder).__name__}, which it never wrote (use a seed '
        'preset, or --resnet_depth=20/32/44/56/110).')
  names = {'conv1.weight': (conv_kernel(encoder.stem), CONV)}
  names.update(batch_norm_names('bn1', encoder.stem_bn))
  per_stage = (encoder.depth - 2) // 6
  for i, block in enumerate(encoder.blocks):
    scope = f'layer{i // per_stage + 1}.{i % per_stage}'
    names[f'{scope}.conv1.weight'] = (conv_kernel(block.conv1), CONV)
    names[f'{scope}.conv2.weight'] = (conv_kernel(block.conv2), CONV)
    names.update(batch_norm_names(f'{scope}.bn1', block.bn1))
    names.update(batch_norm_names(f'{scope}.bn2', block.bn2))
    if block.projection is not None and block.shortcut == 'B':
      conv, norm = block.projection.layers
      names[f'{scope}.shortcut.0.weight'] = (conv_kernel(conv), CONV)
      names.update(batch_norm_names(f'{scope}.shortcut.1', norm))
  return names


def _projection_head_names(head):
  if len(head.dense) != 2 or head.norms:
    raise ValueError(
        "The seed's projection head is two Linear layers without BatchNorm "
        f'(--projection_head_layers=64,64); this one has {len(head.dense)} '
        f'dense layers{" and BatchNorm" if head.norms else ""}.')
  names = linear_names('contrastive_hidden_layer', head.dense[0])
  names.update(linear_names('contrastive_output_layer', head.dense[1]))
  return names


_PART_PREFIXES = {
    'encoder': ('conv1.', 'bn1.', 'layer'),
    'projection_head': ('contrastive_hidden_layer.',
                        'contrastive_output_layer.'),
    'classification_head': ('linear.',),
}


def seed_names(model, parts=PARTS):
  """{seed state_dict name: (variable, axes to transpose the seed's tensor
  by, or None)} for the chosen parts of a built ContrastiveModel."""
  check_parts(parts)
  names = {}
  if 'encoder' in parts:
    names.update(_encoder_names(model.encoder))
  if 'projection_head' in parts:
    names.update(_projection_head_names(model.projection_head))
  if 'classification_head' in parts:
    names.update(linear_names('linear', model.classification_head.dense))
  return names


def num_classes(state):
  """The classifier's size in a seed state_dict (its `linear` layer)."""
  weight = state.get('linear.weight')
  return None if weight is None or weight.ndim != 2 else int(weight.shape[0])


def restore_seed(model, path, parts=PARTS, ignore_missing=False, state=None):
  """Reads a seed checkpoint (.pth) into `model` (a built ContrastiveModel of
  a seed preset); returns the seed names it restored.

  A model variable the checkpoint lacks or holds with another shape, or a
  checkpoint tensor of a chosen part that the model lacks, is one ValueError
  naming it, and nothing is assigned; with `ignore_missing` those are skipped
  (and logged). `num_batches_tracked` (PyTorch's BatchNorm step count) is
  not a weight and is skipped. `state`: the state_dict, when already read.
  """
  if state is None:
    state = seed_state_dict(read_pth(path), path)
  prefixes = tuple(p for part in parts for p in _PART_PREFIXES[part])
  found = restore_named(
      state, seed_names(model, parts), lambda name: name.startswith(prefixes),
      path, "build it with the seed run's preset and depth, or pass "
      '--ignore_missing_checkpoint_vars', ignore_missing)
  logging.info('Restored %d tensors of %s from %s.', len(found),
               ', '.join(parts), path)
  return found
