#!/bin/bash
# The official cross_entropy_imagenet_resnet50.sh (trained there on a 128-core TPU).

DIR="${BASH_SOURCE%/*}"
if [[ ! -d "$DIR" ]]; then DIR="$PWD"; fi
. "$DIR/configs.sh" || exit 1

set -x

"${LAUNCH}" "${LAUNCHER[@]}" \
  "${TPU_FLAGS[@]}" \
  "${RESNET50x1_FLAGS[@]}" \
  "${IMAGENET_FLAGS[@]}" \
  "${XENT_FLAGS[@]}" \
  --batch_size=6144 \
  --augmentation_type=AUTOAUGMENT --augmentation_magnitude=1.0 \
  --stage_1_weight_decay=1e-4 \
  --stage_1_epochs=200 \
  --stage_1_base_learning_rate=0.1 \
  --stage_1_optimizer=NESTEROV \
  "$@"
