"""Checkpoints written by the seed's PyTorch code
(GuillaumeErhard/Supervised_contrastive_loss_pytorch).

Its train.py saves `checkpoint/ckpt_contrastive.pth` and
`checkpoint/ckpt_cross_entropy.pth` with `torch.save`: a dict holding the
`state_dict` of its `ResNetContrastive` under 'net' (and 'epoch', 'avg_loss'
or 'acc'). `read_pth` reads such a file without PyTorch and without running
code from it; `seed_names(model)` maps the seed's parameter names onto a
`ContrastiveModel` built by the seed presets (the CIFAR ResNet with option-A
shortcuts, the two-layer projection head with biases, the classifier), and
`restore_seed` reads a checkpoint in, with the same contract as
`official.restore_official`.
"""
import io
import pickle
import zipfile

import numpy as np
from absl import logging

from supcon_tf.enums import CHECKPOINT_PARTS as PARTS
from supcon_tf.enums import check_parts

# TensorFlow (and the model modules) load only in the functions that need a
# model: `read_pth` refuses a bad file before TensorFlow loads.

# torch.save's storage classes, by the name its pickle gives them.
_STORAGES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64,
    'HalfStorage': np.float16, 'LongStorage': np.int64,
    'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}


class _Storage:
  """A storage class named in the pickle: only its dtype is used (slots:
  a pickle cannot give it other attributes)."""
  __slots__ = ('dtype',)

  def __init__(self, name):
    self.dtype = np.dtype(_STORAGES[name])


def _rebuild_tensor(storage, offset, size, stride, *unused):
  """torch._utils._rebuild_tensor_v2 on a NumPy storage: a strided view."""
  del unused  # requires_grad, backward hooks, metadata.
  numbers = (offset, *size, *stride)
  if (not isinstance(storage, np.ndarray) or len(size) != len(stride) or
      not all(isinstance(n, int) and n >= 0 for n in numbers) or
      (all(size) and offset + sum((n - 1) * s for n, s in zip(size, stride))
       >= len(storage)) or (not size and offset >= len(storage))):
    # as_strided would read memory outside the storage.
    raise ValueError(f'a tensor of shape {tuple(size)} reaches outside its '
                     'storage')
  item = storage.itemsize
  if not size:
    return np.array(storage[offset])
  return np.lib.stride_tricks.as_strided(
      storage[offset:], shape=tuple(size),
      strides=tuple(s * item for s in stride)).copy()


def _rebuild_parameter(data, *unused):
  """torch._utils._rebuild_parameter: a Parameter is its data here."""
  del unused
  return data


class _OrderedDict(dict):
  """collections.OrderedDict, which may carry state (state_dict's
  `_metadata`); a plain dict keeps the order as well."""

  def __setstate__(self, state):
    pass  # `_metadata`: PyTorch's module versions, not needed here.


# What a .pth of tensors, containers and numbers names; anything else is
# refused before it is looked up, so nothing in the file can run.
_ALLOWED = {
    ('collections', 'OrderedDict'): _OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    **{('torch', name): _Storage for name in _STORAGES},
}


class _Unpickler(pickle.Unpickler):

  def __init__(self, data, archive, prefix, path, byteorder):
    super().__init__(data)
    self.archive = archive
    self.prefix = prefix
    self.path = path
    self.byteorder = byteorder
    self.storages = {}

  def find_class(self, module, name):
    if (module, name) not in _ALLOWED:
      raise ValueError(
          f'{self.path} names {module}.{name}, which is not a tensor, a '
          'container or a number; refused (a .pth can run code when '
          'unpickled).')
    found = _ALLOWED[(module, name)]
    # A storage class is a fresh marker for each lookup: nothing a file
    # does to it reaches the next file.
    return _Storage(name) if found is _Storage else found

  def persistent_load(self, pid):
    if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != 'storage'
        or not isinstance(pid[1], _Storage) or not isinstance(pid[2], str)
        or not isinstance(pid[4], int) or pid[4] < 0):
      raise ValueError(f'{self.path} holds an unknown record {pid!r:.80}.')
    _, kind, key, _, count = pid
    if key not in self.storages:
      member = f'{self.prefix}data/{key}'
      try:
        raw = self.archive.read(member)
      except KeyError:
        raise ValueError(f'{self.path} is incomplete: {member} is '
                         'missing.') from None
      if len(raw) < count * kind.dtype.itemsize:
        raise ValueError(f'{self.path} is incomplete: {member} holds '
                         f'{len(raw)} bytes of {count * kind.dtype.itemsize}.')
      self.storages[key] = np.frombuffer(
          raw, kind.dtype.newbyteorder(self.byteorder), count)
    return self.storages[key]


def read_pth(path):
  """The object a `torch.save` file holds, tensors as NumPy arrays; refuses
  (ValueError) a file that is not one, is cut short, or names anything but
  tensors, plain containers and numbers. The zip format of PyTorch >= 1.6."""
  try:
    archive = zipfile.ZipFile(path)
  except FileNotFoundError:
    raise ValueError(f'No checkpoint at {path}.') from None
  except (zipfile.BadZipFile, OSError) as error:
    raise ValueError(
        f'{path} is not a readable torch.save file ({error}): truncated, or '
        'written in the format before PyTorch 1.6.') from None
  with archive:
    pickles = [n for n in archive.namelist() if n.endswith('data.pkl')]
    if len(pickles) != 1:
      raise ValueError(f'{path} is not a torch.save file (no data.pkl).')
    prefix = pickles[0][:-len('data.pkl')]
    try:
      data = archive.read(pickles[0])
      # Files before PyTorch 1.10 have no byteorder: little-endian.
      order = (archive.read(prefix + 'byteorder').decode().strip()
               if prefix + 'byteorder' in archive.namelist() else 'little')
    except (zipfile.BadZipFile, OSError, EOFError) as error:
      raise ValueError(f'{path} is damaged ({error}).') from None
    unpickler = _Unpickler(io.BytesIO(data), archive, prefix, path,
                           '<' if order == 'little' else '>')
    try:
      return unpickler.load()
    except ValueError as error:
      if str(error).startswith(path):
        raise
      raise ValueError(f'{path} is damaged ({error}).') from None
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError,
            TypeError, IndexError, KeyError, AttributeError, RecursionError,
            MemoryError) as error:
      raise ValueError(f'{path} is damaged ({type(error).__name__}: '
                       f'{error}).') from None


def seed_state_dict(checkpoint, path='the checkpoint'):
  """The state_dict in what read_pth returned: under 'net' (train.py's
  checkpoints) or the dict itself."""
  state = checkpoint.get('net', checkpoint) if isinstance(
      checkpoint, dict) else None
  if not isinstance(state, dict) or not all(
      isinstance(v, np.ndarray) for v in state.values()):
    raise ValueError(f'{path} holds no state_dict (a dict of tensors, or '
                     "one under 'net').")
  return state


# Layouts: PyTorch's convolution kernels are [out, in, h, w] (HWIO here),
# its Linear weights [out, in] ([in, out] here).
_CONV, _LINEAR, _SAME = (2, 3, 1, 0), (1, 0), None


def _batch_norm(scope, layer):
  names = {f'{scope}.weight': (layer.gamma, _SAME),
           f'{scope}.running_mean': (layer.moving_mean, _SAME),
           f'{scope}.running_var': (layer.moving_variance, _SAME)}
  if layer.center:
    names[f'{scope}.bias'] = (layer.beta, _SAME)
  return names


def _linear(scope, dense):
  names = {f'{scope}.weight': (dense.kernel, _LINEAR)}
  if dense.use_bias:
    names[f'{scope}.bias'] = (dense.bias, _SAME)
  return names


def _encoder_names(encoder):
  from supcon_tf.models.cifar_resnet import CifarResNet
  from supcon_tf.models.layers import conv_kernel
  if not isinstance(encoder, CifarResNet):
    raise ValueError(
        "The seed's code has the CIFAR ResNet-20..1202 encoders; this model "
        f'has {type(encoder).__name__}, which it never wrote (use a seed '
        'preset, or --resnet_depth=20/32/44/56/110).')
  names = {'conv1.weight': (conv_kernel(encoder.stem), _CONV)}
  names.update(_batch_norm('bn1', encoder.stem_bn))
  per_stage = (encoder.depth - 2) // 6
  for i, block in enumerate(encoder.blocks):
    scope = f'layer{i // per_stage + 1}.{i % per_stage}'
    names[f'{scope}.conv1.weight'] = (conv_kernel(block.conv1), _CONV)
    names[f'{scope}.conv2.weight'] = (conv_kernel(block.conv2), _CONV)
    names.update(_batch_norm(f'{scope}.bn1', block.bn1))
    names.update(_batch_norm(f'{scope}.bn2', block.bn2))
    if block.projection is not None and block.shortcut == 'B':
      conv, norm = block.projection.layers
      names[f'{scope}.shortcut.0.weight'] = (conv_kernel(conv), _CONV)
      names.update(_batch_norm(f'{scope}.shortcut.1', norm))
  return names


def _projection_head_names(head):
  if len(head.dense) != 2 or head.norms:
    raise ValueError(
        "The seed's projection head is two Linear layers without BatchNorm "
        f'(--projection_head_layers=64,64); this one has {len(head.dense)} '
        f'dense layers{" and BatchNorm" if head.norms else ""}.')
  names = _linear('contrastive_hidden_layer', head.dense[0])
  names.update(_linear('contrastive_output_layer', head.dense[1]))
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
    names.update(_linear('linear', model.classification_head.dense))
  return names


def to_port(tensor, layout):
  """A seed tensor in this project's layout."""
  return tensor if layout is None else np.transpose(tensor, layout)


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
  wanted = seed_names(model, parts)
  problems, found = [], {}
  for name, (variable, layout) in wanted.items():
    if name not in state:
      problems.append(f'{name} is not in the checkpoint')
      continue
    value = to_port(state[name], layout)
    if list(value.shape) != list(variable.shape):
      problems.append(
          f'{name} has shape {list(state[name].shape)} in the checkpoint '
          f'({list(value.shape)} here), {list(variable.shape)} in the model')
    else:
      found[name] = (variable, value)
  prefixes = tuple(p for part in parts for p in _PART_PREFIXES[part])
  for name in state:
    if (name.startswith(prefixes) and name not in wanted and
        not name.endswith('num_batches_tracked')):
      problems.append(f'{name} is in the checkpoint but not in the model')
  if problems:
    if not ignore_missing:
      raise ValueError(
          f'{path} does not match the model ({len(problems)} problems; '
          'build it with the seed run\'s preset and depth, or pass '
          '--ignore_missing_checkpoint_vars): ' + '; '.join(problems[:5]) +
          ('; ...' if len(problems) > 5 else ''))
    for problem in problems:
      logging.warning('Seed checkpoint %s: %s; skipped.', path, problem)
  for variable, value in found.values():
    variable.assign(value.astype(variable.dtype))
  logging.info('Restored %d tensors of %s from %s.', len(found),
               ', '.join(parts), path)
  return sorted(found)
