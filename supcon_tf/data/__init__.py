"""Input: datasets, augmentation ops and policies, multi-view batches."""
