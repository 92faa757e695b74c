#!/usr/bin/env python3
"""A checkpoint of the seed's PyTorch code (its train.py's
checkpoint/ckpt_contrastive.pth or ckpt_cross_entropy.pth) to a finished
stage 1 in --model_dir (what bin/train_classifier.py continues from),
config.json and the SavedModel. No dataset is read; PyTorch is not needed.

    .venv/bin/python bin/convert_seed.py --checkpoint=ckpt_contrastive.pth \
        --preset=seed_cifar10_resnet20_supcon_autoaugment --model_dir=runs/seed
    .venv/bin/python bin/train_classifier.py --model_dir=runs/seed

A cross-entropy checkpoint converts with a cross-entropy preset
(seed_cifar10_resnet20_ce...); bin/train_classifier.py then evaluates it.
--num_classes: the classifier's size (default: the checkpoint's).
"""
from supcon_tf import apps

if __name__ == '__main__':
  apps.convert_seed()
