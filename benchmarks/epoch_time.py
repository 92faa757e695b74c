"""A SupCon epoch against a cross-entropy epoch: same data, model and batch.

SupCon (stage 1: two views per example, the contrastive loss, encoder and
projection head trained) and the cross-entropy baseline (one view, the
gradient reaching the encoder) each run one epoch through the training loop
after a warm-up epoch that absorbs tracing. Data: the bundled digits
(32x32), or an image folder with --data_dir (real CIFAR-10 JPEGs).

    .venv/bin/python benchmarks/epoch_time.py

Prints `supcon/ce epoch time: N` last (the seed repo reports about 1.5).
"""
import tempfile

import supcon_tf  # noqa: F401  (sets the oneDNN switch before TensorFlow)
from absl import app, flags

flags.DEFINE_string('data_dir', None, 'Image folder (<dir>/train/<class>/); '
                    'the bundled digits if unset.')
flags.DEFINE_integer('batch_size', 128, 'Examples per step.')
flags.DEFINE_integer('resnet_depth', 20, 'Encoder depth.')
flags.DEFINE_integer('max_steps', 40, 'Steps timed per epoch at most.')
FLAGS = flags.FLAGS


def epoch_seconds(config, source, steps):
  import time

  import tensorflow as tf

  from supcon_tf.data import pipeline
  from supcon_tf.training import optimizers, run as run_lib, stages
  from supcon_tf.training.loop import Trainer

  strategy = tf.distribute.get_strategy()
  model = run_lib.build_model(config, source.num_classes)
  model(tf.zeros([1, config.image_size, config.image_size, 3]))
  trainer = Trainer(config, strategy, model, source, source.mean_std)
  stage = stages.stage_from_config(config, 1)
  variables = [v for p in stages.trained_parts(stage, model, config)
               for v in p.trainable_variables]
  optimizer = optimizers.build_optimizer('MOMENTUM', 0.01)
  optimizer.build(variables)
  step = tf.Variable(0, dtype=tf.int64)
  loop = trainer.make_loop(stage, optimizer, variables, step)
  iterator = iter(pipeline.train_dataset(
      source.split('train'), config, config.batch_size,
      source.mean_std, num_views=stages.views_for(stage, config)))
  loop(iterator, tf.constant(steps))['loss'].numpy()  # Warm-up epoch.
  start = time.perf_counter()
  loop(iterator, tf.constant(steps))['loss'].numpy()
  return time.perf_counter() - start


def main(_):
  from supcon_tf.presets import XENT_FLAGS, make_config
  from supcon_tf.data import sources

  dataset = 'folder' if FLAGS.data_dir else 'digits'
  source = sources.load_source(dataset, FLAGS.data_dir, validation_fraction=0)
  common = dict(model_dir=tempfile.mkdtemp(), input_fn=dataset,
                batch_size=FLAGS.batch_size, resnet_depth=FLAGS.resnet_depth,
                image_size=32, crop='pad', autoaugment_policy='cifar10')
  steps = min(len(source.split('train')) // FLAGS.batch_size, FLAGS.max_steps)
  supcon = epoch_seconds(make_config(**common), source, steps)
  ce = epoch_seconds(make_config(**{**common, **XENT_FLAGS}), source, steps)
  print(f'{dataset}, ResNet-{FLAGS.resnet_depth}, batch {FLAGS.batch_size}, '
        f'{steps} steps: SupCon {supcon:.2f} s, cross-entropy {ce:.2f} s')
  print(f'supcon/ce epoch time: {supcon / ce:.2f}')


if __name__ == '__main__':
  app.run(main)
