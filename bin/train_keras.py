#!/usr/bin/env python3
"""Stage 1 then stage 2 through the Keras core, on the backend KERAS_BACKEND
names (jax, torch or tensorflow), the views made in the training step: the
recipes on accelerators TensorFlow does not see (a JAX built for CUDA 13).
The flags of bin/train_supcon.py; the datasets held in memory (cifar10,
cifar100, digits).

    KERAS_BACKEND=jax .venv/bin/python bin/train_keras.py \
        --preset=seed_cifar10_resnet20_supcon_autoaugment --data_dir=DIR \
        --model_dir=runs/x [--stop_after_minutes=M]

`--helpshort` lists the flags.
"""
from supcon_tf import apps

if __name__ == '__main__':
  apps.train_keras()
