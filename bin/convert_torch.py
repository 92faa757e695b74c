#!/usr/bin/env python3
"""A PyTorch SupCon checkpoint of another code to a finished stage 1 in
--model_dir (what bin/train_classifier.py continues from), config.json and
the SavedModel. PyTorch is not needed and nothing in the file runs.

Read: SupContrast's (HobbitLong) main_supcon.py / main_ce.py checkpoints
(networks/resnet_big.py: SupConResNet, SupCEResNet; resnet18/34/50/101,
with or without DataParallel's module.), and torchvision-layout ResNet
state_dicts (MoCo-style ImageNet releases; prefixes module., encoder_q.,
backbone.). The model (depth, stem, heads) comes from the file's keys; the
data (dataset, image size, normalisation) from SupContrast's saved options,
ImageNet's for a torchvision file, under --preset and the flags.

    .venv/bin/python bin/convert_torch.py \\
        --checkpoint=save/SupCon/cifar10_models/.../last.pth --model_dir=runs/sc
    .venv/bin/python bin/train_classifier.py --model_dir=runs/sc

--num_classes: the classifier's size (default: the file's classifier, else
its dataset's classes).
"""
from supcon_tf import apps

if __name__ == '__main__':
  apps.convert_torch()
