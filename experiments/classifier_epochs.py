"""Question 3: how many classifier epochs does the frozen embedding need?

One SupCon stage 1 on the digits (the preset: ResNet-20, 14 epochs), then the
classifier (stage 2, encoder frozen) trained from it for 1, 2, 3, 5, 10 and 20
epochs, each from the same stage-1 checkpoint (bin/train_classifier.py on a
copy). Test top-1 on the 360 held-out digits. Writes
docs/findings/classifier_epochs.{csv,png}.

    .venv/bin/python experiments/classifier_epochs.py
"""
import os
import shutil

from absl import app, flags

import common

flags.DEFINE_list('classifier_epochs', ['1', '2', '3', '5', '10', '20'],
                  'Stage-2 epochs to try.')
FLAGS = flags.FLAGS


def main(_):
  with common.scratch_dir('classifier_epochs_') as scratch:
    encoder = os.path.join(scratch, 'stage_1')
    common.train('supcon', encoder, **{**common.DIGITS, 'stage_2_epochs': 0},
                 mode='train', knn_every_epochs=0)
    rows = []
    for epochs in [int(e) for e in FLAGS.classifier_epochs]:
      model_dir = os.path.join(scratch, f'classifier_{epochs}')
      shutil.copytree(encoder, model_dir)
      results = common.train('classifier', model_dir, stage_2_epochs=epochs,
                             mode='train_then_eval', progress=False,
                             plot=False, export=False)
      rows.append((epochs, results['test_top1'], results['val_top1']))
      print(rows[-1], flush=True)
    common.write_csv('classifier_epochs', ('classifier_epochs', 'test_top1',
                                           'val_top1'), rows)
    common.plot('classifier_epochs', {
        'test top-1': ([r[0] for r in rows], [r[1] for r in rows]),
        'validation top-1': ([r[0] for r in rows], [r[2] for r in rows])},
                'classifier epochs (encoder frozen)', 'top-1',
                'Digits: the classifier on a 14-epoch SupCon encoder')
    print(common.table(('classifier epochs', 'test top-1', 'val top-1'), rows))


if __name__ == '__main__':
  app.run(main)
