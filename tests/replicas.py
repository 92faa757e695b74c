"""MirroredStrategy over the two logical CPUs (conftest.py), safe to make
several times in one process.

Each strategy numbers its collectives from its collective key base, and the
runtime remembers a key's kind (gather or reduce, dtype) for the process: two
strategies on the same base collide as soon as their programs differ. Each
one made here takes a base of its own (TensorFlow's hook for tests).
"""
import itertools

import tensorflow as tf

_bases = itertools.count(1)


def two_replicas():
  tf.distribute.MirroredStrategy._collective_key_base = next(_bases) * 100_000
  try:
    return tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  finally:
    tf.distribute.MirroredStrategy._collective_key_base = 0
