"""Training: the distributed loop, the stages, optimizers and schedules."""
