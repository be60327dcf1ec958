"""Writing files atomically: a reader (or a run that was interrupted) sees the old file or the new one,
never half of one; and a run's outputs replace an earlier run's as a whole (`staged_folder`): a run
killed at any point leaves the earlier outputs complete. Every file the pipeline writes goes through here.

What a killed run leaves beside its output, a temporary file `.NAME.PID.XXXXXXXX.tmp`, a staging folder
`.NAME.PID.XXXXXXXX.partial` or the earlier outputs moved aside, `.NAME.PID.XXXXXXXX.old`, carries the
id of the process that wrote it; the next run writing NAME, or a reader that calls `recover`, removes
those of processes that no longer run, and moves earlier outputs left aside back into place.
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import UserError

if TYPE_CHECKING:  # numpy is imported where arrays are saved: the MCU build imports this module without it
    import numpy as np

# Tests only: "POINT:N" kills this process (SIGKILL) the Nth time it reaches POINT while writing: "file"
# (a file's content written, before it replaces its name), "before-swap", "mid-swap" or "after-swap" (a
# staged folder's outputs complete; the earlier outputs moved aside; the new ones in place, the earlier
# ones not yet deleted). docs/testing.md.
KILL_VARIABLE = "TRECX_TEST_KILL_AT"
_reached: collections.Counter = collections.Counter()


def _kill_point(point: str) -> None:
    wanted = os.environ.get(KILL_VARIABLE)
    if wanted:
        _reached[point] += 1
        if wanted == f"{point}:{_reached[point]}":
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def _beside(path: Path, kind: str) -> Path:
    """A new name beside `path` for a file or folder of `kind` (tmp, partial, old) of this process."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.{kind}"


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or a platform that cannot tell: assume it runs
        return True
    return True


def _left_by_killed_runs(path: Path, kinds: Iterable[str]) -> list[Path]:
    """What processes that no longer run left beside `path` (`_beside` names of `kinds`), newest first."""
    prefix, found = f".{path.name}.", []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        parts = entry.name[len(prefix) :].split(".") if entry.name.startswith(prefix) else []
        if len(parts) == 3 and parts[0].isdigit() and parts[2] in kinds and not _running(int(parts[0])):
            with contextlib.suppress(FileNotFoundError):
                found.append((entry.stat(follow_symlinks=False).st_ctime_ns, Path(entry.path)))
    return [path for _, path in sorted(found, reverse=True)]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success move it onto `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in _left_by_killed_runs(path, ("tmp",)):
        _remove(leftover)
    tmp = _beside(path, "tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))  # readable like any other result
    try:
        yield tmp
        _kill_point("file")
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


def check_output_folder(
    folder: str | os.PathLike, option: str = "output folder", min_free_mb: float = 0, whole: bool = False
) -> Path:
    """`folder` as a Path once it is known that it (or the nearest existing folder above it) is a folder
    that can be written, with `min_free_mb` free, so that a run fails before its work, not after;
    UserError naming `option` (e.g. "--results-dir") otherwise. `whole`: the run replaces the folder as a
    whole (`staged_folder`), so the folder above it must be writable too, and the folder can be neither a
    mount point nor one holding the current folder. Creates nothing."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    fix = f"choose another {option}"
    if not existing.is_dir():
        raise UserError(f"{option} {folder}: {existing} is a file, not a folder; {fix}")
    if whole and existing == folder:
        _check_replaceable(folder, option)
    for probed in (existing, existing.parent) if whole and existing == folder else (existing,):
        try:
            with tempfile.TemporaryFile(dir=probed) as probe:
                probe.write(b"0")
            free_mb = shutil.disk_usage(probed).free / 1e6
        except OSError as err:
            raise UserError(f"{option} {folder}: cannot write in {probed} ({err.strerror}); {fix}") from None
    if free_mb < min_free_mb:
        raise UserError(
            f"{option} {folder}: only {free_mb:.0f} MB free on its disk ({min_free_mb:.0f} MB "
            f"needed); free some space or {fix}"
        )
    return folder


def _check_replaceable(folder: Path, option: str) -> None:
    """UserError when an existing `folder` cannot be replaced by renames: a mount point, or the folder
    this process (and the shell that started it) runs in, or one above it."""
    real, here = Path(os.path.realpath(folder)), Path.cwd().resolve()
    fix = f"give {option} a folder of its own, e.g. {folder / 'results'}"
    if os.path.ismount(real):
        raise UserError(f"{option} {folder} is a mount point, which a run cannot replace as a whole; {fix}")
    if here == real or real in here.parents:
        raise UserError(
            f"{option} {folder} holds the current folder {here}: a run replaces its output folder as a whole; {fix}"
        )


def recover(folder: str | os.PathLike) -> None:
    """Tidy what runs killed while replacing `folder` (`staged_folder`) left beside it: put the earlier
    outputs back when a run was killed between moving them aside and moving its own into place; delete
    staging folders and earlier outputs already replaced. Every writer calls it first; readers of
    replaced folders call it before reading."""
    folder = Path(os.path.realpath(folder))
    for leftover in _left_by_killed_runs(folder, ("old", "partial")):
        if leftover.name.endswith(".old") and not os.path.lexists(folder):
            os.rename(leftover, folder)  # the newest one moved aside: the outputs before the killed run
        else:
            _remove(leftover)


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike, stale: Iterable[str] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder beside `folder` to write a run's outputs into. When the block
    succeeds, `folder` is replaced as a whole by one holding the new outputs and what `folder` held besides
    its earlier outputs (the files matching the `stale` glob patterns that the run did not write; those are
    dropped): the other files are linked into the new folder, which then takes `folder`'s name by two
    renames (the earlier folder moved aside, the new one into place; `recover` puts the earlier one back if
    a run is killed between them). At every instant `folder` holds wholly the earlier outputs or wholly
    the new ones. When the block fails or is interrupted, the temporary folder is deleted and `folder` is
    left exactly as it was."""
    folder = check_output_folder(folder, whole=True)
    folder = Path(os.path.realpath(folder))  # a symlinked folder: its target is replaced, the link kept
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover(folder)
    staging = _beside(folder, "partial")
    staging.mkdir()
    try:
        yield staging
        _replace(folder, staging, stale)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace(folder: Path, staging: Path, stale: Iterable[str]) -> None:
    """Move `staging` onto `folder`, carrying over what `folder` holds besides the `stale` outputs."""
    if folder.is_dir():
        written = {p.relative_to(staging) for p in staging.rglob("*") if not p.is_dir() or p.is_symlink()}
        earlier = {
            p.relative_to(folder) for pattern in stale for p in folder.glob(pattern) if p.is_file() or p.is_symlink()
        }
        _carry_over(folder, staging, written | earlier)
        os.chmod(staging, stat.S_IMODE(folder.stat().st_mode))
    _kill_point("before-swap")
    if not folder.is_dir():
        os.rename(staging, folder)
        return
    aside = _beside(folder, "old")
    os.rename(folder, aside)
    _kill_point("mid-swap")
    try:
        os.rename(staging, folder)
    except BaseException:
        os.rename(aside, folder)
        raise
    _kill_point("after-swap")
    shutil.rmtree(aside, ignore_errors=True)


def _carry_over(old: Path, new: Path, skip: set[Path]) -> None:
    """Hard-link (or, where links cannot be made, copy) every file and symlink under `old` into the same
    place under `new`, but those in `skip` (relative paths) and those `new` already has; empty folders too."""
    for top, folders, names in os.walk(old):
        relative = Path(top).relative_to(old)
        links = [name for name in folders if os.path.islink(os.path.join(top, name))]
        if not folders and not names and relative != Path("."):
            _make_folder(Path(top), new / relative)
        for name in [*names, *links]:
            if relative / name in skip or os.path.lexists(new / relative / name):
                continue
            target = new / relative / name
            if not _make_folder(Path(top), target.parent):
                continue
            try:
                os.link(Path(top) / name, target, follow_symlinks=False)
            except OSError:
                shutil.copy2(Path(top) / name, target, follow_symlinks=False)


def _make_folder(source: Path, target: Path) -> bool:
    """Create `target` (and the folders above it) like `source`; False when a file holds its place."""
    if target.is_dir():
        return True
    if os.path.lexists(target):
        return False
    target.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        shutil.copymode(source, target)
    return True
