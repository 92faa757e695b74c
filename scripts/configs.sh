#!/bin/bash
# Flag groups of the official supcon/scripts/configs.sh, with the same names and values, for the
# launch scripts beside this file. They call this project's bin/train_supcon.py, which takes the
# official flags; any flag given to a script ("$@") is passed on and wins.

DIR="${BASH_SOURCE%/*}"
if [[ ! -d "$DIR" ]]; then DIR="$PWD"; fi

if [[ -n "${PYTHON:-}" ]]; then LAUNCH="$PYTHON"
elif [[ -x "$DIR/../.venv/bin/python" ]]; then LAUNCH="$DIR/../.venv/bin/python"
else LAUNCH=python3; fi
LAUNCHER=( "$DIR/../bin/train_supcon.py" )

TPU_FLAGS=( --allow_mixed_precision=True
            --defer_blurring=True )

RESNET_FLAGS=( --resnet_architecture=RESNET_V1 )
RESNET50x1_FLAGS=( "${RESNET_FLAGS[@]}" --resnet_depth=50 --resnet_width=1 )
RESNET101x1_FLAGS=( "${RESNET_FLAGS[@]}" --resnet_depth=101 --resnet_width=1 )
RESNET200x1_FLAGS=( "${RESNET_FLAGS[@]}" --resnet_depth=200 --resnet_width=1 )

CIFAR10_FLAGS=( --input_fn=cifar10
                --shard_per_host=False
                --first_conv_kernel_size=3
                --first_conv_stride=1
                --use_initial_max_pool=False
                --image_size=32
                --blur_probability=0
                --apply_whitening=True
                --crop_area_range=0.2,1.0
                --use_pytorch_color_jitter=True
                --eval_crop_method=IDENTITY
                --crop_padding=0
                --label_smoothing=0 )

IMAGENET_FLAGS=( --input_fn=imagenet
                 --shard_per_host=True
                 --first_conv_kernel_size=7
                 --first_conv_stride=2
                 --use_initial_max_pool=True
                 --image_size=224
                 --blur_probability=0.5
                 --label_smoothing=0.05 )

CONTRASTIVE_FLAGS=( --stop_gradient_before_classification_head=True
                    --contrast_mode=ALL_VIEWS
                    --summation_location=OUTSIDE
                    --denominator_mode=ALL
                    --stage_1_contrastive_loss_weight=1.0
                    --stage_1_cross_entropy_loss_weight=0.0
                    --stage_2_contrastive_loss_weight=0.0
                    --stage_2_cross_entropy_loss_weight=1.0
                    --stage_1_use_encoder_weight_decay=True
                    --stage_1_use_projection_head_weight_decay=True
                    --stage_1_use_classification_head_weight_decay=False
                    --stage_2_use_encoder_weight_decay=False
                    --stage_2_use_projection_head_weight_decay=False
                    --stage_2_use_classification_head_weight_decay=True
                    --stage_1_update_encoder_batch_norm=True
                    --stage_2_update_encoder_batch_norm=False )
SUPCON_FLAGS=( "${CONTRASTIVE_FLAGS[@]}"
               --use_labels=True
               --normalize_embedding=True
               --use_bias_weight_decay=True
               --use_projection_batch_norm=False
               --projection_head_layers=128
               --zero_initialize_classifier=False
               --scale_by_temperature=True )
SIMCLR_FLAGS=( "${CONTRASTIVE_FLAGS[@]}"
               --use_labels=False
               --normalize_embedding=False
               --use_bias_weight_decay=True
               --use_projection_batch_norm=True
               --projection_head_layers=2048,2048,128
               --zero_initialize_classifier=True
               --scale_by_temperature=False )

XENT_FLAGS=( --stage_2_epochs=0
             --stage_2_warmup_epochs=0
             --stop_gradient_before_classification_head=False
             --stage_1_contrastive_loss_weight=0.0
             --stage_1_cross_entropy_loss_weight=1.0
             --stage_2_contrastive_loss_weight=0.0
             --stage_2_cross_entropy_loss_weight=0.0
             --stage_1_use_encoder_weight_decay=True
             --stage_1_use_projection_head_weight_decay=False
             --stage_1_use_classification_head_weight_decay=True
             --stage_2_use_encoder_weight_decay=False
             --stage_2_use_projection_head_weight_decay=False
             --stage_2_use_classification_head_weight_decay=False
             --stage_1_update_encoder_batch_norm=True
             --stage_2_update_encoder_batch_norm=False
             --normalize_embedding=False )

# The official configs.sh does not define this group, which its
# train_classification_head_from_pretrained_encoder.sh uses; here it is what that script describes:
# only the classification head trains, on the encoder and projection head of the reference
# checkpoint, whose BatchNorm stays in inference mode.
ONLY_CLASSIFIER_FLAGS=( --warm_start_encoder=True
                        --warm_start_projection_head=True
                        --stage_1_contrastive_loss_weight=0.0
                        --stage_1_cross_entropy_loss_weight=1.0
                        --stage_1_use_encoder_weight_decay=False
                        --stage_1_use_projection_head_weight_decay=False
                        --stage_1_use_classification_head_weight_decay=True
                        --stage_1_update_encoder_batch_norm=False
                        --stop_gradient_before_classification_head=True
                        --stage_2_epochs=0 )
