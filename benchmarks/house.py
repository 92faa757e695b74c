"""The package's shape: long files, long functions, import circles, and how
often a run's calls go back to a file they had left.

  python benchmarks/house.py            # the static figures
  python benchmarks/house.py --walk     # and the walk from training/run.py:run

The static figures are those tests/test_imports.py holds the package to:
every file of `supcon_tf/` over 450 lines, every function over 60 lines of
code (docstrings, comments and blank lines aside), every circle of imports
(at any depth of the code) between modules.

The walk runs a small digits run (`run.run` on the supcon_digits_resnet20
preset, batch 256, one epoch a stage, evaluated, no export) under a
profiler. It keeps the package's functions in the order each is first
called (a stop is one function; a return is a stop in a file the walk had
been in and left) and every call from one package file into another; two
files that call into each other are a pair "both ways". The last line is
the number of returns.
"""
import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'supcon_tf')
sys.path.insert(0, ROOT)

from tests import test_imports  # noqa: E402 (after the path)


def walk():
  """(stops, calls) of a small run: the package's functions, (file, name),
  in the order each is first called, and the (caller file, callee file)
  pairs of every call from one package file into another."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  from supcon_tf import presets
  from supcon_tf.training import run as run_lib
  seen, stops, calls = set(), [], set()

  def profile(frame, event, arg):
    code = frame.f_code
    if (event != 'call' or not code.co_filename.startswith(PACKAGE) or
        code.co_name.startswith('<')):
      return
    caller = frame.f_back
    while caller is not None and caller.f_code.co_name.startswith('<'):
      caller = caller.f_back  # Through comprehensions and lambdas.
    if (caller is not None and caller.f_code.co_filename.startswith(PACKAGE)
        and caller.f_code.co_filename != code.co_filename):
      calls.add((os.path.relpath(caller.f_code.co_filename, ROOT),
                 os.path.relpath(code.co_filename, ROOT)))
    key = (code.co_filename, code.co_firstlineno)
    if key not in seen:
      seen.add(key)
      stops.append((os.path.relpath(code.co_filename, ROOT), code.co_name))

  with tempfile.TemporaryDirectory() as model_dir:
    config = presets.make_config(
        'supcon_digits_resnet20', model_dir=model_dir, export=False,
        plot=False, progress=False, batch_size=256, stage_1_epochs=1,
        stage_2_epochs=1, mode='train_then_eval')
    sys.setprofile(profile)
    try:
      run_lib.run(config)
    finally:
      sys.setprofile(None)
  return stops, calls


def both_ways(calls):
  """The pairs of files each of which calls into the other."""
  return sorted({tuple(sorted(pair)) for pair in calls
                 if pair[::-1] in calls})


def returns(stops):
  """Stops in a file the walk had been in and left."""
  left, current, count = set(), None, 0
  for path, _ in stops:
    if path != current:
      count += path in left
      if current is not None:
        left.add(current)
      current = path
  return count


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--walk', action='store_true')
  parser.add_argument('--stops', action='store_true',
                      help='With --walk: print each file the walk enters.')
  args = parser.parse_args()
  files = test_imports.long_files()
  for path, count in files.items():
    print(f'file  {os.path.relpath(path, ROOT)}: {count} lines')
  functions = 0
  for path in test_imports._modules().values():
    for name, line, count in test_imports.long_functions(path):
      functions += 1
      print(f'function  {os.path.relpath(path, ROOT)}:{line} {name}: '
            f'{count} lines of code')
  circles = test_imports._circles(test_imports._imports(
      test_imports._modules()))
  for circle in circles:
    print('circle  ' + ' <-> '.join(circle))
  print(f'files over {test_imports.MAX_FILE_LINES} lines: {len(files)}')
  print(f'functions over {test_imports.MAX_FUNCTION_LINES} lines: '
        f'{functions}')
  print(f'import circles: {len(circles)}')
  if args.walk:
    stops, calls = walk()
    if args.stops:
      current = None
      for path, name in stops:
        if path != current:
          print(f'  {path}')
          current = path
        print(f'    {name}')
    pairs = both_ways(calls)
    for pair in pairs:
      print('both ways  ' + ' <-> '.join(pair))
    print(f'walk: {len(stops)} stops in {len({p for p, _ in stops})} files, '
          f'{len(calls)} calls between files, {len(pairs)} pairs both ways')
    print(f'walk_returns: {returns(stops)}')


if __name__ == '__main__':
  main()
