#!/bin/bash
# The official simclr_imagenet_resnet50.sh (trained there on a 128-core TPU).

DIR="${BASH_SOURCE%/*}"
if [[ ! -d "$DIR" ]]; then DIR="$PWD"; fi
. "$DIR/configs.sh" || exit 1

set -x

"${LAUNCH}" "${LAUNCHER[@]}" \
  "${TPU_FLAGS[@]}" \
  "${RESNET50x1_FLAGS[@]}" \
  "${IMAGENET_FLAGS[@]}" \
  "${SIMCLR_FLAGS[@]}" \
  --batch_size=6144 \
  --augmentation_type=SIMCLR --augmentation_magnitude=1.0 \
  --temperature=0.1 \
  --stage_1_weight_decay=1e-4 --stage_2_weight_decay=1e-6 \
  --stage_1_epochs=100 --stage_2_epochs=90 \
  --stage_1_base_learning_rate=0.3 --stage_2_base_learning_rate=0.1 \
  --stage_1_optimizer=LARS --stage_2_optimizer=NESTEROV \
  "$@"
