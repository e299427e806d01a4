"""Does the law cache pay? One set-up trained N+1 times through the stock ``yolo train``, side by side in one run.

Each run is a fresh process, as a user's repeat is (``yolo train ... batch=auto-plus epochs=1``), with an empty law
cache at the start (``YOLO_CONFIG_DIR`` in a temporary folder): the first decision probes and saves the laws, the
repeats read them. For every run it prints the cache's status, whether the pick was proven by a verified step,
the decision seconds and their ratio to the first decision's, and the seconds of its real steps (the probe's
warm-up and steps, the pace's timing, the verified step: ``phase_seconds``) beside the rest (set-up, garbage
collection, restoring the trainer), which the first decision and a hit share; then the repeats' hit rate.
Target (issue 21): every repeat hits, and no hit costs more than the first decision.

    python benchmarks/lawcache.py [repeats=10] [n_train=32] [imgsz=64] [model=yolo11n.yaml] [device=cpu] [out=PATH]

``out`` writes the figures as JSON (the README's are in docs/figures/lawcache-imgsz<imgsz>.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from yolo_batch.tools.cmdline import parse_pairs, run_env, yolo_command
from yolo_batch.tools.datasets import make_dataset

STEPS = ("warmup", "probe_steps", "pace", "verify")  # phase_seconds that run real steps


def decision(data: Path, project: Path, name: str, env: dict, imgsz: int, model: str, device: str) -> dict:
    """One ``yolo train`` run (1 epoch) in a fresh process; its ``batch_decision.json``."""
    cmd = [
        *yolo_command(),
        "train",
        f"model={model}",
        f"data={data}",
        "batch=auto-plus",
        "epochs=1",
        f"imgsz={imgsz}",
        f"device={device}",
        "amp=False",
        "workers=0",
        "plots=False",
        f"project={project}",
        f"name={name}",
        "exist_ok=True",
        "seed=0",
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if r.returncode:
        sys.exit(f"training failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return json.loads((project / name / "batch_decision.json").read_text())


def main(argv: list[str]) -> None:
    valid = {"repeats": int, "n_train": int, "imgsz": int, "model": str, "device": str, "out": str}
    opts = parse_pairs(argv, valid, "lawcache.py")
    repeats, n_train, imgsz = opts.get("repeats", 10), opts.get("n_train", 32), opts.get("imgsz", 64)
    model, device = opts.get("model", "yolo11n.yaml"), opts.get("device", "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**run_env(), "YOLO_CONFIG_DIR": str(tmp / "settings")}  # an empty law cache
        data = make_dataset(tmp / "data", n_train=n_train, n_val=8, imgsz=imgsz, seed=0)
        threads = env["OMP_NUM_THREADS"]
        print(f"{model}, {n_train} training images at imgsz {imgsz}, {device}, OMP_NUM_THREADS={threads}")
        print("run | cache | pick | verified step | decision s | / first | steps s | rest s")
        rows = []
        for i in range(repeats + 1):
            d = decision(data, tmp / "runs", f"run{i}", env, imgsz, model, device)
            seconds = d["decision_seconds"]
            stepping = sum(d["phase_seconds"].get(k, 0.0) for k in STEPS)
            first = rows[0]["decision_s"] if rows else seconds
            row = {
                "run": i,
                "cache": d["cache"]["status"],
                "pick": d["batch"],
                "verified": d["verified_peak_bytes"] is not None,
                "decision_s": round(seconds, 3),
                "ratio": round(seconds / first, 3),
                "steps_s": round(stepping, 3),
                "rest_s": round(seconds - stepping, 3),
            }
            rows.append(row)
            print(
                f"{i} | {row['cache']} | {row['pick']} | {'yes' if row['verified'] else 'no'} | "
                f"{seconds:.2f} | {row['ratio']:.2f} | {stepping:.2f} | {seconds - stepping:.2f}",
                flush=True,
            )
    hits = sum(r["cache"] == "hit" for r in rows[1:])
    worst = max((r["ratio"] for r in rows[1:] if r["cache"] == "hit"), default=None)
    print(f"hit rate {hits}/{repeats}; slowest hit {worst:.2f} x the first decision" if worst else f"hits 0/{repeats}")
    if opts.get("out"):
        summary = {"model": model, "n_train": n_train, "imgsz": imgsz, "device": device, "repeats": repeats}
        Path(opts["out"]).write_text(json.dumps({**summary, "hits": hits, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")
    main(sys.argv[1:])
