"""Building blocks shared by the encoders: convolution with PyTorch-style padding
and BatchNorm with the official momentum and epsilon."""
import keras


def conv2d(filters, kernel_size, strides=1, name=None):
  """Bias-free convolution, Kaiming-normal init, symmetric padding.

  TensorFlow's 'same' pads a strided convolution on the bottom/right only;
  explicit symmetric padding gives the PyTorch / official alignment.
  """
  conv = keras.layers.Conv2D(
      filters, kernel_size, strides=strides,
      padding='same' if strides == 1 else 'valid', use_bias=False,
      kernel_initializer=keras.initializers.VarianceScaling(
          2.0, mode='fan_out', distribution='untruncated_normal'),
      name=name)
  if strides == 1:
    return conv
  return keras.Sequential(
      [keras.layers.ZeroPadding2D((kernel_size - 1) // 2), conv], name=name)


def batch_norm(zero_gamma=False, name=None):
  return keras.layers.BatchNormalization(
      momentum=0.9, epsilon=1e-5,
      gamma_initializer='zeros' if zero_gamma else 'ones', name=name)
