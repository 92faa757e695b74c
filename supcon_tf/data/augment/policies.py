"""AutoAugment's policies as data, each written once, and the named policies:
a policy table on an op family (`engine.Family`).

A policy is 25 sub-policies of two (op, probability, level), levels 0..10.
Each family reads a level its own way (`level_to_arg`), and the ops without
an argument (AutoContrast, Equalize, Invert) ignore theirs, so one table
serves every family: the CIFAR-10 policy is the original PIL one
('cifar10'), TF-Models' reduced_cifar10 and the seed's ('seed_cifar10').
"""
from supcon_tf.data.augment.pil_ops import PIL
from supcon_tf.data.augment.seed_ops import SEED
from supcon_tf.data.augment.tf_models_ops import TF_MODELS
from supcon_tf.data.policy_tables import (  # noqa: F401
    CIFAR10_POLICY, IMAGENET_POLICY, SIMPLE_POLICY, SVHN_POLICY, V0_POLICY)

# The named policies (--autoaugment_policy): (family, table). 'cifar10' and
# 'imagenet' are the papers' PIL semantics; v0 (the official code's) to
# reduced_imagenet are TF-Models', its augment module's names.
POLICIES = {
    'cifar10': (PIL, CIFAR10_POLICY),
    'imagenet': (PIL, IMAGENET_POLICY),
    'seed_cifar10': (SEED, CIFAR10_POLICY),
    'v0': (TF_MODELS, V0_POLICY),
    'simple': (TF_MODELS, SIMPLE_POLICY),
    'reduced_cifar10': (TF_MODELS, CIFAR10_POLICY),
    'svhn': (TF_MODELS, SVHN_POLICY),
    'reduced_imagenet': (TF_MODELS, IMAGENET_POLICY),
}
# RandAugment's op sets (--randaugment_ops).
RANDAUGMENT_FAMILIES = {'pil': PIL, 'tf_models': TF_MODELS}
