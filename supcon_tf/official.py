"""Checkpoints written by the official code (google-research `supcon/`).

The official model is TF1 `tf.layers` code; its checkpoints are name-based:
`ContrastiveModel/Encoder/...`, `ContrastiveModel/ProjectionHead/...`,
`ContrastiveModel/ClassificationHead/...`, possibly under an outer scope, with
the optimizer's slots beside each variable. `official_names(model)` maps those
names onto a `ContrastiveModel` built from the same flags, and
`restore_official` reads them in (BatchNorm moving statistics included).
Names follow the official layer classes: each block is
`BlockGroup{g}/{ResidualBlock|BottleneckBlock|ResNextBlock}[_i]`, and inside
it the convolutions and BatchNorms are numbered in construction order, the
projection shortcut's first.
"""
import tensorflow as tf
from absl import logging

from supcon_tf.enums import CHECKPOINT_PARTS as PARTS
from supcon_tf.enums import check_parts
from supcon_tf.models.layers import conv_kernel
from supcon_tf.models.resnet import RESNET_STAGES, RESNEXT_STAGES, ResNet

SCOPE = 'ContrastiveModel/'
_PART_SCOPES = {'encoder': 'Encoder', 'projection_head': 'ProjectionHead',
                'classification_head': 'ClassificationHead'}


def _numbered(name, index):
  """TF1's unique names: name, name_1, name_2, ..."""
  return name if index == 0 else f'{name}_{index}'


def _batch_norm(scope, layer):
  names = {f'{scope}/gamma': layer.gamma,
           f'{scope}/moving_mean': layer.moving_mean,
           f'{scope}/moving_variance': layer.moving_variance}
  if layer.center:
    names[f'{scope}/beta'] = layer.beta
  return names


def _encoder_names(encoder):
  if not isinstance(encoder, ResNet):
    raise ValueError(
        'The official code has ResNet-18..200 and ResNeXt-50..200 encoders; '
        f'this model has {type(encoder).__name__} (resnet_depth '
        f'{getattr(encoder, "depth", "?")}), which it never wrote.')
  names = {'Encoder/Conv2DFixedPadding/conv2d/kernel': conv_kernel(encoder.stem)}
  names.update(_batch_norm('Encoder/batch_normalization', encoder.stem_bn))
  resnext = encoder.architecture == 'RESNEXT'
  kind, stages = (RESNEXT_STAGES[f'resnext{encoder.depth}'] if resnext
                  else RESNET_STAGES[f'resnet{encoder.depth}'])
  block_class = {'basic': 'ResidualBlock', 'bottleneck': 'BottleneckBlock',
                 'resnext': 'ResNextBlock'}[kind]
  blocks = iter(encoder.blocks)
  for group, count in enumerate(stages):
    for index in range(count):
      block = next(blocks)
      scope = f'Encoder/BlockGroup{group}/{_numbered(block_class, index)}'
      convs = [block.conv1, block.conv2] + (
          [block.conv3] if kind != 'basic' else [])
      norms = [block.bn1, block.bn2] + ([block.bn3] if kind != 'basic' else [])
      if block.projection is not None:
        shortcut_conv, shortcut_norm = block.projection.layers
        convs.insert(0, shortcut_conv)
        norms.insert(0, shortcut_norm)
      fixed = 0  # Conv2DFixedPadding layers; ResNeXt's 3x3 is GroupConv2D.
      for conv in convs:
        if resnext and conv is block.conv2:
          names[f'{scope}/GroupConv2D/kernel'] = conv.kernel
        else:
          names[f'{scope}/{_numbered("Conv2DFixedPadding", fixed)}/conv2d/'
                'kernel'] = conv_kernel(conv)
          fixed += 1
      for i, norm in enumerate(norms):
        names.update(_batch_norm(
            f'{scope}/{_numbered("batch_normalization", i)}', norm))
  return names


def _projection_head_names(head):
  names = {}
  for i, dense in enumerate(head.dense):
    scope = f'ProjectionHead/{_numbered("dense", i)}'
    names[f'{scope}/kernel'] = dense.kernel
    if dense.use_bias:
      names[f'{scope}/bias'] = dense.bias
  for i, norm in enumerate(head.norms):
    names.update(_batch_norm(
        f'ProjectionHead/{_numbered("batch_normalization", i)}', norm))
  return names


def official_names(model, parts=PARTS):
  """{official name without the 'ContrastiveModel/' scope: variable} for
  the chosen parts of a built ContrastiveModel."""
  check_parts(parts)
  names = {}
  if 'encoder' in parts:
    names.update(_encoder_names(model.encoder))
  if 'projection_head' in parts:
    names.update(_projection_head_names(model.projection_head))
  if 'classification_head' in parts:
    dense = model.classification_head.dense
    names['ClassificationHead/dense/kernel'] = dense.kernel
    names['ClassificationHead/dense/bias'] = dense.bias
  return names


def checkpoint_file(path):
  """A checkpoint prefix: `path` itself, or the latest checkpoint in the
  directory `path` (as the official --reference_ckpt)."""
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if not latest:
      raise ValueError(f'No checkpoint in the directory {path}.')
    return latest
  if not tf.io.gfile.glob(path + '.index'):
    raise ValueError(f'No checkpoint at {path} ({path}.index is missing).')
  return path


def _outer_scope(shapes, path):
  scopes = {name[:name.index(SCOPE)] for name in shapes if SCOPE in name}
  if not scopes:
    raise ValueError(f'{path} holds no official model variables (none is '
                     f'under {SCOPE!r}).')
  if len(scopes) > 1:
    raise ValueError(f'{path} holds several official models, under the '
                     f'scopes {sorted(scopes)}.')
  return scopes.pop()


def restore_official(model, checkpoint_path, parts=PARTS,
                     ignore_missing=False):
  """Reads an official checkpoint into `model` (a built ContrastiveModel with
  the run's flags); returns the checkpoint names it restored.

  A model variable the checkpoint lacks or holds with another shape, or a
  checkpoint variable of a chosen part that the model lacks (another
  architecture or head), is a ValueError naming it, and nothing is assigned;
  with `ignore_missing` those are skipped (and logged), as the official
  --ignore_missing_checkpoint_vars.
  """
  path = checkpoint_file(checkpoint_path)
  reader = tf.train.load_checkpoint(path)
  shapes = reader.get_variable_to_shape_map()
  outer = _outer_scope(shapes, path)
  wanted = {outer + SCOPE + name: variable
            for name, variable in official_names(model, parts).items()}
  problems, found = [], {}
  for name, variable in wanted.items():
    if name not in shapes:
      problems.append(f'{name} is not in the checkpoint')
    elif list(shapes[name]) != list(variable.shape):
      problems.append(f'{name} has shape {shapes[name]} in the checkpoint, '
                      f'{list(variable.shape)} in the model')
    else:
      found[name] = variable
  scopes = tuple(outer + SCOPE + _PART_SCOPES[p] + '/' for p in parts)
  for name in sorted(shapes):
    # Optimizer slots sit under their variable's name.
    if (name.startswith(scopes) and name not in wanted and
        name.rsplit('/', 1)[0] not in shapes):
      problems.append(f'{name} is in the checkpoint but not in the model')
  if problems:
    if not ignore_missing:
      raise ValueError(
          f'{path} does not match the model ({len(problems)} problems; '
          f'build it with the official run\'s flags, or pass '
          f'--ignore_missing_checkpoint_vars): ' + '; '.join(problems[:5]) +
          ('; ...' if len(problems) > 5 else ''))
    for problem in problems:
      logging.warning('Official checkpoint %s: %s; skipped.', path, problem)
  for name, variable in found.items():
    variable.assign(tf.cast(reader.get_tensor(name), variable.dtype))
  logging.info('Restored %d variables of %s from %s.', len(found),
               ', '.join(parts), path)
  return sorted(found)
