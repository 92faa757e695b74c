#!/usr/bin/env python3
"""Peer baseline for the input pipeline: two-view CIFAR training augmentation with
torchvision's PIL AutoAugment (CIFAR-10 policy), on one core.

Per view: RandomCrop(32, padding=4), RandomHorizontalFlip, AutoAugment(CIFAR10),
ToTensor, Normalize. Run in a separate virtual environment:
    make peers   # .peer-venv: torch 2.14.1, torchvision 0.29.1
    .peer-venv/bin/python benchmarks/peers/torchvision_autoaugment.py --images 4000
The last line is `views/s: N` for one core.
"""
import argparse
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=4000)
    a = p.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    # Smooth random images (upsampled noise) so that histogram ops see realistic content.
    small = rng.integers(0, 256, size=(a.images, 8, 8, 3), dtype=np.uint8)
    images = [Image.fromarray(s).resize((32, 32), Image.BILINEAR) for s in small]
    view = T.Compose([
        T.RandomCrop(32, padding=4),
        T.RandomHorizontalFlip(),
        T.AutoAugment(T.AutoAugmentPolicy.CIFAR10),
        T.ToTensor(),
        T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ])
    t = time.perf_counter()
    for im in images:
        view(im)
        view(im)
    dt = time.perf_counter() - t
    print(f"views/s: {2 * len(images) / dt:.1f}")


if __name__ == "__main__":
    main()
