"""A terminal progress bar: steps, loss, learning rate, examples/s, ETA."""
import sys
import time


def _duration(seconds):
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  return (f'{hours}:{rest // 60:02d}:{rest % 60:02d}' if hours
          else f'{rest // 60}:{rest % 60:02d}')


class Progress:
  """Redraws one line on a terminal; elsewhere (logs, CI) prints a line
  about every 5% of the work."""

  def __init__(self, title, total, start=0, stream=None, enabled=True):
    self.title = title
    self.total = max(total, 1)
    self.start_step = start
    self.stream = stream or sys.stderr
    self.enabled = enabled
    self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
    self.started = time.perf_counter()
    self.last_printed = start

  def update(self, step, **values):
    if not self.enabled:
      return
    elapsed = time.perf_counter() - self.started
    done = step - self.start_step
    eta = elapsed / done * (self.total - step) if done > 0 else 0.
    fraction = step / self.total
    bar = '=' * int(24 * fraction)
    bar = (bar + '>' if len(bar) < 24 else bar).ljust(24)
    fields = ' '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}'
                      for k, v in values.items())
    line = (f'{self.title} {step}/{self.total} [{bar}] {fraction:4.0%} '
            f'{fields} ETA {_duration(eta)}')
    if self.tty:
      self.stream.write('\r' + line + '\x1b[K')
    elif (step - self.last_printed >= self.total / 20 or
          step == self.total):
      self.stream.write(line + '\n')
      self.last_printed = step
    self.stream.flush()

  def close(self):
    if self.enabled and self.tty:
      self.stream.write('\n')
      self.stream.flush()
