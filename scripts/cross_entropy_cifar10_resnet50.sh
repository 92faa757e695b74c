#!/bin/bash
# The official cross_entropy_cifar10_resnet50.sh (trained there on a 32-core TPU).

DIR="${BASH_SOURCE%/*}"
if [[ ! -d "$DIR" ]]; then DIR="$PWD"; fi
. "$DIR/configs.sh" || exit 1

set -x

"${LAUNCH}" "${LAUNCHER[@]}" \
  "${TPU_FLAGS[@]}" \
  "${RESNET50x1_FLAGS[@]}" \
  "${CIFAR10_FLAGS[@]}" \
  "${XENT_FLAGS[@]}" \
  --batch_size=1024 \
  --augmentation_type=SIMCLR --augmentation_magnitude=0.5 \
  --stage_1_weight_decay=5e-4 \
  --stage_1_epochs=1000 \
  --stage_1_base_learning_rate=0.1 \
  --stage_1_optimizer=NESTEROV \
  --label_smoothing=0 \
  "$@"
