"""PyTorch checkpoints of the SupCon codes people train and release:

- SupContrast's (HobbitLong; `main_supcon.py`, `main_ce.py`): `util.save_model`
  writes {'opt': the run's argparse options, 'model': state_dict,
  'optimizer': ..., 'epoch': ...}; the model is `networks/resnet_big.py`'s
  `SupConResNet` (keys `encoder.*`, projection `head.*`: one Linear, or
  Linear-ReLU-Linear) or `SupCEResNet` (`encoder.*`, classifier `fc.*`),
  ResNet-18/34/50/101 with a 3x3 stride-1 stem and no max-pool;
  DataParallel puts `module.` inside the keys (`encoder.module.conv1...`)
  or before them (`module.encoder.conv1...`).
- torchvision-layout ResNets (what MoCo-style trainers release for
  ImageNet): keys `conv1.*`, `bn1.*`, `layer1.0.*`, `downsample.*`, `fc.*`,
  under prefixes such as `module.`, `encoder_q.` (MoCo's query encoder;
  `encoder_k.` and the queue are not read), `backbone.`, in a checkpoint
  dict under 'state_dict' or 'model', or a bare state_dict.

`find_layout(state)` reads the architecture from the keys and shapes alone;
`model_fields(layout)` are the Config fields of the matching model;
`restore_torch(model, layout, state)` places the tensors. Reading is
`torch_files.read_pth`: nothing in a file runs.
"""
import ast
import dataclasses

import numpy as np
from absl import logging

from supcon_tf.torch_files import (CONV, batch_norm_names, linear_names,
                                   restore_named, state_dict_in)

# Where a checkpoint dict keeps its state_dict: SupContrast's save_model,
# MoCo's and torchvision's reference trainers, the seed's train.py.
STATE_KEYS = ('model', 'state_dict', 'net')
# Of several encoders in one file, the one to read (MoCo: the query encoder).
_PREFERRED = ('encoder_q.', 'encoder.', 'backbone.', '')
# The ResNets by block kind and blocks per group.
_DEPTHS = {('basic', (2, 2, 2, 2)): 18, ('basic', (3, 4, 6, 3)): 34,
           ('bottleneck', (3, 4, 6, 3)): 50, ('bottleneck', (3, 4, 23, 3)): 101,
           ('bottleneck', (3, 8, 36, 3)): 152}
# SupContrast's datasets: classes, and the normalisation it trained with
# (its Normalize constants are this project's cifar10 / cifar100 within
# 0.06 of a grey level).
_DATASETS = {'cifar10': 10, 'cifar100': 100}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)


@dataclasses.dataclass
class Layout:
  """What a PyTorch state_dict holds, read from its keys."""
  code: str  # 'supcontrast' (resnet_big) or 'torchvision'.
  encoder: str  # Key prefix of the encoder ('encoder.', 'encoder_q.', '').
  depth: int
  stem: int  # Kernel size of the first convolution: 3 or 7.
  projection: tuple = ()  # (key scope, units) of each projection layer.
  classifier: str = ''  # Key scope of the classifier, '' when none.
  num_classes: int = 0
  skipped: tuple = ()  # Keys of the file that are not read (MoCo's key
  # encoder and queue).

  def describe(self):
    head = ('a projection head ' + '-'.join(str(u) for _, u in self.projection)
            if self.projection else 'no projection head')
    classes = (f'a {self.num_classes}-class classifier' if self.classifier
               else 'no classifier')
    where = f" under '{self.encoder}'" if self.encoder else ''
    return (f"{'SupContrast resnet_big' if self.code == 'supcontrast' else 'torchvision'}"
            f' ResNet-{self.depth}{where}, {head}, {classes}')


def plain_names(state, path='the checkpoint'):
  """The state_dict without DataParallel's `module.` segments."""
  plain = {}
  for name, value in state.items():
    key = '.'.join(part for part in name.split('.') if part != 'module')
    if key in plain:
      raise ValueError(f'{path} holds {key} twice (with and without '
                       "'module.').")
    plain[key] = value
  return plain


def _encoder_prefix(state, path):
  prefixes = sorted(
      name[:-len('conv1.weight')] for name, value in state.items()
      if name.endswith('conv1.weight') and value.ndim == 4 and
      value.shape[1] == 3 and f'{name[:-len("conv1.weight")]}layer1.0.'
      'conv1.weight' in state)
  if not prefixes:
    raise ValueError(
        f'{path} holds no ResNet of a known layout (no conv1.weight with 3 '
        'input channels beside layer1.0.conv1.weight, under any prefix).')
  if len(prefixes) == 1:
    return prefixes[0]
  for preferred in _PREFERRED:
    if preferred in prefixes:
      return preferred
  raise ValueError(f'{path} holds several ResNets (under ' +
                   ', '.join(repr(p) for p in prefixes) +
                   '); none of them is the one to read here.')


def _depth(state, prefix, path):
  kind = ('bottleneck' if f'{prefix}layer1.0.conv3.weight' in state
          else 'basic')
  blocks = []
  for group in range(1, 5):
    count = 0
    while f'{prefix}layer{group}.{count}.conv1.weight' in state:
      count += 1
    blocks.append(count)
  depth = _DEPTHS.get((kind, tuple(blocks)))
  if depth is None:
    raise ValueError(f'{path} holds a {kind}-block ResNet with {blocks} '
                     'blocks per group, not ResNet-18/34/50/101/152.')
  width = state[f'{prefix}conv1.weight'].shape[0]
  if width != 64:
    raise ValueError(f'{path} holds a ResNet of stem width {width}; the '
                     'PyTorch ResNets read here start at 64.')
  return depth


def _dense_chain(state, scopes, units_in, path):
  """[(scope, units)] of Linear layers that feed one another."""
  chain = []
  for scope in scopes:
    weight = state[f'{scope}.weight']
    if weight.ndim != 2 or weight.shape[1] != units_in:
      raise ValueError(f'{path}: {scope}.weight has shape '
                       f'{list(weight.shape)}, not [units, {units_in}].')
    units_in = int(weight.shape[0])
    chain.append((scope, units_in))
  return tuple(chain)


def _linear_scopes(state, scope):
  """One Linear (`scope`) or a Sequential of Linear-ReLU-Linear
  (`scope.0`, `scope.2`)."""
  if f'{scope}.weight' in state:
    return [scope]
  if f'{scope}.0.weight' in state and f'{scope}.2.weight' in state:
    return [f'{scope}.0', f'{scope}.2']
  return []


def find_layout(state, path='the checkpoint'):
  """The Layout of a state_dict (module. already dropped: `plain_names`);
  a ValueError names what does not fit."""
  prefix = _encoder_prefix(state, path)
  depth = _depth(state, prefix, path)
  stem = int(state[f'{prefix}conv1.weight'].shape[-1])
  features = 512 if depth < 50 else 2048
  if prefix.endswith('encoder.') and stem == 3:
    # SupContrast: the heads beside the encoder.
    root = prefix[:-len('encoder.')]
    code, projection = 'supcontrast', _linear_scopes(state, f'{root}head')
    classifier = _linear_scopes(state, f'{root}fc')
  else:
    # torchvision: `fc` inside the encoder, a projection in MoCo's encoders.
    code, root = 'torchvision', prefix
    fc = _linear_scopes(state, f'{prefix}fc')
    moco = prefix.startswith(('encoder_q.', 'encoder_k.')) or 'queue' in state
    projection, classifier = (fc, []) if moco or len(fc) == 2 else ([], fc)
  if len(classifier) > 1:
    raise ValueError(f'{path}: the classifier {classifier[0][:-2]} has two '
                     'layers; the classifiers read here have one.')
  projection = _dense_chain(state, projection, features, path)
  num_classes = 0
  if classifier:
    num_classes = _dense_chain(state, classifier, features, path)[0][1]
  owned = (prefix, f'{root}head.', f'{root}fc.') if root != prefix else (
      prefix,)
  skipped = tuple(n for n in state if not n.startswith(owned))
  return Layout(code, prefix, depth, stem, projection,
                classifier[0] if classifier else '', num_classes, skipped)


def model_fields(layout):
  """The Config fields of the model a Layout holds: PyTorch's ResNet, its
  stem, heads on the unnormalised feature with a bias on every layer."""
  fields = dict(
      resnet_depth=layout.depth, resnet_architecture='RESNET_V1',
      resnet_width=1., resnet_layout='torch',
      first_conv_kernel_size=layout.stem,
      first_conv_stride=1 if layout.stem == 3 else 2,
      use_initial_max_pool=layout.stem != 3, normalize_embedding=False,
      weight_init='seed', use_projection_batch_norm=False)
  if layout.projection:
    fields['projection_head_layers'] = tuple(u for _, u in layout.projection)
  return fields


def data_fields(layout, options):
  """The Config fields of the data a checkpoint was trained on, from the
  options SupContrast saves beside the weights ({} for a torchvision file
  without them: ImageNet's stem; image size 224, ImageNet's normalisation)."""
  if layout.code == 'torchvision':
    return dict(input_fn='imagenet', image_size=224,
                normalization='imagenet2012')
  dataset = options.get('dataset')
  size = options.get('size')
  fields = {'image_size': size} if isinstance(size, int) and size > 0 else {}
  if dataset in _DATASETS:
    return dict(fields, input_fn=dataset, normalization=dataset)
  if dataset == 'path':
    try:
      mean = tuple(ast.literal_eval(str(options.get('mean'))))
    except (ValueError, SyntaxError, TypeError):
      mean = ()
    imagenet = len(mean) == 3 and np.allclose(mean, _IMAGENET_MEAN, atol=1e-3)
    return dict(fields, input_fn='folder',
                normalization='imagenet2012' if imagenet else 'dataset')
  return fields


def num_classes_of(layout, options):
  """The classifier's size: the file's classifier, else the dataset's."""
  return layout.num_classes or _DATASETS.get(options.get('dataset'), 0)


def options_of(checkpoint):
  """SupContrast's saved options (argparse.Namespace, read as a dict), or
  {} where the file has none."""
  options = checkpoint.get('opt') if isinstance(checkpoint, dict) else None
  return options if isinstance(options, dict) else {}


def read_checkpoint(checkpoint, path='the checkpoint', classifier=None,
                    classifier_path='the classifier'):
  """(state_dict without `module.`, Layout) of what read_pth returned;
  `classifier`: what read_pth returned of a SupContrast LinearClassifier
  (`fc.weight`, `fc.bias` alone), trained on the SupConResNet's encoder:
  it becomes the classifier."""
  state = plain_names(state_dict_in(checkpoint, STATE_KEYS, path), path)
  if classifier is not None:
    linear = plain_names(state_dict_in(classifier, STATE_KEYS,
                                       classifier_path), classifier_path)
    if set(linear) != {'fc.weight', 'fc.bias'}:
      raise ValueError(
          f'{classifier_path} is not a LinearClassifier: it holds '
          f'{", ".join(sorted(linear)[:4])}, not fc.weight and fc.bias alone.')
    if 'fc.weight' in state:
      raise ValueError(f'{path} has a classifier (fc) already; '
                       f'{classifier_path} would replace it.')
    state = {**state, **linear}
  return state, find_layout(state, path)


def _block_names(scope, block, layout):
  from supcon_tf.models.layers import conv_kernel
  convs = [c for c in ('conv1', 'conv2', 'conv3') if hasattr(block, c)]
  names = {}
  for conv in convs:
    names[f'{scope}.{conv}.weight'] = (conv_kernel(getattr(block, conv)),
                                       CONV)
    names.update(batch_norm_names(f'{scope}.bn{conv[-1]}',
                                  getattr(block, f'bn{conv[-1]}')))
  if block.projection is not None:
    shortcut = 'shortcut' if layout.code == 'supcontrast' else 'downsample'
    conv, norm = block.projection.layers
    names[f'{scope}.{shortcut}.0.weight'] = (conv_kernel(conv), CONV)
    names.update(batch_norm_names(f'{scope}.{shortcut}.1', norm))
  return names


def torch_names(model, layout):
  """{PyTorch name: (variable, layout)} of a built ContrastiveModel whose
  Config has `model_fields(layout)`."""
  from supcon_tf.models.layers import conv_kernel
  from supcon_tf.models.resnet import RESNET_STAGES
  encoder, prefix = model.encoder, layout.encoder
  names = {f'{prefix}conv1.weight': (conv_kernel(encoder.stem), CONV)}
  names.update(batch_norm_names(f'{prefix}bn1', encoder.stem_bn))
  index = 0
  for group, count in enumerate(RESNET_STAGES[f'resnet{layout.depth}'][1]):
    for block in range(count):
      names.update(_block_names(f'{prefix}layer{group + 1}.{block}',
                                encoder.blocks[index], layout))
      index += 1
  head = model.projection_head
  if layout.projection:
    for (scope, _), dense in zip(layout.projection, head.dense):
      names.update(linear_names(scope, dense))
  if layout.classifier:
    names.update(linear_names(layout.classifier,
                              model.classification_head.dense))
  return names


def restore_torch(model, layout, state, path='the checkpoint',
                  ignore_missing=False):
  """Places a PyTorch state_dict (`read_checkpoint`) in `model`, built from
  `model_fields(layout)`: all or nothing, as `torch_files.restore_named`.
  Returns the names restored."""
  skipped = set(layout.skipped)
  found = restore_named(
      state, torch_names(model, layout), lambda name: name not in skipped,
      path, 'the model is built from the keys; is the file cut or edited?',
      ignore_missing)
  if skipped:
    logging.info('Not read from %s: %d tensors outside the model (%s...).',
                 path, len(skipped), ', '.join(sorted(skipped)[:3]))
  logging.info('Restored %d tensors from %s: %s.', len(found), path,
               layout.describe())
  return found
