"""What the `bin/` apps share: flags to a Config, run, print the results."""
import json
import os

from absl import app, logging

from supcon_tf import flags as supcon_flags
from supcon_tf.config import Config
from supcon_tf.training import run as run_lib

# The cross-entropy baseline: one stage, cross-entropy reaching the encoder.
CROSS_ENTROPY = dict(
    stage_1_contrastive_loss_weight=0., stage_1_cross_entropy_loss_weight=1.,
    stop_gradient_before_classification_head=False, stage_2_epochs=0,
    num_views=1)


def saved_config(model_dir):
  """The Config saved in `model_dir` (an error naming the file if absent)."""
  path = os.path.join(model_dir or '', run_lib.CONFIG_FILE)
  if not model_dir or not os.path.exists(path):
    raise ValueError(f'No stage-1 run in --model_dir: {path} is missing.')
  with open(path) as f:
    return Config.from_json(f.read())


def main(kind, argv):
  """Runs `kind`: 'supcon' (stage 1 then 2), 'classifier' (stage 2 on the
  stage-1 run in --model_dir) or 'cross_entropy' (the baseline)."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.INFO)
  if kind == 'classifier':
    base = saved_config(supcon_flags.FLAGS.model_dir)
    config = supcon_flags.config_from_flags(base=base)
    results = run_lib.run(config, stage_indices=(2,))
  else:
    defaults = CROSS_ENTROPY if kind == 'cross_entropy' else None
    config = supcon_flags.config_from_flags(defaults)
    results = run_lib.run(config)
  shown = {k: results[k] for k in ('test_top1', 'test_top5', 'val_top1',
                                   'knn_val_top1', 'wall_seconds')
           if k in results}
  print(json.dumps(shown, indent=2))
  print(f'test top-1: {results["test_top1"]:.4f} '
        f'(results in {os.path.join(config.model_dir, run_lib.RESULTS_FILE)})')
