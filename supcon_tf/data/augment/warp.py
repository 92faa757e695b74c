"""The official SimCLR warp: tensorflow-addons' sparse_image_warp (polyharmonic
spline interpolation of control-point flows, then a dense bilinear warp) in plain
TensorFlow.
"""
import numpy as np
import tensorflow as tf

from supcon_tf.data.augment import batching


def _polyharmonic(squared_distance, order):
  """phi(r) of the polyharmonic spline of `order`, on r^2 (clamped above 0
  where a log or root needs it)."""
  r2 = tf.maximum(squared_distance, 1e-10)
  if order % 2 == 0:
    return 0.5 * tf.pow(r2, 0.5 * order) * tf.math.log(r2)
  return tf.pow(r2, 0.5 * order)


def _squared_distances(x, y):
  """||x_i - y_j||^2 for [b, n, d] and [b, m, d] -> [b, n, m]."""
  return (tf.reduce_sum(tf.square(x), 2)[:, :, None] -
          2. * tf.matmul(x, y, transpose_b=True) +
          tf.reduce_sum(tf.square(y), 2)[:, None, :])


def interpolate_spline(train_points, train_values, query_points, order,
                       regularization_weight=0.):
  """Polyharmonic spline interpolation (tensorflow-addons'
  interpolate_spline): f(x) = sum_i w_i phi(|x - c_i|) + v.[x, 1], with w
  and v solving the interpolation conditions at the `train_points` c_i
  [b, n, d] (values [b, n, k]), w orthogonal to the linear part; a
  `regularization_weight` on the diagonal trades fit for smoothness.
  Evaluated at `query_points` [b, m, d] -> [b, m, k]."""
  c = tf.convert_to_tensor(train_points)
  f = tf.convert_to_tensor(train_values, c.dtype)
  n, d, k = tf.shape(c)[1], c.shape[-1], f.shape[-1]
  # Among the centres, from one Gram matrix (the reference's rounding).
  gram = tf.matmul(c, c, transpose_b=True)
  norms = tf.linalg.diag_part(gram)[:, :, None]
  a = _polyharmonic(norms - 2. * gram + tf.transpose(norms, [0, 2, 1]), order)
  if regularization_weight > 0:
    a += regularization_weight * tf.eye(n, dtype=c.dtype)[None]
  b = tf.concat([c, tf.ones_like(c[..., :1])], 2)
  lhs = tf.concat([
      tf.concat([a, tf.transpose(b, [0, 2, 1])], 1),
      tf.concat([b, tf.zeros([tf.shape(c)[0], d + 1, d + 1], c.dtype)], 1)],
                  2)
  rhs = tf.concat([f, tf.zeros([tf.shape(c)[0], d + 1, k], c.dtype)], 1)
  solution = tf.linalg.solve(lhs, rhs)
  w, v = solution[:, :n], solution[:, n:]
  q = tf.convert_to_tensor(query_points, c.dtype)
  return (tf.matmul(_polyharmonic(_squared_distances(q, c), order), w) +
          tf.matmul(tf.concat([q, tf.ones_like(q[..., :1])], 2), v))


def dense_image_warp(image, flow):
  """output[b, y, x] = image[b, y - flow[b, y, x, 0], x - flow[b, y, x, 1]],
  bilinear, the coordinates clamped to the image (tensorflow-addons'
  dense_image_warp). Float [b, h, w, c] -> float."""
  image = tf.convert_to_tensor(image)
  shape = tf.shape(image)
  height, width = shape[1], shape[2]
  grid = tf.stack(tf.meshgrid(tf.range(height), tf.range(width),
                              indexing='ij'), -1)
  query = tf.cast(grid, flow.dtype)[None] - flow
  coords, weights = [], []
  for axis, size in ((0, height), (1, width)):
    q = query[..., axis]
    low = tf.clip_by_value(tf.floor(q), 0.,
                           tf.cast(tf.maximum(size - 2, 0), q.dtype))
    coords.append(tf.cast(low, tf.int32))
    weights.append(tf.clip_by_value(q - low, 0., 1.)[..., None])
  (y0, x0), (wy, wx) = coords, weights
  batch = tf.broadcast_to(tf.range(shape[0])[:, None, None], tf.shape(y0))
  gather = lambda y, x: tf.gather_nd(image, tf.stack([batch, y, x], -1))
  y1 = tf.minimum(y0 + 1, height - 1)
  x1 = tf.minimum(x0 + 1, width - 1)
  top = gather(y0, x0) + wx * (gather(y0, x1) - gather(y0, x0))
  bottom = gather(y1, x0) + wx * (gather(y1, x1) - gather(y1, x0))
  return top + wy * (bottom - top)


def _boundary_points(height, width, per_edge):
  """Evenly spaced points on the image's edges (corners included)."""
  ys, xs = np.meshgrid(np.linspace(0, height - 1, per_edge + 2),
                       np.linspace(0, width - 1, per_edge + 2), indexing='ij')
  edge = (xs == 0) | (xs == width - 1) | (ys == 0) | (ys == height - 1)
  return np.stack([ys[edge], xs[edge]], -1)


def sparse_image_warp(image, source_control_point_locations,
                      dest_control_point_locations, interpolation_order=2,
                      regularization_weight=0., num_boundary_points=0):
  """Warps `image` [b, h, w, c] so that the pixel at each source control
  point [b, n, 2] (y, x) moves to its destination: the control-point flows
  interpolated to every pixel with a polyharmonic spline of
  `interpolation_order`, then `dense_image_warp`; `num_boundary_points` > 0
  pins that many points per edge (corners included) to zero flow. As
  tensorflow-addons' sparse_image_warp; returns (warped image, dense flows
  [b, h, w, 2])."""
  image = tf.convert_to_tensor(image)
  height, width = image.shape[1], image.shape[2]
  source = tf.cast(source_control_point_locations, image.dtype)
  dest = tf.cast(dest_control_point_locations, image.dtype)
  flows = dest - source
  if num_boundary_points > 0:
    edge = tf.constant(_boundary_points(height, width,
                                        num_boundary_points - 1), image.dtype)
    edge = tf.tile(edge[None], [tf.shape(dest)[0], 1, 1])
    dest = tf.concat([dest, edge], 1)
    flows = tf.concat([flows, tf.zeros_like(edge)], 1)
  grid = np.stack(np.meshgrid(np.arange(height), np.arange(width),
                              indexing='ij'), -1).reshape(-1, 2)
  grid = tf.tile(tf.constant(grid, image.dtype)[None],
                 [tf.shape(dest)[0], 1, 1])
  dense = tf.reshape(interpolate_spline(dest, flows, grid, interpolation_order,
                                        regularization_weight),
                     [-1, height, width, 2])
  return dense_image_warp(image, dense), dense


def random_warp(images, seed, max_control_length=23.,
                control_points_per_axis=2):
  """The official SimCLR warp of each image of a float batch [N, S, S, C]:
  a grid of control points at (i + 1) S / (points + 1), each moved by
  N(0, 1) times one length uniform in [0, max_control_length) per image."""
  side = images.shape[1]
  step = side / (control_points_per_axis + 1)
  points = np.array([[(i + 1) * step, (j + 1) * step]
                     for i in range(control_points_per_axis)
                     for j in range(control_points_per_axis)], np.float32)
  batch = tf.shape(images)[0]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  length = batching.uniform([batch, 1, 1], seeds[0], 0.,
                            max_control_length)
  source = tf.tile(tf.constant(points)[None], [batch, 1, 1])
  flows = batching.normal([batch, len(points), 2], seeds[1]) * length
  warped, _ = sparse_image_warp(tf.cast(images, tf.float32), source,
                                source + flows)
  return tf.cast(warped, images.dtype)
