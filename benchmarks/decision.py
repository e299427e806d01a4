"""How good and how cheap is the auto-plus decision? Side by side in one run, on CPU and (if present) a GPU.

For each device it trains the same recipe twice through the stock ``yolo train``:
  1. ``batch=auto-plus`` (2 epochs): decision seconds, the pick, predicted peak at the pick, and the
     measured peak of the steady (second) epoch and its seconds;
  2. ``batch=-1`` (Ultralytics AutoBatch, 1 epoch): the batch it picks, on the same machine, same run.

Targets (issue 2): the whole decision costs at most half a steady epoch of a 192-image set at imgsz 320 on
CPU; the predicted peak is within 10 % of the measured one on CPU and 5 % on GPU.

    python benchmarks/decision.py [n_train=192] [imgsz=320] [model=yolo11n.yaml] [devices=cpu,0]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from yolo_batch.record.effect import read_csv
from yolo_batch.tools.cmdline import parse_pairs, run_env, yolo_command
from yolo_batch.tools.datasets import make_dataset


def train(data: Path, project: Path, name: str, device: str, batch: str, epochs: int, imgsz: int, model: str):
    cmd = [
        *yolo_command(),
        "train",
        f"model={model}",
        f"data={data}",
        f"batch={batch}",
        f"epochs={epochs}",
        f"imgsz={imgsz}",
        f"device={device}",
        "amp=False",
        "plots=False",
        f"project={project}",
        f"name={name}",
        "exist_ok=True",
        "seed=0",
    ]
    r = subprocess.run(cmd, env=run_env(), capture_output=True, text=True, check=False)
    if r.returncode:
        sys.exit(f"training failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return project / name, r.stdout + r.stderr


def bench(device: str, data: Path, tmp: Path, imgsz: int, model: str) -> dict:
    run, _ = train(data, tmp, f"auto-{device}", device, "auto-plus", 2, imgsz, model)
    d = json.loads((run / "batch_decision.json").read_text())
    rows = [r for r in read_csv(run / "batch_effect.csv") if r["epoch"] != "final"]
    steady = rows[-1]
    measured = int(steady["peak_mem_bytes"])
    stock_run, _ = train(data, tmp, f"stock-{device}", device, "-1", 1, imgsz, model)
    stock = _trained_batch(stock_run)
    return {
        "device": d["device"],
        "pick": d["batch"],
        "ultralytics_-1": stock,
        "decision_s": d["decision_seconds"],
        "probe_s": d["probe_seconds"],
        "steady_epoch_s": float(steady["epoch_seconds"]),
        "predicted_GiB": d["predicted_peak_bytes"] / 2**30,
        "verified_GiB": (d["verified_peak_bytes"] or 0) / 2**30,
        "measured_GiB": measured / 2**30,
    }


def _trained_batch(run: Path) -> int:
    """The batch a run trained at: Ultralytics stores it (after AutoBatch) in the checkpoint's train_args."""
    import torch

    return int(torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=False)["train_args"]["batch"])


def main(argv: list[str]) -> None:
    opts = parse_pairs(argv, {"n_train": int, "imgsz": int, "model": str, "devices": str}, "decision.py")
    n_train, imgsz, model = opts.get("n_train", 192), opts.get("imgsz", 320), opts.get("model", "yolo11n.yaml")
    devices = opts.get("devices", "cpu,0" if _has_cuda() else "cpu").split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_dataset(tmp / "data", n_train=n_train, n_val=48, imgsz=imgsz, seed=0)
        print(f"{n_train} training images at imgsz {imgsz}, {model}, OMP_NUM_THREADS={run_env()['OMP_NUM_THREADS']}")
        head = (
            "device",
            "pick",
            "ultralytics -1",
            "decision s",
            "probe s",
            "steady epoch s",
            "decision/epoch",
            "predicted GiB",
            "measured GiB",
            "pred. error",
        )
        print(" | ".join(head))
        for device in devices:
            r = bench(device, data, tmp, imgsz, model)
            err = (r["predicted_GiB"] - r["measured_GiB"]) / r["measured_GiB"] * 100
            print(
                " | ".join(
                    [
                        r["device"],
                        str(r["pick"]),
                        str(r["ultralytics_-1"]),
                        f"{r['decision_s']:.1f}",
                        f"{r['probe_s']:.1f}",
                        f"{r['steady_epoch_s']:.1f}",
                        f"{r['decision_s'] / r['steady_epoch_s']:.2f}",
                        f"{r['predicted_GiB']:.2f}",
                        f"{r['measured_GiB']:.2f}",
                        f"{err:+.1f}%",
                    ]
                ),
                flush=True,
            )


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")
    main(sys.argv[1:])
