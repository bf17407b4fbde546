"""Small pretrained weights, trained by this project's own scripts.

See ``benchmarks/train_priors.py`` for the exact commands and data.
"""
