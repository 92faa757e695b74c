#!/bin/bash
# The official train_classification_head_from_pretrained_encoder.sh: trains only the classification
# head on the encoder (and projection head) of an official run of simclr_imagenet_resnet50.sh, whose
# directory is the first argument. Other flags after it are passed on (the official script drops
# them, a backslash is missing there).

CKPT=$1
shift

DIR="${BASH_SOURCE%/*}"
if [[ ! -d "$DIR" ]]; then DIR="$PWD"; fi
. "$DIR/configs.sh" || exit 1

set -x

"${LAUNCH}" "${LAUNCHER[@]}" \
  "${TPU_FLAGS[@]}" \
  "${RESNET50x1_FLAGS[@]}" \
  "${IMAGENET_FLAGS[@]}" \
  "${SIMCLR_FLAGS[@]}" \
  "${ONLY_CLASSIFIER_FLAGS[@]}" \
  --batch_size=6144 \
  --augmentation_type=SIMCLR --augmentation_magnitude=1.0 \
  --stage_1_weight_decay=1e-6 \
  --stage_1_epochs=90 \
  --stage_1_base_learning_rate=0.1 \
  --stage_1_optimizer=NESTEROV \
  --reference_ckpt="${CKPT}" \
  "$@"
