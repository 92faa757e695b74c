"""A whole run: strategy, data, model, the stages, evaluation, export.

`run(config)` trains stage 1 then stage 2 (a stage with 0 epochs is skipped,
a finished one is not redone), evaluates on the test split, writes
`results.json`, exports the SavedModel to `model_dir/export` and plots the
test embeddings to `model_dir/embeddings.png`.
"""
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from supcon_tf import export as export_lib
from supcon_tf import official
from supcon_tf.config import Config
from supcon_tf.data import augment, sources
from supcon_tf.models import ContrastiveModel, build_encoder
from supcon_tf.models.cifar_resnet import CIFAR_DEPTHS
from supcon_tf.training import evaluation, stages
from supcon_tf.training.loop import Trainer, write_scalars

CONFIG_FILE = 'config.json'
RESULTS_FILE = 'results.json'


def make_strategy(name):
  """auto: MirroredStrategy over all GPUs when there are several, else the
  default strategy. mirrored: over all GPUs, or all logical CPUs."""
  if name == 'auto':
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
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == 'tpu':
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f'Unknown strategy {name!r}.')


def build_model(config, num_classes):
  """The encoder named by resnet_depth with the configured heads."""
  depth = config.resnet_depth
  if depth in [int(n[len('resnet'):]) for n in CIFAR_DEPTHS]:
    encoder = build_encoder(f'resnet{depth}', weight_init=config.weight_init)
  else:
    prefix = 'resnext' if config.resnet_architecture == 'RESNEXT' else 'resnet'
    encoder = build_encoder(
        f'{prefix}{depth}', width_multiplier=config.resnet_width,
        first_conv_kernel_size=config.first_conv_kernel_size,
        first_conv_stride=config.first_conv_stride,
        use_initial_max_pool=config.use_initial_max_pool)
  return ContrastiveModel(
      encoder, num_classes, projection_dims=config.projection_head_layers,
      normalize_embedding=config.normalize_embedding,
      use_projection_batch_norm=config.use_projection_batch_norm,
      use_projection_batch_norm_beta=config.use_projection_batch_norm_beta,
      stop_gradient_before_classification_head=(
          config.stop_gradient_before_classification_head),
      stop_gradient_before_projection_head=(
          config.stop_gradient_before_projection_head),
      zero_init_logits_layer=config.zero_initialize_classifier,
      weight_init=config.weight_init)


def augment_config(config):
  return augment.AugmentConfig(
      augmentation_type=config.augmentation_type,
      augmentation_magnitude=config.augmentation_magnitude,
      image_size=config.image_size, crop=config.crop,
      padding=config.random_crop_padding,
      crop_area_range=config.crop_area_range, flip=config.flip,
      autoaugment_policy=config.autoaugment_policy,
      posterize_bits_fix=config.posterize_bits_fix,
      randaugment_layers=config.randaugment_layers,
      blur_probability=config.blur_probability,
      use_pytorch_color_jitter=config.use_pytorch_color_jitter,
      cutout_size=config.cutout_size)


def normalization(config, source=None):
  """Per-channel (mean, std) for the inputs: none but the scaling to
  [-1, 1] without `apply_whitening`, else the named dataset's statistics
  (`normalization`), else the source's own (or, without a source, the
  dataset's known ones)."""
  if not config.apply_whitening:
    return sources.UNIT_MEAN_STD
  if config.normalization != 'dataset':
    return sources.MEAN_STD[config.normalization]
  if source is not None:
    return source.mean_std
  if config.dataset not in sources.MEAN_STD:
    raise ValueError(
        f'The whitening statistics of {config.dataset!r} are known only from '
        f'its data: set --normalization to one of '
        f'{", ".join(sources.MEAN_STD)}, or --apply_whitening=False.')
  return sources.MEAN_STD[config.dataset]


def check_model_dir(config):
  """Refuses a model_dir that holds a run with another configuration (stage 2
  settings may change until stage 2 has started). Reads, never writes."""
  if not config.model_dir:
    raise ValueError('model_dir is required (--model_dir).')
  path = os.path.join(config.model_dir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = Config.from_json(f.read())
  different = config.differences(saved)
  if not tf.train.latest_checkpoint(os.path.join(config.model_dir,
                                                 'stage_2')):
    different = [d for d in different if not d.startswith('stage_2_')]
  if different:
    details = ', '.join(f'{d}={getattr(config, d)!r} (saved '
                        f'{getattr(saved, d)!r})' for d in different)
    raise ValueError(
        f'{config.model_dir} holds a run with a different configuration: '
        f'{details}. Use another --model_dir, or the saved values to resume.')


def run(config, stage_indices=(1, 2)):
  """Trains, evaluates and exports; returns the results dict."""
  started = time.perf_counter()
  check_model_dir(config)
  source = sources.load_source(
      config.dataset, config.data_dir,
      validation_fraction=config.validation_fraction, seed=config.seed,
      label_type=config.label_type, skip_corrupt=config.skip_corrupt)
  if config.allow_mixed_precision:
    gpu = bool(tf.config.list_logical_devices('GPU'))
    keras.mixed_precision.set_global_policy(
        'mixed_float16' if gpu else 'mixed_bfloat16')
  strategy = make_strategy(config.strategy)
  mean_std = normalization(config, source)
  os.makedirs(config.model_dir, exist_ok=True)
  with open(os.path.join(config.model_dir, CONFIG_FILE), 'w') as f:
    f.write(config.to_json())
  logging.info('Configuration:\n%s', config.to_json())

  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    model = build_model(config, source.num_classes)
    model(tf.zeros([1, config.image_size, config.image_size, 3]))
  if config.reference_ckpt:
    # The stages' own checkpoints, when there are some, replace these.
    official.restore_official(model, config.reference_ckpt,
                              config.warm_start_parts,
                              config.ignore_missing_checkpoint_vars)
  trainer = Trainer(config, strategy, model, source, augment_config(config),
                    mean_std)
  results = {'dataset': config.dataset, 'num_classes': source.num_classes,
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
    if 'knn_val_top1' in outcome:
      results['knn_val_top1'] = outcome['knn_val_top1']

  test = trainer.outputs('test')
  results['test_top1'] = evaluation.top_k_accuracy(test['logits'],
                                                   test['labels'], 1)
  results['test_top5'] = evaluation.top_k_accuracy(test['logits'],
                                                   test['labels'], 5)
  if 'validation' in source.splits:
    validation = trainer.outputs('validation')
    results['val_top1'] = evaluation.top_k_accuracy(
        validation['logits'], validation['labels'], 1)
  else:
    results['val_top1'] = None
  final_step = sum(results.get(f'stage_{i}_steps', 0) for i in (1, 2))
  write_scalars(
      tf.summary.create_file_writer(
          os.path.join(config.model_dir, 'summaries', 'eval')), final_step,
      {f'eval/{k}': results[k] for k in ('test_top1', 'test_top5', 'val_top1')
       if results[k] is not None})
  if config.export:
    results['export'] = export_lib.export_saved_model(
        model, os.path.join(config.model_dir, 'export'), mean_std,
        config.image_size, train_batch_norm=config.batch_norm_training)
  if config.plot:
    results['plot'] = plot_embeddings(
        test['embeddings'], test['labels'], source.class_names,
        os.path.join(config.model_dir, 'embeddings.png'))
  results['wall_seconds'] = round(time.perf_counter() - started, 2)
  with open(os.path.join(config.model_dir, RESULTS_FILE), 'w') as f:
    json.dump(results, f, indent=2, sort_keys=True)
  return results


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
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return path
