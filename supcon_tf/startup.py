"""What the bin/ apps do before anything else: TensorFlow's start-up notices
(the CUDA stub, CPU features, oneDNN, a failed cuInit without a GPU) stay
quiet unless --verbosity (or -v) asks for more. Most of them are written
before TensorFlow's log level applies, so TensorFlow is loaded, and its
devices listed, with the process's stderr on /dev/null; later C++ messages
stay quiet through TF_CPP_MIN_LOG_LEVEL=3 (on CPU they are notices such as
"oneDNN supports DT_UINT8 only on ... AVX-512", logged as errors; real
failures surface as Python exceptions), and TensorFlow's Python INFO lines
(checkpoint sharding times) through a filter on absl's log handler."""
import os
import sys


def quiet_tensorflow(argv=None):
  argv = sys.argv if argv is None else argv
  if any(arg.startswith(('--verbosity', '-v')) for arg in argv[1:]):
    return
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  sys.stderr.flush()
  saved = os.dup(2)
  null = os.open(os.devnull, os.O_WRONLY)
  os.dup2(null, 2)
  try:
    import tensorflow as tf
    tf.config.list_physical_devices()
    tf.get_logger().setLevel('WARNING')
    from absl import logging
    logging.get_absl_handler().addFilter(_not_tensorflow_info)
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(null)


def _not_tensorflow_info(record):
  """TensorFlow's own Python lines below WARNING (checkpoint sharding times)
  go through absl's handler; the apps show them only from WARNING up."""
  internal = os.sep + 'tensorflow' + os.sep in record.pathname
  return record.levelno >= 30 or not internal
