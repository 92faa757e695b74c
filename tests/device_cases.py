"""The device views' side of tests/test_device_views.py, without TensorFlow,
so a JAX or PyTorch process runs it too: each case of `arrays` (images,
arguments, draws: what the tf.data side used) through its device op."""
import numpy as np

from supcon_tf.data import device_views as D


def outputs(arrays):
  """name -> the device op's output as NumPy, one per case of `arrays`."""
  images = arrays['images'].astype('float32')
  size = float(images.shape[1])
  out = {}
  for name in D.PIXEL_OPS:
    out[name] = D.PIXEL_OPS[name](images, arrays[f'{name}/magnitude'])
  for name in D.GEOMETRIC_OPS:
    out[name] = D.seed_affine(images, D.seed_matrix(
        name, arrays[f'{name}/magnitude'], size))
  out['pad_crop_flip'] = D.pad_crop_flip(
      images, arrays['pad_crop_flip/offsets'], arrays['pad_crop_flip/mirror'])
  out['seed_cifar10'] = D.autoaugment(
      images, D.POLICIES['seed_cifar10'], arrays['seed_cifar10/choice'],
      arrays['seed_cifar10/fires'], arrays['seed_cifar10/position'])
  return {name: np.asarray(value) for name, value in out.items()}
