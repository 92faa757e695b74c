"""The recipes through the Keras core (`supcon_tf.training.core`): from the
same weights and identity views its steps are the command line's Trainer
steps, under TensorFlow here and under JAX in a process of its own; a run
of a preset's two stages evaluates; a run sliced by its time budget ends as
the whole run."""
import json

import numpy as np
import pytest

from supcon_tf.training import core, signals, stages
from tests import core_cases, test_backends
from tests.trainers import small_trainer

PRESET = 'seed_cifar10_resnet20_supcon_autoaugment'
STEPS = 3


def _batches(config, count=STEPS):
  """uint8 images and labels, `count` batches of the config's size."""
  rng = np.random.default_rng(0)
  size = config.image_size
  return [(rng.integers(0, 256, (config.batch_size, size, size, 3), np.uint8),
           rng.integers(0, 4, config.batch_size)) for _ in range(count)]


def test_core_steps_equal_the_trainers_under_tensorflow_and_jax(tmp_path):
  # Steps and weight decay large enough for the comparison to see them
  # (learning rate 0.31 at batch 8).
  config, model, trainer = small_trainer(
      PRESET, stage_1_weight_decay=0.01, stage_2_weight_decay=0.01,
      stage_1_base_learning_rate=10., stage_2_base_learning_rate=10.)
  mean_std = ((120., 110., 100.), (60., 50., 40.))
  batches = _batches(config)
  initial = model.get_weights()
  want = []
  for index in (1, 2):
    stage = stages.stage_from_config(config, index)
    views = stages.views_for(stage, config)
    trainer.train_on_batches(stage, [
        (np.repeat(((images - mean_std[0]) / mean_std[1])[:, None], views,
                   axis=1).astype('float32'), labels.astype('int64'))
        for images, labels in batches])
    want.append(model.get_weights())
  # The steps moved the weights: a comparison that could fail.
  assert max(np.abs(a - b).max() for a, b in zip(want[0], initial)) > 1e-3
  model.set_weights(initial)
  got = core_cases.core_steps(config, model, batches, mean_std)
  np.savez(tmp_path / 'case.npz', *initial,
           **{f'images_{i}': b[0] for i, b in enumerate(batches)},
           **{f'labels_{i}': b[1] for i, b in enumerate(batches)})
  (tmp_path / 'config.json').write_text(config.to_json())
  test_backends.run_backend('jax', f'''
    from supcon_tf.config import Config
    from supcon_tf.models import build_model
    from tests import core_cases
    config = Config.from_json(open('config.json').read())
    case = np.load('case.npz')
    model = build_model(config, 10)
    model(np.zeros((1, 1, 8, 8, 3), 'float32'))
    model.set_weights([case[f'arr_{{i}}'] for i in range(len(model.weights))])
    batches = [(case[f'images_{{i}}'], case[f'labels_{{i}}'])
               for i in range({STEPS})]
    after = core_cases.core_steps(config, model, batches, {mean_std!r})
    np.savez('after.npz', *after[0], *after[1])
  ''', tmp_path)
  saved = np.load(tmp_path / 'after.npz')
  count = len(initial)
  jax = [[saved[f'arr_{i + k * count}'] for i in range(count)]
         for k in range(2)]
  for stage in range(2):
    for name, weights in (('tensorflow', got[stage]), ('jax', jax[stage])):
      assert len(weights) == len(want[stage]) > 50
      for a, b in zip(weights, want[stage]):
        np.testing.assert_allclose(
            a, b, atol=1e-4 * max(np.abs(b).max(), 1.),
            err_msg=f'stage {stage + 1}, {name}')


def _digits_config(model_dir, **values):
  from supcon_tf.presets import make_config
  return make_config('supcon_digits_resnet20', **{
      'model_dir': str(model_dir), 'batch_size': 256, 'stage_1_epochs': 1,
      'stage_2_epochs': 1, 'jit_compile': False, 'progress': False,
      **values})


def _saved(model_dir, stage):
  with np.load(model_dir / 'core' / f'{stage}.npz') as saved:
    return [saved[f'arr_{i}'] for i in range(len(saved.files))]


def test_a_core_run_sliced_by_its_budget_ends_as_the_whole_run(tmp_path):
  """The digits preset's two stages through the Keras core, with the views
  on the device: the whole run evaluates; two calls stop at their budget
  (one step each, a checkpoint each) and a third finishes with every
  variable of both stages (optimizer and the views' seeds among them) as
  the whole run's."""
  whole = core.run(_digits_config(tmp_path / 'whole'))
  assert (whole['stage_1_steps'], whole['stage_2_steps']) == (5, 5)
  assert 0. <= whole['test_top1'] <= 1.
  assert json.loads((tmp_path / 'whole' / 'results.json').read_text()) == (
      whole)
  budget = _digits_config(tmp_path / 'sliced', stop_after_minutes=1e-9)
  for stopped in (1, 2):
    with pytest.raises(signals.BudgetSpent,
                       match=f'stage_1: stopped at step {stopped} of 5, the '
                       'time budget spent') as stop:
      core.run(budget)
    assert stop.value.status == 75
  sliced = core.run(_digits_config(tmp_path / 'sliced'))
  signals.reset()
  assert sliced['test_top1'] == whole['test_top1']
  for stage in ('stage_1', 'stage_2'):
    want, got = _saved(tmp_path / 'whole', stage), _saved(
        tmp_path / 'sliced', stage)
    assert len(got) == len(want) > 50
    for a, b in zip(got, want):
      np.testing.assert_allclose(a, b, atol=1e-5 * max(np.abs(b).max(), 1.))


def test_a_dataset_the_core_cannot_read_is_one_line(tmp_path):
  from supcon_tf.data.arrays import DataError
  with pytest.raises(DataError, match='input_fn=imagenet has no Keras-core '
                     'reader; cifar10, cifar100, digits have'):
    core.run(_digits_config(tmp_path, input_fn='imagenet'))
  assert not (tmp_path / 'core').exists()
