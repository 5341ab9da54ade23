"""mia_bench: membership-inference benchmark for generative models."""

__version__ = "0.1.0"
