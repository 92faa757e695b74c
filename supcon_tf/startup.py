"""What the bin/ apps do before anything else: TensorFlow's start-up notices
(the CUDA stub, CPU features, oneDNN, a failed cuInit without a GPU) stay
quiet unless --verbosity (or -v) asks for more. Most of them are written
before TensorFlow's log level applies, so TensorFlow is loaded, and its
devices listed, with the process's stderr on /dev/null; later C++ messages
of level WARNING and below stay quiet through TF_CPP_MIN_LOG_LEVEL."""
import os
import sys


def quiet_tensorflow(argv=None):
  argv = sys.argv if argv is None else argv
  if any(arg.startswith(('--verbosity', '-v')) for arg in argv[1:]):
    return
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.stderr.flush()
  saved = os.dup(2)
  null = os.open(os.devnull, os.O_WRONLY)
  os.dup2(null, 2)
  try:
    import tensorflow as tf
    tf.config.list_physical_devices()
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(null)
