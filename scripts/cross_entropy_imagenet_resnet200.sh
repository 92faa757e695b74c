#!/bin/bash
# The official cross_entropy_imagenet_resnet200.sh (trained there on a 256-core TPU).

DIR="${BASH_SOURCE%/*}"
if [[ ! -d "$DIR" ]]; then DIR="$PWD"; fi
. "$DIR/configs.sh" || exit 1

set -x

"${LAUNCH}" "${LAUNCHER[@]}" \
  "${TPU_FLAGS[@]}" \
  "${RESNET200x1_FLAGS[@]}" \
  "${IMAGENET_FLAGS[@]}" \
  "${XENT_FLAGS[@]}" \
  --batch_size=4096 \
  --augmentation_type=STACKED_RANDAUGMENT --augmentation_magnitude=1.0 \
  --stage_1_weight_decay=1e-4 \
  --stage_1_epochs=700 \
  --stage_1_base_learning_rate=0.1 \
  --stage_1_optimizer=NESTEROV \
  "$@"
