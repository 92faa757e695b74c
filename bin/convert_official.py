#!/usr/bin/env python3
"""An official supcon checkpoint to this project's checkpoint, config.json and
SavedModel (with the official contrastive_eval / contrastive_train
signatures), given the official run's flags. No dataset is read.

    .venv/bin/python bin/convert_official.py --checkpoint=OFFICIAL_MODEL_DIR \
        --model_dir=runs/converted --input_fn=cifar10 --resnet_depth=50 ...

--checkpoint: a checkpoint prefix, or a directory (its latest checkpoint).
--num_classes: the classifier's size when --input_fn does not tell it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from supcon_tf import startup  # noqa: E402

startup.quiet_tensorflow()

from absl import app  # noqa: E402
from absl import flags as absl_flags  # noqa: E402

from supcon_tf import cli, flags  # noqa: E402

flags.define_flags()
flags.drop_test_framework_flags()
absl_flags.adopt_module_key_flags(flags)
absl_flags.DEFINE_string('checkpoint', None, 'The official checkpoint: a '
                         'prefix, or a directory (its latest checkpoint).')
absl_flags.DEFINE_integer('num_classes', 0, 'Classes of the classification '
                          'head (0: from --input_fn).')
absl_flags.mark_flag_as_required('checkpoint')

if __name__ == '__main__':
  app.run(cli.convert_official)
