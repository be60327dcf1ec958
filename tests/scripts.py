"""Running the project's scripts and command line as a user does, for the tests (not a test module)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.tasks import load_task, task_folder

REPO_ROOT = Path(__file__).resolve().parent.parent


def task_scripts(task: str) -> list[Path]:
    """The task's scripts, relative to the repository when the task is in it (a task of $TRECX_EXTRA_TASKS
    keeps them in its own folder)."""
    folder = task_folder(load_task(task))
    scripts = sorted(folder.glob("*.sh"))
    return [path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path for path in scripts]


def run(
    command: str | os.PathLike,
    *args: object,
    cwd: Path,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """`bash REPO_ROOT/COMMAND ARGS` from `cwd`, with the tests' Python and `env` added to the environment;
    with `log_dir`, stdout and stderr go to files there (as a user's `> log 2>&1` would), read back into the
    returned process."""
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable), **(env or {})}
    argv = ["bash", str(REPO_ROOT / command), *map(str, args)]
    if log_dir is None:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "stdout.log", "w") as out, open(log_dir / "stderr.log", "w") as err:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=err, timeout=timeout)
    proc.stdout, proc.stderr = (log_dir / "stdout.log").read_text(), (log_dir / "stderr.log").read_text()
    return proc


def cli(
    *args: object, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python3 -m common.cli ARGS` from `cwd`, with `env` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "common.cli", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_in_process(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """`common.cli`'s main(ARGS) run in this process from `cwd` (no TensorFlow start-up of its own), as a
    CompletedProcess with its exit status and output, for the variants of a check that one real `cli` run
    makes through `python3 -m common.cli`. An exception escaping main fails the test, as a traceback would."""
    from common import cli as cli_module

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)  # contextlib.chdir is Python 3.11's
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli_module.main([str(arg) for arg in args])
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["common.cli", *map(str, args)], status, out.getvalue(), err.getvalue())


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    """Exit 0 and no traceback."""
    assert proc.returncode == 0, f"{proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr


def assert_clean_failure(proc: subprocess.CompletedProcess, *named: object) -> None:
    """Exit 2, no traceback, and every part of `named` in the message on stderr."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for part in named:
        assert str(part) in proc.stderr, f"{part!r} not in {proc.stderr!r}"


def snapshot(folder: str | os.PathLike) -> dict[Path, bytes]:
    """{relative path: bytes} of every file under `folder`."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def kill_at(point: str) -> dict[str, str]:
    """The environment that makes a command kill itself (SIGKILL) at `point` of its writing: "file:N" (the
    Nth file written, before it takes its name), "before-swap:N", "mid-swap:N" or "after-swap:N" (the Nth
    output folder replaced; common/files.py)."""
    return {"TRECX_TEST_KILL_AT": point}


def assert_killed(proc: subprocess.CompletedProcess) -> None:
    """The command was killed (SIGKILL: -9 run directly, 137 through bash), with no traceback."""
    assert proc.returncode in (-9, 137), f"{proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr


def left_beside(folder: str | os.PathLike) -> list[str]:
    """The names of what runs left beside `folder` (temporary files, staging folders, earlier outputs)."""
    return sorted(p.name for p in Path(folder).parent.glob(f".{Path(folder).name}.*"))


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `mount_point` (root can mount one on the machines this project runs
    on; the test is skipped where it cannot), unmounted on exit."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def remount_read_only(mount_point: Path) -> None:
    """Make a mounted `tmpfs` read-only (after the test wrote what it needs there)."""
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)


def damage(summary: dict, path: tuple[str, ...], value: object = KeyError) -> dict:
    """`summary` with the key at `path` removed (value KeyError) or set to `value`."""
    node = summary
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return summary
