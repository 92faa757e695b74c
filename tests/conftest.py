"""Test set-up: quiet TensorFlow, and two logical CPUs for the distributed tests.

Logical devices must be configured before TensorFlow initialises its runtime,
which is why this happens at import time of the test session.
"""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices('CPU')
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
tf.get_logger().setLevel('ERROR')


# The modules whose tests start processes and train, first: with one test
# process per core (make test), the long ones then overlap rather than run
# alone at the end.
_FIRST = ('test_distributed', 'test_training', 'test_command_line',
          'test_faults', 'test_official', 'test_pipeline', 'test_precision',
          'test_reproduce')


def pytest_collection_modifyitems(items):
  def rank(item):
    module = item.module.__name__.rsplit('.', 1)[-1]
    return _FIRST.index(module) if module in _FIRST else len(_FIRST)
  items.sort(key=rank)


@pytest.fixture(autouse=True)
def _float32_policy():
  """Keras' precision policy is process-wide: a test that runs with mixed
  precision (a run with --allow_mixed_precision sets it) must not leave it
  to the next test in this worker."""
  yield
  import keras
  keras.mixed_precision.set_global_policy('float32')
