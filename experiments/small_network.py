"""Question 6: does SupCon work on a small network?

Counts the parameters of the CIFAR ResNets (20, 32, 56) and ResNet-18 / 50
(the official v1, CIFAR stem) as this project builds them (encoder alone),
then trains SupCon and cross-entropy on the digits with ResNet-20 (0.27M
parameters) and ResNet-56 at the preset's budget. Writes
docs/findings/small_network.{csv,png}.

    .venv/bin/python experiments/small_network.py
"""
import os

from absl import app, flags

import common

flags.DEFINE_list('train_depths', ['20', '56'], 'Depths trained.')
FLAGS = flags.FLAGS


def parameters(depth):
  import tensorflow as tf
  from supcon_tf.presets import make_config
  from supcon_tf.training import run as run_lib
  config = make_config('supcon_digits_resnet20', resnet_depth=depth,
                       first_conv_kernel_size=3, first_conv_stride=1,
                       use_initial_max_pool=False)
  model = run_lib.build_model(config, 10)
  model(tf.zeros([1, 32, 32, 3]))
  return model.encoder.count_params()


def main(_):
  counts = [(f'ResNet-{d}', parameters(d)) for d in (20, 32, 56, 18, 50)]
  print(common.table(('encoder', 'parameters'), counts), flush=True)
  with common.scratch_dir('small_network_') as scratch:
    rows = []
    for depth in [int(d) for d in FLAGS.train_depths]:
      for kind in ('supcon', 'ce'):
        results = common.train_method(
            kind, os.path.join(scratch, f'{kind}_{depth}'), **common.DIGITS,
            resnet_depth=depth, knn_every_epochs=0)
        rows.append((f'ResNet-{depth}', dict(counts)[f'ResNet-{depth}'], kind,
                     results['test_top1']))
        print(rows[-1], flush=True)
    common.write_csv('small_network', ('encoder', 'parameters', 'method',
                                       'test_top1'), rows)
    common.plot('small_network', {
        method: ([r[1] / 1e6 for r in rows if r[2] == method],
                 [r[3] for r in rows if r[2] == method])
        for method in ('supcon', 'ce')}, 'encoder parameters (millions)',
                'test top-1', 'Digits, 14 epochs: network size')
    print(common.table(('encoder', 'parameters', 'method', 'test top-1'),
                       rows))


if __name__ == '__main__':
  app.run(main)
