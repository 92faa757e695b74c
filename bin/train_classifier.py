#!/usr/bin/env python3
"""Stage 2 only: trains the classifier on the frozen encoder of the stage-1 run in --model_dir.

    .venv/bin/python bin/train_classifier.py --model_dir=runs/x [--preset=...] [flags]

`--helpshort` lists the flags (the official names, defaults and help).
"""
from supcon_tf import apps

if __name__ == '__main__':
  apps.train_classifier()
