"""What a reader gives: a `Source` of `Split`s, each images in memory,
encoded image files, a TFDS stream or TFRecord shards, always with integer
labels."""
import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from supcon_tf.data.arrays import UNIT_MEAN_STD, DataError


@dataclasses.dataclass
class Split:
  """One split: labels [N] int64 plus exactly one of `images` (uint8
  [N, H, W, 3] in memory), `files` (paths of encoded images), `stream` (a
  tf.data.Dataset of (image, label), for datasets too large for memory) or
  `records` (TFRecord shards, whose labels are read with the images)."""
  labels: Optional[np.ndarray]
  images: Optional[np.ndarray] = None
  files: Optional[np.ndarray] = None
  stream: Optional[tf.data.Dataset] = None
  size: int = 0
  records: Optional[object] = None  # records.Records

  def __post_init__(self):
    if self.labels is not None:
      self.labels = np.asarray(self.labels, np.int64)
      self.size = len(self.labels)
    if self.records is not None:
      self.size = len(self.records)

  def __len__(self):
    return self.size

  @property
  def image_shape(self):
    """[H, W, 3] when every image has it, else None."""
    return None if self.images is None else tuple(self.images.shape[1:])

  def subset(self, indices):
    """The examples at `indices` (sorted), as a new Split."""
    indices = np.sort(np.asarray(indices, np.int64))
    if self.records is not None:
      return Split(None, records=self.records.subset(indices))
    if self.stream is not None:
      keep = np.zeros(self.size, bool)
      keep[indices] = True
      keep = tf.constant(keep)
      stream = self.stream.enumerate().filter(
          lambda i, example: tf.gather(keep, i)).map(
              lambda i, example: example)
      return Split(None, stream=stream, size=len(indices))
    return Split(
        self.labels[indices],
        images=None if self.images is None else self.images[indices],
        files=None if self.files is None else self.files[indices])


@dataclasses.dataclass
class Source:
  """A dataset's splits and facts: `num_classes`, `class_names`,
  `mean_std` (per-channel, 0..255 units, for normalisation) and the files
  skipped as corrupt (`skipped`)."""
  name: str
  splits: dict
  num_classes: int
  class_names: Optional[list] = None
  mean_std: tuple = UNIT_MEAN_STD
  skipped: list = dataclasses.field(default_factory=list)
  missing: dict = dataclasses.field(default_factory=dict)

  def split(self, name):
    if name in self.splits:
      return self.splits[name]
    if name in self.missing:
      raise DataError(self.missing[name])
    raise DataError(f'{self.name} has no split {name!r}; it has '
                    f'{", ".join(sorted(self.splits))}.')
