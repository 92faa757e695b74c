"""The package's shape: long files, long functions, import circles, and
how often a run's calls go back to a file they had left.

  python benchmarks/house.py            # the static figures
  python benchmarks/house.py --walk     # and the walk from training/run.py:run

Static figures (no TensorFlow): every file of `supcon_tf/` over
--max_file_lines lines, every function over --max_function_lines lines of
code (docstrings, comments and blank lines aside), and every circle of
module-level imports between the package's modules.

The walk runs a small digits run (`run.run` on the supcon_digits_resnet20
preset, batch 256, one epoch a stage, evaluated, no export)
under a profiler and
keeps the package's functions in the order each is first called. A stop is
one function; a return is a stop in a file the walk had been in and left.
The last line is the number of returns.
"""
import argparse
import ast
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'supcon_tf')


def package_files():
  for folder, _, names in sorted(os.walk(PACKAGE)):
    for name in sorted(names):
      if name.endswith('.py'):
        yield os.path.join(folder, name)


def module_name(path):
  relative = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
  return relative[:-len('.__init__')] if relative.endswith('.__init__') \
      else relative


def code_lines(node, source_lines):
  """Lines of code in `node`: blank, comment-only and docstring lines aside."""
  skip = set()
  for inner in ast.walk(node):
    body = getattr(inner, 'body', None)
    if (isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef,
                           ast.ClassDef, ast.Module)) and body and
        isinstance(body[0], ast.Expr) and
        isinstance(body[0].value, ast.Constant) and
        isinstance(body[0].value.value, str)):
      skip.update(range(body[0].lineno, body[0].end_lineno + 1))
  count = 0
  for number in range(node.lineno, node.end_lineno + 1):
    text = source_lines[number - 1].strip()
    if text and not text.startswith('#') and number not in skip:
      count += 1
  return count


def long_functions(path, limit):
  with open(path) as f:
    source = f.read()
  lines = source.splitlines()
  tree = ast.parse(source)
  found = []
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      # A nested function counts in its parent; it is not listed twice.
      count = code_lines(node, lines)
      if count > limit:
        found.append((node.name, node.lineno, count))
  return found


def module_imports(path, modules):
  """The package's modules that `path` imports at module level."""
  with open(path) as f:
    tree = ast.parse(f.read())
  name = module_name(path)
  package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
  found = set()
  for node in tree.body:
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        parts = package.split('.')
        base = '.'.join(parts[:len(parts) - node.level + 1] +
                        ([base] if base else []))
      for alias in node.names:
        # `from package import module` runs the package's __init__ but
        # uses only the module: the arrow goes to the module.
        submodule = f'{base}.{alias.name}'
        found.add(submodule if submodule in modules else base)
  return {m for m in found if m.startswith('supcon_tf')}


def import_circles(modules):
  graph = {}
  for name, path in modules.items():
    targets = set()
    for imported in module_imports(path, modules):
      # `from supcon_tf.data import arrays` imports data and data.arrays.
      while imported and imported not in modules:
        imported = imported.rpartition('.')[0]
      if imported and imported != name:
        targets.add(imported)
    graph[name] = targets
  # Tarjan's strongly connected components.
  index, low, stack, on_stack, circles = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in graph[node]:
      if target not in index:
        visit(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        circles.append(sorted(component))

  sys.setrecursionlimit(10000)
  for node in sorted(graph):
    if node not in index:
      visit(node)
  return circles


def walk():
  """The package's functions in first-call order during a one-step run."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  sys.path.insert(0, ROOT)
  from supcon_tf import presets
  from supcon_tf.training import run as run_lib
  seen, stops = set(), []

  def profile(frame, event, arg):
    if event != 'call':
      return
    code = frame.f_code
    if (not code.co_filename.startswith(PACKAGE) or
        code.co_name.startswith('<')):
      return
    key = (code.co_filename, code.co_firstlineno)
    if key not in seen:
      seen.add(key)
      stops.append((os.path.relpath(code.co_filename, ROOT), code.co_name))

  with tempfile.TemporaryDirectory() as model_dir:
    config = presets.make_config(
        'supcon_digits_resnet20', model_dir=model_dir, export=False,
        plot=False, progress=False, batch_size=256,
        stage_1_epochs=1, stage_2_epochs=1,
        mode='train_then_eval')
    sys.setprofile(profile)
    try:
      run_lib.run(config)
    finally:
      sys.setprofile(None)
  return stops


def returns(stops):
  left, current, count = set(), None, 0
  for path, _ in stops:
    if path != current:
      if path in left:
        count += 1
      if current is not None:
        left.add(current)
      current = path
  return count


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--max_file_lines', type=int, default=450)
  parser.add_argument('--max_function_lines', type=int, default=60)
  parser.add_argument('--walk', action='store_true')
  args = parser.parse_args()
  modules = {module_name(p): p for p in package_files()}
  long_files = 0
  for path in modules.values():
    with open(path) as f:
      count = sum(1 for _ in f)
    if count > args.max_file_lines:
      long_files += 1
      print(f'file  {os.path.relpath(path, ROOT)}: {count} lines')
  long = 0
  for path in modules.values():
    for name, line, count in long_functions(path, args.max_function_lines):
      long += 1
      print(f'function  {os.path.relpath(path, ROOT)}:{line} {name}: '
            f'{count} lines of code')
  circles = import_circles(modules)
  for circle in circles:
    print('circle  ' + ' <-> '.join(circle))
  print(f'files over {args.max_file_lines} lines: {long_files}')
  print(f'functions over {args.max_function_lines} lines: {long}')
  print(f'import circles: {len(circles)}')
  if args.walk:
    stops = walk()
    files_seen = {path for path, _ in stops}
    print(f'walk: {len(stops)} stops in {len(files_seen)} files')
    print(f'walk_returns: {returns(stops)}')


if __name__ == '__main__':
  main()
