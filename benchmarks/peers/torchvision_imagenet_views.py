#!/usr/bin/env python3
"""Peer for benchmarks/input_pipeline.py --policy official_imagenet|official_simclr:
torchvision's ImageNet-style training views of JPEG files, two per image, on one
core. Per view: decode (PIL), RandomResizedCrop(size), RandomHorizontalFlip, then
AutoAugment(IMAGENET) (`--policy imagenet`) or SimCLR's jitter, grayscale and blur
(`--policy simclr`), ToTensor, Normalize.

Runs in its own environment (torch and torchvision are not this project's):
    make peers   # .peer-venv: torch 2.14.1, torchvision 0.29.1
    .peer-venv/bin/python benchmarks/peers/torchvision_imagenet_views.py --data_dir DIR
The last line is `views/s: N`.
"""
import argparse
import os
import time

import torch
import torchvision.transforms as T
from PIL import Image


def files(root, count):
  found = []
  for folder, _, names in sorted(os.walk(root)):
    found += [os.path.join(folder, n) for n in sorted(names)
              if n.lower().endswith(('.jpg', '.jpeg', '.png'))]
  return found[:count]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--data_dir', required=True)
  parser.add_argument('--images', type=int, default=512)
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--policy', choices=('imagenet', 'simclr'),
                      default='imagenet')
  args = parser.parse_args()
  torch.set_num_threads(1)
  size = args.image_size
  if args.policy == 'imagenet':
    middle = [T.AutoAugment(T.AutoAugmentPolicy.IMAGENET)]
  else:
    middle = [T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
              T.RandomGrayscale(p=0.2),
              T.RandomApply([T.GaussianBlur(size // 10 // 2 * 2 + 1,
                                            (0.1, 2.0))], p=0.5)]
  view = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip()] +
                   middle + [T.ToTensor(),
                             T.Normalize((0.485, 0.456, 0.406),
                                         (0.229, 0.224, 0.225))])
  paths = files(args.data_dir, args.images)
  start = time.perf_counter()
  for path in paths:
    image = Image.open(path).convert('RGB')
    view(image)
    view(image)
  seconds = time.perf_counter() - start
  print(f'{len(paths)} files, {args.policy}, {size} x {size}')
  print(f'views/s: {2 * len(paths) / seconds:.1f}')


if __name__ == '__main__':
  main()
