"""Names that moved to another module keep working from their old one for
one release: the old module's `__getattr__` finds each where it lives now,
with a DeprecationWarning that names the new place."""
import importlib
import warnings


def old_names(module, table):
  """A module `__getattr__` (PEP 562) for `module` (its `__name__`) that
  resolves each old name of `table` ({old name: 'new.module:new name'})."""
  def __getattr__(name):
    if name not in table:
      raise AttributeError(f'module {module!r} has no attribute {name!r}')
    new_module, new_name = table[name].split(':')
    warn(f'{module}.{name}', f'{new_module}.{new_name}')
    return getattr(importlib.import_module(new_module), new_name)
  return __getattr__


def warn(old, new, stacklevel=2):
  """The DeprecationWarning of a name used by its old place `old`, now
  `new`."""
  warnings.warn(f'{old} is now {new}; the old name goes in the next '
                'release.', DeprecationWarning, stacklevel=stacklevel + 1)
