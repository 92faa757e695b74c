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
    out[f'pil/{name}'] = D.pil_resample(images, D.pil_matrix(
        name, arrays[f'pil/{name}/magnitude'], *images.shape[1:3]))
    out[name] = D.seed_affine(images, D.seed_matrix(
        name, arrays[f'{name}/magnitude'], size))
  out['pad_crop_flip'] = D.pad_crop_flip(
      images, arrays['pad_crop_flip/offsets'], arrays['pad_crop_flip/mirror'])
  for name in D.TF_MODELS_PIXEL_OPS:
    out[f'tf_models/{name}'] = D.TF_MODELS_PIXEL_OPS[name](
        images, arrays[f'tf_models/{name}/argument'])
  for name in D.GEOMETRIC_OPS:
    out[f'tf_models/{name}'] = D.tf_models_resample(
        images, D.tf_models_transform(
            name, arrays[f'tf_models/{name}/argument'], *images.shape[1:3]))
  for policy in D.POLICIES:
    out[policy] = D.autoaugment(
        images, *D.POLICIES[policy], arrays[f'{policy}/choice'],
        arrays[f'{policy}/fires'], arrays[f'{policy}/draw'])
  for flavour in ('tf', 'pytorch'):
    name = f'simclr/{flavour}'
    out[name] = D.simclr_distort(images, *(arrays[f'{name}/{k}'] for k in (
        'jitter', 'factors', 'order', 'gray', 'blur', 'sigma')),
                                 pytorch=flavour == 'pytorch')
  out['blur'] = D.gaussian_blur(images, arrays['blur/sigma'], 7)
  return {name: np.asarray(value) for name, value in out.items()}
