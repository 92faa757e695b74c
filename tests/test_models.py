"""Encoders, heads and the contrastive model."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.losses import contrastive_loss
from supcon_tf.models import (ClassificationHead, ContrastiveModel,
                              ProjectionHead, build_encoder)


def _trainable_count(model):
  return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _built(name, size, **options):
  encoder = build_encoder(name, **options)
  encoder(np.zeros((1, size, size, 3), np.float32))
  return encoder


def _official_resnet_count(depth, width=1, stem_kernel=7):
  """Trainable parameters of the official supcon/resnet.py ResNetV1, counted
  from its blocks.py: a stem conv + BN, then per group of filters
  f = int(64 * 2**i * width) blocks whose first one has a 1x1 projection
  conv + BN; ResidualBlock = 3x3 convs f, f; BottleneckResidualBlock = 1x1 f,
  3x3 f, 1x1 4f; BatchNorm gamma and beta after every conv."""
  sizes = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3),
           101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
  conv_bn = lambda k, cin, cout: k * k * cin * cout + 2 * cout
  channels = int(64 * width)
  total = conv_bn(stem_kernel, 3, channels)
  for i, blocks in enumerate(sizes[depth]):
    f = int(64 * 2**i * width)
    out = f if depth < 50 else 4 * f
    for j in range(blocks):
      if j == 0:
        total += conv_bn(1, channels, out)
      if depth < 50:
        total += conv_bn(3, channels, f) + conv_bn(3, f, f)
      else:
        total += (conv_bn(1, channels, f) + conv_bn(3, f, f) +
                  conv_bn(1, f, 4 * f))
      channels = out
  return total


def test_official_count_agrees_with_torchvision_where_they_share_a_layout():
  # torchvision's ResNet-50/101 (no classifier) have the official layout;
  # its ResNet-18 lacks group 0's projection (64 * 64 + 2 * 64).
  assert _official_resnet_count(50) == 25_557_032 - 2_049_000
  assert _official_resnet_count(101) == 44_549_160 - 2_049_000
  assert _official_resnet_count(18) == 11_689_512 - 513_000 + 64 * 64 + 128


@pytest.mark.parametrize('name,size,expected', [
    # The CIFAR ResNet-20 of He et al. with option-A shortcuts (published).
    ('resnet20', 32, 269_072),
    ('resnet18', 64, _official_resnet_count(18)),
    ('resnet34', 64, _official_resnet_count(34)),
    ('resnet50', 64, _official_resnet_count(50)),
    ('resnet101', 64, _official_resnet_count(101)),
])
def test_trainable_parameters_match_published_architectures(name, size,
                                                            expected):
  assert _trainable_count(_built(name, size)) == expected


def test_resnet_blocks_start_as_the_official_blocks():
  encoder = _built('resnet18', 32)
  # Group 0 projects too; the last gamma of every block starts at zero.
  assert encoder.blocks[0].projection is not None
  assert encoder.blocks[1].projection is None
  assert all(np.all(b.bn2.gamma.numpy() == 0) for b in encoder.blocks)
  # Kernels: variance scaling 1, fan_in, truncated normal (std
  # sqrt(1 / fan_in), nothing beyond two of its standard deviations).
  kernel = encoder.blocks[6].conv2.kernel.numpy()  # 3x3x512x512.
  bound = math.sqrt(1. / (9 * 512))
  assert abs(kernel.std() / bound - 1) < 0.02
  assert np.abs(kernel).max() <= 2 * bound / 0.87962566103423978 + 1e-6


def test_cifar_depths_have_the_6n_plus_2_structure():
  for name, blocks in [('resnet32', 15), ('resnet56', 27)]:
    encoder = _built(name, 32)
    assert len(encoder.blocks) == blocks
    assert encoder(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 64)


def test_option_b_shortcut_adds_projection_parameters():
  a = _trainable_count(_built('resnet20', 32))
  b = _trainable_count(_built('resnet20', 32, shortcut='B'))
  # Two 1x1 projections with BatchNorm: 16*32 + 2*32 and 32*64 + 2*64.
  assert b - a == 16 * 32 + 64 + 32 * 64 + 128


def test_cifar_stem_keeps_resolution_and_feature_size():
  imagenet = _built('resnet18', 32)
  cifar = _built('resnet18', 32, cifar_stem=True)
  x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  assert imagenet(x).shape == cifar(x).shape == (2, 512)
  assert cifar.stem.kernel_size == (3, 3) and cifar.max_pool is None
  # 7x7 vs 3x3 stem: 64 * 3 * (49 - 9) more weights.
  assert (_trainable_count(imagenet) - _trainable_count(cifar) ==
          64 * 3 * 40)


def test_resnet_width_and_zero_init_last_bn():
  encoder = _built('resnet18', 32, resnet_width=2, zero_init_last_bn=False)
  assert encoder.output_dim == 1024
  assert _trainable_count(encoder) == _official_resnet_count(18, width=2)
  gammas = [b.bn2.gamma.numpy() for b in encoder.blocks]
  assert all(np.all(g == 1) for g in gammas)


def test_unknown_encoder_name_lists_the_valid_ones():
  with pytest.raises(ValueError, match='resnet20.*resnet200'):
    build_encoder('resnet21')


def test_projection_head_layout():
  head = ProjectionHead([64, 64])
  out = head(np.ones((3, 16), np.float32))
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1., rtol=1e-6)
  assert head.dense[0].use_bias and not head.dense[-1].use_bias
  assert abs(np.std(head.dense[0].kernel.numpy()) - 0.01) < 0.003
  with_bn = ProjectionHead([8, 4], use_batch_norm=True)
  with_bn(np.ones((3, 16), np.float32))
  assert with_bn.norms[0].beta is None


def test_projection_head_with_batch_norm_is_the_official_layout():
  # Official projection_head.py: Dense(use_bias=not last and not BN), BN
  # (beta optional) and ReLU after hidden layers only, L2 normalisation.
  head = ProjectionHead([8, 6, 4], use_batch_norm=True,
                        use_batch_norm_beta=True)
  x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
  out = head(x, training=True).numpy()
  assert [d.use_bias for d in head.dense] == [False, False, False]
  assert len(head.norms) == 2
  h = x.astype(np.float64)
  for i in range(2):
    h = h @ head.dense[i].kernel.numpy()
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5)  # gamma 1, beta 0.
    h = np.maximum(h, 0.)
  h = h @ head.dense[2].kernel.numpy()
  np.testing.assert_allclose(out, h / np.linalg.norm(h, axis=1, keepdims=True),
                             atol=1e-4)
  names = sorted(v.path.split('/', 1)[1] for v in head.weights)
  assert names == ['bn0/beta', 'bn0/gamma', 'bn0/moving_mean',
                   'bn0/moving_variance', 'bn1/beta', 'bn1/gamma',
                   'bn1/moving_mean', 'bn1/moving_variance', 'dense0/kernel',
                   'dense1/kernel', 'dense2/kernel']


def _model(**options):
  keras.utils.set_random_seed(0)
  model = ContrastiveModel(build_encoder('resnet20'), num_classes=10,
                           projection_head_layers=(64, 64), **options)
  model(np.zeros((2, 32, 32, 3), np.float32))
  return model


def test_model_outputs_for_images_and_views():
  model = _model()
  images = np.random.default_rng(1).uniform(size=(4, 32, 32, 3)).astype(
      np.float32)
  out = model(images)
  assert set(out) == {'embeddings', 'unnormalized_embeddings', 'projection',
                      'logits'}
  assert out['embeddings'].shape == (4, 64) and out['logits'].shape == (4, 10)
  np.testing.assert_allclose(np.linalg.norm(out['embeddings'], axis=-1), 1.,
                             rtol=1e-5)
  views = model(np.stack([images[:2], images[2:]], axis=1))
  assert views['projection'].shape == (2, 2, 64)
  np.testing.assert_allclose(views['projection'][0, 1], out['projection'][2],
                             rtol=1e-5, atol=1e-6)


def _encoder_gradients(model, output, views):
  with tf.GradientTape() as tape:
    out = model(views, training=True)
    loss = (tf.reduce_mean(contrastive_loss(out['projection'], [0, 1]))
            if output == 'projection' else tf.reduce_sum(out['logits']))
  grads = tape.gradient(loss, model.encoder.trainable_weights)
  return [g for g in grads if g is not None]


def test_stop_gradients_keep_head_losses_from_the_encoder():
  views = np.random.default_rng(2).normal(size=(2, 2, 32, 32, 3)).astype(
      np.float32)
  model = _model()
  assert not _encoder_gradients(model, 'logits', views)
  assert _encoder_gradients(model, 'projection', views)
  stopped = _model(stop_gradient_before_projection_head=True,
                   stop_gradient_before_classification_head=False)
  assert not _encoder_gradients(stopped, 'projection', views)
  assert _encoder_gradients(stopped, 'logits', views)


def test_inference_keeps_batch_norm_statistics_frozen():
  model = _model()
  images = np.random.default_rng(3).normal(3., 2., size=(4, 32, 32, 3))
  before = [v.numpy() for v in model.non_trainable_weights]
  model(images.astype(np.float32), training=False)
  assert all(np.array_equal(a, v.numpy())
             for a, v in zip(before, model.non_trainable_weights))
  model(images.astype(np.float32), training=True)
  assert any(not np.array_equal(a, v.numpy())
             for a, v in zip(before, model.non_trainable_weights))


@pytest.mark.parametrize('encoder_name,options,weight_init', [
    ('resnet20', {}, 'official'),
    ('resnet20', dict(weight_init='seed'), 'seed'),
    ('resnet18', dict(cifar_stem=True, resnet_width=1), 'official'),
    ('resnext50', dict(cifar_stem=True), 'official'),
])
def test_model_round_trips_through_a_keras_file(tmp_path, encoder_name,
                                                options, weight_init):
  model = ContrastiveModel(build_encoder(encoder_name, **options),
                           num_classes=5, projection_head_layers=(32, 16),
                           use_projection_batch_norm=True,
                           weight_init=weight_init)
  images = np.random.default_rng(4).uniform(size=(3, 32, 32, 3)).astype(
      np.float32)
  model(images, training=True)  # Move BatchNorm statistics off their start.
  expected = model(images, training=False)
  path = str(tmp_path / 'model.keras')
  model.save(path)
  restored = keras.models.load_model(path)
  assert isinstance(restored, ContrastiveModel)
  got = restored(images, training=False)
  for key in expected:
    np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6)


def test_mixed_precision_gives_float32_outputs():
  keras.mixed_precision.set_global_policy('mixed_float16')
  try:
    model = ContrastiveModel(build_encoder('resnet20'), num_classes=3,
                             projection_head_layers=(8,))
    out = model(np.zeros((2, 2, 32, 32, 3), np.float32))
    assert model.encoder.stem.compute_dtype == 'float16'
  finally:
    keras.mixed_precision.set_global_policy('float32')
  assert all(v.dtype == tf.float32 for v in out.values())


def test_classification_head_zero_init():
  head = ClassificationHead(4, zero_init=True)
  np.testing.assert_array_equal(head(np.ones((2, 3), np.float32)), 0.)


def test_fused_batch_norm_matches_the_keras_layer():
  from supcon_tf.models.layers import FusedBatchNormalization
  x = np.random.default_rng(5).normal(2., 3., size=(4, 5, 5, 6)).astype(
      np.float32)
  options = dict(momentum=0.9, epsilon=1e-5, beta_initializer='random_normal',
                 gamma_initializer='random_normal')
  keras.utils.set_random_seed(0)
  reference = keras.layers.BatchNormalization(**options)
  keras.utils.set_random_seed(0)
  fused = FusedBatchNormalization(**options)
  with tf.GradientTape(persistent=True) as tape:
    inputs = tf.constant(x)
    tape.watch(inputs)
    want, got = reference(inputs, training=True), fused(inputs, training=True)
    want_loss, got_loss = tf.reduce_sum(want**3), tf.reduce_sum(got**3)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(tape.gradient(got_loss, inputs),
                             tape.gradient(want_loss, inputs),
                             rtol=1e-3, atol=1e-3)
  n = x.size // x.shape[-1]
  np.testing.assert_allclose(fused.moving_mean, reference.moving_mean,
                             rtol=1e-5)
  np.testing.assert_allclose(
      fused.moving_variance,
      0.9 + 0.1 * x.reshape(-1, 6).var(axis=0) * n / (n - 1), rtol=1e-4)
  np.testing.assert_allclose(fused(x, training=False),
                             (x - fused.moving_mean) / np.sqrt(
                                 fused.moving_variance + 1e-5) *
                             fused.gamma + fused.beta, rtol=1e-4, atol=1e-4)
  fused.trainable = False
  before = fused.moving_mean.numpy()
  fused(x, training=True)
  np.testing.assert_array_equal(fused.moving_mean, before)


@pytest.mark.parametrize('shape', [(4, 3, 3, 5), (6, 5)])
def test_moving_variance_is_the_official_one(shape):
  """One training step against float64 NumPy. The official global BatchNorm
  is tf.layers' non-fused one: the moving average takes the biased batch
  variance; the fused kernel (and PyTorch) take the unbiased one. The rank-2
  projection-head BatchNorm falls back to Keras' layer: biased, as
  official."""
  from supcon_tf.models.layers import FusedBatchNormalization
  x = np.random.default_rng(3).normal(1., 2., size=shape)
  flat = x.reshape(-1, shape[-1])
  for unbiased in ((False, True) if len(shape) == 4 else (False,)):
    layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-5,
                                    unbiased_moving_variance=unbiased)
    outputs = layer(tf.constant(x, tf.float32), training=True)
    want = (x - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)
    np.testing.assert_allclose(outputs, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean, 0.1 * flat.mean(0),
                               rtol=1e-5)
    np.testing.assert_allclose(
        layer.moving_variance, 0.9 + 0.1 * flat.var(0, ddof=int(unbiased)),
        rtol=1e-5)


def test_official_resnets_use_the_biased_moving_variance_and_cifar_resnets_not():
  from supcon_tf.models.layers import FusedBatchNormalization
  for name, unbiased in (('resnet18', False), ('resnet50', False),
                         ('resnet20', True)):
    encoder = _built(name, 32, **({} if name == 'resnet20' else
                                  {'cifar_stem': True}))
    norms = [layer for layer in encoder._flatten_layers(recursive=True)
             if isinstance(layer, FusedBatchNormalization)]
    assert norms and all(n.unbiased_moving_variance is unbiased
                         for n in norms), name


def test_resnext_is_the_official_resnext_block():
  encoder = _built('resnext50', 32, cifar_stem=True)
  # Official count: per block 1x1 (2f), 64-group 3x3 (2f), 1x1 (4f), BN after
  # each; the first block of a group adds a 1x1 projection with BN.
  total, channels = 3 * 3 * 3 * 64 + 128, 64
  for i, blocks in enumerate((3, 4, 6, 3)):
    f = 64 * 2**i
    for j in range(blocks):
      if j == 0:
        total += channels * 4 * f + 8 * f
      total += (channels * 2 * f + 4 * f + 9 * (2 * f // 64) * 2 * f + 4 * f +
                2 * f * 4 * f + 8 * f)
      channels = 4 * f
  assert _trainable_count(encoder) == total
  assert encoder.output_dim == 2048
  block = encoder.blocks[3]  # Group 1's first block: stride 2.
  assert all(np.all(b.bn3.gamma.numpy() == 1) for b in encoder.blocks)
  # The grouped convolution equals the official split / conv2d 'SAME' /
  # concat, also strided (TensorFlow's SAME, not the fixed padding).
  x = tf.constant(np.random.default_rng(2).normal(size=(2, 9, 9, 256)),
                  tf.float32)
  kernel = block.conv2.kernel
  groups = tf.split(x, 64, axis=-1)
  kernels = tf.split(kernel, 64, axis=3)
  official = tf.concat([tf.nn.conv2d(g, k, [1, 2, 2, 1], 'SAME')
                        for g, k in zip(groups, kernels)], -1)
  np.testing.assert_allclose(block.conv2(x), official, atol=1e-4)
