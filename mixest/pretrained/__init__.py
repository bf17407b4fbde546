"""Small pretrained weights, trained by this project's own scripts (see benchmarks/train_priors.py)."""
