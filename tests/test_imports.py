"""The package's import graph: no circle between modules, none between a
package and a module outside it, and every module importable alone."""
import ast
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), 'supcon_tf')


def _modules():
  """Dotted name -> path of every module of supcon_tf (packages by their
  __init__)."""
  modules = {}
  for directory, _, names in os.walk(ROOT):
    for name in names:
      if name.endswith('.py'):
        path = os.path.join(directory, name)
        dotted = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(
            os.sep, '.')
        modules[dotted.removesuffix('.__init__')] = path
  return modules


def _imports(modules):
  """Module -> the supcon_tf modules it imports, at any depth of its code
  (imports inside functions count: they run, and can close a circle)."""
  graph = {}
  for module, path in modules.items():
    with open(path) as f:
      tree = ast.parse(f.read())
    targets = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        targets.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module:
        for alias in node.names:
          name = f'{node.module}.{alias.name}'
          targets.add(name if name in modules else node.module)
    graph[module] = {t for t in targets if t in modules and t != module}
  return graph


def _circles(graph):
  """The strongly connected groups of more than one node (Tarjan)."""
  index, low, stack, on_stack, groups = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for other in graph.get(node, ()):
      if other not in index:
        visit(other)
        low[node] = min(low[node], low[other])
      elif other in on_stack:
        low[node] = min(low[node], index[other])
    if low[node] == index[node]:
      group = set()
      while True:
        other = stack.pop()
        on_stack.discard(other)
        group.add(other)
        if other == node:
          break
      if len(group) > 1:
        groups.append(sorted(group))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return groups


def _unit(module, packages):
  """The sub-package of supcon_tf a module is in (supcon_tf.data for
  supcon_tf.data.augment.engine), or the module itself."""
  top = '.'.join(module.split('.')[:2])
  return top if top in packages else module


def test_no_import_circle_between_modules_or_packages():
  modules = _modules()
  graph = _imports(modules)
  assert 'supcon_tf.data.augment.views' in graph  # The walk sees nested ones.
  assert not _circles(graph), _circles(graph)
  packages = {m for m, p in modules.items()
              if p.endswith('__init__.py') and m != 'supcon_tf'}
  units = {}
  for module, targets in graph.items():
    unit = _unit(module, packages)
    units.setdefault(unit, set()).update(
        _unit(t, packages) for t in targets if _unit(t, packages) != unit)
  assert not _circles(units), _circles(units)


def test_circle_detection_finds_a_circle():
  assert _circles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [
      ['a', 'b', 'c']]


def test_every_module_imports_alone_in_a_fresh_interpreter():
  # One interpreter (TensorFlow's import is paid once); before each module
  # every supcon_tf module is forgotten, so each is imported first, as a
  # script or a user would: a circle fails whichever module it is entered
  # from.
  names = sorted(_modules())
  script = (
      'import importlib, sys\n'
      f'for name in {names!r}:\n'
      '  for loaded in [m for m in sys.modules if m == "supcon_tf" or\n'
      '                 m.startswith("supcon_tf.")]:\n'
      '    del sys.modules[loaded]\n'
      '  try:\n'
      '    importlib.import_module(name)\n'
      '  except Exception as error:\n'
      '    print(f"{name}: {type(error).__name__}: {error}")\n'
      '    sys.exit(1)\n')
  result = subprocess.run(
      [sys.executable, '-c', script], capture_output=True, text=True,
      cwd=os.path.dirname(ROOT), timeout=600,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
  assert result.returncode == 0, result.stdout + result.stderr[-2000:]


# The house's limits: a file a reader takes in, a function held in mind.
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 60


def code_lines(node, source_lines):
  """Lines of code of an AST node: blank, comment-only and docstring lines
  aside (a nested function's count in its parent's)."""
  skip = set()
  for inner in ast.walk(node):
    body = getattr(inner, 'body', None)
    if (isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef,
                           ast.ClassDef, ast.Module)) and body and
        isinstance(body[0], ast.Expr) and
        isinstance(body[0].value, ast.Constant) and
        isinstance(body[0].value.value, str)):
      skip.update(range(body[0].lineno, body[0].end_lineno + 1))
  return sum(1 for number in range(node.lineno, node.end_lineno + 1)
             if number not in skip and
             source_lines[number - 1].strip() and
             not source_lines[number - 1].strip().startswith('#'))


def long_functions(path, limit=MAX_FUNCTION_LINES):
  """(name, line, lines of code) of each function of `path` over `limit`."""
  with open(path) as f:
    source = f.read()
  lines = source.splitlines()
  counted = [(node.name, node.lineno, code_lines(node, lines))
             for node in ast.walk(ast.parse(source))
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
  return [found for found in counted if found[2] > limit]


def long_files(limit=MAX_FILE_LINES):
  """{path: lines} of the package's files over `limit` lines."""
  found = {}
  for path in _modules().values():
    with open(path) as f:
      count = sum(1 for _ in f)
    if count > limit:
      found[path] = count
  return found


def test_no_file_over_the_limit():
  assert not long_files(), long_files()


def test_no_function_over_the_limit():
  found = {path: long_functions(path) for path in _modules().values()}
  assert not any(found.values()), {p: f for p, f in found.items() if f}


def test_code_lines_leave_out_docstrings_comments_and_blank_lines(tmp_path):
  path = tmp_path / 'sample.py'
  path.write_text(
      'def f(x):\n'
      '  """A docstring\n  of two lines."""\n'
      '  # A comment.\n'
      '\n'
      '  def g():\n'
      '    """Nested."""\n'
      '    return x\n'
      '  return g()\n')
  assert long_functions(str(path), limit=3) == [('f', 1, 4)]
  assert long_functions(str(path), limit=4) == []
