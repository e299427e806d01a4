"""Time to a good model (v2): wall seconds to a target mAP50-95 for fixed batches and the auto-plus policies, on CPU.

One call trains ``yolo11n.yaml`` from scratch on two synthetic data shapes, one run after another through the
stock ``yolo train`` (each in its own process, same recipe, every run validating at batch 32), and prints one
table per shape:

    python benchmarks/time_to_map.py [work=runs/time_to_map] [runs=fixed,auto] [shapes=sparse,dense] [epochs=5]
                                     [n_train=2560] [n_val=256] [imgsz=64] [target=0.9] [out=time_to_map.json]

The data shapes (``shapes=`` picks some; the same ``n_train``/``n_val``/``imgsz`` for both):

- ``sparse``: square images with 1-4 objects each (the README sweep's set);
- ``dense``: 3:2 images (``imgsz`` wide) with 3-20 objects each, the count drawn per image, so the label count
  (and the loss's assignment cost) varies from batch to batch as in real data.

The runs (``runs=`` takes names or the groups ``fixed``, ``auto`` and ``all``): fixed batches 16, 32, 64 and 128,
each with seeds 0 and 1 (``fixed-16-s0``, ``fixed-16-s1``...), so the table shows the noise a policy must beat;
then, at seed 0, ``ladder`` (``batch=auto-plus``), ``speed`` (``batch=auto-plus:speed``), ``goodput``
(``batch=auto-plus:goodput``, which may change the batch at epoch boundaries: its batch column shows each batch
it trained at) and ``fit`` (``batch=auto-plus:fit``). Every auto-plus run gets ``max_batch: 128``, so 128 is the
largest batch compared. ``fit`` is trained only where its pick is not a fixed batch of the table: its pick is
first asked of ``yolo-batch plan`` (no training), and where it is, say, 128, its row names ``fixed-128-s0``, the
stock run it would repeat (an auto-plus run that picks N trains as stock batch=N). The runs get their own
Ultralytics settings folder in ``work=`` with every logger integration off.

The default recipe: 2560 training images at 64 px, AdamW lr0=0.004, no warm-up, no mosaic, 5 epochs, so batch
128 gets 20 iterations per epoch (16 gets 160). 34 minutes on 2 idle CPU cores for both shapes and all rows.
Finished runs in ``work=`` are reused, so ``runs=fixed`` can run first and ``runs=auto`` later (the table then
reads the fixed runs back).

Per run: the wall seconds from the start of training (Ultralytics' ``time`` column of ``results.csv``, which
counts training and validation) plus the auto-plus decision's seconds, to the first epoch whose mAP50-95
reaches the target; the final mAP50-95 (the best model's, else the last epoch's); training images/s as the
images trained (every image of the set each epoch: Ultralytics keeps the partial last batch and trains it as
the partial batch it is) over the training seconds (``batch_effect.csv``, validation excluded); and peak memory.
Fixed batches show the mean over their seeds and the range. The target is ``target`` (0.9) times the best fixed
batch's mAP50-95 as the mean over its seeds (one lucky seed does not set it); the best fixed batch is the one with
the lowest mean time to it (all its seeds reaching it). Then the targets of issue 13, each printed as met or
missed, per shape: ``speed`` <= 1.05x the best fixed batch; ``goodput`` <= 1.05x ``speed``; ``ladder`` <= 1.15x the
best fixed batch; no opt-in policy (speed, goodput, fit) > 1.05x ``ladder``. Beside the JSON (``out=``) it draws
mAP50-95 against wall seconds, one panel per shape (the same name, ``.png``)."""

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

from yolo_batch.record.effect import read_csv  # noqa: E402
from yolo_batch.tools.cmdline import parse_pairs, positive, run_env, yolo_command  # noqa: E402

MAP = "metrics/mAP50-95(B)"
VAL_BATCH = 32
FIXED, SEEDS, MAX_BATCH = (16, 32, 64, 128), (0, 1), 128
AUTO = {"max_batch": MAX_BATCH}
# name -> (batch value, plugin settings, seed)
RUNS = {f"fixed-{b}-s{s}": (str(b), {}, s) for b in FIXED for s in SEEDS}
RUNS |= {
    "ladder": ("auto-plus", AUTO, 0),
    "speed": ("auto-plus:speed", AUTO, 0),
    "goodput": ("auto-plus:goodput", AUTO, 0),
    "fit": ("auto-plus:fit", AUTO, 0),
}
GROUPS = {"fixed": [n for n in RUNS if n.startswith("fixed-")], "auto": ["ladder", "speed", "goodput", "fit"]}
GROUPS["all"] = [*GROUPS["fixed"], *GROUPS["auto"]]
# the data shapes: make_dataset arguments beside n_train, n_val, imgsz
SHAPES = {
    "sparse": {"objects": (1, 4)},
    "dense": {"objects": (3, 20), "size": (0.1, 0.2), "aspect": 1.5},
}
DEFAULTS = {"work": "runs/time_to_map", "epochs": 5, "n_train": 2560, "n_val": 256, "imgsz": 64, "target": 0.9}
RECIPE = {
    "model": "yolo11n.yaml", "optimizer": "AdamW", "lr0": 0.004, "warmup_epochs": 0, "mosaic": 0.0, "amp": False,
    "plots": False, "device": "cpu", "deterministic": True,
}  # fmt: skip
# issue 13's targets: (what, of what, at most this ratio)
TARGETS = (("speed", "best fixed", 1.05), ("goodput", "speed", 1.05), ("ladder", "best fixed", 1.15))
OPT_IN, OVER_LADDER = ("speed", "goodput", "fit"), 1.05
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


def _names(raw: str, valid: dict, groups: dict, what: str) -> list[str]:
    """Comma-separated names (or group names) in order, without repeats; a ValueError names the unknown ones."""
    names = [x.strip() for x in raw.split(",") if x.strip()]
    bad = [n for n in names if n not in valid and n not in groups]
    if bad or not names:
        listed = ", ".join([*groups, *valid])
        raise ValueError(f"unknown {what} {', '.join(bad) or '(none)'}; valid: {listed}")
    return list(dict.fromkeys(x for n in names for x in groups.get(n, [n])))


def _runs(raw: str) -> list[str]:
    return _names(raw, RUNS, GROUPS, "run(s)")


def _shapes(raw: str) -> list[str]:
    return _names(raw, SHAPES, {}, "shape(s)")


def _env(name: str, work: Path, o: dict) -> dict:
    """The child's environment: the plugin observing, validation at batch 32, the run's plugin settings."""
    env = {**run_env(), "YOLO_BATCH_OBSERVE": "1", "YOLO_BATCH_VAL_BATCH": str(VAL_BATCH)}
    env["YOLO_CONFIG_DIR"] = str(o["settings"])
    settings = RUNS[name][1]
    if settings:
        cfg = work / f"{name}.yaml"
        cfg.write_text("".join(f"{k}: {v}\n" for k, v in settings.items()), encoding="utf-8")
        env["YOLO_BATCH_CONFIG"] = str(cfg)
    else:
        env.pop("YOLO_BATCH_CONFIG", None)
    return env


def _args(name: str, data: Path, o: dict) -> dict:
    batch, _, seed = RUNS[name]
    return {**RECIPE, "data": data, "epochs": o["epochs"], "imgsz": o["imgsz"], "batch": batch, "seed": seed}


def _finished(run: Path) -> bool:
    return (run / "results.csv").is_file() and any(r.get("epoch") == "final" for r in _rows(run / "batch_effect.csv"))


def planned_pick(name: str, data: Path, work: Path, o: dict) -> int:
    """The batch ``name`` would pick, from ``yolo-batch plan`` (no training); remembered in ``work``."""
    memo = work / f"{name}.plan.json"
    if not memo.is_file():
        cmd = [
            sys.executable,
            "-m",
            "yolo_batch.tools.cli",
            "plan",
            *(f"{k}={v}" for k, v in _args(name, data, o).items()),
        ]
        r = subprocess.run([*cmd, "--json"], env=_env(name, work, o), capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise SystemExit(f"{r.stderr[-2000:]}\ntime_to_map: yolo-batch plan for {name} failed ({r.returncode})")
        memo.write_text(r.stdout, encoding="utf-8")
    return int(json.loads(memo.read_text(encoding="utf-8"))["batch"])


def train(name: str, data: Path, work: Path, o: dict) -> Path:
    """One run through the stock ``yolo train``, measured by the plugin; reused when finished."""
    run = work / name
    if _finished(run):
        return run
    shutil.rmtree(run, ignore_errors=True)
    args = {**_args(name, data, o), "project": work, "name": name, "exist_ok": True}
    cmd = [*yolo_command(), "train", *(f"{k}={v}" for k, v in args.items())]
    with open(work / f"{name}.log", "w", encoding="utf-8") as log:
        rc = subprocess.run(cmd, env=_env(name, work, o), stdout=log, stderr=subprocess.STDOUT, check=False).returncode
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


def measure(name: str, run: Path, n_train: int) -> dict:
    """One run's figures from its results.csv, batch_effect.csv and batch_decision.json."""
    results = _rows(run / "results.csv")
    effect = _rows(run / "batch_effect.csv")
    epochs = [r for r in effect if r.get("epoch") != "final"]
    final = [r for r in effect if r.get("epoch") == "final"]
    decision = json.loads((run / "batch_decision.json").read_text()) if (run / "batch_decision.json").is_file() else {}
    rates = [v for r in epochs if (v := _num(r.get("images_per_s")))]  # each epoch trains all n_train images
    peaks = [v for r in epochs if (v := _num(r.get("peak_mem_bytes"))) is not None]
    curve = [(int(float(r["epoch"])), _num(r["time"]), _num(r.get(MAP)) or 0.0) for r in results]
    last_map = curve[-1][2] if curve else None
    return {
        "run": name,
        "seed": RUNS[name][2],
        "batch": int(float(epochs[-1]["batch"])) if epochs else None,
        "batches": list(dict.fromkeys(int(float(r["batch"])) for r in epochs)),  # in the order trained
        "decision_s": decision.get("decision_seconds", 0.0),
        "curve": curve,
        "best_map": max((m for *_, m in curve), default=None),
        "final_map": (_num(final[0].get(MAP)) if final else None) or last_map,
        "images_trained": n_train * len(rates),
        "train_s": sum(n_train / v for v in rates),
        "images_per_s": len(rates) * n_train / sum(n_train / v for v in rates) if rates else None,
        "peak_gib": max(peaks) / 2**30 if peaks else None,
        "wall_s": (curve[-1][1] or 0.0) + decision.get("decision_seconds", 0.0) if curve else None,
    }


def time_to(m: dict, target: float) -> float | None:
    """Seconds (decision included) to the first epoch at or above ``target`` (> 0), or None."""
    if target <= 0:  # no fixed run learned anything: there is no time to a good model to compare
        return None
    for _, seconds, value in m["curve"]:
        if value >= target and seconds is not None:
            return seconds + m["decision_s"]
    return None


def _mean(values: list) -> float | None:
    return sum(values) / len(values) if values and None not in values else None


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _spread(values: list, spec: str) -> str:
    """``mean (min-max)`` of the values, ``-`` where one is missing."""
    if not values or None in values:
        return "-" if not values or all(v is None for v in values) else f"{sum(v is not None for v in values)} of 2"
    mean = sum(values) / len(values)
    return f"{mean:{spec}}" + (f" ({min(values):{spec}}-{max(values):{spec}})" if len(values) > 1 else "")


def fixed_rows(measured: list[dict]) -> list[dict]:
    """One row per fixed batch: its seeds' runs, the mean time to the target and its range."""
    out = []
    for b in FIXED:
        runs = [m for m in measured if m["run"].startswith(f"fixed-{b}-s")]
        if runs:
            times = [m["time_to_target_s"] for m in runs]
            out.append({"run": f"fixed-{b}", "batch": b, "seeds": [m["seed"] for m in runs], "runs": runs,
                        "time_to_target_s": _mean(times), "times": times})  # fmt: skip
    return out


def table(measured: list[dict], share: float, fit: dict | None) -> tuple[list[str], dict]:
    """One shape's table lines and its derived figures (target, best fixed, noise, issue 13's targets)."""
    fixed_runs = [m for m in measured if m["run"].startswith("fixed-")]
    seeds: dict[str, list[float]] = {}  # a fixed batch's best mAP per seed: the target stands on their mean
    for m in fixed_runs:
        seeds.setdefault(m["run"].rsplit("-s", 1)[0], []).append(m["best_map"] or 0.0)
    means = [sum(v) / len(v) for v in seeds.values()] or [(m["best_map"] or 0.0) for m in measured]
    top = max(means, default=0.0)
    target = share * top
    for m in measured:
        m["time_to_target_s"] = time_to(m, target)
    fixed = fixed_rows(measured)
    reached = [f for f in fixed if f["time_to_target_s"] is not None]
    best = min(reached, key=lambda f: f["time_to_target_s"]) if reached else None
    by = {m["run"]: m for m in measured if not m["run"].startswith("fixed-")}
    if fit and "fit" not in by:  # fit's pick is a fixed batch: its seed-0 run is the stock run fit would train
        by["fit"] = {**next(m for m in measured if m["run"] == fit["same_as"]), "run": "fit", "same_as": fit["same_as"]}
    for m in [*fixed, *by.values()]:
        t = m["time_to_target_s"]
        m["ratio"] = t / best["time_to_target_s"] if t is not None and best else None
    where = f"best fixed batch: {best['run']} at {best['time_to_target_s']:.0f}s (mean of its seeds)" if best else ""
    lines = [
        f"target mAP50-95 {target:.3f} = {share:g} x {top:.3f} (the best mean over its seeds of a fixed batch); "
        + (where or "no fixed batch got there with every seed" if top > 0 else "no fixed run learned: no times"),
        f"{'run':<9} {'seeds':>5} {'batch':>6} {'to target s (range)':>19} {'x best':>6} {'final mAP (range)':>19} "
        f"{'img/s':>6} {'peak GiB':>8} {'wall s':>6}",
    ]
    for f in fixed:
        runs = f["runs"]
        lines.append(
            f"{f['run']:<9} {','.join(map(str, f['seeds'])):>5} {f['batch']:>6} {_spread(f['times'], '.0f'):>19} "
            f"{_fmt(f['ratio'], '.2f'):>6} {_spread([m['final_map'] for m in runs], '.3f'):>19} "
            f"{_fmt(_mean([m['images_per_s'] for m in runs]), '.1f'):>6} "
            f"{_fmt(max((m['peak_gib'] or 0 for m in runs), default=None), '.2f'):>8} "
            f"{_fmt(_mean([m['wall_s'] for m in runs]), '.0f'):>6}"
        )
    for m in by.values():
        batches = ">".join(map(str, m.get("batches") or [])) or "-"
        lines.append(
            f"{m['run']:<9} {m['seed']:>5} {batches:>6} {_fmt(m['time_to_target_s'], '.0f'):>19} "
            f"{_fmt(m['ratio'], '.2f'):>6} {_fmt(m['final_map'], '.3f'):>19} {_fmt(m['images_per_s'], '.1f'):>6} "
            f"{_fmt(m['peak_gib'], '.2f'):>8} {_fmt(m['wall_s'], '.0f'):>6}"
            + (f"  (picks {m['batch']}: this is {m['same_as']}, not trained again)" if m.get("same_as") else "")
        )
    noise = [(max(f["times"]) - min(f["times"])) / f["time_to_target_s"] for f in reached if len(f["times"]) > 1]
    if noise:
        lines.append(f"noise: the seeds of a fixed batch differ by up to {max(noise):.0%} in time to the target")
    checks = _checks(by, best)
    lines += checks
    derived = {"target": target, "top": top, "best_fixed": best["run"] if best else None, "checks": checks}
    derived |= {"seed_noise": max(noise) if noise else None, "fit_same_as": (fit or {}).get("same_as")}
    derived["fixed"] = [{k: v for k, v in f.items() if k != "runs"} for f in fixed]
    derived["policies"] = {k: {"batches": v["batches"], "time_to_target_s": v["time_to_target_s"],
                               "ratio": v["ratio"]} for k, v in by.items()}  # fmt: skip
    return lines, derived


def _checks(by: dict, best: dict | None) -> list[str]:
    """Issue 13's targets, each as a ratio measured side by side, met or missed."""
    times = {k: v["time_to_target_s"] for k, v in by.items()} | (
        {"best fixed": best["time_to_target_s"]} if best else {}
    )
    names = {"best fixed": f"the best fixed batch ({best['run']})" if best else "the best fixed batch"}
    checks = []

    def check(what: str, of: str, limit: float) -> None:
        if what not in by or (of != "best fixed" and of not in by):
            return
        a, b = times.get(what), times.get(of)
        if a is None or b is None:
            got = f"{what} {'did not reach' if a is None else 'reached'} the target, {names.get(of, of)} " + (
                "did not" if b is None else "did"
            )
            ok = a is not None
        else:
            got, ok = f"{a / b:.2f}x ({a:.0f}s vs {b:.0f}s)", a / b <= limit
        checks.append(f"{what} <= {limit:g}x {names.get(of, of)}: {got}, {'met' if ok else 'missed'}")

    for what, of, limit in TARGETS:
        check(what, of, limit)
    for what in OPT_IN:
        check(what, "ladder", OVER_LADDER)
    return checks


def plot(shapes: dict, title: str, path: Path) -> Path:
    """mAP50-95 against wall seconds (the decision included), one panel per shape, with the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(shapes), figsize=(8 * len(shapes), 5.5), layout="constrained", squeeze=False)
    colors = {n: plt.cm.tab10(i % 10) for i, n in enumerate([*(f"fixed-{b}" for b in FIXED), *GROUPS["auto"]])}
    for ax, (shape, s) in zip(axes[0], shapes.items()):
        for m in s["results"]:
            xs = [t + m["decision_s"] for _, t, _ in m["curve"] if t is not None]
            ys = [v for _, t, v in m["curve"] if t is not None]
            fixed = m["run"].startswith("fixed-")
            key = m["run"].rsplit("-s", 1)[0] if fixed else m["run"]
            style = {"color": colors[key], "lw": 1.2 if fixed else 2.2, "alpha": 0.8 if fixed else 1.0}
            style["ls"] = "--" if fixed and m["seed"] else "-"
            ax.plot(xs, ys, label=f"{m['run']} ({'>'.join(map(str, m.get('batches') or []))})", **style)
        ax.axhline(s["derived"]["target"], color="k", lw=0.8, ls=":", label=f"target {s['derived']['target']:.3f}")
        ax.set(xlabel="wall seconds (auto-plus decision included)", ylabel="mAP50-95 (validation)")
        ax.set_title(f"{title}: {shape} ({s['data']})", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_shape(shape: str, root: Path, o: dict) -> dict:
    """Train (or reuse) one shape's runs; its results, table lines and derived figures."""
    from yolo_batch.tools.datasets import make_dataset

    work = root / f"{shape}-{o['n_train']}img-{o['imgsz']}px-{o['epochs']}ep"  # another recipe, another folder
    work.mkdir(parents=True, exist_ok=True)
    extra = SHAPES[shape]
    data = make_dataset(work / "data", n_train=o["n_train"], n_val=o["n_val"], imgsz=o["imgsz"], seed=0, **extra)
    o["settings"] = quiet_settings(work)
    wanted = [n for n in GROUPS["all"] if n in o["runs"] or (n.startswith("fixed-") and _finished(work / n))]
    fit = None
    if "fit" in wanted and not _finished(work / "fit"):
        pick = planned_pick("fit", data, work, o)
        if pick in FIXED:
            fit, wanted = {"pick": pick, "same_as": f"fixed-{pick}-s0"}, [n for n in wanted if n != "fit"]
            wanted = list(dict.fromkeys([*wanted, fit["same_as"]]))
            print(f"time_to_map: {shape}: fit picks {pick}, the stock run {fit['same_as']}: not trained again")
    measured = []
    for i, name in enumerate(wanted, 1):
        s = time.perf_counter()
        run = train(name, data, work, o)
        measured.append(measure(name, run, o["n_train"]))
        print(f"time_to_map: {shape} {i}/{len(wanted)} {name} in {time.perf_counter() - s:.0f}s", flush=True)
    measured.sort(key=lambda m: GROUPS["all"].index(m["run"]))
    lines, derived = table(measured, o["target"], fit)
    objects = "{}-{} objects".format(*extra["objects"])
    side = f"{o['imgsz']}x{round(o['imgsz'] / extra.get('aspect', 1.0))}"
    return {"data": f"{o['n_train']} images {side}, {objects}", "results": measured, "derived": derived,
            "lines": lines, "iterations_at_largest": -(-o["n_train"] // MAX_BATCH)}  # fmt: skip


def main(argv: list[str]) -> int:
    valid = {"work": str, "runs": _runs, "shapes": _shapes, "epochs": positive, "n_train": positive,
             "n_val": positive, "imgsz": positive, "target": float, "out": str}  # fmt: skip
    o = {**DEFAULTS, "runs": GROUPS["all"], "shapes": list(SHAPES), **parse_pairs(argv, valid, "time_to_map")}
    if not 0 < o["target"] <= 1:
        raise SystemExit("time_to_map: target= must be in (0, 1], e.g. 0.9")
    root = Path(o["work"]).expanduser().resolve()
    t0 = time.perf_counter()
    shapes = {shape: run_shape(shape, root, o) for shape in o["shapes"]}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    iters = -(-o["n_train"] // MAX_BATCH)
    head = (
        f"# time to mAP: yolo11n.yaml, {o['n_train']} synthetic images at {o['imgsz']} px, {o['epochs']} epochs "
        f"({iters} iteration{'s' * (iters != 1)} an epoch at batch {MAX_BATCH}, the largest compared; auto-plus "
        f"runs have max_batch: {MAX_BATCH}), validation at batch {VAL_BATCH}; {platform.machine()}, {cores} CPU "
        f"cores, {time.perf_counter() - t0:.0f}s"
    )
    out_lines = [head]
    for shape, s in shapes.items():
        out_lines += [f"## {shape}: {s['data']}", *s.pop("lines")]
    print("\n" + "\n".join(out_lines))
    out = Path(o.get("out") or root / "time_to_map.json")
    options = {k: v for k, v in o.items() if k != "settings"}
    out.write_text(json.dumps({"options": options, "shapes": shapes, "table": out_lines}, indent=1), encoding="utf-8")
    picture = plot(shapes, head.lstrip("# ").split(" (")[0], out.with_suffix(".png"))
    print(f"\nwrote {out} and {picture}")
    return 0


if __name__ == "__main__":
    from yolo_batch.core.spec import AutoPlusError

    try:
        sys.exit(main(sys.argv[1:]))
    except AutoPlusError as e:
        sys.exit(f"error: {e}")
