"""The recipes through the Keras core (`supcon_tf.training.core`): from the
same weights and identity views its steps are the command line's Trainer
steps, under TensorFlow here and under JAX and PyTorch in processes of their
own; a run of a preset's two stages evaluates; a run sliced by its time budget
ends as the whole run."""
import json

import keras
import numpy as np
import pytest

from supcon_tf.training import core, signals, stage_model, stages
from tests import core_cases, test_backends
from tests.trainers import small_trainer

PRESET = 'seed_cifar10_resnet20_supcon_autoaugment'
STEPS = 2


def _batches(config, count=STEPS):
  """Smooth uint8 images and labels, `count` batches of the config's."""
  from tests.test_device_views import images
  rng = np.random.default_rng(0)
  return [(images(config.batch_size + 4, config.image_size)[
      rng.permutation(config.batch_size + 4)[:config.batch_size]],
           rng.integers(0, 4, config.batch_size)) for _ in range(count)]


@pytest.mark.parametrize('seed', [5])
def test_core_steps_equal_the_trainers_on_every_backend(tmp_path, seed):
  # Weight decay large enough for the comparison to see it (0.3 at a
  # learning rate of 0.003), steps small enough that float32 rounding
  # stays below the tolerance (the preset's temperature, 0.07 unscaled,
  # amplifies it: larger steps move a second step's result by 1e-4 between
  # two orders of summation of the same step, XLA's and TensorFlow's).
  keras.utils.set_random_seed(seed)
  config, model, trainer = small_trainer(
      PRESET, image_size=16, batch_size=16, stage_1_weight_decay=0.3,
      stage_2_weight_decay=0.3, stage_1_base_learning_rate=0.05,
      stage_2_base_learning_rate=0.05)
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
  # The steps moved the weights (the stem's kernel): a comparison that
  # could fail.
  assert np.abs(want[0][0] - initial[0]).max() > 1e-3 * np.abs(
      initial[0]).max()
  model.set_weights(initial)
  got = core_cases.core_steps(config, model, batches, mean_std)
  np.savez(tmp_path / 'case.npz', *initial,
           **{f'images_{i}': b[0] for i, b in enumerate(batches)},
           **{f'labels_{i}': b[1] for i, b in enumerate(batches)})
  (tmp_path / 'config.json').write_text(config.to_json())
  steps = {'tensorflow': got}
  for backend in ('jax', 'torch'):
    test_backends.run_backend(backend, f'''
      from supcon_tf.config import Config
      from supcon_tf.models import build_model
      from tests import core_cases
      config = Config.from_json(open('config.json').read())
      case = np.load('case.npz')
      model = build_model(config, 10)
      model(np.zeros((1, 1, 16, 16, 3), 'float32'))
      model.set_weights([case[f'arr_{{i}}']
                         for i in range(len(model.weights))])
      batches = [(case[f'images_{{i}}'], case[f'labels_{{i}}'])
                 for i in range({STEPS})]
      after = core_cases.core_steps(config, model, batches, {mean_std!r})
      np.savez('after.npz', *after[0], *after[1])
    ''', tmp_path)
    saved = np.load(tmp_path / 'after.npz')
    count = len(initial)
    steps[backend] = [[saved[f'arr_{i + k * count}'] for i in range(count)]
                      for k in range(2)]
  for stage in range(2):
    for name, weights in steps.items():
      assert len(weights[stage]) == len(want[stage]) > 50
      for a, b in zip(weights[stage], want[stage]):
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
  """A core checkpoint's arrays in the order written (model first)."""
  with np.load(model_dir / 'core' / f'{stage}.npz') as saved:
    return [saved[key] for key in saved.files if key != 'figures']


def test_a_checkpoint_is_keyed_by_variable_path(tmp_path):
  """A stage's checkpoint restores into a stage model built apart (Keras'
  auto-numbered names differ), by key; a file of an earlier release, by
  position; a file of another stage says which variable it lacks."""
  from supcon_tf.training import figures
  config = _digits_config(tmp_path)
  images = np.zeros((2, 32, 32, 3), 'uint8')

  def trainer(index):
    made = stage_model.for_stage(
        config, stage_model.built_model(config, 10),
        stages.stage_from_config(config, index), ((0.,) * 3, (1.,) * 3),
        steps=5)
    stage_model.build(made, images)
    return made

  source, target = trainer(1), trainer(1)
  assert source.model.name != target.model.name
  state = stage_model.keyed_state(source)
  assert 'model/resnet20/stem_conv/kernel' in state
  assert 'optimizer/iteration' in state
  assert 'optimizer/model/resnet20/stem_conv/kernel/momentum' in state
  rng = np.random.default_rng(0)
  for v in state.values():
    v.assign(rng.normal(size=v.shape).astype(v.dtype))
  want = {k: np.asarray(v.value) for k, v in state.items()}
  stage_model.save(source, tmp_path / 'keyed.npz',
                   figures.StageFigures(5))
  np.savez(tmp_path / 'positional.npz', *want.values())
  for name in ('keyed.npz', 'positional.npz'):
    stage_model.restore(target, tmp_path / name, figures.StageFigures(5))
    got = stage_model.keyed_state(target)
    assert list(got) == list(want)
    for key, value in want.items():
      np.testing.assert_array_equal(np.asarray(got[key].value), value, key)
  with pytest.raises(ValueError, match='keyed.npz holds another model or '
                     r'stage \(.* missing or of another shape\)'):
    stage_model.restore(trainer(2), tmp_path / 'keyed.npz',
                        figures.StageFigures(5))


def test_a_core_run_sliced_by_its_budget_ends_as_the_whole_run(tmp_path,
                                                               monkeypatch):
  """The digits preset's two stages through the Keras core, with the views
  on the device: the whole run evaluates; a call stops at its budget one
  step into stage 1, a second ends stage 1 and stops one step into stage 2
  (its budget read as spent from its fourth look), and a third finishes
  with every variable of both stages (optimizer and the views' seeds among
  them), and every figure of results.json, as the whole run's."""
  whole = core.run(_digits_config(tmp_path / 'whole'))
  assert (whole['stage_1_steps'], whole['stage_2_steps']) == (5, 5)
  assert 0. <= whole['test_top1'] <= 1.
  assert json.loads((tmp_path / 'whole' / 'results.json').read_text()) == (
      whole)
  budget = _digits_config(tmp_path / 'sliced', stop_after_minutes=1e-9)
  looks = []
  for stage, stopped, spent in (('stage_1', 1, None),
                                ('stage_2', 1, lambda: len(looks) > 3)):
    if spent:
      monkeypatch.setattr(signals, 'budget_spent',
                          lambda: looks.append(1) or spent())
    with pytest.raises(signals.BudgetSpent,
                       match=f'{stage}: stopped at step {stopped} of 5, the '
                       'time budget spent') as stop:
      core.run(budget)
    assert stop.value.status == 75
  monkeypatch.undo()
  sliced = core.run(_digits_config(tmp_path / 'sliced'))
  signals.reset()
  assert sliced['test_top1'] == whole['test_top1']
  # Every figure, stage 1's too, though it ended in an earlier call; the
  # last step's loss (not a mean over a call's steps); seconds summed.
  assert sorted(sliced) == sorted(whole)
  for key, value in whole.items():
    if key.endswith('seconds'):
      assert sliced[key] > 0, key
    elif key == 'export':  # Each in its own model_dir.
      assert sliced[key] == str(tmp_path / 'sliced' / core.KERAS_FILE)
    elif isinstance(value, float):
      assert sliced[key] == pytest.approx(value, rel=1e-5), key
    else:
      assert sliced[key] == value, key
  for stage in ('stage_1', 'stage_2'):
    want, got = _saved(tmp_path / 'whole', stage), _saved(
        tmp_path / 'sliced', stage)
    assert len(got) == len(want) > 50
    for a, b in zip(got, want):
      np.testing.assert_allclose(a, b, atol=1e-5 * max(np.abs(b).max(), 1.))


def test_the_classifier_continues_a_finished_stage_1(tmp_path, monkeypatch):
  """`run(config, (2,))` (supcon-train-classifier): stage 2 on the stage 1
  in model_dir, which it reads and leaves as it is; without a finished
  stage 1, one line. Stage 1 (two epochs of 5 steps) runs in fit calls of
  at most --summary_interval_steps ending at each epoch's end, where its
  checkpoint is written."""
  with pytest.raises(ValueError, match=r'stage_1 is not finished in .*core '
                     r'\(step 0 of 10\): supcon-train with the same flags'):
    core.run(_digits_config(tmp_path / 'none', stage_1_epochs=2), (2,))
  calls, saves = [], []
  run_steps, save = core.run_steps, stage_model.save
  monkeypatch.setattr(core, 'run_steps', lambda trainer, batches, count, *a: (
      calls.append(count) or run_steps(trainer, batches, count, *a)))
  monkeypatch.setattr(stage_model, 'save', lambda trainer, *a: (
      saves.append(int(trainer.optimizer.iterations)) or save(trainer, *a)))
  core.run(_digits_config(tmp_path, stage_1_epochs=2, stage_2_epochs=0,
                          summary_interval_steps=3, mode='train'))
  monkeypatch.undo()
  assert (calls, saves) == ([3, 2, 3, 2], [5, 10])
  stage_1 = (tmp_path / 'core' / 'stage_1.npz').read_bytes()
  results = core.run(_digits_config(tmp_path, stage_1_epochs=2), (2,))
  assert results['stage_2_steps'] == 5
  assert 'stage_1_steps' not in results
  assert 0. <= results['test_top1'] <= 1.
  assert (tmp_path / 'core' / 'stage_1.npz').read_bytes() == stage_1
  assert (tmp_path / 'core' / 'stage_2.npz').exists()


def test_a_dataset_the_core_cannot_read_is_one_line(tmp_path):
  from supcon_tf.data.arrays import DataError
  with pytest.raises(DataError, match='input_fn=imagenet has no Keras-core '
                     'reader; cifar10, cifar100, digits, folder have'):
    core.run(_digits_config(tmp_path, input_fn='imagenet'))
  with pytest.raises(ValueError, match='--model_dir is required'):
    core.run(_digits_config(''))
  with pytest.raises(ValueError, match="--sampler=class_balanced needs the "
                     'TensorFlow trainer for now'):
    core.run(_digits_config(tmp_path, sampler='class_balanced',
                            classes_per_batch=4))
  with pytest.raises(ValueError, match='--strategy=mirrored needs the '
                     'TensorFlow trainer for now'):
    core.run(_digits_config(tmp_path, strategy='mirrored'))
  assert not (tmp_path / 'core').exists()


def test_each_stage_decays_and_updates_the_variables_the_trainer_does(
    tmp_path, monkeypatch):
  """A run's stage models: the objective's weight decay reaches the
  variables `stages.decayed_variables` names (the model is built before
  them), and Keras' step differentiates `stages.updated_variables` alone
  (stage 2: the classification head, not the frozen encoder)."""
  seen = []
  monkeypatch.setattr(core, 'train_stage', lambda trainer, stage, *_, **__: (
      seen.append((trainer, stage)) or {'steps': 0, 'loss': None,
                                        'seconds': 0.}))
  config = _digits_config(tmp_path, mode='train')
  core.run(config)
  assert [stage.index for _, stage in seen] == [1, 2]
  ids = lambda variables: [id(v) for v in variables]
  for trainer, stage in seen:
    assert ids(trainer.objective.decayed) == ids(
        stages.decayed_variables(stage, trainer.model, config))
    assert ids(trainer.trainable_variables) == ids(
        stages.updated_variables(stage, trainer.model, config))
    assert len(trainer.non_trainable_variables) + len(
        trainer.trainable_variables) == len(trainer.variables)
  stage_1, stage_2 = seen[0][0], seen[1][0]
  assert stage_1.objective.weight_decay > 0
  assert len(stage_1.objective.decayed) > 20
  assert ids(stage_2.trainable_weights) == ids(
      stage_2.model.classification_head.trainable_variables)


def test_a_model_dir_of_another_run_is_refused_untouched(tmp_path):
  """The Keras core does not resume the TensorFlow trainer's run nor one of
  another configuration, and the trainer does not resume the core's: one
  line each, nothing written."""
  from supcon_tf.training import run as run_lib
  trainer_run = tmp_path / 'trainer'
  (trainer_run / 'stage_1').mkdir(parents=True)
  (trainer_run / 'stage_1' / 'checkpoint').write_text('')
  with pytest.raises(ValueError, match='holds a run of the TensorFlow '
                     'trainer .stage_1/.: resume it under '
                     'KERAS_BACKEND=tensorflow'):
    core.run(_digits_config(trainer_run))
  core_run = tmp_path / 'core_run'
  (core_run / 'core').mkdir(parents=True)
  (core_run / 'config.json').write_text(
      _digits_config(core_run).to_json())
  with pytest.raises(ValueError, match=r'temperature=0\.5 \(saved 0\.1\)'):
    core.run(_digits_config(core_run, temperature=0.5))
  with pytest.raises(ValueError, match='holds a run of the Keras core'):
    run_lib.check_config(_digits_config(core_run))
  assert sorted(p.name for p in core_run.iterdir()) == ['config.json', 'core']
  assert sorted(p.name for p in trainer_run.iterdir()) == ['stage_1']


@pytest.mark.parametrize('script', ['train_keras.py', 'train_supcon.py'])
def test_the_seed_preset_runs_both_stages_under_jax_and_evaluates(tmp_path,
                                                                  script):
  """The seed's CIFAR-10 SupCon preset (its views on the device: pad-4
  crop, flip, its AutoAugment) on a tiny CIFAR-10 archive, through
  bin/train_keras.py, and bin/train_supcon.py (the same command on every
  backend), under JAX with TensorFlow unimportable: the first steps of both
  stages, then the test top-1, the trained model as a .keras file (here it
  loads under TensorFlow: the weights of stage 2's last checkpoint) and one
  line saying the SavedModel needs TensorFlow."""
  from tests import archives
  archives.tiny_cifar10(tmp_path, per_batch=16)
  out, err = test_backends.run_backend('jax', f'''
    import runpy, sys
    sys.argv = [{script!r}, '--preset={PRESET}', '--data_dir=.',
                '--model_dir=run', '--batch_size=40', '--stage_1_epochs=1',
                '--stage_2_epochs=1', '--noprogress']
    runpy.run_path({str(test_backends.ROOT + '/bin/' + script)!r},
                   run_name='__main__')
  ''', tmp_path, stderr=True)
  results = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert results['export'] == 'run/model.keras'  # In model_dir.
  assert ('No SavedModel under jax: the export with the official signatures '
          'needs TensorFlow (KERAS_BACKEND=tensorflow)') in err
  loaded = keras.saving.load_model(tmp_path / results['export'])
  checkpoint = _saved(tmp_path / 'run', 'stage_2')
  assert len(loaded.weights) > 50
  for weight, saved in zip(loaded.get_weights(), checkpoint):
    np.testing.assert_array_equal(weight, saved)
  assert results['backend'] == 'jax'
  assert (results['stage_1_steps'], results['stage_2_steps']) == (2, 2)
  assert np.isfinite(results['stage_1_final_loss'])
  assert 0. <= results['test_top1'] <= 1.
  assert out.strip().splitlines()[-1].startswith('test top-1: ')


def test_a_folder_reads_as_the_command_lines_source(tmp_path):
  """arrays.load_folder and the validation split: the images, labels and
  whitening statistics of the command line's folder source."""
  from supcon_tf.data import sources
  from tests import archives
  archives.write_quadrants(tmp_path, per_class=5, test_per_class=0)
  config = _digits_config(tmp_path / 'run', input_fn='folder',
                          data_dir=str(tmp_path), validation_fraction=0.25,
                          image_size=8)
  splits, classes, mean_std = core.load_data(config)
  source = sources.load_source('folder', str(tmp_path),
                               validation_fraction=0.25, seed=config.seed)
  assert classes == source.num_classes == 4
  assert mean_std == source.mean_std
  for name in ('train', 'validation'):
    np.testing.assert_array_equal(splits[name][0], source.split(name).images)
    np.testing.assert_array_equal(splits[name][1], source.split(name).labels)
