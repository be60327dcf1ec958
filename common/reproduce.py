"""reproduce.sh: every task's test set downloaded (or found) and prepared, its pretrained models
evaluated (common.evaluation.run_test), then the paper's Table 1 over them (common.table1)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Sequence

from common import files, target_cost, tasks
from common.evaluation import ModelSelection, run_test, stale_outputs
from common.table1 import table1_text


def reproduce(
    names: Sequence[str],
    data_root: str | os.PathLike,
    results_root: str | os.PathLike,
    mirror: str | None = None,
    verify_checksums: bool = True,
    log: Callable[[str], None] = print,
    target: str | None = target_cost.DEFAULT_TARGET,
) -> str:
    """reproduce.sh: for each task (all when `names` is empty) download what its test split needs into
    DATA_ROOT/TASK unless its test set is in place (from `mirror`, a URL or folder holding the official
    archives, when given), build the test set where the task builds one (`prepare_test`), evaluate the
    pretrained models into RESULTS_ROOT/TASK (costs also in `target`'s predicted instructions unless it
    is None); then Table 1 over them. The results of every task run and Table 1 replace the earlier ones as
    a whole (common.files.staged_folder over RESULTS_ROOT; the other tasks' results and other files there
    are kept). Returns the Table 1 text."""
    task_modules = [tasks.load_task(name) for name in names or tasks.task_names()]
    results_root = files.check_output_folder(results_root, "--results-root", whole=True)
    stale = ["table1.md", *(f"{task.NAME}/{pattern}" for task in task_modules for pattern in stale_outputs(task))]
    with files.staged_folder(results_root, stale) as staging:
        for task in task_modules:
            log(f"== {task.NAME}")
            data_dir = pathlib.Path(data_root) / task.NAME
            folder = task.download(data_dir, mirror, split="test", verify_checksums=verify_checksums)
            log(f"data ready in {folder}")
            if task.prepare_test is not None:
                task.prepare_test(data_dir)
            run_test(
                task,
                ModelSelection("pretrained"),
                tasks.folder_test_sh_reads(task, data_dir),
                staging / task.NAME,
                log=log,
                target=target,
                show_table=False,
            )
        text = table1_text(results_root, {task.NAME: staging / task.NAME for task in task_modules})
        files.write_text(staging / "table1.md", text)
    return text
