"""Shared, task-independent machinery of the T-RecX pipeline."""
