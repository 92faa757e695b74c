"""Question 5: does the loss reach zero, and does a sampler that repeats one
label configuration help?

SupCon stage 1 on the digits (ResNet-20, batch 120 = 12 of each of the 10
classes under fixed_configuration), once with uniform batches and once with
--sampler=fixed_configuration, --stage_1_epochs (default 30). Logs the raw
contrastive loss, the batch's floor (supcon_tf.analysis) and the excess
(loss - floor) every two steps, and the kNN validation top-1 every two
epochs. Writes docs/findings/loss_floor.{csv,png}.

    .venv/bin/python experiments/loss_floor.py
"""
import os

from absl import app, flags

import common

flags.DEFINE_integer('epochs', 30, 'Stage-1 epochs per run.')
FLAGS = flags.FLAGS


def main(_):
  with common.scratch_dir('loss_floor_') as scratch:
    rows, losses, knn, finals = [], {}, {}, []
    for sampler in ('uniform', 'fixed_configuration'):
      model_dir = os.path.join(scratch, sampler)
      results = common.train(
          'supcon', model_dir, **{**common.DIGITS, 'stage_2_epochs': 0},
          sampler=sampler, batch_size=120, stage_1_epochs=FLAGS.epochs,
          mode='train', knn_every_epochs=2, steps_per_loop=2)
      raw = dict(common.curve(model_dir, 'stage_1', 'train/contrastive_loss'))
      floor = dict(common.curve(model_dir, 'stage_1', 'train/loss_floor'))
      excess = dict(common.curve(model_dir, 'stage_1', 'train/excess_loss'))
      for step in sorted(raw):
        rows.append((sampler, step, raw[step], floor[step], excess[step]))
      steps = sorted(excess)
      losses[f'{sampler}: excess (loss - floor)'] = (
          steps, [excess[s] for s in steps])
      losses[f'{sampler}: raw loss'] = (steps, [raw[s] for s in steps])
      accuracy = common.curve(model_dir, 'stage_1', 'monitor/knn_val_top1')
      knn[sampler] = accuracy
      finals.append((sampler, results['stage_1_steps'],
                     results['stage_1_final_loss_floor'],
                     results['stage_1_final_excess_loss'],
                     max(v for _, v in accuracy), accuracy[-1][1]))
    common.write_csv('loss_floor', ('sampler', 'step', 'contrastive_loss',
                                    'loss_floor', 'excess_loss'), rows)
    common.plot('loss_floor', losses, 'step',
                'contrastive loss',
                f'SupCon on the digits, {FLAGS.epochs} epochs: raw and excess '
                'loss', log_y=True)
    common.plot('loss_floor_knn', {s: ([p[0] for p in v], [p[1] for p in v])
                                   for s, v in knn.items()},
                'step', 'kNN validation top-1',
                'Samplers: kNN top-1 over steps')
    print(common.table(('sampler', 'steps', 'floor (last steps)',
                        'excess (last steps)', 'best kNN top-1',
                        'last kNN top-1'), finals))


if __name__ == '__main__':
  app.run(main)
