"""absl flags for every `Config` field, with the official flag names, defaults
and help texts (each field's `help` metadata).

Enum flags take the member names in any case (`--stage_1_optimizer=lars`);
list flags take commas (`--projection_head_layers=2048,128`). `--preset`
picks a named preset; flags given on the command line win over it.
"""
import dataclasses
import os
import sys
import typing

from absl import flags, logging

from supcon_tf import files
from supcon_tf import hparams as hparams_lib
from supcon_tf.config import Config
from supcon_tf.config_checks import CHOICES, CONFIG_FILE
from supcon_tf.presets import PRESETS, make_config

FLAGS = flags.FLAGS


def _kind(field):
  """bool, int, float, str or list, from the field's type annotation."""
  hint = field.type
  if typing.get_origin(hint) is typing.Union:
    hint = [a for a in typing.get_args(hint) if a is not type(None)][0]
  return 'list' if hint is tuple else hint.__name__


def define_flags():
  """Defines one flag per Config field (once), as key flags of this module
  (`adopt_module_key_flags(supcon_tf.flags)` shows them in --helpshort)."""
  if 'input_fn' in FLAGS:
    return
  for field in dataclasses.fields(Config):
    name, default = field.name, field.default
    help_text = field.metadata['help']
    if name == 'preset':
      help_text += ' One of: ' + ', '.join(sorted(PRESETS)) + '.'
    kind = _kind(field)
    if name in CHOICES:
      flags.DEFINE_enum(name, default, CHOICES[name], help_text,
                        case_sensitive=False)
    elif kind == 'bool':
      flags.DEFINE_bool(name, default, help_text)
    elif kind == 'int':
      flags.DEFINE_integer(name, default, help_text)
    elif kind == 'float':
      flags.DEFINE_float(name, default, help_text)
    elif kind == 'list':
      flags.DEFINE_list(name, [str(v) for v in default], help_text)
    else:
      flags.DEFINE_string(name, default, help_text)


def fail(argv, error):
  """One line naming the problem, exit status 2."""
  print(f'{os.path.basename(argv[0])}: error: {error}', file=sys.stderr)
  sys.exit(2)


def run_reported(argv, run, failures=(), line_of=None):
  """`run()` as the apps report it: a bad setting or dataset (ValueError)
  or a held model_dir, found once the run started: `fail` (exit 2; nothing
  written before is lost). One of `failures`, or an error whose
  `line_of(error)` is a line: that line, exit 1. Ctrl-C, SIGTERM or the
  time budget: its line and its status. Returns run's results."""
  program = os.path.basename(argv[0])
  try:
    return run()
  except (files.LockedError, ValueError) as error:
    # --verbosity=1 adds the traceback.
    logging.debug('Where it was raised:', exc_info=True)
    fail(argv, error)
  except failures as error:
    print(f'{program}: {error}', file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt as error:
    print(f'{program}: {str(error) or "interrupted (Ctrl-C)"}',
          file=sys.stderr)
    sys.exit(getattr(error, 'status', 130))
  except Exception as error:  # Only those line_of names; others as raised.
    line = line_of(error) if line_of else None
    if line is None:
      raise
    print(f'{program}: {line}', file=sys.stderr)
    sys.exit(1)


def result_line(results, config, where):
  """The apps' last line: the run's top-1 and where its results are."""
  if 'test_top1' in results:
    return f'test top-1: {results["test_top1"]:.4f} (results in {where})'
  if ('val_top1' in results and
      results.get('eval_split', 'validation') == 'validation'):
    return (f'validation top-1 (no test split): {results["val_top1"]:.4f} '
            f'(results in {where})')
  return f'trained (--mode={config.mode}; results in {where})'


def explicit_flags():
  """The Config fields set on the command line."""
  values = {field.name: FLAGS[field.name].value
            for field in dataclasses.fields(Config)
            if FLAGS[field.name].present}
  values.pop('preset', None)
  return values


def saved_config(model_dir):
  """The Config saved in `model_dir` (an error naming the file if absent):
  what supcon-train-classifier continues."""
  path = os.path.join(model_dir or '', CONFIG_FILE)
  if not model_dir or not os.path.exists(path):
    raise ValueError(f'No stage-1 run in --model_dir: {path} is missing.')
  with open(path) as f:
    return Config.from_json(f.read())


def config_from_flags(defaults=None, base=None):
  """A Config: `base` (a saved config) or the preset, then `defaults`, then
  the flags given on the command line."""
  explicit = explicit_flags()
  if FLAGS.hparams:
    return _from_hparams(FLAGS.hparams, explicit)
  if base is not None:
    saved = dataclasses.asdict(base)
    saved.pop('preset')
    return make_config(base.preset, **{**saved, **(defaults or {}),
                                       **explicit})
  # The app's defaults lie under the preset: a preset says all it needs.
  return make_config(FLAGS.preset, **{**(defaults or {}),
                                      **PRESETS.get(FLAGS.preset, {}),
                                      **explicit})


def _from_hparams(serialized, explicit):
  """As the official launcher with --hparams: the hyperparameters from the
  string over the official hparams.py defaults; of the command line, only
  the launcher's and this project's own flags."""
  hyperparameters = {field for field, _ in hparams_lib.ABBREVIATIONS.values()}
  clashing = sorted(set(explicit) & hyperparameters)
  if clashing:
    raise ValueError(
        '--hparams sets every hyperparameter; these flags would be ignored, '
        'as the official launcher ignores them: ' +
        ', '.join(f'--{name}' for name in clashing) + '.')
  if FLAGS.preset:
    raise ValueError('--hparams sets every hyperparameter: drop --preset.')
  return make_config(**{**hparams_lib.parse(serialized), **explicit})
