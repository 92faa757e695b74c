"""supcon-tf: Supervised Contrastive Learning (Khosla et al., 2020) on TensorFlow 2 / Keras 3."""

__version__ = '0.1.0'
