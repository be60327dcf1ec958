"""Silence what TensorFlow and LiteRT print from C++ straight to file descriptor 2.

Their start-up and converter notes (oneDNN, CUDA stubs on CPU-only machines, calibration, delegate
banners) are written before, or below, any Python log setting; errors still reach the user as
Python exceptions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and find its devices without its C++ start-up notes."""
    with quiet_native_logs():
        import tensorflow as tf

        tf.config.list_physical_devices()
