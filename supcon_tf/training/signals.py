"""Ctrl-C, SIGTERM and the time budget as requests to stop, read by the run
between steps.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main
thread happens to be; inside TensorFlow's C++ code, a tf.data callback or a
finaliser it can be swallowed, and the run goes on as if nothing had been
pressed. With `install()` a signal only sets a flag, which the training loop
reads after every call of its step function and the run at the points where
it waits (start-up, checkpoint writes, evaluation, the kNN monitor, the
export); `check()` turns it into `Interrupted` there. A second signal stops
at once with one line: the checkpoints already written are kept (a save is
written beside its name and renamed when complete).
"""
import os
import signal
import sys
import threading
import time

# What each signal is called in messages, and the exit status a shell gives a
# process it ends (128 + the signal's number).
NAMES = {signal.SIGINT: 'Ctrl-C', signal.SIGTERM: 'SIGTERM'}
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}

_received = []
_program = ['']
# Set once the run's work is done: a signal then ends the process at once
# (its teardown can take seconds) with this line, `{signal}` its name.
_finished = ['']


class Interrupted(KeyboardInterrupt):
  """A stop asked for by Ctrl-C or SIGTERM; the message says where the run
  stopped and what it kept; `status` is the exit status (130 / 143)."""

  def __init__(self, message, signum=signal.SIGINT):
    super().__init__(message)
    self.signum = signum
    self.status = EXIT_STATUS.get(signum, 130)


class BudgetSpent(Interrupted):
  """A run stopped by its time budget (`--stop_after_minutes`) at a step
  boundary, its checkpoint written; exit status 75 (EX_TEMPFAIL: the same
  command continues it)."""

  def __init__(self, message):
    super().__init__(message)
    self.status = BUDGET_STATUS


# The exit status of a run that stopped at its time budget.
BUDGET_STATUS = 75
# When this call's time budget ends (time.monotonic()), or None.
_deadline = [None]


def start_budget(minutes):
  """The run may train `minutes` from now (0: no budget)."""
  _deadline[0] = time.monotonic() + 60. * minutes if minutes > 0 else None


def budget_spent():
  """Whether this call's time budget has ended."""
  return _deadline[0] is not None and time.monotonic() >= _deadline[0]


def install(program=None):
  """Catches SIGINT and SIGTERM for the rest of the process (main thread
  only; elsewhere nothing changes)."""
  if threading.current_thread() is not threading.main_thread():
    return
  _program[0] = program or os.path.basename(sys.argv[0])
  for signum in NAMES:
    signal.signal(signum, _handle)


def _handle(signum, frame):
  del frame
  if _finished[0]:
    os.write(2, (_finished[0].format(signal=NAMES[signum]) + '\n').encode())
    os._exit(EXIT_STATUS[signum])
  if _received:
    # os.write: a buffered write could be the one this handler interrupted.
    os.write(2, (f'{_program[0]}: {NAMES[signum]} again: stopped at once; the '
                 'checkpoints already written are kept.\n').encode())
    os._exit(EXIT_STATUS[signum])
  _received.append(signum)


def requested():
  """The signal received since `install`, or None."""
  return _received[0] if _received else None


def name(signum=None):
  """'Ctrl-C' or 'SIGTERM': the received signal's name (Ctrl-C if none)."""
  signum = signum or requested() or signal.SIGINT
  return NAMES.get(signum, 'Ctrl-C')


def check(where, then=''):
  """Raises `Interrupted` ("stopped <where> (Ctrl-C); <then>") once a signal
  came."""
  if _received:
    raise Interrupted(f'stopped {where} ({name()})' +
                      (f'; {then}' if then else ''), _received[0])


def sleep(seconds, where, then=''):
  """time.sleep that a signal ends (a plain sleep resumes after the handler
  returns, PEP 475), raising `Interrupted` as `check` does."""
  end = time.monotonic() + seconds
  while True:
    check(where, then)
    left = end - time.monotonic()
    if left <= 0:
      return
    time.sleep(min(left, 0.1))


def finished(line):
  """The run's work is done: a signal from now on, or one already received,
  prints `line` (with `{signal}` filled in) and ends the process with the
  signal's status."""
  _finished[0] = line
  if _received:
    print(line.format(signal=name()), file=sys.stderr)
    sys.exit(EXIT_STATUS[_received[0]])


def leave(code):
  """Ends the process with sys.exit's `code` (None, a status or a message)
  once everything is written: the exit functions run, the streams are
  flushed, then os._exit. No signal handler runs during the interpreter's
  teardown (seconds of TensorFlow's destructors), where a signal would be
  lost and the process exit 0."""
  import atexit
  if code is not None and not isinstance(code, int):
    print(code, file=sys.stderr)
    code = 1
  # logging's own exit function flushes and closes its handlers.
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(code or 0)  # pylint: disable=protected-access


def reset():
  """Forgets a received signal and the time budget (tests)."""
  _received.clear()
  _finished[0] = ''
  _deadline[0] = None
