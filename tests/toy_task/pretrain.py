"""Write the toy task's pretrained models: seeded training of its three models on its synthetic archives.

    TRECX_EXTRA_TASKS=toy_task PYTHONPATH=tests python3 -m toy_task.pretrain [OUT]

writes OUT/MODEL.npz for base, trecx_ev and trecx_noev (OUT: tests/toy_task/pretrained, the toy's
PRETRAINED_DIR, where they are committed). The configs (tests/toy_task/configs) and the archives are seeded,
so the command writes the committed files again on this project's machines, up to float rounding where the
CPU differs (tests/test_tasks.py checks it).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import tempfile
from collections.abc import Sequence

from common.tasks import load_task
from common.training import train_task
from toy_task.task import NAME, PRETRAINED_DIR


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=pathlib.Path, default=PRETRAINED_DIR, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    task = load_task(NAME)
    with tempfile.TemporaryDirectory() as tmp:
        data = task.download(pathlib.Path(tmp) / "data", task.write_synthetic_archives(pathlib.Path(tmp) / "mirror"))
        models = pathlib.Path(tmp) / "models"
        train_task(task, data_folder=data, models_dir=models)
        args.out.mkdir(parents=True, exist_ok=True)
        for model in task.MODELS:
            shutil.copyfile(models / NAME / model / "weights.npz", args.out / f"{model}.npz")
            print(f"{NAME}/{model} -> {args.out / f'{model}.npz'}")


if __name__ == "__main__":
    main()
