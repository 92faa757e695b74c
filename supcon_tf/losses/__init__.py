"""The contrastive loss (SupCon, SimCLR) on every Keras backend: the function
and the Keras loss (`api.py`, where the equations are), the mode enums.
Under TensorFlow they run the hand-written kernels (`tf_loss.py`), under
JAX and PyTorch the `keras.ops` formula (`keras_ops.py`)."""
from supcon_tf.losses.api import ContrastiveLoss, class_ids, contrastive_loss
from supcon_tf.losses.checks import IMPLEMENTATIONS
from supcon_tf.losses.modes import (ContrastMode, DenominatorMode,
                                    SummationLocation)

__all__ = [
    'ContrastMode',
    'SummationLocation',
    'DenominatorMode',
    'contrastive_loss',
    'ContrastiveLoss',
    'class_ids',
    'IMPLEMENTATIONS',
]
