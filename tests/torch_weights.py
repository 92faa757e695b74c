"""PyTorch checkpoints of other codes, rebuilt from their key lists.

tests/fixtures/torch/ holds, for each case, the state_dict keys and shapes
that SupContrast's networks/resnet_big.py and torchvision's resnet50 give,
and their eval-mode outputs on a few images with the weights `tensor(name,
shape)` makes (tests/fixtures/make_torch_fixtures.py ran their code). Those
weights need no storage: a generator seeded by each key. `write(case, path)`
writes the file as the code that trained it saves it, with torch.save (the
same containers: SupContrast's util.save_model dict with its argparse
options and SGD state; MoCo's checkpoint dict, in the format before
PyTorch 1.6). NumPy alone makes the weights; torch only writes the file.
"""
import argparse
import collections
import json
import os
import zlib

import numpy as np

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'fixtures', 'torch')


def tensor(name, shape):
  """A weight for key `name`: He-scaled kernels, BatchNorm statistics away
  from PyTorch's defaults (mean 0, variance 1) and gammas about 0.5, which
  keeps the activations of 16 residual blocks in range."""
  rng = np.random.RandomState(zlib.crc32(name.encode()))
  if name.endswith('num_batches_tracked'):
    return np.array(rng.randint(1, 1000), np.int64)
  noise = rng.standard_normal(shape)
  leaf = name.rsplit('.', 1)[-1]
  if leaf == 'running_var':
    value = np.exp(0.3 * noise)
  elif leaf == 'running_mean' or leaf == 'bias':
    value = 0.2 * noise
  elif len(shape) == 4:
    value = noise * np.sqrt(2. / np.prod(shape[1:]))
  elif len(shape) == 2:
    value = noise / np.sqrt(shape[1])
  else:  # A BatchNorm gamma.
    value = 0.5 + 0.1 * noise
  return value.astype(np.float32)


def cases():
  with open(os.path.join(FIXTURES, 'cases.json')) as f:
    return json.load(f)


def state_dict(case):
  """{key: NumPy array} of a case, keys as the file holds them."""
  return collections.OrderedDict(
      (name, tensor(name, tuple(shape))) for name, shape in case['keys'])


def write(case, path):
  """The case's checkpoint at `path`, as its code writes it."""
  import torch  # Only the writing needs it.
  state = collections.OrderedDict(
      (k, torch.from_numpy(v)) for k, v in state_dict(case).items())
  if case['container'] == 'supcontrast':
    # util.save_model: the options, the weights, SGD's state (of a few
    # parameters: its form is what matters; the reader skips it), the epoch.
    parameters = [torch.nn.Parameter(v.clone()) for v in state.values()
                  if v.is_floating_point()][:8]
    optimizer = torch.optim.SGD(parameters, lr=0.05, momentum=0.9,
                                weight_decay=1e-4)
    for p in parameters:
      p.grad = torch.ones_like(p)
    optimizer.step()
    saved = {'opt': argparse.Namespace(**case['opt']), 'model': state,
             'optimizer': optimizer.state_dict(), 'epoch': case['epoch']}
    torch.save(saved, path)
  elif case['container'] == 'moco':
    saved = {'epoch': case['epoch'], 'arch': 'resnet50', 'state_dict': state}
    torch.save(saved, path, _use_new_zipfile_serialization=False)
  else:
    torch.save(state, path)
  return path
