"""Architectures and shared maths (losses, distances) used by defenses and attacks."""
