"""Regenerate the README's figures from a real sweep on this machine.

Trains ``yolo11n.yaml`` from scratch on the synthetic set at batches 8, 16, 32 and ``auto-plus`` through
``yolo-batch sweep`` (the stock ``yolo train``, one run per batch, same recipe and seed). Then it writes:

- ``docs/figures/comparison.png``: the sweep's ``comparison.png`` (loss and mAP50-95 per epoch, training images/s
  and peak memory per batch);
- ``docs/figures/comparison.txt``: the table ``yolo-batch compare`` prints for the same runs;
- ``docs/figures/decision.txt``: the decision table of the ``auto-plus`` run (``batch_decision.json``).

The recipe is the notebook's (``notebooks/batch_size_effect.ipynb``: 96-pixel images, AdamW lr0=0.004, no
warm-up, no mosaic) on twice the images and for 40 epochs instead of 16. With 128 images and 16 epochs, the
large-batch runs make so few iterations that BatchNorm's running averages have not settled when they are
validated (the notebook shows this), and their mAP then says little about the batch; here the batch-64 run
still trails until about epoch 30 and then catches up. About 7 minutes on 2 CPU cores (measured 403 s).
Running it again reuses the finished runs in ``work=``.

    python benchmarks/figures.py [work=runs/figures] [out=docs/figures]
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from yolo_batch.tools.cmdline import parse_pairs
from yolo_batch.tools.datasets import make_dataset
from yolo_batch.tools.report import compare, format_table

ROOT = Path(__file__).resolve().parents[1]
DATA = {"n_train": 256, "n_val": 64, "imgsz": 96, "classes": 3, "objects": (1, 3), "seed": 0}
BATCHES = ("8", "16", "32", "auto-plus")
TRAIN = {
    "model": "yolo11n.yaml", "epochs": 40, "imgsz": 96, "optimizer": "AdamW", "lr0": 0.004, "warmup_epochs": 0,
    "mosaic": 0.0, "amp": False, "plots": False, "workers": 0, "device": "cpu", "seed": 0,
}  # fmt: skip


def decision_lines(decision: dict) -> list[str]:
    from yolo_batch.core.decision_record import decision_table

    return decision_table(decision)


def sweep(data: Path, project: Path, log: Path) -> None:
    """``yolo-batch sweep`` with its training logs in ``log``; its own progress lines on the terminal."""
    exe = Path(sys.executable).with_name("yolo-batch")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "yolo_batch.tools.cli"]
    args = [f"data={data}", f"batches={','.join(BATCHES)}", f"project={project}"]
    args += [f"{k}={v}" for k, v in TRAIN.items()]
    print("$ yolo-batch sweep " + " ".join(args), flush=True)
    env = {**os.environ, "YOLO_OFFLINE": os.environ.get("YOLO_OFFLINE", "1")}
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.Popen([*cmd, "sweep", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)  # fmt: skip
        for line in proc.stdout:
            f.write(line)
            if line.startswith("sweep:"):
                print(line, end="", flush=True)
        rc = proc.wait()
    if rc:
        tail = "".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-30:])
        sys.exit(f"{tail}\nfigures: the sweep failed (exit status {rc}); full log: {log}")


def main(argv: list[str]) -> int:
    opts = parse_pairs(argv, {"work": str, "out": str}, "figures")
    work = Path(opts.get("work", ROOT / "runs" / "figures")).expanduser().resolve()
    out = Path(opts.get("out", ROOT / "docs" / "figures")).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = make_dataset(work / "data", **DATA)
    project = work / f"sweep-{DATA['n_train']}img-{TRAIN['epochs']}ep"  # a changed recipe gets a new folder
    sweep(data, project, work / "sweep.log")

    rows = compare([project / b.replace(":", "_") for b in BATCHES], project)
    table = format_table(rows)
    decision = json.loads((project / "auto-plus" / "batch_decision.json").read_text(encoding="utf-8"))
    decision_text = decision_lines(decision)

    shutil.copyfile(project / "comparison.png", out / "comparison.png")
    recipe = " ".join(f"{k}={v}" for k, v in TRAIN.items() if k not in {"plots", "workers"})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    where = f"{platform.processor() or platform.machine()}, {cores} CPU cores, {DATA['n_train']} training images"
    header = f"# yolo-batch sweep batches={','.join(BATCHES)} {recipe} ({where})\n"
    (out / "comparison.txt").write_text(header + "\n".join(table) + "\n", encoding="utf-8")
    (out / "decision.txt").write_text("\n".join(decision_text) + "\n", encoding="utf-8")

    print()
    for line in table:
        print(line)
    print("\nauto-plus decision:")
    for line in decision_text:
        print("  " + line)
    print(f"\nwrote {out / 'comparison.png'}, {out / 'comparison.txt'}, {out / 'decision.txt'} "
          f"in {time.perf_counter() - t0:.0f}s")  # fmt: skip
    return 0


if __name__ == "__main__":
    from yolo_batch.core.spec import AutoPlusError

    try:
        sys.exit(main(sys.argv[1:]))
    except AutoPlusError as e:
        sys.exit(f"error: {e}")
