"""Keyword spotting on Speech Commands v0.02 with DS-CNN early-exit models."""
