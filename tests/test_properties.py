"""Properties over generated inputs (hypothesis): the loss over shapes,
dtypes, label forms, extreme temperatures and non-finite features; the
image ops over any size from 1x1 and any magnitude in range. No crash,
shapes and dtypes kept, finite where the inputs are finite."""
import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from supcon_tf.data.augment import OPS as PIL_OPS
from supcon_tf.data.augment import tf_models_ops
from supcon_tf.losses import contrastive_loss

# Draws run eagerly and each new shape traces the loss once: few examples,
# no per-example deadline.
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

FLOAT_DTYPES = [tf.float16, tf.bfloat16, tf.float32, tf.float64]


@st.composite
def loss_cases(draw):
  batch = draw(st.integers(1, 6))
  views = draw(st.integers(1, 3))
  dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
  seed = draw(st.integers(0, 2 ** 31 - 1))
  rng = np.random.default_rng(seed)
  features = rng.normal(size=[batch, views] + dims)
  flat = features.reshape(batch, views, -1)
  features = (flat / np.maximum(np.linalg.norm(flat, axis=-1, keepdims=True),
                                1e-3)).reshape(features.shape)
  num_classes = draw(st.integers(1, 4))
  ids = rng.integers(0, num_classes, batch)
  kind = draw(st.sampled_from(['none', 'int32', 'int64', 'one_hot',
                               'multi_hot']))
  labels = {
      'none': None, 'int32': ids.astype(np.int32), 'int64': ids,
      'one_hot': np.eye(num_classes, dtype=np.float32)[ids],
      'multi_hot': (rng.random((batch, num_classes)) < 0.5).astype(
          np.float32)}[kind]
  options = dict(
      temperature=draw(st.sampled_from([1e-3, 0.05, 0.1, 1., 100., 1e4])),
      contrast_mode=draw(st.sampled_from(['all_views', 'one_view'])),
      summation_location=draw(st.sampled_from(['outside', 'inside'])),
      denominator_mode=draw(st.sampled_from(['all', 'one_positive',
                                             'only_negatives'])),
      positives_cap=draw(st.sampled_from([-1, 0, views])),
      scale_by_temperature=draw(st.booleans()),
      **draw(st.sampled_from([dict(implementation='fused'),
                              dict(implementation='blockwise',
                                   block_size=2)])))
  dtype = draw(st.sampled_from(FLOAT_DTYPES))
  return tf.constant(features, dtype), labels, options


@SETTINGS
@given(loss_cases())
def test_the_loss_keeps_shape_and_dtype_and_is_never_nan(case):
  features, labels, options = case
  with tf.GradientTape() as tape:
    tape.watch(features)
    loss = contrastive_loss(features, labels, **options)
    total = tf.reduce_sum(loss)
  gradient = tape.gradient(total, features)
  assert loss.shape == [features.shape[0]] and loss.dtype == tf.float32
  assert gradient.shape == features.shape
  # An empty denominator (ONLY_NEGATIVES without negatives) or one that
  # underflows at an extreme temperature is +inf; never NaN, never below 0
  # where the denominator holds the positives.
  assert not np.isnan(loss.numpy()).any(), options
  if options['denominator_mode'] == 'all':
    assert (loss.numpy() >= -1e-5).all(), options


@SETTINGS
@given(loss_cases())
def test_the_loss_is_finite_at_usual_temperatures(case):
  features, labels, options = case
  # Every anchor has a positive (its other views; a label), as the loss
  # assumes: without one, INSIDE is -log 0 = inf, as official.
  assume(features.shape[1] >= 2)
  assume(labels is None or labels.ndim == 1 or labels.sum(axis=1).all())
  options['temperature'] = max(options['temperature'], 0.05)
  options['temperature'] = min(options['temperature'], 100.)
  negatives_everywhere = True
  if labels is not None:
    kinds = labels if labels.ndim == 2 else np.eye(labels.max() + 1)[labels]
    # Every sample has another that shares none of its labels.
    negatives_everywhere = bool(((kinds @ kinds.T) == 0).any(axis=1).all())
  if options['denominator_mode'] == 'only_negatives' and not (
      negatives_everywhere and labels is not None and len(labels) > 1):
    options['denominator_mode'] = 'all'
  with tf.GradientTape() as tape:
    tape.watch(features)
    loss = contrastive_loss(features, labels, **options)
    total = tf.reduce_sum(loss)
  gradient = tape.gradient(total, features)
  assert np.isfinite(loss.numpy()).all(), options
  assert np.isfinite(tf.cast(gradient, tf.float32).numpy()).all(), options


@SETTINGS
@given(loss_cases(), st.data())
def test_non_finite_features_reach_only_the_samples_they_touch(case, data):
  features, labels, options = case
  batch = features.shape[0]
  if batch < 2 or labels is None or np.asarray(labels).ndim != 1:
    return
  bad = data.draw(st.integers(0, batch - 1))
  value = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
  poisoned = features.numpy().astype(np.float32)
  poisoned[bad, 0].flat[0] = value
  options['temperature'] = 0.1
  options['denominator_mode'] = 'all'
  options['positives_cap'] = -1
  loss = contrastive_loss(tf.constant(poisoned), labels, **options).numpy()
  # The poisoned sample is in every contrast set: losses become NaN or
  # inf, never a finite wrong number that would train silently.
  clean = contrastive_loss(tf.constant(features.numpy().astype(np.float32)),
                           labels, **options).numpy()
  changed = ~np.isclose(loss, clean, rtol=1e-5, atol=1e-6, equal_nan=False)
  assert (~np.isfinite(loss[changed])).all(), (loss, clean)
  assert not np.isfinite(loss[bad])


# --- image ops --------------------------------------------------------------------------

MAGNITUDE_RANGES = {
    # PIL-exact ops (supcon_tf.data.augment.OPS), in PIL units.
    'Posterize': (0, 8), 'Solarize': (0, 256), 'Color': (0., 2.),
    'Contrast': (0., 2.), 'Brightness': (0., 2.), 'Sharpness': (0., 2.),
    'Rotate': (-360., 360.), 'ShearX': (-0.3, 0.3), 'ShearY': (-0.3, 0.3),
    'TranslateX': (-40., 40.), 'TranslateY': (-40., 40.),
}
TF_MODELS_RANGES = {
    'Posterize': (0, 8), 'Solarize': (0, 256), 'SolarizeAdd': (0, 110),
    'Color': (0.1, 1.9), 'Contrast': (0.1, 1.9), 'Brightness': (0.1, 1.9),
    'Sharpness': (0.1, 1.9), 'Rotate': (-30., 30.), 'ShearX': (-0.3, 0.3),
    'ShearY': (-0.3, 0.3), 'TranslateX': (-100., 100.),
    'TranslateY': (-100., 100.),
}


@st.composite
def image_cases(draw, ops, ranges):
  name = draw(st.sampled_from(sorted(ops)))
  height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
  batch = draw(st.integers(1, 3))
  seed = draw(st.integers(0, 2 ** 31 - 1))
  images = np.random.default_rng(seed).integers(
      0, 256, (batch, height, width, 3), dtype=np.uint8)
  if name not in ranges:
    return name, images, None
  low, high = ranges[name]
  if isinstance(low, int):
    magnitudes = draw(st.lists(st.integers(low, high), min_size=batch,
                               max_size=batch))
  else:
    magnitudes = draw(st.lists(st.floats(low, high), min_size=batch,
                               max_size=batch))
  return name, images, np.asarray(magnitudes)


@SETTINGS
@given(image_cases(PIL_OPS, MAGNITUDE_RANGES))
def test_every_pil_exact_op_takes_any_size_and_magnitude(case):
  name, images, magnitudes = case
  op = PIL_OPS[name]
  out = op(images) if magnitudes is None else op(images, magnitudes)
  assert out.dtype == tf.uint8 and out.shape == images.shape, name


@SETTINGS
@given(image_cases(tf_models_ops.OPS, TF_MODELS_RANGES))
def test_every_tf_models_op_takes_any_size_and_magnitude(case):
  name, images, magnitudes = case
  op = tf_models_ops.OPS[name]
  if magnitudes is None:
    out = op(tf.constant(images))
  else:
    out = op(tf.constant(images), tf.constant(magnitudes,
                                              tf.float32 if magnitudes.dtype
                                              .kind == 'f' else tf.int32))
  assert out.dtype == tf.uint8 and out.shape == images.shape, name
