#!/usr/bin/env python3
"""The cross-entropy baseline: bin/train_supcon.py with the official XENT flag
group under the preset and flags (one stage, the gradient reaching the
encoder).

    .venv/bin/python bin/train_ce.py --model_dir=runs/x [--preset=...] [flags]

`--helpshort` lists the flags (the official names, defaults and help).
"""
from supcon_tf import apps

if __name__ == '__main__':
  apps.train_ce()
