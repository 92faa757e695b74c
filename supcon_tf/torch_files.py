"""Files written by `torch.save`, read without PyTorch and without running
code from them, and PyTorch tensors placed in this project's variables.

`read_pth(path)` returns the saved object with tensors as NumPy arrays: the
zip format of PyTorch >= 1.6 and the format before it (what many released
checkpoints of 2019-2020 use). The pickle may name tensors, plain containers,
numbers, strings and argparse.Namespace (training scripts save their
options; read here as a dict); anything else refuses the file before it is
looked up. `restore_named` assigns tensors by PyTorch name, all or nothing;
`seed_checkpoint` and `torch_checkpoint` give it the names of their models.
"""
import io
import pickle
import zipfile

import numpy as np
from absl import logging

# torch.save's storage classes, by the name its pickle gives them.
_STORAGES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64,
    'HalfStorage': np.float16, 'LongStorage': np.int64,
    'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}
# The legacy format's header: its magic number and protocol version.
_LEGACY_MAGIC, _LEGACY_PROTOCOL = 0x1950a86a20f9469cfc6c, 1001


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


class Namespace(dict):
  """argparse.Namespace as data: its attributes as dict entries, nothing of
  argparse run."""

  def __setstate__(self, state):
    if isinstance(state, dict):
      self.update(state)


# What a .pth of tensors, containers and numbers names; anything else is
# refused before it is looked up, so nothing in the file can run.
_ALLOWED = {
    ('collections', 'OrderedDict'): _OrderedDict,
    ('argparse', 'Namespace'): Namespace,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    **{('torch', name): _Storage for name in _STORAGES},
}


class _Unpickler(pickle.Unpickler):
  """The restricted unpickler; `storage(kind, key, count)` gives the data of
  a storage record."""

  def __init__(self, data, path, storage):
    super().__init__(data)
    self.path = path
    self.storage = storage

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
    # ('storage', class, key, location, count), and in the legacy format a
    # sixth entry: a view into another storage (none in the files read here).
    if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or
        pid[0] != 'storage' or not isinstance(pid[1], _Storage) or
        not isinstance(pid[2], str) or not isinstance(pid[4], int) or
        pid[4] < 0 or (len(pid) == 6 and pid[5] is not None)):
      raise ValueError(f'{self.path} holds an unknown record {pid!r:.80}.')
    return self.storage(pid[1], pid[2], pid[4])


def _zip_storages(archive, prefix, path, byteorder):
  """The zip format's storages: one member data/<key> each, read once."""
  storages = {}

  def storage(kind, key, count):
    if key not in storages:
      member = f'{prefix}data/{key}'
      try:
        raw = archive.read(member)
      except KeyError:
        raise ValueError(f'{path} is incomplete: {member} is '
                         'missing.') from None
      if len(raw) < count * kind.dtype.itemsize:
        raise ValueError(f'{path} is incomplete: {member} holds '
                         f'{len(raw)} bytes of {count * kind.dtype.itemsize}.')
      storages[key] = np.frombuffer(
          raw, kind.dtype.newbyteorder(byteorder), count)
    return storages[key]
  return storage


def _load_zip(archive, path):
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
  storage = _zip_storages(archive, prefix, path,
                          '<' if order == 'little' else '>')
  return _Unpickler(io.BytesIO(data), path, storage).load()


def _load_legacy(stream, path):
  """The format before PyTorch 1.6: header pickles, the object's pickle,
  the storage keys, then each storage as a little-endian int64 count and its
  bytes. The storages follow the pickle that refers to them, so it is read
  twice: first to learn them (placeholders), then with their data."""
  plain = lambda: _Unpickler(stream, path, None).load()
  if plain() != _LEGACY_MAGIC:
    raise ValueError(f'{path} is not a torch.save file.')
  if plain() != _LEGACY_PROTOCOL:
    raise ValueError(f'{path} is a torch.save file of an unknown version.')
  plain()  # sys_info: byte order and type sizes of the writing machine.
  start, found = stream.tell(), {}

  def placeholder(kind, key, count):
    found[key] = (kind.dtype, count)
    return np.zeros(count, kind.dtype)
  _Unpickler(stream, path, placeholder).load()
  keys = plain()
  if not isinstance(keys, list) or set(keys) != set(found):
    raise ValueError(f'{path} is damaged (its storage list does not match '
                     'its tensors).')
  storages = {}
  for key in keys:
    dtype, count = found[key]
    head = stream.read(8)
    size = dtype.itemsize * count
    raw = stream.read(size)
    if len(head) < 8 or int.from_bytes(head, 'little') != count or (
        len(raw) < size):
      raise ValueError(f'{path} is incomplete: storage {key} is cut short.')
    storages[key] = np.frombuffer(raw, dtype.newbyteorder('<'), count)
  stream.seek(start)
  return _Unpickler(stream, path, lambda kind, key, count: storages[key]).load()


def read_pth(path):
  """The object a `torch.save` file holds, tensors as NumPy arrays; refuses
  (ValueError) a file that is not one, is cut short, or names anything but
  tensors, plain containers, numbers and argparse.Namespace."""
  try:
    stream = open(path, 'rb')
  except FileNotFoundError:
    raise ValueError(f'No checkpoint at {path}.') from None
  except OSError as error:
    raise ValueError(f'{path} cannot be read ({error.strerror}).') from None
  with stream:
    try:
      if zipfile.is_zipfile(stream):
        with zipfile.ZipFile(stream) as archive:
          return _load_zip(archive, path)
      stream.seek(0)
      return _load_legacy(stream, path)
    except ValueError as error:
      if str(error).startswith(path):
        raise
      raise ValueError(f'{path} is damaged ({error}).') from None
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError,
            TypeError, IndexError, KeyError, AttributeError, RecursionError,
            MemoryError) as error:
      raise ValueError(
          f'{path} is not a readable torch.save file ({type(error).__name__}'
          f': {error}): cut short, or not written by torch.save.') from None


def state_dict_in(checkpoint, keys, path='the checkpoint'):
  """The state_dict in what read_pth returned: under the first of `keys`
  the checkpoint has (a dict of tensors), or the checkpoint itself."""
  state = checkpoint if isinstance(checkpoint, dict) else None
  for key in keys:
    if isinstance(checkpoint, dict) and key in checkpoint:
      state = checkpoint[key]
      break
  if not isinstance(state, dict) or not state or not all(
      isinstance(v, np.ndarray) for v in state.values()):
    raise ValueError(f'{path} holds no state_dict (a dict of tensors' +
                     ''.join(f", or one under '{k}'" for k in keys) + ').')
  return state


# Layouts: PyTorch's convolution kernels are [out, in, h, w] (HWIO here),
# its Linear weights [out, in] ([in, out] here).
CONV, LINEAR, SAME = (2, 3, 1, 0), (1, 0), None


def batch_norm_names(scope, layer):
  """{PyTorch name: (variable, layout)} of a BatchNorm layer."""
  names = {f'{scope}.weight': (layer.gamma, SAME),
           f'{scope}.running_mean': (layer.moving_mean, SAME),
           f'{scope}.running_var': (layer.moving_variance, SAME)}
  if layer.center:
    names[f'{scope}.bias'] = (layer.beta, SAME)
  return names


def linear_names(scope, dense):
  """{PyTorch name: (variable, layout)} of a Linear layer."""
  names = {f'{scope}.weight': (dense.kernel, LINEAR)}
  if dense.use_bias:
    names[f'{scope}.bias'] = (dense.bias, SAME)
  return names


def to_port(tensor, layout):
  """A PyTorch tensor in this project's layout."""
  return tensor if layout is None else np.transpose(tensor, layout)


def restore_named(state, wanted, owned, path, hint, ignore_missing=False):
  """Assigns `state[name]` to each variable of `wanted` ({name: (variable,
  layout)}); returns the names restored.

  A wanted name the state lacks or holds with another shape, or a name of
  the state that `owned(name)` claims for the model but `wanted` lacks, is
  a problem: one ValueError lists them (`hint` says what to do) and nothing
  is assigned, or with `ignore_missing` each is logged and skipped.
  `num_batches_tracked` (PyTorch's BatchNorm step count) is not a weight.
  """
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
  for name in state:
    if (owned(name) and name not in wanted and
        not name.endswith('num_batches_tracked')):
      problems.append(f'{name} is in the checkpoint but not in the model')
  if problems:
    if not ignore_missing:
      raise ValueError(
          f'{path} does not match the model ({len(problems)} problems; '
          f'{hint}): ' + '; '.join(problems[:5]) +
          ('; ...' if len(problems) > 5 else ''))
    for problem in problems:
      logging.warning('Checkpoint %s: %s; skipped.', path, problem)
  for variable, value in found.values():
    variable.assign(value.astype(variable.dtype))
  return sorted(found)
