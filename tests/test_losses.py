"""The contrastive loss: official test vectors, a float64 reference, gradients,
replicas, dtypes, errors and the Keras wrapper."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.losses import (ContrastMode, ContrastiveLoss, DenominatorMode,
                              SummationLocation, contrastive_loss)
from tests.loss_memory import BATCH as MEMORY_BATCH, peak_in_child
from tests.reference import author_loss, reference_loss

SUMMATIONS = ['outside', 'inside']
DENOMINATORS = ['all', 'one_positive', 'only_negatives']
CONTRAST_MODES = ['all_views', 'one_view']

# Official test fixtures (google-research supcon/losses_test.py).
FEATURES = np.array([[[.01, .02, .14], [.38, .61, .50]],
                     [[.86, .97, .33], [.26, .68, .45]],
                     [[.32, .64, .28], [.45, .74, .73]]], np.float32)
ONE_HOT = np.eye(2, dtype=np.float32)[[0, 0, 1]]


def _tetrahedron():
  vertices = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]],
                      np.float32) / np.sqrt(3.)
  return vertices.reshape(2, 2, 3)


# --- Official test vectors --------------------------------------------------


@pytest.mark.parametrize('temperature,scale,expected', [
    (1.0, True, np.log(3.)),
    (0.1, True, 0.1 * np.log(3.)),
    (0.1, False, np.log(3.)),
])
def test_simclr_tetrahedron_gives_log3(temperature, scale, expected):
  loss = contrastive_loss(_tetrahedron(), temperature=temperature,
                          scale_by_temperature=scale)
  np.testing.assert_allclose(np.mean(loss), expected, rtol=1e-6)


@pytest.mark.parametrize('summation,denominator,cap,expected', [
    ('outside', 'all', -1, [1.6755852, 1.7973773, 1.58471]),
    ('outside', 'one_positive', -1, [1.1782627, 1.3435497, 1.58471]),
    ('outside', 'only_negatives', -1, [0.79652834, 1.0154991, 1.3529458]),
    ('outside', 'all', 4, [1.6755852, 1.7973773, 1.58471]),
    ('outside', 'all', 0, [1.3769293, 1.0785717, 1.58471]),
    ('inside', 'all', -1, [1.6356678, 1.7135872, 1.58471]),
    ('inside', 'one_positive', -1, [1.1571673, 1.2941568, 1.58471]),
    ('inside', 'only_negatives', -1, [0.756611, 0.93170905, 1.3529458]),
    ('inside', 'all', 0, [1.3769293, 1.0785717, 1.58471]),
])
@pytest.mark.parametrize('kernel', [dict(), dict(implementation='blockwise',
                                                block_size=2)])
def test_official_vectors_one_hot(summation, denominator, cap, expected,
                                  kernel):
  loss = contrastive_loss(FEATURES, ONE_HOT, summation_location=summation,
                          denominator_mode=denominator, positives_cap=cap,
                          **kernel)
  assert loss.dtype == tf.float32 and loss.shape == (3,)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


@pytest.mark.parametrize('summation,expected', [
    ('outside', [1.1385298, 1.1824025, 1.1557417]),
    ('inside', [1.0986123] * 3),
])
@pytest.mark.parametrize('implementation', ['fused', 'blockwise'])
def test_official_vectors_one_class_cap_2(summation, expected, implementation):
  labels = np.ones((3, 1), np.float32)
  loss = contrastive_loss(FEATURES, labels, summation_location=summation,
                          positives_cap=2, implementation=implementation,
                          block_size=2)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_official_vector_orthonormal_views():
  features = np.tile(np.eye(3, dtype=np.float32)[:, None, :], [1, 2, 1])
  loss = contrastive_loss(features, np.array([0, 0, 1]))
  np.testing.assert_allclose(loss, [1.57149910, 1.57149910, 0.90483244],
                             rtol=1e-6)


def test_official_vector_one_view_anchor():
  features = np.array([[[0, 0, 1], [0, 1, 0]], [[1, 0, 0], [0, -1, 0]]],
                      np.float32)
  one_view = contrastive_loss(features, contrast_mode=ContrastMode.ONE_VIEW)
  all_views = contrastive_loss(features, contrast_mode=ContrastMode.ALL_VIEWS)
  np.testing.assert_allclose(np.mean(one_view), np.log(3.), rtol=1e-6)
  assert abs(np.mean(all_views) - np.log(3.)) > 1e-3


# --- Against the float64 reference ------------------------------------------


def _random_case(rng, batch, views, labels_kind, rank, normalize=True):
  shape = (batch, views, 4) if rank == 3 else (batch, views, 2, 1, 2)
  # Unnormalised features keep norms near 1, so that float32 exponentials of
  # logit gaps stay in range at temperature 0.1 (the float64 reference has a
  # wider range).
  features = rng.normal(scale=0.5, size=shape).astype(np.float32)
  if normalize:
    flat = features.reshape(batch, views, -1)
    features = (flat / np.linalg.norm(flat, axis=-1, keepdims=True)).reshape(
        shape)
  ids = rng.integers(0, 3, size=batch)
  labels = {'none': None, 'ids': ids,
            'one_hot': np.eye(3, dtype=np.float32)[ids]}[labels_kind]
  return features, labels


# Blocks of 3 samples over batches of 7: three blocks, the last one padded.
KERNELS = {'fused': dict(implementation='fused'),
           'blockwise': dict(implementation='blockwise', block_size=3)}


@pytest.mark.parametrize('kernel', KERNELS)
@pytest.mark.parametrize('contrast_mode,summation,denominator,views',
                         itertools.product(CONTRAST_MODES, SUMMATIONS,
                                           DENOMINATORS, [1, 2, 3]))
def test_matches_float64_reference(contrast_mode, summation, denominator,
                                   views, kernel):
  rng = np.random.default_rng(views)
  for labels_kind, rank, cap, (temperature, scale) in itertools.product(
      ['none', 'ids', 'one_hot'], [3, 5], [-1, 0, views],
      [(0.1, True), (0.5, False)]):
    features, labels = _random_case(rng, 7, views, labels_kind, rank,
                                    normalize=rank == 3)
    options = dict(temperature=temperature, contrast_mode=contrast_mode,
                   summation_location=summation, denominator_mode=denominator,
                   positives_cap=cap, scale_by_temperature=scale)
    got = contrastive_loss(features, labels, **options, **KERNELS[kernel])
    want = reference_loss(features, labels, **options)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6,
                               err_msg=f'{labels_kind} rank {rank} {options}')


@pytest.mark.parametrize('contrast_mode,summation,denominator',
                         itertools.product(CONTRAST_MODES, SUMMATIONS,
                                           DENOMINATORS))
@pytest.mark.parametrize('kernel', KERNELS)
def test_memory_joins_the_contrast_set_and_never_anchors(
    contrast_mode, summation, denominator, kernel):
  # A memory of M samples after the batch: each batch sample's loss is its
  # loss in the float64 reference over batch and memory together.
  rng = np.random.default_rng(11)
  for views, labels_kind, cap in itertools.product(
      [1, 2], ['none', 'ids', 'one_hot'], [-1, 2]):
    if cap % views:
      continue
    features, labels = _random_case(rng, 11, views, labels_kind, 3)
    batch = features[:6]
    memory = (features[6:], None if labels is None else labels[6:])
    options = dict(temperature=0.1, contrast_mode=contrast_mode,
                   summation_location=summation, denominator_mode=denominator,
                   positives_cap=cap)
    got = contrastive_loss(batch, None if labels is None else labels[:6],
                           memory=memory, **options, **KERNELS[kernel])
    want = reference_loss(features, labels, **options)[:6]
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6,
                               err_msg=f'{views} views {labels_kind} {cap}')


@pytest.mark.parametrize('kernel', KERNELS)
def test_memory_takes_no_gradient_and_the_batch_takes_the_joint_one(kernel):
  rng = np.random.default_rng(12)
  features, labels = _random_case(rng, 10, 2, 'ids', 3)
  batch, memory = tf.constant(features[:6]), tf.constant(features[6:])
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([batch, memory])
    loss = tf.reduce_sum(contrastive_loss(
        batch, labels[:6], temperature=0.1, memory=(memory, labels[6:]),
        **KERNELS[kernel]))
  assert tape.gradient(loss, memory) is None
  # The same samples as one batch whose last four are held fixed and are
  # not anchors.
  joint = tf.constant(features)
  with tf.GradientTape() as joint_tape:
    joint_tape.watch(joint)
    want = tf.reduce_sum(contrastive_loss(
        tf.concat([joint[:6], tf.stop_gradient(joint[6:])], 0), labels,
        temperature=0.1)[:6])
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  np.testing.assert_allclose(tape.gradient(loss, batch),
                             joint_tape.gradient(want, joint)[:6],
                             rtol=1e-5, atol=1e-7)


def test_memory_of_another_kind_is_refused_by_name():
  features = np.ones((4, 2, 3), np.float32)
  with pytest.raises(ValueError, match='memory features'):
    contrastive_loss(features, [0, 1, 0, 1], memory=(np.ones((3, 1, 3)),
                                                     [0, 1, 2]))
  with pytest.raises(ValueError, match='memory needs labels'):
    contrastive_loss(features, [0, 1, 0, 1], memory=(features, None))


def test_multi_hot_labels_share_any_label():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(5, 2, 3)).astype(np.float32)
  multi_hot = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 0, 0]],
                       np.float32)
  np.testing.assert_allclose(
      contrastive_loss(features, multi_hot, temperature=0.5),
      reference_loss(features, multi_hot, temperature=0.5), rtol=2e-5)


def test_integer_and_one_hot_labels_agree():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(8, 2, 5)).astype(np.float32)
  ids = rng.integers(0, 4, size=8)
  np.testing.assert_allclose(
      contrastive_loss(features, ids, temperature=0.2),
      contrastive_loss(features, np.eye(4)[ids], temperature=0.2), rtol=1e-6)


def test_base_temperature_gives_the_pytorch_author_loss():
  rng = np.random.default_rng(2)
  features = rng.normal(size=(6, 2, 8)).astype(np.float32)
  features /= np.linalg.norm(features, axis=-1, keepdims=True)
  labels = rng.integers(0, 2, size=6)
  loss = contrastive_loss(features, labels, temperature=0.1,
                          base_temperature=0.07)
  np.testing.assert_allclose(np.mean(loss),
                             author_loss(features, labels, 0.1, 0.07),
                             rtol=1e-5)


# --- Gradients ----------------------------------------------------------------


def _tf_gradient(features, labels, weights, **options):
  x = tf.constant(features)
  with tf.GradientTape() as tape:
    tape.watch(x)
    loss = tf.reduce_sum(contrastive_loss(x, labels, **options) * weights)
  return tape.gradient(loss, x).numpy()


def _finite_difference(features, labels, weights, eps=1e-6, **options):
  f = features.astype(np.float64)
  grad = np.zeros_like(f)
  for index in np.ndindex(f.shape):
    up, down = f.copy(), f.copy()
    up[index] += eps
    down[index] -= eps
    grad[index] = (np.sum(reference_loss(up, labels, **options) * weights) -
                   np.sum(reference_loss(down, labels, **options) * weights)
                  ) / (2 * eps)
  return grad


@pytest.mark.parametrize('contrast_mode,summation,denominator',
                         itertools.product(CONTRAST_MODES, SUMMATIONS,
                                           DENOMINATORS))
def test_gradient_matches_finite_differences(contrast_mode, summation,
                                             denominator):
  rng = np.random.default_rng(3)
  for views, labels_kind, cap in [(2, 'ids', -1), (1, 'ids', -1),
                                  (3, 'none', -1), (2, 'one_hot', 2)]:
    features, labels = _random_case(rng, 5, views, labels_kind, 3,
                                    normalize=False)
    weights = rng.uniform(0.5, 1.5, size=5)
    options = dict(temperature=0.5, contrast_mode=contrast_mode,
                   summation_location=summation, denominator_mode=denominator,
                   positives_cap=cap)
    np.testing.assert_allclose(
        _tf_gradient(features, labels, weights.astype(np.float32), **options),
        _finite_difference(features, labels, weights, **options),
        rtol=2e-3, atol=2e-5, err_msg=f'{views} views {labels_kind} cap {cap}')


@pytest.mark.parametrize('contrast_mode,summation,denominator',
                         itertools.product(CONTRAST_MODES, SUMMATIONS,
                                           DENOMINATORS))
def test_fused_kernels_equal_the_official_formula_with_autodiff(
    contrast_mode, summation, denominator):
  """The fused kernels (linear and masked) and the blockwise one (blocks of 4
  samples over 6) against implementation='reference': losses and the
  gradients autodiff takes through the official formula."""
  rng = np.random.default_rng(4)
  for views, labels_kind, cap in [(2, 'ids', -1), (1, 'ids', -1),
                                  (3, 'none', -1), (2, 'one_hot', 2),
                                  (2, 'none', 0)]:
    features, labels = _random_case(rng, 6, views, labels_kind, 3,
                                    normalize=True)
    features = tf.constant(features)
    weights = tf.constant(rng.uniform(0.5, 1.5, size=6), tf.float32)
    results = []
    for implementation in ('reference', 'fused', 'blockwise'):
      with tf.GradientTape() as tape:
        tape.watch(features)
        loss = contrastive_loss(
            features, labels, temperature=0.2, contrast_mode=contrast_mode,
            summation_location=summation, denominator_mode=denominator,
            positives_cap=cap, implementation=implementation, block_size=4)
        total = tf.reduce_sum(loss * weights)
      results.append((loss.numpy(), tape.gradient(total, features).numpy()))
    (want_loss, want_gradient), *kernels = results
    for name, (loss, gradient) in zip(('fused', 'blockwise'), kernels):
      case = f'{name}: {views} views {labels_kind} cap {cap}'
      assert np.isfinite(want_loss).all(), case
      np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-6,
                                 err_msg=case)
      np.testing.assert_allclose(gradient, want_gradient, rtol=1e-4,
                                 atol=1e-6, err_msg=case)


# --- Replicas -----------------------------------------------------------------


@pytest.fixture(scope='module')
def two_replicas():
  devices = tf.config.list_logical_devices('CPU')
  assert len(devices) >= 2, 'conftest configures two logical CPUs'
  return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


@pytest.mark.parametrize('options', [
    dict(),
    dict(temperature=0.1, denominator_mode='only_negatives'),
    dict(contrast_mode='one_view', summation_location='inside'),
    dict(summation_location='inside', denominator_mode='one_positive',
         positives_cap=2),
    dict(positives_cap=0, temperature=0.3),
])
@pytest.mark.parametrize('with_labels', [True, False])
@pytest.mark.parametrize('kernel', [dict(), dict(implementation='blockwise',
                                                block_size=3)])
def test_gathered_loss_equals_single_device_loss(two_replicas, options,
                                                 with_labels, kernel):
  options = dict(options, **kernel)
  rng = np.random.default_rng(4)
  batch, views = 8, 2
  features = rng.normal(size=(batch, views, 6)).astype(np.float32)
  labels = rng.integers(0, 3, size=batch).astype(np.int32)
  weights = rng.uniform(0.5, 1.5, size=batch).astype(np.float32)
  half = batch // 2

  def local(ctx):
    part = slice(ctx.replica_id_in_sync_group * half,
                 (ctx.replica_id_in_sync_group + 1) * half)
    return (tf.constant(features[part]), tf.constant(labels[part]),
            tf.constant(weights[part]))

  def replica_step(f, y, w):
    with tf.GradientTape() as tape:
      tape.watch(f)
      loss = contrastive_loss(f, y if with_labels else None, **options)
      weighted = tf.reduce_sum(loss * w)
    return loss, tape.gradient(weighted, f)

  per_replica = two_replicas.experimental_distribute_values_from_function(local)
  loss, grad = tf.function(lambda args: two_replicas.run(replica_step,
                                                         args=args))(
                                                             per_replica)
  loss = np.concatenate(two_replicas.experimental_local_results(loss))
  grad = np.concatenate(two_replicas.experimental_local_results(grad))

  want_loss = contrastive_loss(features, labels if with_labels else None,
                               **options)
  want_grad = _tf_gradient(features, labels if with_labels else None, weights,
                           **options)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


# --- Shapes, dtypes, bad values -------------------------------------------------


def test_dynamic_batch_inside_tf_function():
  fn = tf.function(
      lambda f, y: contrastive_loss(f, y, temperature=0.5),
      input_signature=[tf.TensorSpec([None, 2, 3], tf.float32),
                       tf.TensorSpec([None], tf.int32)])
  for batch in (3, 5):
    rng = np.random.default_rng(batch)
    features = rng.normal(size=(batch, 2, 3)).astype(np.float32)
    labels = rng.integers(0, 2, size=batch).astype(np.int32)
    np.testing.assert_allclose(fn(features, labels),
                               reference_loss(features, labels, 0.5),
                               rtol=2e-5)


@pytest.mark.parametrize('options', [
    dict(), dict(summation_location='inside'), dict(positives_cap=2),
    dict(implementation='blockwise', block_size=3),
    dict(implementation='blockwise', block_size=3, positives_cap=2)])
def test_loss_and_gradient_inside_a_jit_compiled_step(options):
  # Training steps are XLA-compiled on GPUs and TPUs; the loss's own compiled
  # forward and backward nest inside them (blockwise: its loops too).
  rng = np.random.default_rng(9)
  features = tf.constant(rng.normal(size=(8, 2, 5)).astype(np.float32))
  labels = tf.constant(rng.integers(0, 3, size=8))

  def step(f):
    with tf.GradientTape() as tape:
      tape.watch(f)
      loss = tf.reduce_sum(contrastive_loss(f, labels, temperature=0.3,
                                            **options))
    return loss, tape.gradient(loss, f)

  compiled = tf.function(step, jit_compile=True)(features)
  for got, want in zip(compiled, step(features)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('dtype', [tf.bfloat16, tf.float16])
def test_low_precision_features_are_computed_in_float32(dtype):
  rng = np.random.default_rng(5)
  features = rng.normal(size=(6, 2, 4)).astype(np.float32)
  rounded = tf.cast(tf.cast(features, dtype), tf.float32)
  loss = contrastive_loss(tf.cast(features, dtype), [0, 1, 0, 1, 2, 2],
                          temperature=0.5)
  assert loss.dtype == tf.float32
  np.testing.assert_allclose(
      loss, reference_loss(rounded.numpy(), [0, 1, 0, 1, 2, 2], 0.5),
      rtol=2e-5)


def test_nan_features_poison_only_the_samples_they_reach():
  # Samples 0..3 share class 0; with positives_cap 0 a sample of class 0 is
  # neither positive nor negative for another, so NaN features of sample 0
  # reach every sample of the other classes, and sample 0 itself, only.
  rng = np.random.default_rng(6)
  features = rng.normal(size=(6, 2, 3)).astype(np.float32)
  labels = np.array([0, 0, 0, 0, 1, 2])
  clean = contrastive_loss(features, labels, positives_cap=0).numpy()
  features[0, 1, 2] = np.nan
  loss = contrastive_loss(features, labels, positives_cap=0).numpy()
  assert np.isnan(loss[[0, 4, 5]]).all()
  np.testing.assert_allclose(loss[1:4], clean[1:4], rtol=1e-6)


def test_inf_features_never_give_a_finite_wrong_loss():
  features = np.random.default_rng(7).normal(size=(4, 2, 3)).astype(np.float32)
  features[2, 0, 0] = np.inf
  loss = contrastive_loss(features, [0, 1, 0, 1]).numpy()
  # Every sample contrasts with sample 2, so every loss is reached.
  assert np.isnan(loss).all()


@pytest.mark.parametrize('kwargs,argument', [
    (dict(features=np.zeros((4, 3))), 'features'),
    (dict(labels=np.zeros((3,), np.int32)), 'labels'),
    (dict(labels=np.zeros((4, 2, 1))), 'labels'),
    (dict(contrast_mode='all'), 'contrast_mode'),
    (dict(summation_location='middle'), 'summation_location'),
    (dict(denominator_mode='some'), 'denominator_mode'),
    (dict(positives_cap=3), 'positives_cap'),
    (dict(temperature=0.), 'temperature'),
    (dict(temperature=-1.), 'temperature'),
    (dict(implementation='fast'), 'implementation'),
    (dict(implementation='blockwise', block_size=0), 'block_size'),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, argument):
  call = dict(features=np.zeros((4, 2, 3), np.float32), labels=None)
  call.update(kwargs)
  with pytest.raises(ValueError, match=argument):
    contrastive_loss(**call)


def test_unknown_mode_lists_the_valid_names():
  with pytest.raises(ValueError, match='ALL, ONE_POSITIVE, ONLY_NEGATIVES'):
    contrastive_loss(np.zeros((2, 2, 3), np.float32), denominator_mode='x')


def test_mode_names_parse_in_any_case():
  a = contrastive_loss(FEATURES, ONE_HOT, contrast_mode='ONE_VIEW',
                       summation_location='Inside',
                       denominator_mode=DenominatorMode.ONLY_NEGATIVES)
  b = contrastive_loss(FEATURES, ONE_HOT, contrast_mode=ContrastMode.ONE_VIEW,
                       summation_location=SummationLocation.INSIDE,
                       denominator_mode='only_negatives')
  np.testing.assert_array_equal(a, b)


# --- Keras wrapper --------------------------------------------------------------


def test_keras_loss_round_trips_through_its_config():
  loss = ContrastiveLoss(temperature=0.07, contrast_mode='one_view',
                         denominator_mode='ONE_POSITIVE', positives_cap=2,
                         base_temperature=0.07)
  clone = keras.losses.deserialize(keras.losses.serialize(loss))
  assert isinstance(clone, ContrastiveLoss)
  assert clone.get_config() == loss.get_config()
  labels = np.array([0, 0, 1])
  np.testing.assert_allclose(clone(labels, FEATURES), loss(labels, FEATURES),
                             rtol=1e-6)
  np.testing.assert_allclose(
      loss(labels[:, None], FEATURES),
      np.mean(contrastive_loss(FEATURES, labels, temperature=0.07,
                               contrast_mode='one_view',
                               denominator_mode='one_positive',
                               positives_cap=2, base_temperature=0.07)),
      rtol=1e-6)
  # Embeddings [batch, features] are one view each.
  single = ContrastiveLoss(temperature=0.5)
  np.testing.assert_allclose(
      single(labels, FEATURES[:, 0]),
      np.mean(contrastive_loss(FEATURES[:, :1], labels, temperature=0.5)),
      rtol=1e-6)


def test_keras_loss_rejects_a_bad_mode_at_construction():
  with pytest.raises(ValueError, match='contrast_mode'):
    ContrastiveLoss(contrast_mode='both')


def test_keras_compile_and_fit_learns_to_pull_classes_together(tmp_path):
  rng = np.random.default_rng(8)
  labels = rng.integers(0, 2, size=64).astype(np.int32)
  centres = np.array([[2., 0., 0., 0.], [0., 2., 0., 0.]], np.float32)
  views = (centres[labels][:, None, :] +
           rng.normal(scale=1.0, size=(64, 2, 4))).astype(np.float32)

  keras.utils.set_random_seed(0)
  inputs = keras.Input((2, 4))
  projected = keras.layers.Dense(8)(inputs)
  outputs = keras.layers.UnitNormalization(axis=-1)(projected)
  model = keras.Model(inputs, outputs)
  model.compile(optimizer=keras.optimizers.SGD(0.5),
                loss=ContrastiveLoss(temperature=0.5))
  def class_margin():
    z = model.predict(views, verbose=0)[:, 0]
    similarity = z @ z.T
    same = labels[:, None] == labels[None, :]
    return similarity[same].mean() - similarity[~same].mean()

  before = class_margin()
  history = model.fit(views, labels, batch_size=32, epochs=15, verbose=0)
  losses = history.history['loss']
  assert np.all(np.isfinite(losses))
  assert losses[-1] < losses[0] - 0.05
  assert class_margin() > max(before, 0) + 0.5

  path = str(tmp_path / 'model.keras')
  model.save(path)
  restored = keras.models.load_model(path)
  assert isinstance(restored.loss, ContrastiveLoss)
  np.testing.assert_allclose(restored.evaluate(views, labels, verbose=0),
                             model.evaluate(views, labels, verbose=0),
                             rtol=1e-5)


def test_large_self_similarity_does_not_underflow_the_denominator():
  # |z|^2 / tau = 400 for a long view's own column, while its other columns are
  # at most 80: shifting by a max that includes the anchor itself would
  # underflow the ALL denominator (e^-320) to 0 in float32.
  features = np.array([[[2., 0.], [.3, .4]], [[0., 2.], [.4, .3]],
                       [[-2., 0.], [-.3, -.4]]], np.float32)
  options = dict(temperature=0.01, scale_by_temperature=False)
  loss = contrastive_loss(features, None, **options)
  assert np.all(np.isfinite(loss))
  # Logits of size 100 leave float32 an absolute error of about 1e-5.
  np.testing.assert_allclose(loss, reference_loss(features, None, **options),
                             rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('kernel', KERNELS)
@pytest.mark.parametrize('denominator', ['one_positive', 'only_negatives'])
@pytest.mark.parametrize('summation', SUMMATIONS)
def test_sums_far_below_the_row_maximum_stay_finite(summation, denominator,
                                                    kernel):
  # At tau = 1e-3 the anchor's other view (logit 1000) holds the row maximum;
  # the second sample's e^(500 - 1000) and the negatives' e^(450 - 1000)
  # both underflow float32: ONE_POSITIVE made 0 / 0 of the positive's ratio,
  # ONLY_NEGATIVES log 0 of its denominator.
  angle = lambda c: [c, np.sqrt(1. - c * c)]
  features = np.array([[[1., 0.], [1., 0.]],
                       [angle(.5), angle(.5)],
                       [angle(.45), angle(.45)]], np.float32)
  labels = np.array([0, 0, 1])
  options = dict(temperature=1e-3, summation_location=summation,
                 denominator_mode=denominator)
  features = tf.constant(features)
  with tf.GradientTape() as tape:
    tape.watch(features)
    loss = contrastive_loss(features, labels, **options, **KERNELS[kernel])
    total = tf.reduce_sum(loss)
  gradient = tape.gradient(total, features)
  assert np.isfinite(gradient.numpy()).all()
  np.testing.assert_allclose(loss, reference_loss(features.numpy(), labels,
                                                  **options),
                             rtol=1e-4, atol=1e-5)


def test_auto_goes_blockwise_above_the_size_and_fused_when_unknown():
  from supcon_tf.losses.tf_loss import AUTO_BLOCKWISE_ENTRIES, _choose
  assert _choose('auto', 8192, 8192) == 'fused'
  assert AUTO_BLOCKWISE_ENTRIES == 8192 * 8192
  assert _choose('auto', 8192, 8193) == 'blockwise'
  kinds = []
  tf.function(lambda x: kinds.append(_choose('auto', tf.shape(x)[0], 10**6)),
              input_signature=[tf.TensorSpec([None])]).get_concrete_function()
  assert kinds == ['fused']
  assert _choose('reference', 10**6, 10**6) == 'reference'


def test_blockwise_memory_grows_with_the_block_not_the_batch_squared(
    tmp_path):
  """TensorFlow's CPU allocator peak during forward + backward, in a child
  with the statistics-keeping allocator (tests/loss_memory.py): the fused
  kernel holds [2B, 2B] float32 matrices, blockwise [2 * block, 2B] ones."""
  fused, fused_loss, fused_grad = peak_in_child(tmp_path / 'fused.npz',
                                                'fused')
  blocks, loss, grad = peak_in_child(tmp_path / 'blockwise.npz', 'blockwise',
                                     block_size=32)
  matrix = (2 * MEMORY_BATCH) ** 2 * 4
  # The measure sees a batch-squared peak where there is one ...
  assert fused >= matrix, (fused, matrix)
  # ... and blockwise has none.
  assert blocks < matrix / 4, (blocks, matrix)
  np.testing.assert_allclose(loss, fused_loss, rtol=1e-5)
  np.testing.assert_allclose(grad, fused_grad, rtol=1e-4, atol=1e-8)


def test_an_anchor_without_a_positive_adds_zero_and_stays_a_negative():
  """One view: the samples alone in their class have loss 0 (no NaN), the
  batch mean still counts them, and they get a gradient as negatives."""
  rng = np.random.default_rng(0)
  features = rng.normal(size=(4, 1, 8)).astype('float32')
  features /= np.linalg.norm(features, axis=-1, keepdims=True)
  labels = np.array([0, 0, 1, 2])
  x = tf.constant(features)
  with tf.GradientTape() as tape:
    tape.watch(x)
    per_sample = contrastive_loss(x, labels, temperature=0.1)
    paired = per_sample[0] + per_sample[1]
  gradient = tape.gradient(paired, x).numpy()
  np.testing.assert_array_equal(per_sample.numpy()[2:], [0., 0.])
  assert (per_sample.numpy()[:2] > 0.1).all()
  assert (np.linalg.norm(gradient[2:], axis=-1) > 0.1).all()
  want = reference_loss(features.astype(np.float64), labels, temperature=0.1)
  np.testing.assert_allclose(per_sample.numpy(), want, rtol=1e-5, atol=1e-7)
  two_views = np.concatenate([features, features + 0.01], axis=1)
  assert (contrastive_loss(two_views, labels, temperature=0.1).numpy() >
          0).all()


def test_one_view_divides_each_loss_once_more_by_its_positives():
  # The official num_views == 1 branch, on every kernel; float64 reference.
  rng = np.random.default_rng(0)
  labels = np.array([2, 1, 1, 0, 0, 0])
  features = rng.normal(size=(6, 1, 16))
  features /= np.linalg.norm(features, axis=-1, keepdims=True)
  z = features[:, 0]
  logits = z @ z.T / 0.1
  want = []
  for i in range(6):
    others = [a for a in range(6) if a != i]
    log_denominator = np.log(np.exp(logits[i, others]).sum())
    positives = [p for p in others if labels[p] == labels[i]]
    mean = (-np.mean([logits[i, p] - log_denominator for p in positives]) *
            0.1 if positives else 0.)
    want.append(mean / max(len(positives), 1))
  for implementation in ('fused', 'blockwise'):
    got = contrastive_loss(features.astype(np.float32), labels,
                           temperature=0.1, implementation=implementation)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
