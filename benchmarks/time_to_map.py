"""Time to a good model: wall seconds to a target mAP50-95 for fixed batches and the auto-plus policies, on CPU.

One call trains ``yolo11n.yaml`` from scratch on the synthetic set, one run after another through the stock
``yolo train`` (each in its own process, same recipe and seed, every run validating at batch 32), and prints
one table:

    python benchmarks/time_to_map.py [work=runs/time_to_map] [runs=NAME,...] [epochs=40] [n_train=256]
                                     [n_val=64] [imgsz=96] [target=0.9] [out=time_to_map.json]

The runs (``runs=`` picks some): fixed batches 8, 16, 32, 64 and 128; ``ladder`` (``batch=auto-plus``) and
``speed`` (``batch=auto-plus:speed``), ``goodput`` (``batch=auto-plus:goodput``, which may change the batch
at epoch boundaries: its batch column shows each batch it trained at); and, where BatchNorm's momentum
matters (the large batches, whose running statistics update fewest times per epoch), 64, 128, ``speed`` and
``goodput`` again with ``bn_momentum: auto``. The runs get their own Ultralytics settings folder in ``work=``
with every logger integration off, so the user's MLflow, DVC, Comet... neither slow the runs nor get them.

The default recipe is the README sweep's (256 training images at 96 px, AdamW lr0=0.004, no warm-up, no
mosaic, 40 epochs), so batch 64 gets 4 iterations per epoch and 128 gets 2. About 15 minutes on 2 CPU cores.

Per run: the wall seconds from the start of training (Ultralytics' ``time`` column of ``results.csv``, which
counts training and validation) plus the auto-plus decision's seconds, to the first epoch whose mAP50-95
reaches the target; the final mAP50-95 (the best model's, else the last epoch's); mean training images/s and
peak memory (``batch_effect.csv``); and the time as a ratio to the best fixed batch's. The target is ``target``
(0.9) times the highest mAP50-95 any fixed batch reached, so every policy is measured against what a fixed
batch can do; runs that never reach it show ``-``. Finished runs in ``work=`` are reused. Beside the JSON
(``out=``) it draws mAP50-95 against wall seconds for every run, with the target (the same name, ``.png``).
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from yolo_batch.cmdline import parse_pairs, positive, run_env, yolo_command  # noqa: E402
from yolo_batch.effect import read_csv  # noqa: E402

MAP = "metrics/mAP50-95(B)"
VAL_BATCH = 32
# name -> (batch value, plugin settings)
RUNS = {
    "fixed-8": ("8", {}),
    "fixed-16": ("16", {}),
    "fixed-32": ("32", {}),
    "fixed-64": ("64", {}),
    "fixed-128": ("128", {}),
    "ladder": ("auto-plus", {}),
    "speed": ("auto-plus:speed", {}),
    "goodput": ("auto-plus:goodput", {}),
    # a fixed batch with bn_momentum auto: auto-plus with that one candidate (a measured integer run trains as stock)
    "fixed-64-bn-auto": ("auto-plus", {"bn_momentum": "auto", "candidates": "[64]"}),
    "fixed-128-bn-auto": ("auto-plus", {"bn_momentum": "auto", "candidates": "[128]"}),
    "speed-bn-auto": ("auto-plus:speed", {"bn_momentum": "auto"}),
    "goodput-bn-auto": ("auto-plus:goodput", {"bn_momentum": "auto"}),
}
DEFAULTS = {"work": "runs/time_to_map", "runs": ",".join(RUNS), "epochs": 40, "n_train": 256, "n_val": 64, "imgsz": 96}
RECIPE = {
    "model": "yolo11n.yaml", "optimizer": "AdamW", "lr0": 0.004, "warmup_epochs": 0, "mosaic": 0.0, "amp": False,
    "plots": False, "device": "cpu", "seed": 0, "deterministic": True,
}  # fmt: skip
SPEED_TARGET = 1.05  # speed's time within this ratio of the best fixed batch's (issue 9)
INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def quiet_settings(work: Path) -> Path:
    """An Ultralytics settings folder in ``work`` with every logger integration off, for the runs' children.

    A fresh settings file turns MLflow, DVC, Comet... on where their packages are installed: they would write
    into the current folder and add their time to every epoch. Ultralytics writes the file itself (here, in
    a child process, so this script does not import it), which keeps its format and version.
    """
    folder = work / "ultralytics-settings"
    folder.mkdir(parents=True, exist_ok=True)
    code = f"from ultralytics.utils import SETTINGS; SETTINGS.update(dict.fromkeys({INTEGRATIONS!r}, False))"
    env = {**run_env(), "YOLO_CONFIG_DIR": str(folder)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return folder


def _runs(raw: str) -> list[str]:
    names = [x.strip() for x in raw.split(",") if x.strip()]
    bad = [n for n in names if n not in RUNS]
    if bad or not names:
        raise ValueError(f"unknown run(s) {', '.join(bad) or '(none)'}; valid: {', '.join(RUNS)}")
    return names


def train(name: str, data: Path, work: Path, o: dict) -> Path:
    """One run through the stock ``yolo train``, measured by the plugin; reused when finished."""
    run = work / name
    if (run / "results.csv").is_file() and any(r.get("epoch") == "final" for r in _rows(run / "batch_effect.csv")):
        return run
    shutil.rmtree(run, ignore_errors=True)
    batch, settings = RUNS[name]
    env = {**run_env(), "YOLO_BATCH_OBSERVE": "1", "YOLO_BATCH_VAL_BATCH": str(VAL_BATCH)}
    env["YOLO_CONFIG_DIR"] = str(o["settings"])
    if settings:
        cfg = work / f"{name}.yaml"
        cfg.write_text("".join(f"{k}: {v}\n" for k, v in settings.items()), encoding="utf-8")
        env["YOLO_BATCH_CONFIG"] = str(cfg)
    else:
        env.pop("YOLO_BATCH_CONFIG", None)
    args = {**RECIPE, "data": data, "epochs": o["epochs"], "imgsz": o["imgsz"], "batch": batch}
    args |= {"project": work, "name": name, "exist_ok": True}
    cmd = [*yolo_command(), "train", *(f"{k}={v}" for k, v in args.items())]
    with open(work / f"{name}.log", "w", encoding="utf-8") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        tail = "".join((work / f"{name}.log").read_text(encoding="utf-8").splitlines(keepends=True)[-20:])
        raise SystemExit(f"{tail}\ntime_to_map: run {name} failed (exit status {rc}); log: {work / name}.log")
    return run


def _rows(path: Path) -> list[dict]:
    return read_csv(path) if path.is_file() else []


def _num(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def measure(name: str, run: Path) -> dict:
    """One run's figures from its results.csv, batch_effect.csv and batch_decision.json."""
    results = _rows(run / "results.csv")
    effect = _rows(run / "batch_effect.csv")
    epochs = [r for r in effect if r.get("epoch") != "final"]
    final = [r for r in effect if r.get("epoch") == "final"]
    decision = json.loads((run / "batch_decision.json").read_text()) if (run / "batch_decision.json").is_file() else {}
    speeds = [v for r in epochs if (v := _num(r.get("images_per_s"))) is not None]
    peaks = [v for r in epochs if (v := _num(r.get("peak_mem_bytes"))) is not None]
    curve = [(int(float(r["epoch"])), _num(r["time"]), _num(r.get(MAP)) or 0.0) for r in results]
    last_map = curve[-1][2] if curve else None
    return {
        "run": name,
        "batch": int(float(epochs[-1]["batch"])) if epochs else None,
        "batches": list(dict.fromkeys(int(float(r["batch"])) for r in epochs)),  # in the order trained
        "decision_s": decision.get("decision_seconds", 0.0),
        "curve": curve,
        "best_map": max((m for *_, m in curve), default=None),
        "final_map": (_num(final[0].get(MAP)) if final else None) or last_map,
        "images_per_s": sum(speeds) / len(speeds) if speeds else None,
        "peak_gib": max(peaks) / 2**30 if peaks else None,
        "wall_s": (curve[-1][1] or 0.0) + decision.get("decision_seconds", 0.0) if curve else None,
    }


def time_to(m: dict, target: float) -> float | None:
    """Seconds (decision included) to the first epoch at or above ``target``, or None."""
    for _, seconds, value in m["curve"]:
        if value >= target and seconds is not None:
            return seconds + m["decision_s"]
    return None


def table(measured: list[dict], share: float) -> tuple[list[str], dict]:
    """The table's lines and the derived figures (target, best fixed, checks against issue 9's targets)."""
    fixed = [m for m in measured if m["run"].startswith("fixed-") and "bn" not in m["run"]]
    reference = fixed or measured
    top = max((m["best_map"] or 0.0) for m in reference)
    target = share * top
    for m in measured:
        m["time_to_target_s"] = time_to(m, target)
    reached = [m for m in fixed if m["time_to_target_s"] is not None]
    best = min(reached, key=lambda m: m["time_to_target_s"]) if reached else None
    for m in measured:
        t = m["time_to_target_s"]
        m["ratio"] = t / best["time_to_target_s"] if t is not None and best else None
    where = f"best fixed batch: {best['run']} at {best['time_to_target_s']:.0f}s" if best else "none got there"
    lines = [
        f"target mAP50-95 {target:.3f} = {share:g} x {top:.3f} (the best any fixed batch reached); {where}",
        f"{'run':<18} {'batch':>5} {'to target s':>11} {'x best':>7} {'final mAP50-95':>14} {'img/s':>7} "
        f"{'peak GiB':>8} {'wall s':>7}",
    ]

    def fmt(v, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for m in measured:
        batches = ">".join(map(str, m.get("batches") or [])) or "-"
        lines.append(
            f"{m['run']:<18} {batches:>5} {fmt(m['time_to_target_s'], '.0f'):>11} "
            f"{fmt(m['ratio'], '.2f'):>7} {fmt(m['final_map'], '.3f'):>14} {fmt(m['images_per_s'], '.1f'):>7} "
            f"{fmt(m['peak_gib'], '.2f'):>8} {fmt(m['wall_s'], '.0f'):>7}"
        )
    checks = []
    by = {m["run"]: m for m in measured}
    if "speed" in by and best:
        r = by["speed"]["ratio"]
        got = "did not reach the target" if r is None else f"{r:.2f}x"
        verdict = "met" if r is not None and r <= SPEED_TARGET else "missed"
        checks.append(f"speed within {SPEED_TARGET}x of the best fixed batch: {got}, {verdict}")
    if "goodput" in by and "speed" in by:
        g, sp = by["goodput"]["time_to_target_s"], by["speed"]["time_to_target_s"]
        ok = g is not None and (sp is None or g <= sp)
        words = {k: "not reached" if v is None else f"{v:.0f}s" for k, v in (("goodput", g), ("speed", sp))}
        verdict = "met" if ok else "missed"
        checks.append(f"goodput no slower than speed: {words['goodput']} vs {words['speed']}, {verdict}")
    if fixed:
        fastest = max(fixed, key=lambda m: m["images_per_s"] or 0.0)
        biggest = max(fixed, key=lambda m: m["batch"] or 0)
        for policy in ("speed", "goodput"):
            if policy not in by or "ladder" not in by or fastest is biggest:
                continue
            s, la = by[policy]["time_to_target_s"], by["ladder"]["time_to_target_s"]
            ahead = s is not None and (la is None or s < la)
            seconds = {k: "not reached" if v is None else f"{v:.0f}s" for k, v in ((policy, s), ("ladder", la))}
            checks.append(
                f"the biggest batch ({biggest['batch']}) is not the fastest ({fastest['batch']}): {policy} "
                f"{seconds[policy]} vs ladder {seconds['ladder']} to the target, {'met' if ahead else 'missed'}"
            )
    lines += checks
    return lines, {"target": target, "top": top, "best_fixed": best["run"] if best else None, "checks": checks}


def plot(measured: list[dict], derived: dict, title: str, path: Path) -> Path:
    """mAP50-95 against wall seconds (the decision included) for every run, with the target; written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5), layout="constrained")
    for i, m in enumerate(measured):
        xs = [t + m["decision_s"] for _, t, _ in m["curve"] if t is not None]
        ys = [v for _, t, v in m["curve"] if t is not None]
        fixed = m["run"].startswith("fixed-")
        style = {"lw": 1.2, "ls": "--" if "bn-auto" in m["run"] else "-", "alpha": 0.75 if fixed else 1.0}
        style["color"] = plt.cm.tab20(i % 20)
        if not fixed:
            style["lw"] = 2.2
        batches = ">".join(map(str, m.get("batches") or []))
        ax.plot(xs, ys, label=f"{m['run']} ({batches})", **style)
    ax.axhline(derived["target"], color="k", lw=0.8, ls=":", label=f"target {derived['target']:.3f}")
    ax.set(xlabel="wall seconds (auto-plus decision included)", ylabel="mAP50-95 (validation)", title=title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    valid = {"work": str, "runs": _runs, "epochs": positive, "n_train": positive, "n_val": positive,
             "imgsz": positive, "target": float, "out": str}  # fmt: skip
    o = {**DEFAULTS, "runs": _runs(DEFAULTS["runs"]), "target": 0.9, **parse_pairs(argv, valid, "time_to_map")}
    if not 0 < o["target"] <= 1:
        raise SystemExit("time_to_map: target= must be in (0, 1], e.g. 0.9")
    from yolo_batch.datasets import make_dataset

    work = Path(o["work"]).expanduser().resolve()
    work = work / f"{o['n_train']}img-{o['imgsz']}px-{o['epochs']}ep"  # another recipe gets another folder
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = make_dataset(work / "data", n_train=o["n_train"], n_val=o["n_val"], imgsz=o["imgsz"], seed=0)
    o["settings"] = quiet_settings(work)
    measured = []
    for i, name in enumerate(o["runs"], 1):
        s = time.perf_counter()
        run = train(name, data, work, o)
        measured.append(measure(name, run))
        print(f"time_to_map: {i}/{len(o['runs'])} {name} in {time.perf_counter() - s:.0f}s", flush=True)
    lines, derived = table(measured, o["target"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    head = (
        f"# time to mAP: yolo11n.yaml, {o['n_train']} synthetic images at {o['imgsz']} px, {o['epochs']} epochs, "
        f"validation at batch {VAL_BATCH}; {platform.machine()}, {cores} CPU cores, {time.perf_counter() - t0:.0f}s"
    )
    print("\n" + head)
    for line in lines:
        print(line)
    out = Path(o.get("out") or work / "time_to_map.json")
    out.write_text(json.dumps({"options": {k: (v if not isinstance(v, Path) else str(v)) for k, v in o.items()},
                               "results": measured, "derived": derived, "table": [head, *lines]}, indent=1),
                   encoding="utf-8")  # fmt: skip
    picture = plot(measured, derived, head.lstrip("# ").split(";")[0], out.with_suffix(".png"))
    print(f"\nwrote {out} and {picture}")
    return 0


if __name__ == "__main__":
    from yolo_batch.spec import AutoPlusError

    try:
        sys.exit(main(sys.argv[1:]))
    except AutoPlusError as e:
        sys.exit(f"error: {e}")
