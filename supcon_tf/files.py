"""A run's files written safely: whole or not at all, and one run at a time
per model_dir; many small files read by threads."""
import concurrent.futures
import contextlib
import json
import os
import shutil
import socket
import sys

from absl import logging

LOCK_FILE = 'run.lock'


def _tensorflow_errors():
  """TensorFlow's I/O errors where TensorFlow is in use (its writers raise
  them); none where it is not (the Keras core on another backend)."""
  if 'tensorflow' not in sys.modules:
    return ()
  return (sys.modules['tensorflow'].errors.OpError,)


class WriteError(OSError):
  """A file of the run could not be written (a full disk, a quota, an I/O
  error); its message names the path, and what was there before is intact."""


def write_text(path, text):
  """`write_bytes` of the UTF-8 text."""
  write_bytes(path, text.encode())


def write_bytes(path, data):
  """Writes `data` to a temporary file beside `path`, then renames it over
  `path`: a crash or a full disk never leaves half a file, and the previous
  content stays until the new one is complete. Errors name the path."""
  partial = f'{path}.partial'
  try:
    with open(partial, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(partial, path)
  except OSError as error:
    with contextlib.suppress(OSError):
      os.remove(partial)
    raise WriteError(f'Could not write {path}: {error.strerror or error}; '
                     'the previous file is unchanged.') from error


@contextlib.contextmanager
def replaced_directory(path):
  """Yields a temporary directory beside `path` to write into; on success it
  replaces `path` (the previous one is removed only then), on failure it is
  removed and `path` stays as it was."""
  partial = f'{path}.partial'
  shutil.rmtree(partial, ignore_errors=True)
  try:
    yield partial
    # Renames only: the previous directory goes once the new one is in place.
    previous = f'{path}.previous'
    shutil.rmtree(previous, ignore_errors=True)
    if os.path.exists(path):
      os.replace(path, previous)
    os.replace(partial, path)
    shutil.rmtree(previous, ignore_errors=True)
  except (OSError,) + _tensorflow_errors() as error:
    shutil.rmtree(partial, ignore_errors=True)
    reason = (getattr(error, 'strerror', None) or
              getattr(error, 'message', None) or error)
    raise WriteError(f'Could not write {path}: {reason}; the previous one '
                     'is unchanged.') from error
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise


class LockedError(RuntimeError):
  """Another live run holds the model_dir."""


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


@contextlib.contextmanager
def model_dir_lock(model_dir):
  """Holds `model_dir/run.lock` (this process's pid and host) while a run
  trains there. A lock of a live process is refused (LockedError naming it);
  one left by a dead process on this host is taken over with a warning; a
  lock from another host is refused (its process cannot be checked)."""
  path = os.path.join(model_dir, LOCK_FILE)
  me = {'pid': os.getpid(), 'host': socket.gethostname()}
  while True:
    try:
      descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      try:
        with open(path) as f:
          holder = json.load(f)
      except (OSError, ValueError):
        holder = {}
      if (holder.get('host') == me['host'] and
          isinstance(holder.get('pid'), int) and not _alive(holder['pid'])):
        logging.warning('%s: taking over the lock of process %d, which is '
                        'gone.', model_dir, holder['pid'])
        with contextlib.suppress(FileNotFoundError):
          os.remove(path)
        continue
      raise LockedError(
          f'{model_dir} is in use by process {holder.get("pid", "?")} on '
          f'{holder.get("host", "?")} ({path}); wait for it to finish, or '
          'remove the file if that run is gone.') from None
    with os.fdopen(descriptor, 'w') as f:
      json.dump(me, f)
    break
  try:
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


def in_threads(read, paths, threads, chunksize):
  """[read(path) for path in paths], by `threads` threads when there are
  many paths: file-system waits, which threads overlap."""
  if len(paths) < 64:
    return [read(path) for path in paths]
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    return list(pool.map(read, paths, chunksize=chunksize))
