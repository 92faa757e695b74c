"""--micro_batch_size: a step in chunks is the step of one replica per chunk.

One device with the batch in K chunks against MirroredStrategy over K logical
CPUs (conftest.py) with per-replica BatchNorm and one chunk per replica. Each
chunked step starts from the Mirrored run's state before that step: a chunk's
forward pass is then the replica's, op for op, and what differs is rounding
in the loss's gradient. (Free-running, a ReLU input within rounding of zero
can flip one run's mask and not the other's, as in docs/SEED.md.)
"""
import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.presets import make_config
from supcon_tf.training import stages
from tests import trainers
from tests.replicas import two_replicas

SUPCON = 'seed_cifar10_resnet20_supcon_autoaugment'
CROSS_ENTROPY = 'seed_cifar10_resnet20_ce'
SIZE = 8  # Image side: ResNet-20's strides still fit.
BATCH = 8
STEPS = 3


def _trainer(strategy, preset, weights=None, **values):
  return trainers.small_trainer(preset, strategy, weights, **values)


def _batches(views, seed=0):
  rng = np.random.default_rng(seed)
  return [(rng.normal(size=(BATCH, views, SIZE, SIZE, 3)).astype(np.float32),
           rng.integers(0, 3, BATCH)) for _ in range(STEPS)]


def _state(model, optimizer):
  return ([np.array(w) for w in model.get_weights()],
          [np.array(v) for v in optimizer.variables])


def _relative(got, want):
  scale = np.abs(want).max()
  return np.abs(got - want).max() / scale if scale else np.abs(got).max()


def _step_by_step(preset, stage_index, **values):
  """The Mirrored run's states before each step and after the last, and the
  chunked run's state after each step from the Mirrored state before it."""
  mirrored = two_replicas()
  config, model, trainer = _trainer(mirrored, preset, **values)
  stage = stages.stage_from_config(config, stage_index)
  batches = _batches(stages.views_for(stage, config))
  initial = model.get_weights()
  before = []
  _, optimizer = trainer.train_on_batches(
      stage, batches,
      lambda index, optimizer, step: before.append(_state(model, optimizer)))
  after = before[1:] + [_state(model, optimizer)]

  config, model, trainer = _trainer(tf.distribute.get_strategy(), preset,
                                    initial, micro_batch_size=BATCH // 2,
                                    **values)
  chunked = []

  def start_from_mirrored(index, optimizer, step):
    if index:
      chunked.append(_state(model, optimizer))
    weights, slots = before[index]
    model.set_weights(weights)
    for variable, value in zip(optimizer.variables, slots):
      variable.assign(value)
    step.assign(index)
  _, optimizer = trainer.train_on_batches(stage, batches, start_from_mirrored)
  chunked.append(_state(model, optimizer))
  return model, before, after, chunked


def _assert_same_steps(model, before, after, chunked):
  names = [w.path for w in model.weights]
  moved = set()
  for index in range(STEPS):
    (weights, slots), (want_weights, want_slots) = chunked[index], after[index]
    for name, got, want, start in zip(names, weights, want_weights,
                                      before[index][0]):
      if not np.array_equal(want, start):
        moved.add(name)
      assert _relative(got, want) < 1e-5, (index, name)
    # The slots (momentum: the gradients' running sum) are the strict test
    # of the gradient: a weight's step is small against the weight.
    for got, want in zip(slots, want_slots):
      assert _relative(got, want) < 1e-5, index
  return moved


@pytest.mark.parametrize('preset,values', [
    (SUPCON, {}),
    (SUPCON, {'use_labels': False}),  # SimCLR
    (SUPCON, {'stage_1_cross_entropy_loss_weight': 1.,
              'stop_gradient_before_classification_head': False}),  # Joint
    (CROSS_ENTROPY, {}),  # Accumulation, BatchNorm per chunk
], ids=['supcon', 'simclr', 'joint', 'cross_entropy'])
def test_chunks_on_one_device_are_replicas(preset, values):
  model, before, after, chunked = _step_by_step(preset, 1, **values)
  moved = _assert_same_steps(model, before, after, chunked)
  # The comparison covers what trains and the moving statistics.
  assert any('moving_mean' in n for n in moved)
  assert any('kernel' in n for n in moved)


def test_accumulation_is_the_whole_batch_step_on_a_frozen_encoder():
  """The classifier stage, encoder BatchNorm in inference mode: no batch
  statistics, so chunks change only the order of the gradient's sums."""
  values = dict(stage_2_encoder_batch_norm_inference=True)
  config, model, trainer = _trainer(tf.distribute.get_strategy(), SUPCON,
                                    **values)
  stage = stages.stage_from_config(config, 2)
  batches = _batches(1)
  initial = model.get_weights()
  whole_terms, whole = trainer.train_on_batches(stage, batches)
  want = _state(model, whole)
  config, model, trainer = _trainer(tf.distribute.get_strategy(), SUPCON,
                                    initial, micro_batch_size=2, **values)
  terms, chunked = trainer.train_on_batches(stage, batches)
  got = _state(model, chunked)
  for a, b in zip(terms, whole_terms):
    assert a.keys() == b.keys()
    for key in a:
      assert abs(a[key] - b[key]) <= 1e-6 * abs(b[key]) + 1e-7, key
  changed = 0
  for g, w, start in zip(got[0] + got[1], want[0] + want[1],
                         initial + [0] * len(got[1])):
    assert _relative(g, w) < 1e-6
    changed += not np.array_equal(w, start)
  assert changed > 2  # The classifier and its slots moved.


def test_chunks_on_replicas_are_the_same_chunks_on_one_device():
  """Two replicas of 4 examples in chunks of 2 normalise the groups one
  device in chunks of 2 does: the same steps."""
  config, model, trainer = _trainer(two_replicas(), SUPCON, micro_batch_size=2)
  stage = stages.stage_from_config(config, 1)
  batches = _batches(stages.views_for(stage, config))
  initial = model.get_weights()
  terms, optimizer = trainer.train_on_batches(stage, batches)
  replicas = _state(model, optimizer)
  _, model, trainer = _trainer(tf.distribute.get_strategy(), SUPCON, initial,
                               micro_batch_size=2)
  want_terms, optimizer = trainer.train_on_batches(stage, batches)
  one_device = _state(model, optimizer)
  for got, want in zip(replicas[0] + replicas[1],
                       one_device[0] + one_device[1]):
    assert _relative(got, want) < 1e-5
  for got, want in zip(terms, want_terms):
    assert abs(got['loss'] - want['loss']) <= 1e-5 * abs(want['loss'])


def test_a_chunk_that_does_not_divide_the_batch_is_refused():
  with pytest.raises(ValueError, match='--micro_batch_size=3 does not divide'):
    make_config(SUPCON, batch_size=8, micro_batch_size=3)
  mirrored = two_replicas()
  with pytest.raises(ValueError, match='per-replica batch'):
    # 12 divides by 4, but each replica's 6 does not.
    _trainer(mirrored, SUPCON, micro_batch_size=4, batch_size=12)
  with pytest.raises(ValueError, match='--use_global_batch_norm=false'):
    _trainer(mirrored, SUPCON, micro_batch_size=2, use_global_batch_norm=True)
