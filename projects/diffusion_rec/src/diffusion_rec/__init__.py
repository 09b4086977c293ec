"""Diffusion models for recommendation."""
