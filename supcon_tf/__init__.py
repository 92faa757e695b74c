"""supcon-tf: Supervised Contrastive Learning (Khosla et al., 2020) on TensorFlow 2 / Keras 3."""
import os

# TensorFlow turns its oneDNN CPU kernels on by default only on some x86 CPUs
# (AVX-512 and newer); elsewhere they almost halve ResNet training-step time
# (benchmarks/train_step.py, README). It takes effect when supcon_tf is
# imported before TensorFlow; an explicit setting is respected.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')

__version__ = '0.1.0'
