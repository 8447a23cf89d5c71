"""The score model and its training: the VE SDE (pure maths), the NCSN++ backbone and its layers, the noise
parametrisations around it (precond), losses, EMA, the trainer, the reverse-time sampler, checkpoints, and the
attribute classifier that labels images."""
