"""Writing files atomically: a reader (or a run that was interrupted) sees the old file or the new one,
never half of one; and a run's outputs replace an earlier run's as a whole (`staged_folder`). Every
file the pipeline writes goes through here."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import UserError

if TYPE_CHECKING:  # numpy is imported where arrays are saved: the MCU build imports this module without it
    import numpy as np


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success move it onto `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; results should be readable like any other file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """`np.save` to `path` atomically."""
    import numpy as np

    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """`np.savez` (uncompressed) to `path` atomically."""
    import numpy as np

    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def check_output_folder(folder: str | os.PathLike, option: str = "output folder", min_free_mb: float = 0) -> Path:
    """`folder` as a Path once it is known that it (or the nearest existing folder above it) is a folder
    that can be written, with `min_free_mb` free, so that a run fails before its work, not after;
    UserError naming `option` (e.g. "--results-dir") otherwise. Creates nothing."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    fix = f"choose another {option}"
    if not existing.is_dir():
        raise UserError(f"{option} {folder}: {existing} is a file, not a folder; {fix}")
    try:
        with tempfile.TemporaryFile(dir=existing) as probe:
            probe.write(b"0")
        free_mb = shutil.disk_usage(existing).free / 1e6
    except OSError as err:
        raise UserError(f"{option} {folder}: cannot write in {existing} ({err.strerror}); {fix}") from None
    if free_mb < min_free_mb:
        raise UserError(
            f"{option} {folder}: only {free_mb:.0f} MB free on its disk ({min_free_mb:.0f} MB "
            f"needed); free some space or {fix}"
        )
    return folder


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike, stale: Iterable[str] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder beside `folder` to write a run's outputs into. When the block
    succeeds, its files move into `folder` (replacing those of the same name), and the files matching
    the `stale` glob patterns that the run did not write are removed: they are an earlier run's outputs.
    When the block fails or is interrupted, the temporary folder is deleted and `folder` is left exactly
    as it was. Nothing else in `folder` is touched."""
    folder = check_output_folder(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        yield staging
        written = {path.relative_to(staging) for path in staging.rglob("*") if path.is_file()}
        folder.mkdir(exist_ok=True)
        for pattern in stale:
            for path in folder.glob(pattern):
                if path.is_file() and path.relative_to(folder) not in written:
                    path.unlink()
        for relative in sorted(written):
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / relative, folder / relative)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
