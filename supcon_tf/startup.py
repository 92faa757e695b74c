"""What the bin/ apps set before TensorFlow loads: its C++ start-up notices
(CUDA stub, CPU features, oneDNN) stay quiet unless --verbosity (or -v) asks
for more, or TF_CPP_MIN_LOG_LEVEL says otherwise."""
import os
import sys


def quiet_tensorflow(argv=None):
  argv = sys.argv if argv is None else argv
  if not any(arg.startswith(('--verbosity', '-v')) for arg in argv[1:]):
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
