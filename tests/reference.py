"""Float64 NumPy reference of the contrastive loss, written from the equations.

Masks are built element by element over the tiled [anchor rows, contrast rows]
grid, the way the official code tiles them: nothing is shared with supcon_tf.
"""
import numpy as np


def reference_loss(features, labels=None, temperature=1.0,
                   contrast_mode='all_views', summation_location='outside',
                   denominator_mode='all', positives_cap=-1,
                   scale_by_temperature=True, base_temperature=None):
  f = np.asarray(features, np.float64)
  batch, views = f.shape[:2]
  f = f.reshape(batch, views, -1)
  if labels is None:
    same = np.eye(batch, dtype=bool)
  else:
    labels = np.asarray(labels)
    if labels.ndim == 1:
      same = labels[:, None] == labels[None, :]
    else:
      same = labels.astype(np.float64) @ labels.astype(np.float64).T > 0
  positive_samples = same.copy()
  if positives_cap >= 0:
    keep = positives_cap // views
    positive_samples = np.zeros_like(same)
    for b in range(batch):
      others = [c for c in range(batch) if same[b, c] and c != b][:keep]
      positive_samples[b, others] = True
      positive_samples[b, b] = same[b, b]

  contrast = f.transpose(1, 0, 2).reshape(views * batch, -1)
  one_view = contrast_mode == 'one_view'
  anchor_views = 1 if one_view else views
  anchors = contrast[:batch] if one_view else contrast
  rows, cols = anchor_views * batch, views * batch
  logits = anchors @ contrast.T / temperature
  logits = logits - logits.max(axis=1, keepdims=True)
  exp_logits = np.exp(logits)

  loss = np.zeros(rows)
  num_positives = np.zeros(rows)
  for i in range(rows):
    anchor_view, b = divmod(i, batch)
    pos, neg = [], []
    for k in range(cols):
      view, c = divmod(k, batch)
      if view == anchor_view and c == b:
        continue  # The anchor itself.
      if positive_samples[b, c]:
        pos.append(k)
      elif not same[b, c]:
        neg.append(k)
    num_positives[i] = len(pos)
    if not pos:
      continue
    neg_sum = exp_logits[i, neg].sum()
    terms = []
    for p in pos:
      if denominator_mode == 'all':
        d = neg_sum + exp_logits[i, pos].sum()
      elif denominator_mode == 'one_positive':
        d = neg_sum + exp_logits[i, p]
      else:
        d = neg_sum
      terms.append((logits[i, p], d))
    if summation_location == 'outside':
      loss[i] = -np.mean([l - np.log(d) for l, d in terms])
    else:
      loss[i] = -np.log(np.mean([np.exp(l) / d for l, d in terms]))
  if scale_by_temperature:
    loss *= temperature / (base_temperature or 1.0)
  loss = loss.reshape(anchor_views, batch)
  if views != 1:
    return loss.mean(axis=0)
  n = num_positives.reshape(batch)
  return np.where(n > 0, loss[0] / np.maximum(n, 1), 0.)


def author_loss(features, labels, temperature=0.07, base_temperature=0.07):
  """The PyTorch author's SupConLoss (mean over anchors), in float64 NumPy."""
  f = np.asarray(features, np.float64)
  batch, views = f.shape[:2]
  contrast = f.transpose(1, 0, 2).reshape(views * batch, -1)
  labels = np.asarray(labels)
  mask = np.tile(labels[:, None] == labels[None, :], (views, views)).astype(float)
  logits = contrast @ contrast.T / temperature
  logits = logits - logits.max(axis=1, keepdims=True)
  logits_mask = 1. - np.eye(views * batch)
  mask = mask * logits_mask
  exp_logits = np.exp(logits) * logits_mask
  log_prob = logits - np.log(exp_logits.sum(1, keepdims=True))
  mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
  return np.mean(-(temperature / base_temperature) * mean_log_prob_pos)


def seed_loss(features, labels, temperature=0.07, epsilon=1e-5):
  """The seed's SupervisedContrastiveLoss (its loss/spc.py), in float64
  NumPy: views stacked view-major, no factor tau, +epsilon on every
  exponential after the shift by the row maximum, mean over anchor views."""
  f = np.asarray(features, np.float64)
  batch, views = f.shape[:2]
  projections = f.transpose(1, 0, 2).reshape(views * batch, -1)
  targets = np.tile(np.asarray(labels), views)
  logits = projections @ projections.T / temperature
  exp_logits = np.exp(logits - logits.max(axis=1, keepdims=True)) + epsilon
  not_self = 1. - np.eye(views * batch)
  positives = (targets[:, None] == targets[None, :]) * not_self
  log_prob = -np.log(exp_logits /
                     (exp_logits * not_self).sum(axis=1, keepdims=True))
  return np.mean((log_prob * positives).sum(axis=1) / positives.sum(axis=1))
