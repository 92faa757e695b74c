"""What the device views' ops share: float32 images of whole grey levels,
per-image values and selects, pixel gathers, seeds."""
import keras

ops = keras.ops


def on_floats(op):
  """op(images, ...) on float32 images given as any array (NumPy too)."""
  def on_floats(images, *args, **kwargs):
    return op(ops.cast(images, 'float32'), *args, **kwargs)
  on_floats.__name__, on_floats.__doc__ = op.__name__, op.__doc__
  return on_floats


def column(value):
  """[N] -> [N, 1, 1, 1] float32, one value per image."""
  return ops.reshape(ops.cast(value, 'float32'), (-1, 1, 1, 1))


def truncate(x):
  """The cast of a float image to uint8: clipped, then truncated."""
  return ops.clip(ops.floor(x), 0., 255.)


def select(condition, x, y):
  """x where `condition` [N] (per image), else y."""
  return ops.where(ops.reshape(condition, (-1, 1, 1, 1)), x, y)


def gather_pixels(images, index):
  """images [N, H, W, C], index int32 [N, h, w] into H * W -> [N, h, w, C]."""
  height, width, channels = images.shape[1:]
  rows, columns = index.shape[1], index.shape[2]
  flat = ops.reshape(images, (-1, height * width, channels))
  index = ops.reshape(index, (-1, rows * columns, 1))
  taps = ops.take_along_axis(flat, ops.broadcast_to(
      index, (ops.shape(index)[0], rows * columns, channels)), axis=1)
  return ops.reshape(taps, (-1, rows, columns, channels))


def seed_generator(seed):
  return seed if isinstance(seed, keras.random.SeedGenerator) else (
      keras.random.SeedGenerator(seed))
