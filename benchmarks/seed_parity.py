#!/usr/bin/env python3
"""The port's training steps against the seed's code, number by number: the
same weights and the same batches in both.

    make peers   # .peer-venv: torch, torchvision, scipy, tensorboard
    git clone https://github.com/GuillaumeErhard/Supervised_contrastive_loss_pytorch .peer-seed
    .venv/bin/python benchmarks/seed_parity.py --seed_repo=.peer-seed \
        --seed_python=.peer-venv/bin/python \
        [--images=PATH/cifar10-jpeg-train.tar.gz] [--work_dir=DIR]

1. The seed's code builds and initialises its ResNet-20 (`torch.manual_seed`)
   and saves it as its train.py saves checkpoints; the port converts it
   (supcon_tf.seed_checkpoint).
2. The port draws `--steps` batches of `--batch_size` examples with the seed
   SupCon preset's own augmentation (pad-4 crop, flip, the seed's
   AutoAugment) from `--images` (CIFAR-10 JPEGs: a folder of class folders or
   a .tar.gz; random pictures without it). Both codes get these views as
   tensors, so no random draw differs; cross-entropy and the classifier take
   view 0.
3. The seed's code runs, in float32 and again in float64, the bodies of its
   train_contrastive (forward_constrative, its SupervisedContrastiveLoss),
   of its cross-entropy training (from the same initial weights) and of its
   classifier stage (from its own SupCon state after the last step,
   freeze_projection, the encoder in training mode as it runs it): SGD
   momentum 0.9, weight decay 1e-4, the rate its adjust_learning_rate sets
   after each epoch of `--steps_per_epoch` steps (20 steps with 8 an epoch
   cross two epoch ends; the second changes the rate).
4. The port runs the training step of its training loop
   (`Trainer.train_on_batches`) under the presets seed_cifar10_resnet20_
   supcon_autoaugment (stage 1), _ce (stage 1) and the SupCon preset's stage 2
   with `--stage_2_encoder_batch_norm_inference=false
   --stage_2_update_encoder_batch_norm=true` (the seed's encoder BatchNorm in
   training mode), from the same converted states.

Prints the forward outputs' largest difference at the initial weights; then
per stage and step both losses and their relative difference beside the
seed's own float32-against-float64 difference (what rounding alone moves);
after the last step the largest relative difference (max |a - b| over max |b|
of each tensor) over the weights, the BatchNorm statistics and the momentum
buffers, port against seed and seed float32 against float64. Then step by
step: every port step started from the seed's float32 state (weights,
statistics, momentum buffers) before it, against the seed's state after it,
beside the seed's own step redone in float64 from the same state. Over 20
free-running steps float32 rounding grows (the seed's code against itself in
float64 ends as far apart), so the step-by-step figures are the ones that
can say whether the two codes take the same step. Last `largest relative
weight difference after a step from the same state: X` (every stage, step
and tensor). Everything goes to --work_dir (summary.json).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

STAGES = ('supcon', 'cross_entropy', 'classifier')
PRESETS = {'supcon': 'seed_cifar10_resnet20_supcon_autoaugment',
           'cross_entropy': 'seed_cifar10_resnet20_ce',
           'classifier': 'seed_cifar10_resnet20_supcon_autoaugment'}

# Run by --seed_python, beside the seed's code (imported from its checkout).
SEED_DRIVER = r'''
import argparse, json, sys
import numpy as np
import torch

parser = argparse.ArgumentParser()
for name in ('seed_repo', 'work_dir', 'action'):
  parser.add_argument('--' + name)
for name in ('seed', 'steps_per_epoch', 'epochs'):
  parser.add_argument('--' + name, type=int)
args = parser.parse_args()
sys.path.insert(0, args.seed_repo)
import train  # The seed's train.py: its adjust_learning_rate.
from loss.spc import SupervisedContrastiveLoss
from models.resnet_contrastive import get_resnet_contrastive

work = args.work_dir
torch.manual_seed(args.seed)
model = get_resnet_contrastive('resnet20', 10)
if args.action == 'init':
  torch.save({'net': model.state_dict(), 'avg_loss': 0., 'epoch': 0},
             f'{work}/init.pth')
  sys.exit()

batches = np.load(f'{work}/batches.npz')
views = torch.from_numpy(batches['views']).permute(0, 1, 2, 5, 3, 4)
labels = torch.from_numpy(batches['labels'])
# train.py's flags at their defaults, the epochs of this comparison.
options = argparse.Namespace(
    lr_contrastive=0.1, lr_cross_entropy=0.05, cosine=True, lr_decay_rate=0.1,
    lr_decay_epochs=[150, 300, 500], n_epochs_contrastive=args.epochs,
    n_epochs_cross_entropy=args.epochs)
initial = torch.load(f'{work}/init.pth')['net']


def snapshot(optimizer):
  out = {f'state/{k}': v.numpy().copy() for k, v in model.state_dict().items()}
  for name, parameter in model.named_parameters():
    buffer = optimizer.state.get(parameter, {}).get('momentum_buffer')
    if buffer is not None:
      out[f'momentum/{name}'] = buffer.numpy().copy()
  return out


def batch(stage, step, dtype):
  if stage == 'supcon':
    return (torch.cat([views[step, :, v] for v in range(2)]).to(dtype),
            labels[step].repeat(2))
  return views[step, :, 0].to(dtype), labels[step]


def step_in_float64(stage, kept, rates):
  """Each step again in float64 from the float32 state before it: the
  largest relative difference by kind to the float32 state after it."""
  worst = {}
  for step in range(len(labels)):
    start = {k[len(f'{step}/state/'):]: torch.from_numpy(v)
             for k, v in kept.items() if k.startswith(f'{step}/state/')}
    model.load_state_dict(start)
    model.double()
    if stage == 'classifier':
      model.freeze_projection()
    optimizer = torch.optim.SGD(model.parameters(), lr=rates[step],
                                momentum=0.9, weight_decay=1e-4)
    for name, parameter in model.named_parameters():
      key = f'{step}/momentum/{name}'
      if key in kept:
        optimizer.state[parameter]['momentum_buffer'] = torch.from_numpy(
            kept[key]).double()
    model.train()
    optimizer.zero_grad()
    inputs, targets = batch(stage, step, torch.float64)
    if stage == 'supcon':
      loss = SupervisedContrastiveLoss(0.07)(model.forward_constrative(inputs), targets)
    else:
      loss = torch.nn.CrossEntropyLoss()(model(inputs), targets)
    loss.backward()
    optimizer.step()
    after = {f'state/{k}': v.numpy() for k, v in model.state_dict().items()}
    for name, parameter in model.named_parameters():
      buffer = optimizer.state.get(parameter, {}).get('momentum_buffer')
      if buffer is not None:
        after[f'momentum/{name}'] = buffer.numpy()
    for key, value in after.items():
      if key.endswith('num_batches_tracked'):
        continue
      want = kept[f'{step + 1}/{key}']
      kind = ('momentum' if key.startswith('momentum/') else 'statistics'
              if 'running_' in key else 'weights')
      scale = np.abs(value).max()
      diff = float(np.abs(want - value).max() / scale) if scale else 0.
      worst[kind] = max(worst.get(kind, [0., '', 0]), [diff, key.split('/', 1)[1], step + 1])
    model.requires_grad_(True)
    model.float()
  return worst


def run(stage, dtype, start, snapshots=None):
  model.load_state_dict(start)
  model.to(dtype)
  if stage == 'classifier':
    model.freeze_projection()
  criterion = (SupervisedContrastiveLoss(temperature=0.07)
               if stage == 'supcon' else torch.nn.CrossEntropyLoss())
  mode = 'contrastive' if stage == 'supcon' else 'cross_entropy'
  optimizer = torch.optim.SGD(
      model.parameters(), lr=getattr(options, f'lr_{mode}'), momentum=0.9,
      weight_decay=1e-4)
  model.train()
  losses = []
  rates = []
  for step in range(len(labels)):
    rates.append(optimizer.param_groups[0]['lr'])
    if snapshots is not None:
      snapshots.update({f'{step}/{k}': v for k, v in snapshot(optimizer).items()})
    optimizer.zero_grad()
    inputs, targets = batch(stage, step, dtype)
    if stage == 'supcon':
      loss = criterion(model.forward_constrative(inputs), targets)
    else:
      loss = criterion(model(inputs), targets)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
    if (step + 1) % args.steps_per_epoch == 0:  # An epoch's end.
      train.adjust_learning_rate(optimizer, (step + 1) // args.steps_per_epoch - 1,
                                 mode, options)
  out = {f'state/{k}': v.double().numpy() for k, v in model.state_dict().items()}
  for name, parameter in model.named_parameters():
    buffer = optimizer.state.get(parameter, {}).get('momentum_buffer')
    if buffer is not None:
      out[f'momentum/{name}'] = buffer.double().numpy()
  out['losses'] = np.array(losses)
  out['rates'] = np.array(rates)
  if snapshots is not None:
    snapshots.update({f'{len(labels)}/{k}': v
                      for k, v in snapshot(optimizer).items()})
  final = {k: v.float().clone() for k, v in model.state_dict().items()}
  model.requires_grad_(True)
  model.float()
  return out, final


# The outputs at the initial weights, on view 0 of the first batch.
forward = {}
with torch.no_grad():
  for mode in ('eval', 'train'):
    model.load_state_dict(initial)
    model.train(mode == 'train')
    forward[f'forward/{mode}/logits'] = model(views[0, :, 0]).numpy()
    model.load_state_dict(initial)
    forward[f'forward/{mode}/projection'] = model.forward_constrative(
        views[0, :, 0]).numpy()
np.savez(f'{work}/forward.npz', **forward)

for dtype, tag in ((torch.float32, '32'), (torch.float64, '64')):
  # In float32, the state before and after every step too.
  snapshots = {s: {} for s in ('supcon', 'cross_entropy', 'classifier')}
  keep = (lambda stage: snapshots[stage]) if tag == '32' else (lambda stage: None)
  supcon, after = run('supcon', dtype, initial, keep('supcon'))
  if tag == '32':
    torch.save({'net': after}, f'{work}/supcon_final.pth')
  start = torch.load(f'{work}/supcon_final.pth')['net']
  results = {'supcon': supcon,
             'cross_entropy': run('cross_entropy', dtype, initial, keep('cross_entropy'))[0],
             'classifier': run('classifier', dtype, start, keep('classifier'))[0]}
  np.savez(f'{work}/seed{tag}.npz', **{f'{s}/{k}': v for s, r in results.items()
                                       for k, v in r.items()})
  if tag == '32':
    floors = {}
    for stage, kept in snapshots.items():
      np.savez(f'{work}/steps_{stage}.npz', **kept)
      floors[stage] = step_in_float64(stage, kept, results[stage]['rates'])
    with open(f'{work}/steps_float64.json', 'w') as f:
      json.dump(floors, f)
print(json.dumps({'torch': torch.__version__}))
'''


def seed(args, action):
  driver = os.path.join(args.work_dir, 'seed_driver.py')
  with open(driver, 'w') as f:
    f.write(SEED_DRIVER)
  done = subprocess.run(
      [args.seed_python, driver, f'--seed_repo={os.path.abspath(args.seed_repo)}',
       f'--work_dir={args.work_dir}', f'--action={action}',
       f'--seed={args.seed}', f'--steps_per_epoch={args.steps_per_epoch}',
       f'--epochs={args.epochs}'], capture_output=True, text=True)
  if done.returncode:
    raise SystemExit(f"The seed's code failed:\n{done.stderr[-3000:]}")
  return done.stdout


def batches(args, config):
  """`--steps` batches of the seed preset's training views: views [K, B, 2,
  H, W, 3] (normalised) and labels [K, B]."""
  from supcon_tf.data import pipeline, sources
  from supcon_tf.training import run as run_lib
  count = args.steps * args.batch_size
  if args.images:
    from seed_budget import prepare_images
    per_class = -(-count // 10)
    folder = prepare_images(args.images, args.work_dir, per_class, 1)
    train = sources.load_source('folder', folder).split('train')
  else:
    rng = np.random.RandomState(args.seed)
    train = sources.Split(rng.randint(0, 10, count), images=rng.randint(
        0, 256, (count, 32, 32, 3)).astype(np.uint8))
  dataset = pipeline.train_dataset(train, config, args.batch_size,
                                   run_lib.normalization(config), num_views=2,
                                   seed=args.seed)
  views, labels = zip(*[(v.numpy(), l.numpy())
                        for v, l in dataset.take(args.steps)])
  return np.stack(views), np.stack(labels)


def port(args, stage_name, views, labels, start, steps=None):
  """The port's stage on the batches from the converted `start` .pth:
  per-step loss, {seed name: value} of the state and momentum buffers.
  `steps` (the seed's state before and after each step): each step starts
  from the seed's state, and what it gives is compared with the seed's
  state after it; returns the per-step differences by kind instead."""
  import tensorflow as tf
  from supcon_tf import seed_checkpoint
  from supcon_tf.presets import make_config
  from supcon_tf.data import sources
  from supcon_tf.training import run as run_lib, stages
  from supcon_tf.training.loop import Trainer
  scale = 256 / args.batch_size  # The presets' rates are per 256 examples.
  values = dict(batch_size=args.batch_size, stage_1_epochs=args.epochs,
                stage_2_epochs=args.epochs)
  if stage_name == 'classifier':
    values.update(stage_2_encoder_batch_norm_inference=False,
                  stage_2_update_encoder_batch_norm=True,
                  stage_2_base_learning_rate=0.05 * scale)
  else:
    values['stage_1_base_learning_rate'] = (
        0.1 if stage_name == 'supcon' else 0.05) * scale
  config = make_config(PRESETS[stage_name], **values)
  model = run_lib.build_model(config, 10)
  model(tf.zeros([1, 32, 32, 3]))
  seed_checkpoint.restore_seed(model, start)
  size = args.steps_per_epoch * args.batch_size
  train = sources.Split(np.zeros(size), images=np.zeros((size, 32, 32, 3),
                                                        np.uint8))
  trainer = Trainer(config, tf.distribute.get_strategy(), model,
                    sources.Source('batches', {'train': train}, 10),
                    sources.UNIT_MEAN_STD)
  if stage_name != 'supcon':
    views = views[:, :, :1]
  stage = stages.stage_from_config(config, 1 if stage_name != 'classifier'
                                   else 2)
  names = seed_checkpoint.seed_names(model)

  def slots(optimizer):
    return {id(v): optimizer.accumulators[optimizer._get_variable_index(v)]
            for v in optimizer._trainable_variables}

  def state(optimizer):
    out = {f'state/{n}': v.numpy() for n, (v, _) in names.items()}
    layouts = {f'state/{n}': layout for n, (_, layout) in names.items()}
    held = slots(optimizer)
    for n, (variable, layout) in names.items():
      if id(variable) in held:
        out[f'momentum/{n}'] = held[id(variable)].numpy()
        layouts[f'momentum/{n}'] = layout
    return out, layouts

  forced = []

  def before_step(index, optimizer, step):
    if index:  # What the previous step gave, against the seed's.
      forced.append(compare(*state(optimizer), steps, index))
    held = slots(optimizer)
    for n, (variable, layout) in names.items():
      variable.assign(seed_checkpoint.to_port(steps[f'{index}/state/{n}'],
                                              layout))
      if id(variable) in held:
        key = f'{index}/momentum/{n}'
        held[id(variable)].assign(
            seed_checkpoint.to_port(steps[key], layout) if key in steps.files
            else np.zeros(variable.shape, np.float32))

  terms, optimizer = trainer.train_on_batches(
      stage, list(zip(views, labels)),
      before_step=before_step if steps is not None else None)
  key = 'contrastive_loss' if stage_name == 'supcon' else 'cross_entropy_loss'
  losses = np.array([t[key] for t in terms])
  if steps is not None:
    forced.append(compare(*state(optimizer), steps, len(labels)))
    return losses, forced
  return (losses, *state(optimizer))


def forward_model(path):
  import tensorflow as tf
  from supcon_tf import seed_checkpoint
  from supcon_tf.presets import make_config
  from supcon_tf.training import run as run_lib
  model = run_lib.build_model(make_config(PRESETS['supcon']), 10)
  model(tf.zeros([1, 32, 32, 3]))
  seed_checkpoint.restore_seed(model, path)
  return model


def compare(state, layouts, steps, index):
  """{kind: (largest relative difference, its tensor)} of a port state
  against the seed's state after step `index`."""
  from supcon_tf import seed_checkpoint
  worst = {}
  for key, value in state.items():
    want = seed_checkpoint.to_port(steps[f'{index}/{key}'], layouts[key])
    kind = ('momentum' if key.startswith('momentum/') else 'statistics'
            if 'running_' in key else 'weights')
    worst[kind] = max(worst.get(kind, (0., '')),
                      (relative(value, want), key.split('/', 1)[1]))
  return worst


def relative(got, want):
  scale = np.abs(want).max()
  return np.abs(got - want).max() / scale if scale else np.abs(got).max()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--seed_repo', required=True,
                      help="Checkout of the seed's repository.")
  parser.add_argument('--seed_python', required=True,
                      help='Python with torch, torchvision and tensorboard.')
  parser.add_argument('--images', help='CIFAR-10 JPEGs (folder or .tar.gz).')
  parser.add_argument('--work_dir', default='/tmp/supcon_seed_parity')
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--steps_per_epoch', type=int, default=8)
  parser.add_argument('--epochs', type=int, default=5,
                      help='The cosine schedules\' length in epochs.')
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  if not os.path.exists(os.path.join(args.seed_repo, 'train.py')):
    parser.error(f'--seed_repo: no train.py in {args.seed_repo}.')
  os.makedirs(args.work_dir, exist_ok=True)
  from supcon_tf import seed_checkpoint
  from supcon_tf.presets import make_config

  seed(args, 'init')
  views, labels = batches(args, make_config(PRESETS['supcon'],
                                            batch_size=args.batch_size))
  np.savez(os.path.join(args.work_dir, 'batches.npz'), views=views,
           labels=labels)
  print(f"seed's code: {seed(args, 'run').strip()}; {args.steps} steps of "
        f'{args.batch_size} examples, {args.steps_per_epoch} an epoch, '
        f'images: {args.images or "random"}', flush=True)
  reference = {tag: np.load(os.path.join(args.work_dir, f'seed{tag}.npz'))
               for tag in ('32', '64')}
  init = os.path.join(args.work_dir, 'init.pth')
  starts = {'supcon': init, 'cross_entropy': init,
            'classifier': os.path.join(args.work_dir, 'supcon_final.pth')}
  with open(os.path.join(args.work_dir, 'steps_float64.json')) as f:
    floors = json.load(f)
  forward = np.load(os.path.join(args.work_dir, 'forward.npz'))
  model = forward_model(init)
  print('forward outputs at the initial weights, view 0 of batch 1: largest '
        'difference over the largest value')
  forward_worst = 0.
  for mode in ('eval', 'train'):
    got = model(views[0, :, 0], training=mode == 'train')
    for key in ('logits', 'projection'):
      value = relative(got[key].numpy(), forward[f'forward/{mode}/{key}'])
      forward_worst = max(forward_worst, value)
      print(f'  {mode:5s} {key:10s} {value:.1e}')
  worst_weight = 0.
  summary = {}
  for stage in STAGES:
    losses, state, layouts = port(args, stage, views, labels, starts[stage])
    want, exact = (reference[t][f'{stage}/losses'] for t in ('32', '64'))
    print(f'\n{stage}: step, seed loss, port loss, |port/seed - 1|, '
          '|seed f32/f64 - 1|')
    for i, (a, b, c) in enumerate(zip(losses, want, exact)):
      print(f'  {i + 1:2d}  {b:.6f}  {a:.6f}  {abs(a / b - 1):.1e}  '
            f'{abs(b / c - 1):.1e}')
    kinds = {'weights': [], 'statistics': [], 'momentum': []}
    for key, value in state.items():
      seed32 = seed_checkpoint.to_port(reference['32'][f'{stage}/{key}'],
                                       layouts[key])
      seed64 = seed_checkpoint.to_port(reference['64'][f'{stage}/{key}'],
                                       layouts[key])
      kind = ('momentum' if key.startswith('momentum/') else 'statistics'
              if 'running_' in key else 'weights')
      kinds[kind].append((relative(value, seed32), relative(seed32, seed64),
                          key.split('/', 1)[1]))
    missing = [k for k in reference['32'].files
               if k.startswith(f'{stage}/momentum/') and
               k[len(stage) + 1:] not in state]
    if missing:
      raise SystemExit(f'{stage}: the port has no momentum for {missing[:3]}')
    loss_rel = max(abs(a / b - 1) for a, b in zip(losses, want))
    loss_floor = max(abs(b / c - 1) for b, c in zip(want, exact))
    summary[stage] = {'loss': (float(loss_rel), float(loss_floor))}
    print(f'  after step {args.steps}: largest relative difference, port vs '
          'seed (seed f32 vs f64)')
    for kind, rows in kinds.items():
      port_worst = max(rows)
      floor = max(r[1] for r in rows)
      summary[stage][kind] = (float(port_worst[0]), float(floor),
                              port_worst[2])
      print(f'    {kind:10s} {port_worst[0]:.1e} ({port_worst[2]}; seed '
            f'{floor:.1e}) over {len(rows)} tensors')
    # Step by step: each port step from the seed's state before it.
    steps = np.load(os.path.join(args.work_dir, f'steps_{stage}.npz'))
    forced_losses, forced = port(args, stage, views, labels, starts[stage],
                                 steps)
    forced_loss = max(abs(a / b - 1) for a, b in zip(forced_losses, want))
    summary[stage]['step_by_step'] = {'loss': float(forced_loss)}
    print(f'  step by step (each port step from the seed\'s state before it):'
          f' loss {forced_loss:.1e}; after the step, largest over the '
          f'{args.steps} steps:')
    for kind in kinds:
      value, name, step = max((f[kind][0], f[kind][1], i + 1)
                              for i, f in enumerate(forced) if kind in f)
      summary[stage]['step_by_step'][kind] = (float(value), name, step)
      seed_value, seed_name, seed_step = floors[stage][kind]
      print(f'    {kind:10s} {value:.1e} ({name}, step {step}; the seed\'s '
            f'step in float64: {seed_value:.1e}, {seed_name}, step '
            f'{seed_step})')
    worst_weight = max(worst_weight,
                       summary[stage]['step_by_step']['weights'][0])
  summary['forward'] = float(forward_worst)
  with open(os.path.join(args.work_dir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  print('largest relative weight difference after a step from the same '
        f'state: {worst_weight:.2e}')


if __name__ == '__main__':
  main()
