"""A Ctrl-C at a chosen moment of a run in this process."""
import contextlib

from supcon_tf.training import signals


@contextlib.contextmanager
def ctrl_c_at_check(monkeypatch, checks):
  """Within: the run's `checks`-th look for a signal between steps finds
  SIGINT, as a Ctrl-C there would (the run saves and raises
  `signals.Interrupted`). Afterwards the checks are the real ones again."""
  calls, check = [], signals.check

  def check_and_stop(where, then=''):
    calls.append(where)
    if calls.count('between steps') == checks:
      signals._received.append(signals.signal.SIGINT)
    check(where, then)
  monkeypatch.setattr(signals, 'check', check_and_stop)
  try:
    yield
  finally:
    del signals._received[:]
    monkeypatch.setattr(signals, 'check', check)
