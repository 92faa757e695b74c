"""The loss's options as enums (the official LossContrastMode,
LossSummationLocation and LossDenominatorMode), parsed from their names too."""
import enum


class NamedEnum(enum.Enum):
  """An enum whose members also parse from their (case-insensitive) names."""

  @classmethod
  def parse(cls, value, argument):
    if isinstance(value, cls):
      return value
    if isinstance(value, str):
      for member in cls:
        if value.strip().upper() == member.name:
          return member
    valid = ', '.join(m.name for m in cls)
    raise ValueError(
        f'Invalid {argument} = {value!r}. Valid values: {valid} '
        f'(members of {cls.__name__} or their names, any case).')


class ContrastMode(NamedEnum):
  """Which views are anchors (the official `LossContrastMode`)."""
  ALL_VIEWS = 'all_views'
  ONE_VIEW = 'one_view'


class SummationLocation(NamedEnum):
  """Where the sum over positives sits relative to the log (`LossSummationLocation`)."""
  OUTSIDE = 'outside'
  INSIDE = 'inside'


class DenominatorMode(NamedEnum):
  """Which positives enter the softmax denominator (`LossDenominatorMode`)."""
  ALL = 'all'
  ONE_POSITIVE = 'one_positive'
  ONLY_NEGATIVES = 'only_negatives'
