"""The Keras core under JAX against TensorFlow on this CPU, each backend in a
process of its own (Keras picks its backend at import):

- a ResNet-20 SupCon `fit` step (`SupConModel.train_on_batch`, 128 samples
  x 2 views of 32 x 32, SGD with momentum, the probe): median seconds a step
  after two warm-up steps;
- the loss at 4,096 samples x 2 views of 128 (forward and gradient; the fused
  kernel under TensorFlow, the keras.ops formula jitted under JAX): median
  seconds, and the process's peak resident memory above what it held before
  the first call.

    .venv/bin/python benchmarks/backends.py [--steps 5] [--loss_batch 4096]

Last line: `jax / tensorflow fit step time: R`.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r'''
import json, resource, sys, time
import keras, numpy as np
from supcon_tf.losses import ContrastiveLoss, contrastive_loss
from supcon_tf.models import build_encoder
from supcon_tf.training.fit import SupConModel
steps, loss_batch = int(sys.argv[1]), int(sys.argv[2])
backend = keras.backend.backend()
rng = np.random.default_rng(0)


def rss_mib():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.


def median_seconds(function, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    function()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


# The loss first, so the peak is its own.
features = rng.normal(size=(loss_batch, 2, 128)).astype(np.float32)
features /= np.linalg.norm(features, axis=-1, keepdims=True)
labels = rng.integers(0, 100, loss_batch)
if backend == 'jax':
  import jax
  step = jax.jit(jax.value_and_grad(
      lambda f: contrastive_loss(f, labels, temperature=0.1).mean()))
  run = lambda: jax.block_until_ready(step(features))
else:
  import tensorflow as tf
  constant = tf.constant(features)
  def run():
    with tf.GradientTape() as tape:
      tape.watch(constant)
      loss = tf.reduce_mean(contrastive_loss(constant, labels,
                                             temperature=0.1))
    return tape.gradient(loss, constant).numpy()
before = rss_mib()
run()
loss_seconds = median_seconds(run, 3)
loss_mib = rss_mib() - before

keras.utils.set_random_seed(0)
model = SupConModel(build_encoder('resnet20'), 10)
model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
              loss=ContrastiveLoss(temperature=0.1),
              probe_optimizer=keras.optimizers.Adam(1e-3))
views = rng.normal(size=(128, 2, 32, 32, 3)).astype(np.float32)
step_labels = rng.integers(0, 10, 128)
for _ in range(2):
  model.train_on_batch(views, step_labels)
fit_seconds = median_seconds(
    lambda: model.train_on_batch(views, step_labels), steps)
print(json.dumps(dict(backend=backend, fit_step_s=fit_seconds,
                      loss_s=loss_seconds, loss_peak_mib=loss_mib)))
'''


def measure(backend, args):
  env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS='cpu',
             TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=ROOT)
  done = subprocess.run(
      [sys.executable, '-c', CHILD, str(args.steps), str(args.loss_batch)],
      env=env, capture_output=True, text=True, check=False)
  if done.returncode:
    sys.exit(f'{backend} side failed:\n{done.stderr[-3000:]}')
  return json.loads(done.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--loss_batch', type=int, default=4096)
  args = parser.parse_args()
  results = {b: measure(b, args) for b in ('tensorflow', 'jax')}
  for backend, result in results.items():
    print(f'{backend}: fit step {result["fit_step_s"]:.3f} s; loss at '
          f'{args.loss_batch} x 2 views {result["loss_s"]:.3f} s, peak '
          f'+{result["loss_peak_mib"]:.0f} MiB')
  print(f'jax / tensorflow loss time: '
        f'{results["jax"]["loss_s"] / results["tensorflow"]["loss_s"]:.2f}')
  print(f'jax / tensorflow fit step time: '
        f'{results["jax"]["fit_step_s"] / results["tensorflow"]["fit_step_s"]:.2f}')


if __name__ == '__main__':
  main()
