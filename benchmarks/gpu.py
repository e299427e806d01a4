"""auto-plus against Ultralytics AutoBatch on a real GPU: picks, decision seconds, the true peak, images/s.

One command, one table, one JSON file, inside a time budget (8 minutes by default on one H100 or H200):

    python benchmarks/gpu.py [device=0] [minutes=8] [out=gpu_benchmark.json] [jobs=NAME,...]

What it runs, in this order (a time guard skips what would not fit and says so, so a partial table returns):

- for each of ``models`` (yolo11n, yolo11s, yolo11m): the auto-plus ``fit`` decision at utilization 0.90 with
  a real stretch of training at its pick, and Ultralytics AutoBatch ``batch=-1`` (its 60 %) through its own
  code path (pick and seconds, no training);
- for ``focus`` (yolo11s): the auto-plus ``ladder`` decision (through ``yolo-batch plan``), AutoBatch at
  ``batch=0.90`` with a stretch at its pick, and fixed batches 16, 32 and 64, for images/s.

A stretch is ``iters`` training iterations (60) of the real trainer with the real dataloader and mosaic, then
one validation pass. Memory is ``torch.cuda.max_memory_reserved()``/``max_memory_allocated()`` over the whole
stretch, validation included; out-of-memory events are counted (the CUDA allocator's ``num_ooms`` and any
batch change). The data: ``n_train`` generated images at ``imgsz`` with the label density of busy COCO
images (most 3-30 boxes, some 30-100, one in twenty 150-200). Models are built from YAML: untrained weights
train with the same memory. AMP is on (on CUDA). Ultralytics' AMP check, which downloads a model, is
replaced by "AMP on" in the benchmark's processes; nothing else is changed.

Each measurement runs in its own process, as a user's run would. On CPU the same script runs end to end
(``device=cpu``, the suite's smoke form uses tiny sizes) and prints the same table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from yolo_batch.cmdline import parse_pairs  # noqa: E402

DEFAULTS = {
    "device": "0",
    "minutes": 8.0,
    "models": "yolo11n,yolo11s,yolo11m",
    "focus": "yolo11s",
    "fixed": "16,32,64",
    "n_train": 2048,
    "n_val": 256,
    "imgsz": 640,
    "iters": 60,
    "utilization": 0.9,
    "workers": 8,
    "out": "gpu_benchmark.json",
    "data": "",
    "jobs": "",
}
TARGETS = {"prediction": 0.05, "card_use": 0.85, "decision_s": 15.0}


# ---------------------------------------------------------------------------------------------------------
# The data: busy, COCO-like label density.


def _image(args: tuple) -> None:
    """Write one image and its labels (a worker of ``busy_dataset``)."""
    import cv2
    import numpy as np

    from yolo_batch.shapes import COLORS, background, boxes, draw

    root, split, i, imgsz, seed = args
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
    u = rng.random()
    k = (
        int(rng.integers(150, 201))
        if u < 0.05
        else int(rng.integers(30, 101))
        if u < 0.15
        else int(rng.integers(3, 31))
    )
    if i == 0 and split == "train":
        k = 200  # at least one image at the top of the range
    img = background(rng, imgsz)
    lines = []
    for box in boxes(rng, imgsz, k, (0.03, 0.2), dense=k > 30):
        c = int(rng.integers(8))
        x0, y0, x1, y1 = draw(img, c, box, COLORS[c])
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, imgsz), min(y1 + 1, imgsz)
        lines.append(f"{c} {(x0 + x1) / 2 / imgsz:.6f} {(y0 + y1) / 2 / imgsz:.6f} {(x1 - x0) / imgsz:.6f} ")
        lines[-1] += f"{(y1 - y0) / imgsz:.6f}\n"
    cv2.imwrite(str(Path(root) / "images" / split / f"{i:06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    (Path(root) / "labels" / split / f"{i:06d}.txt").write_text("".join(lines))


def busy_dataset(root: Path, n_train: int, n_val: int, imgsz: int, seed: int = 0) -> Path:
    """Generate the busy set (in parallel) and return its data.yaml."""
    from multiprocessing import Pool

    from yolo_batch.shapes import CLASS_NAMES

    for split in ("train", "val"):
        for kind in ("images", "labels"):
            (root / kind / split).mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), "train", i, imgsz, seed) for i in range(n_train)]
    jobs += [(str(root), "val", i, imgsz, seed) for i in range(n_val)]
    with Pool(min(os.cpu_count() or 1, 16)) as pool:
        pool.map(_image, jobs, chunksize=16)
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASS_NAMES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return root / "data.yaml"


# ---------------------------------------------------------------------------------------------------------
# One measurement, in its own process: ``python benchmarks/gpu.py --job JSON``.


class _Stop(Exception):
    """Ends a decision-only run right after the batch is chosen."""


def _job(spec: dict) -> dict:
    """Run one measurement; return its figures."""
    hooked = "yolo_batch" in sys.modules  # the installed startup hook ran before this script
    import torch
    import ultralytics.engine.trainer as trainer_module
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect.train import DetectionTrainer

    import yolo_batch  # noqa: F401  (the explicit import activates it when the hook did not run)

    cuda = spec["device"] != "cpu"
    trainer_module.check_amp = lambda model: True  # the check downloads a model; AMP stays on (see docstring)
    out: dict = {"job": spec["name"], "hook": "startup .pth" if hooked else "explicit import"}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, total_bytes=props.total_memory, torch=torch.__version__)

    stock_auto_batch = DetectionTrainer.auto_batch

    def timed_auto_batch(self, *a, **k):  # Ultralytics AutoBatch, its own code path, timed
        t = time.perf_counter()
        batch = stock_auto_batch(self, *a, **k)
        out.update(pick=int(batch), decision_s=round(time.perf_counter() - t, 2))
        if not spec["iters"]:
            raise _Stop
        return batch

    DetectionTrainer.auto_batch = timed_auto_batch
    train_args = {
        "data": spec["data"],
        "imgsz": spec["imgsz"],
        "device": spec["device"],
        "amp": cuda,
        "workers": spec["workers"],
        "project": spec["project"],
        "name": spec["name"],
        "exist_ok": True,
        "plots": False,
        "val": False,
        "seed": 0,
        "close_mosaic": 0,
        "epochs": 100,  # the stretch stops itself after `iters` iterations (Ultralytics stops at the epoch end)
        "verbose": False,
    }
    if spec["kind"] == "plan":  # the auto-plus decision alone, through `yolo-batch plan`'s own code
        from yolo_batch.plan import plan

        words = [f"model={spec['model']}.yaml", f"batch={spec['batch']}"]
        words += [f"{k}={v}" for k, v in train_args.items() if k not in {"project", "name", "exist_ok"}]
        record, _ = plan(words)
        return {**out, **_decision(record)}

    from yolo_batch.memory import backend_for

    model = YOLO(f"{spec['model']}.yaml")
    meter: dict = {"iters": 0}
    cpu = None if cuda else backend_for(torch.device("cpu"))  # VmHWM: the process's peak RSS

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def on_pretrain_routine_start(trainer):
        trainer.final_eval = lambda: None  # one validation pass per stretch, not a second one on best.pt

    def on_train_start(trainer):
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            cpu.reset_peak()
            out["total_bytes"] = cpu.headroom().total_bytes
        meter.update(batch=trainer.batch_size, nb=len(trainer.train_loader), t0=time.perf_counter())

    def on_train_batch_end(trainer):
        meter["iters"] += 1
        if meter["iters"] == min(5, spec["iters"] - 1):  # images/s after warm-up (workers started, kernels chosen)
            sync()
            meter["t_warm"], meter["i_warm"] = time.perf_counter(), meter["iters"]
        if meter["iters"] >= spec["iters"]:
            trainer.stop = True  # Ultralytics' own between-batches stop: the epoch ends, validation runs

    def on_train_epoch_end(trainer):
        if trainer.stop:
            sync()
            meter["t_end"] = time.perf_counter()
            if cuda:
                meter["train_reserved"] = torch.cuda.max_memory_reserved()
                meter["train_allocated"] = torch.cuda.max_memory_allocated()
            else:
                meter["train_reserved"] = cpu.peak_bytes()

    def on_fit_epoch_end(trainer):
        if cuda and trainer.stop:
            stats = torch.cuda.memory_stats()
            meter.update(
                reserved=torch.cuda.max_memory_reserved(),
                allocated=torch.cuda.max_memory_allocated(),
                num_ooms=int(stats.get("num_ooms", 0)),
                alloc_retries=int(stats.get("num_alloc_retries", 0)),
            )
        elif trainer.stop:
            meter["reserved"] = cpu.peak_bytes()
        meter["end_batch"] = trainer.batch_size

    for event, fn in list(locals().items()):
        if event.startswith("on_"):
            model.add_callback(event, fn)
    oom_error = None
    try:
        model.train(batch=spec["batch"], **train_args)
    except _Stop:
        return out
    except Exception as e:  # an out-of-memory that stopped the run is a result, not a crash of the benchmark
        from yolo_batch.memory import is_oom

        if not is_oom(e) and not is_oom(e.__cause__ or e):
            raise
        oom_error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    decision = Path(spec["project"]) / spec["name"] / "batch_decision.json"
    if decision.exists():
        out.update(_decision(json.loads(decision.read_text())))
    images = (meter["iters"] - meter.get("i_warm", 0)) * meter.get("batch", 0)
    seconds = meter.get("t_end", 0) - meter.get("t_warm", 0)
    out.update(
        pick=out.get("pick", meter.get("batch")),
        trained_batch=meter.get("batch"),
        end_batch=meter.get("end_batch"),
        iters=meter["iters"],
        images_per_s=round(images / seconds, 1) if seconds > 0 else None,
        peak_reserved=meter.get("reserved"),
        peak_allocated=meter.get("allocated"),
        train_peak_reserved=meter.get("train_reserved"),
        train_peak_allocated=meter.get("train_allocated"),
        num_ooms=meter.get("num_ooms", 0),
        alloc_retries=meter.get("alloc_retries", 0),
        oom_error=oom_error,
    )
    out["oom_events"] = (
        (out["num_ooms"] > 0) + (meter.get("end_batch") not in (None, meter.get("batch"))) + bool(oom_error)
    )
    return out


def _decision(r: dict) -> dict:
    """The decision record's figures the table needs."""
    law = r["fixed_bytes"] + r["per_image_bytes"] * r["batch"]
    return {
        "pick": r["batch"],
        "policy": r["policy"],
        "decision_s": r["decision_seconds"],
        "probe_s": r["probe_seconds"],
        "verify_s": r.get("verify_seconds"),
        "predicted_peak": r["predicted_peak_bytes"],
        "predicted_train_peak": int(law),
        "verified_peak": r["verified_peak_bytes"],
        "budget": r["budget_bytes"],
        "total_bytes": r["total_bytes"],
        "reason": r["reason"],
        "record": r,
    }


# ---------------------------------------------------------------------------------------------------------
# The plan of runs, the time guard, the table.


def _jobs(o: dict) -> list[dict]:
    """The runs in priority order: the focus model's core figures first, the fixed batches last."""
    models = [m for m in o["models"].split(",") if m]
    focus, util = o["focus"], o["utilization"]
    fit = f"auto-plus:fit:{util}"
    order = [focus, *[m for m in models if m != focus]]
    jobs = []
    for m in order:
        if m in models:
            jobs.append({"name": f"{m}-auto-plus-fit", "model": m, "kind": "train", "batch": fit, "iters": o["iters"]})
            jobs.append({"name": f"{m}-autobatch-0.60", "model": m, "kind": "train", "batch": -1, "iters": 0})
    jobs.append({"name": f"{focus}-auto-plus-ladder", "model": focus, "kind": "plan", "batch": "auto-plus:ladder"})
    jobs.append(
        {"name": f"{focus}-autobatch-{util:.2f}", "model": focus, "kind": "train", "batch": util, "iters": o["iters"]}
    )
    for b in [int(x) for x in str(o["fixed"]).split(",") if x]:
        jobs.append({"name": f"{focus}-fixed-{b}", "model": focus, "kind": "train", "batch": b, "iters": o["iters"]})
    if o["jobs"]:  # a chosen subset, in the order given
        named = {j["name"]: j for j in jobs}
        unknown = [n for n in o["jobs"].split(",") if n not in named]
        if unknown:
            raise SystemExit(f"gpu.py: error: unknown job(s) {unknown}; valid: {', '.join(named)}")
        jobs = [named[n] for n in o["jobs"].split(",")]
    return jobs


def _estimate(job: dict, done: list[dict], default: float) -> float:
    """Seconds a job is expected to take: the longest finished job of its kind, else a default."""
    same = [d["seconds"] for d in done if ("iters" in d) == bool(job.get("iters")) and "seconds" in d]
    return max(same) if same else default


def run_all(o: dict) -> list[dict]:
    deadline = time.monotonic() + o["minutes"] * 60
    work = Path(tempfile.mkdtemp(prefix="yolo-batch-gpu-"))
    t = time.perf_counter()
    data = Path(o["data"]) if o["data"] else busy_dataset(work / "data", o["n_train"], o["n_val"], o["imgsz"])
    print(f"data: {o['n_train']} + {o['n_val']} images at {o['imgsz']} in {time.perf_counter() - t:.1f}s", flush=True)
    _warm_label_cache(data, o["imgsz"])
    results: list[dict] = []
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    for job in _jobs(o):
        left = deadline - time.monotonic()
        need = _estimate(job, results, 40.0 if job.get("iters") else 20.0)
        if left < need:
            print(f"skipped {job['name']}: {left:.0f}s left, it needs ~{need:.0f}s", flush=True)
            results.append({"job": job["name"], "skipped": f"{left:.0f}s left, needs ~{need:.0f}s"})
            continue
        spec = {**job, "data": str(data), "project": str(work / "runs"), "device": o["device"]}
        spec.update(imgsz=o["imgsz"], workers=o["workers"], iters=job.get("iters", 0))
        t = time.perf_counter()
        try:
            p = subprocess.run(
                [sys.executable, __file__, "--job", json.dumps(spec)],
                env=env,
                capture_output=True,
                text=True,
                timeout=max(left - 5, 10),
                check=False,
            )
            line = next((x for x in reversed(p.stdout.splitlines()) if x.startswith("RESULT ")), None)
            r = json.loads(line[7:]) if line else {"job": job["name"], "error": (p.stderr or p.stdout)[-1500:]}
        except subprocess.TimeoutExpired:
            r = {"job": job["name"], "error": "stopped by the time guard"}
        r["seconds"] = round(time.perf_counter() - t, 1)
        if job.get("iters"):
            r["iters_asked"] = job["iters"]
        results.append(r)
        brief = {k: r.get(k) for k in ("pick", "decision_s", "predicted_peak", "verified_peak", "peak_reserved")}
        brief.update({k: r.get(k) for k in ("train_peak_reserved", "images_per_s", "oom_events", "hook")})
        print(f"{job['name']}: {r['seconds']}s {'ERROR ' + r['error'][-600:] if 'error' in r else brief}", flush=True)
        Path(o["out"]).write_text(json.dumps({"options": o, "results": results}, indent=1, default=str))
    return results


def _warm_label_cache(data: Path, imgsz: int) -> None:
    """Scan the labels once, so no run's decision time includes Ultralytics' first label scan."""
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    d = check_det_dataset(str(data))
    for split in ("train", "val"):
        YOLODataset(img_path=d[split], imgsz=imgsz, data=d, augment=False)


def _gib(v) -> str:
    return f"{v / 2**30:.2f}" if v else "-"


def table(results: list[dict]) -> list[str]:
    """The one table, then the derived figures and the targets (missed ones marked MISSED)."""
    rows = [
        f"{'run':<26} {'pick':>5} {'dec. s':>7} {'pred GiB':>9} {'verif GiB':>9} {'peak GiB':>9} "
        f"{'alloc GiB':>9} {'pred err':>8} {'card':>6} {'img/s':>8} {'OOM':>4}"
    ]
    notes = []
    by = {r["job"]: r for r in results}
    fixed = [r.get("images_per_s") or 0 for r in results if "-fixed-" in r["job"]]
    best_fixed = max(fixed) if fixed else 0
    for r in results:
        if "skipped" in r or "error" in r:
            rows.append(f"{r['job']:<26} {'skipped: ' + r['skipped'] if 'skipped' in r else 'ERROR (see JSON)'}")
            continue
        peak, total = r.get("peak_reserved"), r.get("total_bytes")
        err = r["predicted_peak"] / peak - 1 if peak and r.get("predicted_peak") else None
        card = peak / total if peak and total else None
        rows.append(
            f"{r['job']:<26} {r.get('pick', '-')!s:>5} {r.get('decision_s', '-')!s:>7} "
            f"{_gib(r.get('predicted_peak')):>9} "
            f"{_gib(r.get('verified_peak')):>9} {_gib(peak):>9} {_gib(r.get('peak_allocated')):>9} "
            f"{'-' if err is None else f'{err:+.1%}':>8} {'-' if card is None else f'{card:.0%}':>6} "
            f"{r.get('images_per_s') or '-'!s:>8} {r.get('oom_events', '-')!s:>4}"
        )
        if "auto-plus" in r["job"]:
            if err is not None and abs(err) > TARGETS["prediction"]:
                notes.append(f"MISSED {r['job']}: prediction {err:+.1%} of the stretch peak (target within 5%)")
            if r.get("verified_peak") and r.get("predicted_peak"):
                v = r["predicted_peak"] / r["verified_peak"] - 1
                notes.append(f"{r['job']}: prediction {v:+.1%} of the verification step's peak")
            if card is not None and card < TARGETS["card_use"] and "fit" in r["job"]:
                notes.append(f"MISSED {r['job']}: uses {card:.0%} of the card (target 85%): {r.get('reason', '')}")
            if r.get("oom_events"):
                notes.append(f"MISSED {r['job']}: {r['oom_events']} out-of-memory event(s) at an auto-plus pick")
            if r.get("images_per_s") and best_fixed:
                notes.append(
                    f"{r['job']}: {r['images_per_s'] / best_fixed:.2f}x the images/s of the best fixed 16/32/64"
                )
    fit = by.get("yolo11s-auto-plus-fit", {})
    if fit.get("decision_s") is not None and fit["decision_s"] > TARGETS["decision_s"]:
        notes.append(f"MISSED yolo11s decision {fit['decision_s']}s (target 15s)")
    return rows + [""] + (notes or ["(no derived figures: nothing measured)"])


def main(argv: list[str]) -> int:
    if argv[:1] == ["--job"]:
        spec = json.loads(argv[1])
        print("RESULT " + json.dumps(_job(spec)), flush=True)
        return 0
    valid = {k: type(v) if not isinstance(v, float) else float for k, v in DEFAULTS.items()}
    o = {**DEFAULTS, **parse_pairs(argv, valid, "gpu.py")}
    _jobs(o)  # an unknown job name is refused before any data is made
    t = time.perf_counter()
    results = run_all(o)
    lines = table(results)
    gpu = next((r.get("gpu") for r in results if r.get("gpu")), o["device"])
    print(
        f"\n{gpu}, imgsz {o['imgsz']}, {o['n_train']} busy images, {o['iters']} iterations a stretch, "
        f"{time.perf_counter() - t:.0f}s in all, {time.strftime('%Y-%m-%d')}"
    )
    print("\n".join(lines))
    Path(o["out"]).write_text(json.dumps({"options": o, "results": results, "table": lines}, indent=1, default=str))
    print(f"\nwrote {o['out']}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")
    sys.exit(main(sys.argv[1:]))
