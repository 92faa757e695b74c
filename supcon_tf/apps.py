"""The command-line apps, installed as console scripts (setup.cfg) and run by
the thin scripts in bin/:

  supcon-train               bin/train_supcon.py      stage 1, then stage 2
  supcon-train-classifier    bin/train_classifier.py  stage 2 on a stage-1 run
  supcon-train-ce            bin/train_ce.py          the cross-entropy baseline
  supcon-convert-official    bin/convert_official.py  an official checkpoint
  supcon-convert-seed        bin/convert_seed.py      a checkpoint of the seed's
                                                      PyTorch code (.pth)
  supcon-convert-torch       bin/convert_torch.py     a SupContrast or
                                                      torchvision-layout
                                                      PyTorch checkpoint
  supcon-train-keras         bin/train_keras.py       stage 1, then stage 2,
                                                      through the Keras core on
                                                      KERAS_BACKEND's backend

Under KERAS_BACKEND=jax or torch, supcon-train, supcon-train-ce and
supcon-train-classifier run the Keras core with the same flags (what it
cannot do yet is one line).

Each parses its flags before TensorFlow is imported (a bad flag or --help
answers at once), then quiets TensorFlow's start-up notices as it imports it
(supcon_tf.startup), which is why the rest is imported inside the functions.
"""
import json
import os
import sys

from supcon_tf import startup

# The apps whose runs the Keras core takes under another backend.
TRAINING = ('supcon', 'cross_entropy', 'classifier')


def _app(kind):
  """Defines the flags, with this project's as the key flags that --helpshort
  lists (absl keys them to the main module: the script in sys.argv[0])."""
  converter = kind.startswith('convert')
  if not converter:
    # First, so that a signal during TensorFlow's import is not lost either.
    from supcon_tf.training import signals
    signals.install()
  from absl import app
  from absl import flags as absl_flags

  from supcon_tf import flags

  flags.define_flags()
  if converter and 'checkpoint' not in absl_flags.FLAGS:
    absl_flags.DEFINE_string('checkpoint', None, _CHECKPOINT_HELP[kind])
    absl_flags.DEFINE_integer(
        'num_classes', 0, 'Classes of the classification head (0: from '
        '--input_fn).' if kind == 'convert' else 'Classes of the '
        'classification head (0: from the checkpoint).')
    absl_flags.mark_flag_as_required('checkpoint')
  if (kind == 'convert_torch' and
      'classifier_checkpoint' not in absl_flags.FLAGS):
    absl_flags.DEFINE_string(
        'classifier_checkpoint', None, "A SupContrast LinearClassifier's "
        'state_dict (fc.weight, fc.bias), trained on --checkpoint\'s '
        'encoder: it becomes the classifier.')
  values = absl_flags.FLAGS
  for module in (flags.__name__, __name__):
    for flag in values.get_key_flags_for_module(module):
      values.register_key_flag_for_module(sys.argv[0], flag)
  try:
    app.run(lambda argv: _main(kind, argv), flags_parser=_parse_flags)
  except SystemExit as stop:
    # A worker of a cluster keeps the teardown, which shuts its coordination
    # service down in order with the other workers'.
    if not converter and not (os.environ.get('TF_CONFIG') or
                                  os.environ.get('SLURM_PROCID')):
      signals.leave(stop.code)
    raise


_CHECKPOINT_HELP = {
    'convert': 'The official checkpoint: a prefix, or a directory (its '
               'latest checkpoint).',
    'convert_seed': "The seed's checkpoint: a .pth its train.py wrote "
                    '(checkpoint/ckpt_contrastive.pth, '
                    'checkpoint/ckpt_cross_entropy.pth).',
    'convert_torch': "A PyTorch checkpoint: SupContrast's (main_supcon.py, "
                     'main_ce.py: ckpt_epoch_*.pth, last.pth) or a '
                     'torchvision-layout ResNet state_dict (module., '
                     'encoder_q., backbone. prefixes read).',
}


def _main(kind, argv):
  """TensorFlow loads only once the flags parsed: a bad flag, --help and
  --helpshort answer in a fraction of a second."""
  if kind == 'keras' or (kind in TRAINING and keras_backend() != 'tensorflow'):
    # The Keras core: TensorFlow only where KERAS_BACKEND asks for it.
    from supcon_tf.training import core
    return core.main(argv, 'supcon' if kind == 'keras' else kind)
  if kind in ('convert_seed', 'convert_torch'):
    # Read (and refused when it is not one) before TensorFlow loads.
    from absl import flags as absl_flags

    from supcon_tf import flags, seed_checkpoint, torch_checkpoint
    path = absl_flags.FLAGS.checkpoint
    try:
      checkpoint = seed_checkpoint.read_pth(path)
      if kind == 'convert_seed':
        state = seed_checkpoint.seed_state_dict(checkpoint, path)
      else:
        linear = absl_flags.FLAGS.classifier_checkpoint
        state, layout = torch_checkpoint.read_checkpoint(
            checkpoint, path, linear and seed_checkpoint.read_pth(linear),
            linear)
    except ValueError as error:
      flags.fail(argv, error)
  startup.quiet_tensorflow()
  from supcon_tf import cli
  if kind == 'convert':
    return cli.convert_official(argv)
  if kind == 'convert_seed':
    return cli.convert_seed(argv, checkpoint, state)
  if kind == 'convert_torch':
    return cli.convert_torch(argv, checkpoint, state, layout)
  return cli.main(kind, argv)


def keras_backend():
  """The backend Keras will take (KERAS_BACKEND, else keras.json's, as Keras
  reads them), known without importing Keras, which under TensorFlow would
  import TensorFlow before its start-up notices are quieted."""
  if os.environ.get('KERAS_BACKEND'):
    return os.environ['KERAS_BACKEND']
  home = os.environ.get('KERAS_HOME') or os.path.join(
      os.path.expanduser('~'), '.keras')
  try:
    with open(os.path.join(home, 'keras.json')) as f:
      return json.load(f).get('backend', 'tensorflow')
  except (OSError, ValueError, AttributeError):
    return 'tensorflow'


def _parse_flags(argv):
  """absl's parsing, but a bad flag or value is one line naming it and exit
  status 2 (absl prints two lines and exits 1)."""
  from absl import flags as absl_flags

  from supcon_tf import flags
  try:
    return absl_flags.FLAGS(argv)
  except absl_flags.Error as error:
    flags.fail(argv, error)


def train_supcon():
  """Stage 1 (SupCon, or SimCLR with --use_labels=false) then stage 2 (the
  classifier on the frozen encoder), in the official --mode: train,
  train_then_eval (then evaluation, export, plot) or eval."""
  _app('supcon')


def train_classifier():
  """Stage 2 only, on the frozen encoder of the stage-1 run in --model_dir."""
  _app('classifier')


def train_ce():
  """The cross-entropy baseline: the official XENT flag group under the
  preset and flags (one stage, the gradient reaching the encoder)."""
  _app('cross_entropy')


def train_keras():
  """Stage 1 then stage 2 through the Keras core, on the backend
  KERAS_BACKEND names (jax, torch or tensorflow), the views made in the
  training step: the recipes where TensorFlow sees no accelerator."""
  _app('keras')


def convert_official():
  """An official checkpoint to this project's checkpoint, config.json and
  SavedModel, given the official run's flags."""
  _app('convert')


def convert_seed():
  """A checkpoint of the seed's train.py to a finished stage 1 here
  (what supcon-train-classifier continues from), config.json and SavedModel,
  given the preset of the seed run."""
  _app('convert_seed')


def convert_torch():
  """A SupContrast (networks/resnet_big.py) or torchvision-layout PyTorch
  checkpoint to a finished stage 1 here, config.json and SavedModel; the
  model is read from the file's keys."""
  _app('convert_torch')
