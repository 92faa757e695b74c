#!/usr/bin/env python3
"""The official launcher: stage 1 (SupCon, or SimCLR with --use_labels=false)
then stage 2 (the classifier on the frozen encoder), in the official --mode:
train, train_then_eval (then evaluation, export, plot) or eval (the separate
evaluation job).

    .venv/bin/python bin/train_supcon.py --model_dir=runs/x [--preset=...] [flags]

`--helpshort` lists the flags (the official names, defaults and help).
"""
from supcon_tf import apps

if __name__ == '__main__':
  apps.train_supcon()
