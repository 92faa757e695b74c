"""Bigger contrast sets at a small batch: a cross-batch memory, with and
without a key encoder, against none.

SupCon at batch 64 on --per_class_train CIFAR-10 training JPEGs of each
class (the last --per_class_test held out): the seed's ResNet-20 recipe
(seed_cifar10_resnet20_supcon_autoaugment) with crops and flips alone (at
this budget AutoAugment only slows learning: docs/FINDINGS.md, question 2),
--epochs of SupCon then 3 classifier epochs, for each of
- no memory: each anchor contrasts the 127 other views of its batch;
- --memory_size (1,024 samples: 2,048 more views, from the last 16 steps'
  weights), joining after one epoch;
- the same memory filled by a key encoder (--momentum_encoder),
three seeds each. Writes docs/findings/memory.{csv,png}.

    .venv/bin/python experiments/memory.py --images=CIFAR_JPEGS
"""
import os

import numpy as np
from absl import app, flags

import common

flags.DEFINE_string('images', None, 'CIFAR-10 training JPEGs (folder or '
                    '.tar.gz).')
flags.mark_flag_as_required('images')
flags.DEFINE_integer('per_class_train', 500, 'Images per class trained.')
flags.DEFINE_integer('per_class_test', 100, 'Images per class held out.')
flags.DEFINE_integer('epochs', 10, 'SupCon stage-1 epochs.')
flags.DEFINE_integer('memory_size', 1024, 'Samples the memory keeps.')
flags.DEFINE_float('momentum', 0.99, 'The key encoder\'s momentum.')
flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds of each setting.')
FLAGS = flags.FLAGS
BATCH = 64


def _settings():
  steps = FLAGS.per_class_train * 10 // BATCH
  memory = dict(memory_size=FLAGS.memory_size, memory_warmup=steps)
  return {'no memory': {}, 'memory': memory,
          'memory + key encoder': dict(memory,
                                       momentum_encoder=FLAGS.momentum)}


def main(_):
  with common.scratch_dir('memory_') as scratch:
    folder = common.cifar_folder(FLAGS.images, scratch, FLAGS.per_class_train,
                                 FLAGS.per_class_test)
    rows = []
    for name, extra in _settings().items():
      for seed in FLAGS.seeds:
        results = common.train(
            'supcon', os.path.join(scratch, f'{name}_{seed}'.replace(' ', '_')),
            preset='seed_cifar10_resnet20_supcon_autoaugment',
            input_fn='folder', data_dir=folder, augmentation_type='IDENTITY',
            batch_size=BATCH, stage_1_epochs=FLAGS.epochs, stage_2_epochs=3,
            seed=int(seed), progress=False, plot=False, export=False,
            **extra)
        rows.append((name, int(seed), results['test_top1'],
                     results['stage_1_final_loss'],
                     results['stage_1_seconds']))
        print(rows[-1], flush=True)
    common.write_csv('memory', ('setting', 'seed', 'test_top1',
                                'final_loss', 'stage_1_seconds'), rows)
    names = list(_settings())
    common.plot('memory', {
        f'seed {seed}': (list(range(len(names))),
                         [r[2] for r in rows if r[1] == int(seed)])
        for seed in FLAGS.seeds},
                ' / '.join(f'{i}: {n}' for i, n in enumerate(names)),
                'test top-1', f'CIFAR-10 subset, batch {BATCH}')
    summary = [(n, float(np.mean([r[2] for r in rows if r[0] == n])),
                float(np.std([r[2] for r in rows if r[0] == n])),
                float(np.mean([r[4] for r in rows if r[0] == n])))
               for n in names]
    print(common.table(('setting', 'mean test top-1', 'std',
                        'stage 1 seconds'), summary))


if __name__ == '__main__':
  app.run(main)
