#!/usr/bin/env python3
"""An official supcon checkpoint to this project's checkpoint, config.json and
SavedModel (with the official contrastive_eval / contrastive_train
signatures), given the official run's flags. No dataset is read.

    .venv/bin/python bin/convert_official.py --checkpoint=OFFICIAL_MODEL_DIR \
        --model_dir=runs/converted --input_fn=cifar10 --resnet_depth=50 ...

--checkpoint: a checkpoint prefix, or a directory (its latest checkpoint).
--num_classes: the classifier's size when --input_fn does not tell it.
"""
from supcon_tf import apps

if __name__ == '__main__':
  apps.convert_official()
