#!/usr/bin/env python3
"""Stage 2 only: trains the classifier on the frozen encoder of the stage-1 run in --model_dir.

    .venv/bin/python bin/train_classifier.py --model_dir=runs/x [--preset=...] [flags]

`--helpshort` lists the flags (the official names, defaults and help).
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

if __name__ == '__main__':
  app.run(lambda argv: cli.main('classifier', argv))
