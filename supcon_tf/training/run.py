"""A whole run, in the official modes (`config.mode`).

`train` trains stage 1 then stage 2 (a stage with 0 epochs is skipped, a
finished one is not redone) and writes `results.json`; `train_then_eval`
then evaluates on the eval split (CIFAR test, ImageNet validation), exports
the SavedModel to `model_dir/export` and plots the test embeddings to
`model_dir/embeddings.png`; `eval` is the official separate evaluation job:
it evaluates the checkpoints of `model_dir` as they appear, until the last
one, then exports and plots.
"""
import contextlib
import io
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from supcon_tf import export as export_lib
from supcon_tf import config_checks, files, official
from supcon_tf.data import arrays, sources
from supcon_tf.models import (  # noqa: F401 (build_model: its old place)
    ENCODERS, build_model, encoder_name, layers)
from supcon_tf.models.cifar_resnet import CIFAR_DEPTHS
from supcon_tf.training import checkpoints, evaluation, precision, signals
from supcon_tf.training import stages
from supcon_tf.training.loop import Trainer
from supcon_tf.training.summaries import write_scalars

CONFIG_FILE = config_checks.CONFIG_FILE
RESULTS_FILE = 'results.json'
# --mode=eval stops when no new checkpoint has come for this long (official).
EVAL_TIMEOUT_SECS = 60 * 60


def make_strategy(config):
  """The strategy `config.strategy` names. auto: the TPU strategy with
  --use_tpu and a TPU (named by --tpu_name or --master, or local), else
  MirroredStrategy over all GPUs when there are several, else the default
  strategy. mirrored: over all GPUs, or all logical CPUs. multi_worker:
  `multi_worker_strategy`."""
  name = config.strategy
  if name == 'auto':
    if config.use_tpu and (config.tpu_name or config.master or
                           tf.config.list_logical_devices('TPU')):
      name = 'tpu'
    else:
      gpus = tf.config.list_logical_devices('GPU')
      return (tf.distribute.MirroredStrategy() if len(gpus) > 1
              else tf.distribute.get_strategy())
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'mirrored':
    # All GPUs; without GPUs, all (logical) CPUs, which is how the
    # distributed path is exercised on a CPU-only machine.
    devices = (tf.config.list_logical_devices('GPU') or
               tf.config.list_logical_devices('CPU'))
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  if name == 'multi_worker':
    return multi_worker_strategy(config)
  if name == 'tpu':
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
          tpu=config.tpu_name or config.master or '', zone=config.tpu_zone,
          project=config.gcp_project)
    except ValueError as error:
      raise ValueError(f'--strategy=tpu: no TPU found ({error}); name one '
                       'with --tpu_name or --master.') from error
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f'Unknown strategy {name!r}.')


def multi_worker_strategy(config):
  """MultiWorkerMirroredStrategy over the cluster `TF_CONFIG` describes, or,
  without it, the Slurm job's (SlurmClusterResolver). Must be made before
  any other TensorFlow op runs. A dead worker is found by the strategy's
  health checks (every 30 s, three 10 s attempts), which abort the pending
  collectives; a per-collective timeout would cost a watchdog thread for
  every collective op of every step."""
  cluster_resolver = tf.distribute.cluster_resolver
  if os.environ.get('TF_CONFIG'):
    resolver = cluster_resolver.TFConfigClusterResolver()
  elif os.environ.get('SLURM_PROCID') is not None:
    resolver = cluster_resolver.SlurmClusterResolver(
        gpus_per_node=len(tf.config.list_physical_devices('GPU')))
  else:
    raise ValueError('--strategy=multi_worker needs a cluster: set TF_CONFIG '
                     '(docs/DISTRIBUTED.md, scripts/local_cluster.sh) or run '
                     'under Slurm.')
  return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)


def is_chief(strategy):
  """Whether this process writes the run's files: always, but on a
  multi-worker strategy only its chief (task 'chief', else worker 0)."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  resolver = strategy.cluster_resolver
  cluster = resolver.cluster_spec().as_dict()
  if resolver.task_type == 'chief':
    return True
  return (resolver.task_type in (None, 'worker') and not resolver.task_id
          and 'chief' not in cluster)


def normalization(config, source=None):
  """`arrays.normalization` with the source's own statistics."""
  return arrays.normalization(config,
                              None if source is None else source.mean_std)


def check_config(config):
  """What a Config alone cannot tell: an encoder that exists for the depth
  and architecture, and a model_dir that fits (check_model_dir)."""
  name = encoder_name(config)
  if name not in ENCODERS:
    prefix = name.rstrip('0123456789')
    allowed = sorted({int(n[len('resnet'):]) for n in CIFAR_DEPTHS} |
                     {int(n[len(prefix):]) for n in ENCODERS
                      if n[len(prefix):].isdigit() and n.startswith(prefix)})
    raise ValueError(
        f'resnet_depth must be one of {", ".join(map(str, allowed))} with '
        f'resnet_architecture={config.resnet_architecture}; got '
        f'{config.resnet_depth}.')
  check_model_dir(config)


def check_model_dir(config):
  """Refuses a model_dir that holds a run with another configuration (stage 2
  settings may change until stage 2 has started). Reads, never writes."""
  if not config.model_dir:
    raise ValueError('model_dir is required (--model_dir).')
  if os.path.isdir(os.path.join(config.model_dir, 'core')):
    raise ValueError(
        f'{config.model_dir} holds a run of the Keras core (core/): resume '
        'it with supcon-train-keras, or under the KERAS_BACKEND it ran on; '
        'or use another --model_dir.')
  config_checks.check_saved_config(config, bool(
      tf.train.latest_checkpoint(os.path.join(config.model_dir, 'stage_2'))))


def run(config, stage_indices=(1, 2)):
  """Runs `config.mode`; returns the results dict (also results.json).
  With `config.stop_after_minutes`, raises `signals.BudgetSpent` at the
  first step boundary past that budget, its stage checkpointed."""
  started = time.perf_counter()
  signals.start_budget(config.stop_after_minutes)
  check_config(config)
  setup = _setup(config)
  with contextlib.ExitStack() as held:
    if config.mode != 'eval' and setup['chief']:
      # One training run per model_dir (an eval job may watch it).
      held.enter_context(files.model_dir_lock(config.model_dir))
      files.write_text(os.path.join(config.model_dir, CONFIG_FILE),
                       config.to_json())
    if config.mode == 'eval':
      results = evaluate_continuously(config, setup)
    else:
      results = _train(config, setup, stage_indices)
      if config.mode == 'train_then_eval':
        # The stages are saved: a rerun evaluates and exports again.
        results.update(_evaluate(config, setup))
        signals.check('after the evaluation, before the export',
                      'training is complete. Run the same command to finish')
        results.update(_finish(config, setup))
    results['wall_seconds'] = round(time.perf_counter() - started, 2)
    if setup['chief']:
      _write_results(config, results)
  return results


_STARTING = 'while starting, before any training step'


def _setup(config):
  """Source, strategy, model and trainer of a run."""
  if config.deterministic:
    # Process-wide, and before any op: kernels with a deterministic
    # implementation use it, the others raise when they run.
    tf.config.experimental.enable_op_determinism()
  # First: a multi-worker strategy must exist before any other op runs.
  strategy = make_strategy(config)
  if config.stop_after_minutes and isinstance(
      strategy, tf.distribute.MultiWorkerMirroredStrategy):
    # Each worker's clock would end its budget at another step, and the
    # others would wait on it in the next step's all-reduce.
    raise ValueError('--stop_after_minutes applies to one process; the '
                     'workers of a multi-worker run would stop at different '
                     'steps. Send SIGTERM to every worker instead.')
  signals.check(_STARTING)
  source = sources.load_source(seed=config.seed,
                               **config.data.source_options())
  precision.set_policy(config.allow_mixed_precision,
                       precision.device_kind(strategy))
  if config.mode != 'train':
    # Before anything is written: a run that cannot be evaluated says so.
    source.split(eval_split(source))
  signals.check(_STARTING)
  mean_std = normalization(config, source)
  chief = is_chief(strategy)
  os.makedirs(config.model_dir, exist_ok=True)
  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    model = build_model(config.model, source.num_classes)
    model(tf.zeros([1, config.image_size, config.image_size, 3]))
  layers.synchronize_batch_norm(model, config.use_global_batch_norm)
  if config.reference_ckpt:
    # The stages' own checkpoints, when there are some, replace these.
    official.restore_official(model, config.reference_ckpt,
                              config.warm_start_parts,
                              config.ignore_missing_checkpoint_vars)
  signals.check(_STARTING)
  trainer = Trainer(config, strategy, model, source, mean_std, chief=chief)
  return dict(source=source, model=model, trainer=trainer, mean_std=mean_std,
              chief=chief)


def _train(config, setup, stage_indices):
  trainer = setup['trainer']
  source = setup['source']
  results = {'input_fn': config.input_fn, 'num_classes': source.num_classes,
             'steps_per_epoch': trainer.steps_per_epoch}
  for index in (1, 2):
    stage = stages.stage_from_config(config, index)
    if stage.epochs == 0:
      continue
    if index not in stage_indices:
      if index < max(stage_indices):
        trainer.restore_finished(stage)
      continue
    outcome = trainer.run_stage(stage)
    results[f'{stage.name}_steps'] = outcome['steps']
    results[f'{stage.name}_seconds'] = round(outcome['seconds'], 2)
    if outcome['loss'] is not None:
      results[f'{stage.name}_final_loss'] = outcome['loss']
    for key in ('loss_floor', 'excess_loss'):
      if key in outcome:
        results[f'{stage.name}_final_{key}'] = outcome[key]
    if 'knn_val_top1' in outcome:
      results['knn_val_top1'] = outcome['knn_val_top1']
    if 'collapsed_epochs' in outcome:
      # Epochs whose loss sat at its collapsed value (a warning each).
      results[f'{stage.name}_collapsed_epochs'] = outcome['collapsed_epochs']
  return results


def eval_split(source):
  """The split the evaluation reports: test (the official eval split), or,
  for a folder without test/, the validation split carved from train."""
  if 'test' in source.splits or 'validation' not in source.splits:
    return 'test'
  return 'validation'


def _evaluate(config, setup, global_step=None):
  """What the official evaluation reports, on the eval split (and top-1 on
  the validation split when there is one), to TensorBoard (model_dir/
  summaries/eval) and the returned dict: `test_*` on the test split, `val_*`
  where the validation split stands in for a missing one."""
  trainer = setup['trainer']
  split = eval_split(setup['source'])
  prefix = 'test' if split == 'test' else 'val'
  # One pass: each example's eval view (view 0, what top-k and the plot
  # take) and a training view (for the official eval's contrastive loss).
  pairs = trainer.outputs(split, keys=('embeddings', 'logits', 'projection'),
                          training_view=True)
  test = {'embeddings': pairs['embeddings'][:, 0],
          'logits': pairs['logits'][:, 0], 'labels': pairs['labels']}
  setup['test'] = test
  results = {
      f'{prefix}_top1': evaluation.top_k_accuracy(test['logits'],
                                                  test['labels'], 1),
      f'{prefix}_top5': evaluation.top_k_accuracy(test['logits'],
                                                  test['labels'], 5),
      f'{prefix}_cross_entropy_loss': evaluation.cross_entropy(
          test['logits'], test['labels']),
      f'{prefix}_contrastive_loss': evaluation.contrastive_loss(
          pairs['projection'],
          pairs['labels'] if config.loss.use_labels else None,
          config.eval_batch_size, **config.loss.options()),
      'eval_split': split,
  }
  if split == 'test' and 'validation' in setup['source'].splits:
    validation = trainer.outputs('validation')
    results['val_top1'] = evaluation.top_k_accuracy(
        validation['logits'], validation['labels'], 1)
  elif split == 'test':
    results['val_top1'] = None
  if global_step is None:
    global_step = sum(stages.stage_steps(
        stages.stage_from_config(config, i), config, trainer.steps_per_epoch)
                      for i in (1, 2))
  results['global_step'] = int(global_step)
  if not setup['chief']:
    return results
  names = {f'{prefix}_top1': 'eval/top_1_accuracy',
           f'{prefix}_top5': 'eval/top_5_accuracy',
           f'{prefix}_contrastive_loss': 'eval/loss/contrastive_loss',
           f'{prefix}_cross_entropy_loss': 'eval/loss/cross_entropy_loss'}
  if split == 'test':
    names['val_top1'] = 'eval/validation_top_1_accuracy'
  write_scalars(
      tf.summary.create_file_writer(
          os.path.join(config.model_dir, 'summaries', 'eval')), global_step,
      {names[k]: v for k, v in results.items()
       if k in names and v is not None})
  logging.info('evaluation at step %d: %s', global_step, ', '.join(
      f'{k} {v:.4f}' for k, v in results.items()
      if k in names and v is not None))
  return results


def _finish(config, setup):
  """The export and the plot after the last evaluation (the chief's)."""
  results = {}
  if not setup['chief']:
    return results
  if config.export:
    results['export'] = export_lib.export_saved_model(
        setup['model'], os.path.join(config.model_dir, 'export'),
        setup['mean_std'], config.image_size,
        train_batch_norm=config.batch_norm_training)
  if config.plot:
    test = setup['test']
    results['plot'] = plot_embeddings(
        test['embeddings'], test['labels'], setup['source'].class_names,
        os.path.join(config.model_dir, 'embeddings.png'))
  return results


def _checkpoints(config, trainer):
  """{global step: checkpoint path} of the stages' checkpoints in model_dir;
  and the global step of the run's last one."""
  found, offset = {}, 0
  for index in (1, 2):
    stage = stages.stage_from_config(config, index)
    steps = stages.stage_steps(stage, config, trainer.steps_per_epoch)
    directory = os.path.join(config.model_dir, stage.name)
    state = tf.train.get_checkpoint_state(directory)
    if state and checkpoints.converted_from(directory):
      # Trained elsewhere: the stage's last step.
      found[offset + steps] = state.model_checkpoint_path
      state = None
    for path in (state.all_model_checkpoint_paths if state else []):
      found[offset + int(path.rsplit('-', 1)[1])] = path
    offset += steps
  return found, offset


def evaluate_continuously(config, setup, timeout=EVAL_TIMEOUT_SECS):
  """--mode=eval: evaluates the newest checkpoint of model_dir whenever a
  new one appears (every --eval_interval_secs), until the run's last one;
  stops after `timeout` seconds without a new checkpoint."""
  trainer, model = setup['trainer'], setup['model']
  results, evaluated, vanished = {}, set(), set()
  waited_since = time.monotonic()
  while True:
    found, last = _checkpoints(config, trainer)
    new = [step for step in found
           if step not in evaluated and found[step] not in vanished]
    if new:
      step = max(new)
      try:
        tf.train.Checkpoint(model=model).read(found[step]).expect_partial()
      except tf.errors.NotFoundError:
        # The training job removed it (--max_checkpoints_to_keep) after it
        # was listed: look again, a newer one is there.
        vanished.add(found[step])
        continue
      results = _evaluate(config, setup, global_step=step)
      results['checkpoint'] = found[step]
      evaluated.update(found)
      _write_results(config, results)
      waited_since = time.monotonic()
      if step >= last:
        results.update(_finish(config, setup))
        return results
    elif time.monotonic() - waited_since > timeout:
      raise TimeoutError(
          f'No new checkpoint in {config.model_dir} for {timeout} s; the '
          f'last evaluated step is {max(evaluated) if evaluated else None} '
          f'of {last}.')
    signals.sleep(config.eval_interval_secs,
                  'while waiting for a checkpoint to evaluate',
                  'run the same command to go on')


def _write_results(config, results):
  path = os.path.join(config.model_dir, RESULTS_FILE)
  saved = {}
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
  files.write_text(path, json.dumps({**saved, **results}, indent=2,
                                    sort_keys=True))


def plot_embeddings(embeddings, labels, class_names, path):
  """Test embeddings in 2-D (t-SNE up to 5,000 points, else PCA), one colour
  per class."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  if len(embeddings) <= 5000:
    from sklearn.manifold import TSNE
    points = TSNE(2, init='pca', random_state=0,
                  perplexity=min(30, len(embeddings) - 1)).fit_transform(
                      embeddings)
    method = 't-SNE'
  else:
    centred = embeddings - embeddings.mean(0)
    points = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    method = 'PCA'
  figure, axes = plt.subplots(figsize=(7, 6))
  classes = np.unique(labels)
  colours = plt.get_cmap('tab10' if len(classes) <= 10 else 'tab20')
  for i, c in enumerate(classes):
    mask = labels == c
    name = class_names[c] if class_names else str(c)
    axes.scatter(points[mask, 0], points[mask, 1], s=6,
                 color=colours(i % colours.N), label=name)
  if len(classes) <= 20:
    axes.legend(markerscale=3, fontsize=8, loc='best')
  axes.set_title(f'Test embeddings ({method})')
  axes.set_xticks([])
  axes.set_yticks([])
  figure.tight_layout()
  image = io.BytesIO()
  figure.savefig(image, format='png', dpi=120)
  plt.close(figure)
  files.write_bytes(path, image.getvalue())
  return path
