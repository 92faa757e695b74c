"""The loss floor: closed form against the loss itself and a minimiser."""
import numpy as np
import pytest

from supcon_tf import analysis, losses


def _simplex_features(labels, num_views, dimension):
  """Every view of class c at vertex c of a regular simplex (unit vectors
  with pairwise dot -1 / (K - 1)), in `dimension` >= K coordinates."""
  classes = np.unique(labels)
  k = len(classes)
  vertices = np.eye(k) - 1. / k
  vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
  padded = np.zeros((k, dimension))
  padded[:, :k] = vertices
  rotation = np.linalg.qr(np.random.default_rng(k).normal(
      size=(dimension, dimension)))[0]
  points = padded @ rotation
  index = np.searchsorted(classes, labels)
  return np.repeat(points[index][:, None], num_views, axis=1).astype(
      np.float32)


@pytest.mark.parametrize('counts', [(2, 2), (1, 4, 2), (3, 3, 3, 3),
                                    (2, 1, 1, 3, 2, 1)])
@pytest.mark.parametrize('temperature', [0.1, 0.5])
def test_the_loss_at_the_simplex_is_the_closed_form(counts, temperature):
  labels = np.repeat(np.arange(len(counts)), counts)
  features = _simplex_features(labels, 2, 8)
  for scale in (False, True):
    loss = np.mean(losses.contrastive_loss(
        features, labels, temperature=temperature,
        scale_by_temperature=scale))
    assert loss == pytest.approx(analysis.simplex_loss(
        counts, 2, temperature, scale_by_temperature=scale), rel=1e-5)


@pytest.mark.parametrize('counts, temperature', [
    ((2, 2), 0.1), ((3, 3), 1.0), ((2, 2, 2), 0.5), ((2, 2, 2, 2), 0.3),
    ((1, 1, 1, 1, 1), 0.5), ((2,) * 6, 0.2)])
def test_the_closed_form_is_the_numerical_minimum(counts, temperature):
  labels = np.repeat(np.arange(len(counts)), counts)
  floor = analysis.loss_floor(labels, 2, temperature,
                              scale_by_temperature=False)
  assert floor == analysis.simplex_loss(counts, 2, temperature,
                                        scale_by_temperature=False)
  found, features = analysis.minimise_loss(
      labels, 2, temperature, dimension=len(counts) + 1, steps=800,
      restarts=2, scale_by_temperature=False)
  # Never below the floor, and reaching it: the minimiser collapses classes.
  assert found >= floor - 1e-5
  assert found == pytest.approx(floor, abs=1e-3)
  assert np.linalg.norm(features, axis=-1) == pytest.approx(1., abs=1e-5)


def test_unequal_classes_go_below_the_simplex_and_small_dimensions_above():
  labels = np.repeat(np.arange(3), (1, 2, 5))
  simplex = analysis.simplex_loss((1, 2, 5), 2, 0.5,
                                  scale_by_temperature=False)
  floor = analysis.loss_floor(labels, 2, 0.5, scale_by_temperature=False)
  assert simplex - 0.02 < floor < simplex - 1e-3
  # Four classes in one dimension cannot be a simplex: a higher floor.
  labels = np.repeat(np.arange(4), 2)
  flat = analysis.loss_floor(labels, 2, 0.5, dimension=1,
                             scale_by_temperature=False)
  assert flat > analysis.simplex_loss((2,) * 4, 2, 0.5,
                                      scale_by_temperature=False) + 0.05


def test_other_options_are_minimised_and_bad_input_is_named():
  labels = np.repeat(np.arange(2), 2)
  inside = analysis.loss_floor(labels, 2, 0.5, summation_location='inside',
                               scale_by_temperature=False)
  outside = analysis.loss_floor(labels, 2, 0.5, scale_by_temperature=False)
  # Jensen: the log of the mean is above the mean of the logs, so the
  # inside loss is at most the outside one, everywhere and at the minimum.
  assert inside <= outside + 1e-4
  with pytest.raises(ValueError, match='Unknown loss options: colour'):
    analysis.loss_floor(labels, 2, 0.5, colour='red')
  with pytest.raises(ValueError, match='labels must be integer'):
    analysis.loss_floor(np.zeros((4, 2)), 2, 0.5)
  with pytest.raises(ValueError, match='temperature must be positive'):
    analysis.simplex_loss((2, 2), 2, 0.)
