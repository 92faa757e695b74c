"""The weighted kNN classifier of embeddings (Wu et al. 2018) in NumPy: the
kNN monitor of the command line and of `KnnMonitor` on every backend."""
import numpy as np


def knn_accuracy(bank, bank_labels, queries, query_labels, num_classes,
                 k=200, temperature=0.1, chunk=1024):
  """Weighted kNN (Wu et al. 2018): each query votes with its k most
  cosine-similar bank embeddings, weight exp(similarity / temperature)."""
  bank = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
  queries = queries / np.maximum(
      np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
  k = min(k, len(bank))
  correct = 0
  for start in range(0, len(queries), chunk):
    similarity = queries[start:start + chunk] @ bank.T
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    weights = np.exp(np.take_along_axis(similarity, nearest, 1) / temperature)
    votes = np.zeros((len(nearest), num_classes))
    np.add.at(votes, (np.arange(len(nearest))[:, None],
                      bank_labels[nearest]), weights)
    correct += np.sum(votes.argmax(1) == query_labels[start:start + chunk])
  return float(correct / len(queries))
