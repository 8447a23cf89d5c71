"""Latent abstractions in generative diffusion models: a reproduction.

Time convention used throughout the package: ``tau`` is *generative* time in [0, 1], with
tau = 0 pure noise (the VE prior) and tau = 1 data. The SDE module maps tau to the forward
diffusion time t = 1 - tau. No module in this package imports Snakemake.
"""

__version__ = "0.1.0"

#: The two score models: "uncond" (s(y, t)) and "cond" (s(y, t | factors), each label droppable). The workflow's
#: {model} wildcard takes exactly these values; a model's training seed index is its position here.
SCORE_MODELS = ("uncond", "cond")
