"""The official command line: the official launch scripts' flags, scripts/,
the modes, --help. (The CIFAR-10 scripts' first steps run in
tests/test_reproduce.py.)"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import flags as supcon_flags
from supcon_tf.config import RUNTIME_FIELDS
from supcon_tf.presets import PRESETS, make_config
from supcon_tf.training import run as run_lib, summaries
from tests.archives import tiny_cifar10

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The official supcon/scripts/configs.sh flag groups and each official
# script's command line (google-research supcon/scripts/*.sh), as they are.
TPU = ['--allow_mixed_precision=True', '--defer_blurring=True']
RESNET = ['--resnet_architecture=RESNET_V1']
RESNET50 = RESNET + ['--resnet_depth=50', '--resnet_width=1']
RESNET101 = RESNET + ['--resnet_depth=101', '--resnet_width=1']
RESNET200 = RESNET + ['--resnet_depth=200', '--resnet_width=1']
CIFAR10 = ['--input_fn=cifar10', '--shard_per_host=False',
           '--first_conv_kernel_size=3', '--first_conv_stride=1',
           '--use_initial_max_pool=False', '--image_size=32',
           '--blur_probability=0', '--apply_whitening=True',
           '--crop_area_range=0.2,1.0', '--use_pytorch_color_jitter=True',
           '--eval_crop_method=IDENTITY', '--crop_padding=0',
           '--label_smoothing=0']
IMAGENET = ['--input_fn=imagenet', '--shard_per_host=True',
            '--first_conv_kernel_size=7', '--first_conv_stride=2',
            '--use_initial_max_pool=True', '--image_size=224',
            '--blur_probability=0.5', '--label_smoothing=0.05']
CONTRASTIVE = [
    '--stop_gradient_before_classification_head=True',
    '--contrast_mode=ALL_VIEWS', '--summation_location=OUTSIDE',
    '--denominator_mode=ALL', '--stage_1_contrastive_loss_weight=1.0',
    '--stage_1_cross_entropy_loss_weight=0.0',
    '--stage_2_contrastive_loss_weight=0.0',
    '--stage_2_cross_entropy_loss_weight=1.0',
    '--stage_1_use_encoder_weight_decay=True',
    '--stage_1_use_projection_head_weight_decay=True',
    '--stage_1_use_classification_head_weight_decay=False',
    '--stage_2_use_encoder_weight_decay=False',
    '--stage_2_use_projection_head_weight_decay=False',
    '--stage_2_use_classification_head_weight_decay=True',
    '--stage_1_update_encoder_batch_norm=True',
    '--stage_2_update_encoder_batch_norm=False']
SUPCON = CONTRASTIVE + [
    '--use_labels=True', '--normalize_embedding=True',
    '--use_bias_weight_decay=True', '--use_projection_batch_norm=False',
    '--projection_head_layers=128', '--zero_initialize_classifier=False',
    '--scale_by_temperature=True']
SIMCLR = CONTRASTIVE + [
    '--use_labels=False', '--normalize_embedding=False',
    '--use_bias_weight_decay=True', '--use_projection_batch_norm=True',
    '--projection_head_layers=2048,2048,128',
    '--zero_initialize_classifier=True', '--scale_by_temperature=False']
XENT = [
    '--stage_2_epochs=0', '--stage_2_warmup_epochs=0',
    '--stop_gradient_before_classification_head=False',
    '--stage_1_contrastive_loss_weight=0.0',
    '--stage_1_cross_entropy_loss_weight=1.0',
    '--stage_2_contrastive_loss_weight=0.0',
    '--stage_2_cross_entropy_loss_weight=0.0',
    '--stage_1_use_encoder_weight_decay=True',
    '--stage_1_use_projection_head_weight_decay=False',
    '--stage_1_use_classification_head_weight_decay=True',
    '--stage_2_use_encoder_weight_decay=False',
    '--stage_2_use_projection_head_weight_decay=False',
    '--stage_2_use_classification_head_weight_decay=False',
    '--stage_1_update_encoder_batch_norm=True',
    '--stage_2_update_encoder_batch_norm=False', '--normalize_embedding=False']
# Not in the official configs.sh, though its
# train_classification_head_from_pretrained_encoder.sh uses it:
# scripts/configs.sh defines it as that script describes (README).
ONLY_CLASSIFIER = [
    '--warm_start_encoder=True', '--warm_start_projection_head=True',
    '--stage_1_contrastive_loss_weight=0.0',
    '--stage_1_cross_entropy_loss_weight=1.0',
    '--stage_1_use_encoder_weight_decay=False',
    '--stage_1_use_projection_head_weight_decay=False',
    '--stage_1_use_classification_head_weight_decay=True',
    '--stage_1_update_encoder_batch_norm=False',
    '--stop_gradient_before_classification_head=True', '--stage_2_epochs=0']
OFFICIAL_SCRIPTS = {
    'supcon_cifar10_resnet50': TPU + RESNET50 + CIFAR10 + SUPCON + [
        '--batch_size=4096', '--augmentation_type=SIMCLR',
        '--augmentation_magnitude=0.5', '--temperature=0.1',
        '--stage_1_weight_decay=1e-4', '--stage_2_weight_decay=0',
        '--stage_1_epochs=1000', '--stage_2_epochs=100',
        '--stage_1_warmup_epochs=10', '--stage_2_warmup_epochs=0',
        '--stage_1_base_learning_rate=0.5', '--stage_2_base_learning_rate=2.5',
        '--stage_2_learning_rate_decay=PIECEWISE_LINEAR',
        '--stage_2_decay_rate=0.2', '--stage_2_decay_boundary_epochs=60,75,90',
        '--stage_1_optimizer=MOMENTUM', '--stage_2_optimizer=MOMENTUM',
        '--normalize_embedding=False', '--use_projection_batch_norm=False',
        '--projection_head_layers=2048,128', '--use_global_batch_norm=False'],
    'simclr_cifar10_resnet50': TPU + RESNET50 + CIFAR10 + SIMCLR + [
        '--batch_size=1024', '--augmentation_type=SIMCLR',
        '--augmentation_magnitude=0.5', '--temperature=0.5',
        '--stage_1_weight_decay=1e-4', '--stage_2_weight_decay=0',
        '--label_smoothing=0', '--stage_1_epochs=400', '--stage_2_epochs=90',
        '--stage_1_warmup_epochs=10', '--stage_2_warmup_epochs=0',
        '--stage_1_base_learning_rate=0.5',
        '--stage_2_base_learning_rate=0.25',
        '--stage_1_learning_rate_decay=COSINE',
        '--stage_2_learning_rate_decay=COSINE', '--stage_1_optimizer=MOMENTUM',
        '--stage_2_optimizer=MOMENTUM'],
    'cross_entropy_cifar10_resnet50': TPU + RESNET50 + CIFAR10 + XENT + [
        '--batch_size=1024', '--augmentation_type=SIMCLR',
        '--augmentation_magnitude=0.5', '--stage_1_weight_decay=5e-4',
        '--stage_1_epochs=1000', '--stage_1_base_learning_rate=0.1',
        '--stage_1_optimizer=NESTEROV', '--label_smoothing=0'],
    'supcon_imagenet_resnet50': TPU + RESNET50 + IMAGENET + SUPCON + [
        '--batch_size=6144', '--augmentation_type=AUTOAUGMENT',
        '--augmentation_magnitude=1.0', '--temperature=0.1',
        '--stage_1_weight_decay=1e-3', '--stage_2_weight_decay=1e-6',
        '--stage_1_epochs=350', '--stage_2_epochs=90',
        '--stage_1_base_learning_rate=0.4', '--stage_2_base_learning_rate=0.05',
        '--stage_2_learning_rate_decay=EXPONENTIAL', '--stage_1_optimizer=LARS',
        '--stage_2_optimizer=RMSPROP', '--stage_2_decay_rate=0.97',
        '--stage_2_epochs_per_decay=0.5'],
    'supcon_imagenet_resnet101': TPU + RESNET101 + IMAGENET + SUPCON + [
        '--batch_size=4096', '--augmentation_type=AUTOAUGMENT',
        '--augmentation_magnitude=1.0', '--temperature=0.1',
        '--stage_1_weight_decay=1e-4', '--stage_2_weight_decay=1e-6',
        '--stage_1_epochs=350', '--stage_2_epochs=90',
        '--stage_1_base_learning_rate=0.4', '--stage_2_base_learning_rate=0.05',
        '--stage_2_learning_rate_decay=EXPONENTIAL', '--stage_1_optimizer=LARS',
        '--stage_2_optimizer=RMSPROP', '--stage_2_decay_rate=0.97',
        '--stage_2_epochs_per_decay=0.5'],
    'supcon_imagenet_resnet200': TPU + RESNET200 + IMAGENET + SUPCON + [
        '--batch_size=4096', '--augmentation_type=STACKED_RANDAUGMENT',
        '--augmentation_magnitude=1.0', '--temperature=0.1',
        '--stage_1_weight_decay=1e-4', '--stage_2_weight_decay=1e-6',
        '--stage_1_epochs=700', '--stage_2_epochs=90',
        '--stage_1_base_learning_rate=0.2', '--stage_2_base_learning_rate=0.05',
        '--stage_2_learning_rate_decay=EXPONENTIAL', '--stage_1_optimizer=LARS',
        '--stage_2_optimizer=RMSPROP', '--stage_2_decay_rate=0.97',
        '--stage_2_epochs_per_decay=0.5'],
    'simclr_imagenet_resnet50': TPU + RESNET50 + IMAGENET + SIMCLR + [
        '--batch_size=6144', '--augmentation_type=SIMCLR',
        '--augmentation_magnitude=1.0', '--temperature=0.1',
        '--stage_1_weight_decay=1e-4', '--stage_2_weight_decay=1e-6',
        '--stage_1_epochs=100', '--stage_2_epochs=90',
        '--stage_1_base_learning_rate=0.3', '--stage_2_base_learning_rate=0.1',
        '--stage_1_optimizer=LARS', '--stage_2_optimizer=NESTEROV'],
    'cross_entropy_imagenet_resnet50': TPU + RESNET50 + IMAGENET + XENT + [
        '--batch_size=6144', '--augmentation_type=AUTOAUGMENT',
        '--augmentation_magnitude=1.0', '--stage_1_weight_decay=1e-4',
        '--stage_1_epochs=200', '--stage_1_base_learning_rate=0.1',
        '--stage_1_optimizer=NESTEROV'],
    'cross_entropy_imagenet_resnet200': TPU + RESNET200 + IMAGENET + XENT + [
        '--batch_size=4096', '--augmentation_type=STACKED_RANDAUGMENT',
        '--augmentation_magnitude=1.0', '--stage_1_weight_decay=1e-4',
        '--stage_1_epochs=700', '--stage_1_base_learning_rate=0.1',
        '--stage_1_optimizer=NESTEROV'],
    'train_classification_head_from_pretrained_encoder':
        TPU + RESNET50 + IMAGENET + SIMCLR + ONLY_CLASSIFIER + [
            '--batch_size=6144', '--augmentation_type=SIMCLR',
            '--augmentation_magnitude=1.0', '--stage_1_weight_decay=1e-6',
            '--stage_1_epochs=90', '--stage_1_base_learning_rate=0.1',
            '--stage_1_optimizer=NESTEROV'],
}


def _argv(name):
  return list(OFFICIAL_SCRIPTS[name])


def _parse(argv):
  from absl import flags as absl_flags
  supcon_flags.define_flags()
  absl_flags.FLAGS(['prog'] + argv)
  try:
    return supcon_flags.config_from_flags()
  finally:
    absl_flags.FLAGS.unparse_flags()


@pytest.mark.parametrize('name', sorted(OFFICIAL_SCRIPTS))
def test_each_official_script_parses_into_its_preset(name):
  config = _parse(_argv(name) + ['--model_dir=/tmp/x'])
  preset = make_config(name)
  differing = [field for field in preset.differences(config)
               if field not in RUNTIME_FIELDS]
  assert not differing, differing
  assert config.allow_mixed_precision and config.defer_blurring


def test_the_cifar10_script_values_are_the_official_ones():
  config = _parse(_argv('supcon_cifar10_resnet50') + ['--model_dir=/tmp/x'])
  assert (config.batch_size, config.temperature, config.resnet_depth) == (
      4096, 0.1, 50)
  assert config.stage_2_decay_boundary_epochs == (60, 75, 90)
  assert config.projection_head_layers == (2048, 128)
  assert config.crop_area_range == (0.2, 1.0)
  assert config.use_global_batch_norm is False
  assert config.stage_2_update_encoder_batch_norm is False
  # Defaults the script relies on are the official defaults.
  assert (config.stage_1_rmsprop_epsilon, config.stage_1_decay_rate,
          config.use_projection_batch_norm_beta, config.eval_batch_size,
          config.validation_fraction, config.mode) == (
              1.0, 0.1, True, 128, 0., 'train')


def test_without_a_preset_the_defaults_are_the_official_ones():
  config = make_config()
  assert (config.input_fn, config.batch_size, config.image_size,
          config.resnet_depth, config.projection_head_layers) == (
              'imagenet', 2048, 224, 50, (2048, 128))
  assert (config.stage_1_epochs, config.stage_2_epochs,
          config.stage_1_optimizer, config.stage_1_warmup_epochs,
          config.stage_1_base_learning_rate, config.stage_1_weight_decay) == (
              700, 200, 'RMSPROP', 12., 0.3, 0.)
  assert (config.stage_2_update_encoder_batch_norm, config.blur_probability,
          config.eval_crop_method, config.use_tpu, config.save_interval_steps,
          config.steps_per_loop) == (True, 0.5, 'RESIZE_THEN_CROP', True,
                                     1000, 1000)


def _printed_argv(tmp_path, script, *extra):
  """The command line scripts/<script>.sh runs, with PYTHON a printer."""
  printer = tmp_path / 'printer'
  printer.write_text(f'#!{sys.executable}\n'
                     'import json, sys\nprint(json.dumps(sys.argv[1:]))\n')
  printer.chmod(0o755)
  done = subprocess.run(
      ['bash', os.path.join(ROOT, 'scripts', f'{script}.sh'), *extra],
      env={**os.environ, 'PYTHON': str(printer)},
      capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr
  argv = json.loads(done.stdout.strip().splitlines()[-1])
  assert argv[0].endswith('bin/train_supcon.py')
  return argv[1:]


@pytest.mark.parametrize('name', sorted(OFFICIAL_SCRIPTS))
def test_scripts_run_bin_train_supcon_with_the_official_flags(tmp_path, name):
  extra = ['--mode=train_then_eval', '--use_tpu=False']
  if name == 'train_classification_head_from_pretrained_encoder':
    # Its first argument is the reference checkpoint's directory.
    argv = _printed_argv(tmp_path, name, '/ckpt', *extra)
    assert argv == _argv(name) + ['--reference_ckpt=/ckpt'] + extra
    return
  assert _printed_argv(tmp_path, name, *extra) == _argv(name) + extra


def test_the_official_readme_command_runs_until_it_needs_imagenet(tmp_path):
  # The official README's example, with --use_tpu=False as it says for GPU
  # and CPU: its configuration is accepted (TF-Models' AutoAugment v0
  # included); with no ImageNet in --data_dir it stops naming the dataset.
  done = subprocess.run(
      ['bash', os.path.join(ROOT, 'scripts', 'supcon_imagenet_resnet50.sh'),
       '--mode=train_then_eval', '--tpu_name=', f'--data_dir={tmp_path}',
       f'--model_dir={tmp_path / "run"}', '--use_tpu=False'],
      env={**os.environ, 'PYTHON': sys.executable}, capture_output=True,
      text=True, timeout=600)
  # One line naming it, exit status 2, nothing written.
  assert done.returncode == 2 and 'Traceback' not in done.stderr
  assert done.stderr.strip().splitlines()[-1].startswith(
      "train_supcon.py: error: Dataset 'imagenet2012' is not in data_dir=")
  assert not (tmp_path / 'run').exists()


def _tiny_run(model_dir, data_dir, **values):
  base = dict(
      model_dir=str(model_dir), input_fn='cifar10', data_dir=str(data_dir),
      image_size=32, resnet_depth=20, projection_head_layers=(16,),
      batch_size=20, eval_batch_size=20, augmentation_type='IDENTITY',
      crop='pad', eval_crop_method='IDENTITY', stage_1_warmup_epochs=0.,
      stage_2_warmup_epochs=0., stage_1_optimizer='MOMENTUM',
      stage_2_optimizer='MOMENTUM', stage_1_epochs=2, stage_2_epochs=1,
      steps_per_loop=1, save_interval_steps=1, use_tpu=False, progress=False,
      plot=False, eval_interval_secs=0)
  return make_config(**{**base, **values})


def test_train_mode_trains_only_and_eval_mode_evaluates_the_last_checkpoint(
    tmp_path):
  data = tiny_cifar10(tmp_path)
  trained = run_lib.run(_tiny_run(tmp_path / 'run', data, mode='train'))
  assert trained['stage_1_steps'] == 4 and 'test_top1' not in trained
  assert not (tmp_path / 'run' / 'export').exists()
  evaluated = run_lib.run(_tiny_run(tmp_path / 'run', data, mode='eval'))
  # The last checkpoint: 4 stage-1 steps and 2 stage-2 steps.
  assert evaluated['global_step'] == 6
  assert evaluated['checkpoint'].endswith('stage_2/ckpt-2')
  assert {'test_top1', 'test_top5', 'test_contrastive_loss',
          'test_cross_entropy_loss'} <= set(evaluated)
  assert (tmp_path / 'run' / 'export' / 'saved_model.pb').exists()
  saved = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert saved['stage_1_steps'] == 4 and saved['global_step'] == 6


def test_eval_mode_follows_a_run_that_is_still_training(tmp_path):
  data = tiny_cifar10(tmp_path, per_batch=16)
  config = _tiny_run(tmp_path / 'run', data, mode='train', stage_1_epochs=6)
  os.makedirs(config.model_dir)
  (tmp_path / 'run' / 'config.json').write_text(config.to_json())
  script = ('from supcon_tf.config import Config\n'
            'from supcon_tf.training import run\n'
            f'run.run(Config.from_json(open({config.model_dir!r} + '
            '"/config.json").read()))\n')
  training = subprocess.Popen([sys.executable, '-c', script], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True)
  try:
    # Once the first checkpoint is there, evaluate alongside.
    deadline = time.time() + 600
    while not tf.train.latest_checkpoint(os.path.join(config.model_dir,
                                                      'stage_1')):
      assert training.poll() is None and time.time() < deadline
      time.sleep(0.2)
    results = run_lib.run(_tiny_run(tmp_path / 'run', data, mode='eval',
                                    stage_1_epochs=6, eval_interval_secs=1))
  finally:
    assert training.wait(timeout=600) == 0, training.stderr.read()[-3000:]
  assert results['global_step'] == 6 * 4 + 4  # The run's last checkpoint.
  steps = {step for step, _ in summaries.read_scalars(str(
      tmp_path / 'run' / 'summaries' / 'eval'))['eval/top_1_accuracy']}
  assert len(steps) >= 2 and max(steps) == 28  # Some checkpoints on the way.


def test_help_lists_every_flag_with_its_own_help_and_tensorflow_is_quiet():
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  full = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'bin', 'train_supcon.py'),
       '--helpfull'], capture_output=True, text=True, timeout=600, env=env)
  text = full.stdout + full.stderr
  import dataclasses
  from supcon_tf.config import Config
  for field in dataclasses.fields(Config):
    # Each flag's line: its name, then its own help.
    flag = (f'\n  --{field.name}:' if f'\n  --{field.name}:' in text else
            f'\n  --[no]{field.name}:')
    assert flag in text, field.name
    after = ' '.join(text.split(flag, 1)[1].split()[:20])
    assert ' '.join(field.metadata['help'].split()[:3]) in after, field.name
  assert 'See supcon_tf' not in text
  for framework in ('test_srcdir', 'test_tmpdir', 'pytest'):
    assert framework not in text
  short = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'bin', 'train_supcon.py'),
       '--helpshort'], capture_output=True, text=True, timeout=600, env=env)
  assert '--stage_1_epochs' in short.stdout and '--input_fn' in short.stdout
  bad = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'bin', 'train_supcon.py'),
       '--stage_1_optimizer=sgd'], capture_output=True, text=True,
      timeout=600, env=env)
  assert bad.returncode != 0 and 'stage_1_optimizer' in bad.stderr
  for notice in ('cpu_feature_guard', 'cuda', 'oneDNN'):
    assert notice not in bad.stderr


def test_presets_of_every_official_script_exist():
  assert set(OFFICIAL_SCRIPTS) <= set(PRESETS)
  assert {n for n in os.listdir(os.path.join(ROOT, 'scripts'))
          if n.endswith('.sh') and n not in ('configs.sh',
                                             'local_cluster.sh')} == {
              f'{n}.sh' for n in OFFICIAL_SCRIPTS}


# The official serialization (hparam.py) of the official hparams.py defaults:
# every field, enums by their codes, booleans as 0/1, lists in brackets.
OFFICIAL_DEFAULTS_SERIALIZED = (
    'bs=2048,ea=r1,d=50,w=1.0,fk=7,fs=2,imp=1,phl=[2048,128],up=0,pb=1,phn=1,'
    'chn=1,czi=0,sgc=1,sgp=0,gbp=1,ul=0,t=1.0,cm=a,sl=o,dm=a,pc=-1,sbt=1,'
    'ls=0.0,bd=1,s1te=700,s1wu=12.0,s1lr=0.3,s1de=c,s1dr=0.1,'
    's1be=[30,60,80,90],s1epd=2.4,s1op=r,s1ebn=1,s1rep=1.0,s1cw=1.0,s1xw=1.0,'
    's1wd=0.0001,s1ed=1,s1pd=1,s1cd=1,s2te=700,s2wu=12.0,s2lr=0.3,s2de=c,'
    's2dr=0.1,s2be=[30,60,80,90],s2epd=2.4,s2op=r,s2ebn=1,s2rep=1.0,s2cw=1.0,'
    's2xw=1.0,s2wd=0.0001,s2ed=1,s2pd=1,s2cd=1,ebs=128,ds=imagenet,bf=0,'
    'is=224,au=s,m=0.5,wp=0.0,bp=0.5,db=1,pj=0,wh=1,ar=[0.08,1.0],ec=rc,cp=32,'
    'nv=2,ms=-1,ln=0.0,hs=1,wsc=0,wsp=0,wse=0,wsi=0,wsb=0')


def test_hparams_strings_take_the_official_abbreviations_and_defaults():
  from supcon_tf import hparams
  full = hparams.parse(OFFICIAL_DEFAULTS_SERIALIZED)
  assert full == hparams.parse('')  # The serialized defaults are the defaults.
  # hparams.py's defaults are not the flags': SIMCLR, no labels, tau 1.
  assert (full['augmentation_type'], full['use_labels'], full['temperature'],
          full['stage_1_weight_decay'], full['stage_2_epochs']) == (
              'SIMCLR', False, 1.0, 1e-4, 700)
  values = hparams.parse('bs=256,s1te=10,s2op=m,au=a,phl=[512,64],ul=1,'
                         'ar=[0.2,1.0],ec=i,ea=rx,ds="cifar10",s1be=[5,8]')
  assert (values['batch_size'], values['stage_1_epochs'],
          values['stage_2_optimizer'], values['augmentation_type'],
          values['projection_head_layers'], values['use_labels'],
          values['crop_area_range'], values['eval_crop_method'],
          values['resnet_architecture'], values['input_fn'],
          values['stage_1_decay_boundary_epochs']) == (
              256, 10, 'MOMENTUM', 'AUTOAUGMENT', (512, 64), True, (0.2, 1.0),
              'IDENTITY', 'RESNEXT', 'cifar10', (5, 8))
  for bad, match in (('bs=1.5', "'1.5' is not an int"),
                     ('zz=1', "unknown hyperparameter 'zz'"),
                     ('bs=1,bs=2', "'bs' is given twice"),
                     ('au=q', 'not a value of augmentation_type'),
                     ('phn=0', 'phn and chn differ')):
    with pytest.raises(ValueError, match=match):
      hparams.parse(bad)
  config = _parse(['--hparams=s1te=3,ds=cifar10,is=32', '--model_dir=/tmp/x',
                   '--mode=eval'])
  assert (config.stage_1_epochs, config.input_fn, config.image_size,
          config.use_labels, config.mode) == (3, 'cifar10', 32, False, 'eval')
  with pytest.raises(ValueError, match='--batch_size'):
    _parse(['--hparams=bs=16', '--batch_size=4', '--model_dir=/tmp/x'])


def test_tpu_flags_choose_the_strategy_only_with_a_tpu():
  # --use_tpu is the official default; without a TPU the run goes on.
  config = make_config(use_tpu=True, model_dir='/tmp/x')
  assert not isinstance(run_lib.make_strategy(config),
                        tf.distribute.TPUStrategy)
  with pytest.raises(ValueError, match='--strategy=tpu: no TPU found'):
    run_lib.make_strategy(make_config(strategy='tpu', model_dir='/tmp/x'))
  with pytest.raises(ValueError, match='multi_worker needs a cluster'):
    run_lib.make_strategy(make_config(strategy='multi_worker',
                                      model_dir='/tmp/x'))


def test_the_readme_command_trains_on_a_folder_of_images_of_any_size(
    tmp_path):
  # README, "Training on your own images": the same command on a folder of
  # four classes in three image sizes and no test/ (so the validation split
  # carved from train is evaluated), with one epoch of each stage.
  from PIL import Image
  rng = np.random.default_rng(0)
  for c in range(4):
    folder = tmp_path / 'images' / 'train' / f'class{c}'
    folder.mkdir(parents=True)
    for i in range(72):
      height, width = ((20, 28), (32, 32), (45, 30))[i % 3]
      image = rng.integers(0, 60, (height, width, 3))
      y, x = divmod(c, 2)
      image[y * height // 2:(y + 1) * height // 2,
            x * width // 2:(x + 1) * width // 2] += 150
      Image.fromarray(image.astype(np.uint8)).save(folder / f'{i}.png')
  model_dir = tmp_path / 'mine'
  done = subprocess.run(
      [os.path.join(os.path.dirname(sys.executable), 'supcon-train'),
       '--preset=supcon_folder_resnet20', '--input_fn=folder',
       f'--data_dir={tmp_path / "images"}', f'--model_dir={model_dir}',
       '--stage_1_epochs=1', '--stage_2_epochs=1'],
      capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'validation top-1 (no test split)' in done.stdout
  results = json.loads((model_dir / 'results.json').read_text())
  # 288 images, 29 held out: one batch of 256 an epoch.
  assert results['eval_split'] == 'validation'
  assert (results['stage_1_steps'], results['stage_2_steps']) == (1, 1)
  assert 0 <= results['val_top1'] <= 1 and 'test_top1' not in results
  assert (model_dir / 'embeddings.png').stat().st_size > 1000
  # Messages print as plain lines; the log file has absl's format.
  assert 'evaluation at step 2: val_top1' in done.stderr
  log = (model_dir / 'log.txt').read_text()
  assert 'evaluation at step 2' in log and ' run.py:' in log
  # The export serves raw images of any size.
  served = subprocess.run(
      [sys.executable, '-c',
       'import sys, numpy as np, tensorflow as tf; '
       'model = tf.saved_model.load(sys.argv[1]); '
       'out = model.serve(tf.constant(np.full((2, 45, 30, 3), 99.), '
       'tf.float32)); print(out["probabilities"].shape)',
       str(model_dir / 'export')], capture_output=True, text=True,
      timeout=600)
  assert served.stdout.strip() == '(2, 4)', served.stderr[-2000:]
