"""auto-plus against Ultralytics AutoBatch and fixed batches on a real GPU (v2): picks, decision seconds, images/s.

One command, one table, one JSON file, inside a time budget (8 minutes by default on one H100 or H200):

    python benchmarks/gpu.py [device=0] [minutes=8] [out=gpu_benchmark.json] [jobs=NAME,...]

The cheaper second command, for a rerun with less time left (the core rows only, 2-epoch stretches):

    python benchmarks/gpu.py minutes=5 epochs=2 jobs=loader,yolo11s-fixed-64,yolo11s-auto-plus,\
        yolo11s-auto-plus-speed,yolo11s-autobatch-0.60,yolo11s-auto-plus-speed-cached

What it runs, in this order (a time guard skips what would not fit and says so, so a partial table returns):

0. ``loader``: the training dataloader alone (real workers, mosaic, imgsz, the largest fixed batch): the card's
   data ceiling in images/s, whatever the GPU;
1. ``focus`` (yolo11s) at fixed batches 32, 64 and 128;
2. ``auto-plus`` (the default ladder); 3. ``auto-plus:speed``; 4. ``auto-plus:fit``;
5. AutoBatch ``-1`` (its 60 %) and ``0.90``, through Ultralytics' own code path, timed;
6. the cached repeat of ``auto-plus:speed``: the same set-up again, its law from the cache of job 3;
7. ``fit`` decisions on the other ``models`` (yolo11n, yolo11m), through ``yolo-batch plan``'s code: the pick,
   the prediction after the refit and the verified step, no training.

Jobs 1-6 train a stretch of ``epochs`` epochs (3) with the real trainer, dataloader and mosaic, then one
validation pass. The images trained are counted as the loader gives them (the last batch of an epoch is
partial); images/s is counted from the end of the first ``warm`` iterations to the end of the last epoch's
training. Memory: the reserved and the allocated peaks (``torch.cuda.max_memory_reserved`` and
``max_memory_allocated``) over the training and over the whole stretch, and for every probe and verified step
(``batch_decision.json``'s ``allocated_peaks``). Out-of-memory events are counted (the CUDA allocator's
``num_ooms`` and any batch change). Every auto-plus job starts with an empty law cache (its own settings
folder) except the cached repeat, which reads the one job 3 wrote. The data: ``n_train`` generated images at
``imgsz`` with the label density of busy COCO images (most 3-30 boxes, some 30-100, one in twenty 150-200).
Models are built from YAML: untrained weights train with the same memory. AMP is on (on CUDA). Ultralytics'
AMP check, which downloads a model, is replaced by "AMP on" in the benchmark's processes; nothing else is changed.

Each measurement runs in its own process, as a user's run would. On CPU the same script runs end to end
(``device=cpu``, the suite's smoke form uses tiny sizes) and prints the same table.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from yolo_batch.tools.cmdline import parse_pairs  # noqa: E402

DEFAULTS = {
    "device": "0",
    "minutes": 8.0,
    "models": "yolo11n,yolo11s,yolo11m",
    "focus": "yolo11s",
    "fixed": "32,64,128",
    "n_train": 2048,
    "n_val": 256,
    "imgsz": 640,
    "epochs": 3,
    "warm": 5,
    "loader_seconds": 8.0,
    "utilization": 0.9,
    "workers": 8,
    "out": "gpu_benchmark.json",
    "data": "",
    "jobs": "",
}
TARGETS = {"prediction": 0.05, "speed_share": 0.97, "first_decision": 0.7, "cached_s": 5.0}


# ---------------------------------------------------------------------------------------------------------
# The data: busy, COCO-like label density.


def _image(args: tuple) -> None:
    """Write one image and its labels (a worker of ``busy_dataset``)."""
    import cv2
    import numpy as np

    from yolo_batch.tools.shapes import COLORS, background, boxes, draw

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

    from yolo_batch.tools.shapes import CLASS_NAMES

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


def images_in_epoch(n_images: int, batch: int) -> list[int]:
    """Images of each iteration of one epoch: full batches, then the partial last one (no ``drop_last``).

    Examples:
        >>> images_in_epoch(2048, 224)[-2:], len(images_in_epoch(2048, 224))
        ([224, 32], 10)
    """
    return [min(batch, n_images - i * batch) for i in range(math.ceil(n_images / batch))]


def _loader_job(spec: dict) -> dict:
    """The training dataloader alone, as Ultralytics builds it (workers, mosaic, imgsz): images/s."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    from yolo_batch.decide.loader import close

    cfg = get_cfg(overrides={"data": spec["data"], "imgsz": spec["imgsz"], "workers": spec["workers"]})
    data = check_det_dataset(spec["data"])
    batch = spec["batch"]
    dataset = build_yolo_dataset(cfg, data["train"], batch, data, mode="train", stride=32)
    t0 = time.perf_counter()
    loader = build_dataloader(dataset, batch, spec["workers"], shuffle=True, rank=-1)
    images, first, last = 0, None, None
    try:
        while first is None or last - first < spec["seconds"]:
            for b in loader:
                now = time.perf_counter()
                if first is None:
                    first = last = now  # the first batch pays the workers' start: not counted
                else:
                    images, last = images + len(b["img"]), now
                if last - first >= spec["seconds"]:
                    break
    finally:
        close(loader)
    span = last - first
    return {
        "job": spec["name"],
        "batch": batch,
        "workers": spec["workers"],
        "images": images,
        "loader_images_per_s": round(images / span, 1) if span > 0 and images else None,
        "start_s": round(first - t0, 2),
    }


def _job(spec: dict) -> dict:
    """Run one measurement; return its figures."""
    hooked = "yolo_batch" in sys.modules  # the installed startup hook ran before this script
    if spec["kind"] == "loader":
        return _loader_job(spec)
    import torch
    import ultralytics.engine.trainer as trainer_module
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
        "val": False,  # Ultralytics validates the final epoch anyway: one validation pass per stretch
        "seed": 0,
        "close_mosaic": 0,
        "epochs": spec["epochs"],
        "verbose": False,
    }
    if spec["kind"] == "plan":  # the auto-plus decision alone, through `yolo-batch plan`'s own code
        from yolo_batch.tools.plan import plan

        words = [f"model={spec['model']}.yaml", f"batch={spec['batch']}"]
        words += [f"{k}={v}" for k, v in train_args.items() if k not in {"project", "name", "exist_ok"}]
        record, _ = plan(words)
        return {**out, **_decision(record)}
    return _stretch(spec, train_args, out, cuda)


def _stretch(spec: dict, train_args: dict, out: dict, cuda: bool) -> dict:
    """Train ``epochs`` epochs at the job's batch; count the images, the time after warm-up and the peaks."""
    import torch
    from ultralytics import YOLO

    from yolo_batch.device.memory import backend_for

    model = YOLO(f"{spec['model']}.yaml")
    meter: dict = {"iters": 0, "images": 0, "counted": 0}
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
        meter.update(batch=trainer.batch_size, n=len(trainer.train_loader.dataset))

    def on_train_epoch_start(trainer):
        meter["sizes"] = images_in_epoch(len(trainer.train_loader.dataset), trainer.batch_size)
        meter["i"] = 0

    def on_train_batch_end(trainer):
        images = meter["sizes"][min(meter["i"], len(meter["sizes"]) - 1)]
        meter["i"] += 1
        meter["iters"] += 1
        meter["images"] += images
        if meter["iters"] == spec["warm"]:  # images/s after warm-up (workers started, kernels chosen)
            sync()
            meter["t_warm"] = time.perf_counter()
        elif meter["iters"] > spec["warm"]:
            meter["counted"] += images

    def on_train_epoch_end(trainer):
        sync()
        meter["t_end"] = time.perf_counter()
        if cuda:
            meter["train_reserved"] = torch.cuda.max_memory_reserved()
            meter["train_allocated"] = torch.cuda.max_memory_allocated()
        else:
            meter["train_reserved"] = cpu.peak_bytes()

    def on_fit_epoch_end(trainer):
        if cuda:
            stats = torch.cuda.memory_stats()
            meter.update(
                reserved=torch.cuda.max_memory_reserved(),
                allocated=torch.cuda.max_memory_allocated(),
                num_ooms=int(stats.get("num_ooms", 0)),
                alloc_retries=int(stats.get("num_alloc_retries", 0)),
            )
        else:
            meter["reserved"] = cpu.peak_bytes()
        meter["end_batch"] = trainer.batch_size

    for event, fn in list(locals().items()):
        if event.startswith("on_"):
            model.add_callback(event, fn)
    oom_error = None
    try:
        model.train(batch=spec["batch"], **train_args)
    except Exception as e:  # an out-of-memory that stopped the run is a result, not a crash of the benchmark
        from yolo_batch.device.memory import is_oom

        if not is_oom(e) and not is_oom(e.__cause__ or e):
            raise
        oom_error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    decision = Path(spec["project"]) / spec["name"] / "batch_decision.json"
    if decision.exists():
        out.update(_decision(json.loads(decision.read_text())))
    seconds = meter.get("t_end", 0) - meter.get("t_warm", 0)
    out.update(
        pick=out.get("pick", meter.get("batch")),
        trained_batch=meter.get("batch"),
        end_batch=meter.get("end_batch"),
        iters=meter["iters"],
        epochs=spec["epochs"],
        images=meter["images"],
        images_counted=meter["counted"],
        epochs_at_batch=round(meter["images"] / meter["n"], 2) if meter.get("n") else None,
        images_per_s=round(meter["counted"] / seconds, 1) if seconds > 0 and meter["counted"] else None,
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
    cache = r.get("cache") or {}
    return {
        "pick": r["batch"],
        "policy": r["policy"],
        "decision_s": r["decision_seconds"],
        "phase_s": r.get("phase_seconds"),
        "cache": cache.get("status"),
        "probe_s": r["probe_seconds"],
        "verify_s": r.get("verify_seconds"),
        "predicted_peak": r["predicted_peak_bytes"],
        "predicted_train_peak": int(law),
        "verified_peak": r["verified_peak_bytes"],
        "allocated_peaks": r.get("allocated_peaks"),
        "budget": r["budget_bytes"],
        "total_bytes": r["total_bytes"],
        "reason": r["reason"],
        "record": r,
    }


# ---------------------------------------------------------------------------------------------------------
# The plan of runs, the time guard, the table.


def _jobs(o: dict) -> list[dict]:
    """The runs in the issue's priority order (the short loader measurement first)."""
    focus, util, fixed = o["focus"], o["utilization"], [int(x) for x in str(o["fixed"]).split(",") if x]
    train = {"model": focus, "kind": "train"}
    jobs = [{"name": "loader", "kind": "loader", "batch": max(fixed or [16])}]
    jobs += [{**train, "name": f"{focus}-fixed-{b}", "batch": b} for b in fixed]
    jobs.append({**train, "name": f"{focus}-auto-plus", "batch": "auto-plus"})
    jobs.append({**train, "name": f"{focus}-auto-plus-speed", "batch": f"auto-plus:speed:{util}"})
    jobs.append({**train, "name": f"{focus}-auto-plus-fit", "batch": f"auto-plus:fit:{util}"})
    jobs.append({**train, "name": f"{focus}-autobatch-0.60", "batch": -1})
    jobs.append({**train, "name": f"{focus}-autobatch-{util:.2f}", "batch": util})
    jobs.append({**train, "name": f"{focus}-auto-plus-speed-cached", "batch": f"auto-plus:speed:{util}"})
    jobs[-1]["cache_of"] = f"{focus}-auto-plus-speed"
    for m in [m for m in o["models"].split(",") if m and m != focus]:
        jobs.append({"name": f"{m}-auto-plus-fit", "model": m, "kind": "plan", "batch": f"auto-plus:fit:{util}"})
    if o["jobs"]:  # a chosen subset, in the order given
        named = {j["name"]: j for j in jobs}
        unknown = [n for n in o["jobs"].split(",") if n not in named]
        if unknown:
            raise SystemExit(f"gpu.py: error: unknown job(s) {unknown}; valid: {', '.join(named)}")
        jobs = [named[n] for n in o["jobs"].split(",")]
    return jobs


def _estimate(job: dict, done: list[dict], default: float) -> float:
    """Seconds a job is expected to take: the longest finished job of its kind, else a default."""
    same = [d["seconds"] for d in done if d.get("kind") == job["kind"] and "seconds" in d]
    return max(same) if same else default


def run_all(o: dict) -> list[dict]:
    """Every job in a temporary folder (data, runs, law caches), removed at the end: the JSON holds the results."""
    work = Path(tempfile.mkdtemp(prefix="yolo-batch-gpu-"))
    try:
        return _run_all(o, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_all(o: dict, work: Path) -> list[dict]:
    deadline = time.monotonic() + o["minutes"] * 60
    t = time.perf_counter()
    data = Path(o["data"]) if o["data"] else busy_dataset(work / "data", o["n_train"], o["n_val"], o["imgsz"])
    print(f"data: {o['n_train']} + {o['n_val']} images at {o['imgsz']} in {time.perf_counter() - t:.1f}s", flush=True)
    _warm_label_cache(data, o["imgsz"])
    results: list[dict] = []
    defaults = {"loader": 15.0, "plan": 25.0, "train": 45.0}
    for job in _jobs(o):
        left = deadline - time.monotonic()
        need = _estimate(job, results, defaults[job["kind"]])
        if left < need:
            print(f"skipped {job['name']}: {left:.0f}s left, it needs ~{need:.0f}s", flush=True)
            results.append({"job": job["name"], "skipped": f"{left:.0f}s left, needs ~{need:.0f}s"})
            continue
        settings = work / "settings" / job.get("cache_of", job["name"])  # a fresh law cache, or job 3's
        if "cache_of" not in job:
            shutil.rmtree(settings, ignore_errors=True)
        env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "YOLO_CONFIG_DIR": str(settings)}
        spec = {**job, "data": str(data), "project": str(work / "runs"), "device": o["device"]}
        spec.update(imgsz=o["imgsz"], workers=o["workers"], epochs=o["epochs"], warm=o["warm"])
        spec["seconds"] = o["loader_seconds"]
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
        r["seconds"], r["kind"] = round(time.perf_counter() - t, 1), job["kind"]
        results.append(r)
        brief = {k: r.get(k) for k in ("pick", "decision_s", "cache", "predicted_peak", "verified_peak")}
        brief.update({k: r.get(k) for k in ("peak_reserved", "images", "images_per_s", "loader_images_per_s")})
        brief.update({k: r.get(k) for k in ("oom_events", "hook")})
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


def _row(r: dict) -> str:
    peak, total = r.get("peak_reserved"), r.get("total_bytes")
    err = r["predicted_peak"] / r["verified_peak"] - 1 if r.get("verified_peak") and r.get("predicted_peak") else None
    card = peak / total if peak and total else None
    return (
        f"{r['job']:<30} {r.get('pick', '-')!s:>5} {r.get('decision_s', '-')!s:>7} {r.get('cache') or '-':>5} "
        f"{_gib(r.get('predicted_peak')):>9} {_gib(r.get('verified_peak')):>9} "
        f"{'-' if err is None else f'{err:+.1%}':>8} {_gib(peak):>9} {_gib(r.get('peak_allocated')):>9} "
        f"{'-' if card is None else f'{card:.0%}':>6} {r.get('images', '-')!s:>7} "
        f"{r.get('images_per_s') or '-'!s:>8} {r.get('oom_events', '-')!s:>4}"
    )


def table(results: list[dict]) -> list[str]:
    """The one table, then the derived figures and the targets (missed ones marked MISSED)."""
    rows = [
        f"{'run':<30} {'pick':>5} {'dec. s':>7} {'cache':>5} {'pred GiB':>9} {'verif GiB':>9} {'pred err':>8} "
        f"{'peak GiB':>9} {'alloc GiB':>9} {'card':>6} {'images':>7} {'img/s':>8} {'OOM':>4}"
    ]
    by = {r["job"]: r for r in results}
    for r in results:
        if "skipped" in r or "error" in r:
            rows.append(f"{r['job']:<30} {'skipped: ' + r['skipped'] if 'skipped' in r else 'ERROR (see JSON)'}")
        elif r.get("kind") == "loader":
            rows.append(
                f"{r['job']:<30} dataloader alone: {r['loader_images_per_s']} images/s ({r['workers']} workers)"
            )
        else:
            rows.append(_row(r))
    notes = _targets(results, by)
    return rows + [""] + (notes or ["(no derived figures: nothing measured)"])


def _ips(r: dict | None) -> float:
    return (r or {}).get("images_per_s") or 0.0


def _targets(results: list[dict], by: dict) -> list[str]:
    """The issue's targets, each met, MISSED or not measured."""
    notes = []

    def mark(ok: bool, text: str) -> None:
        notes.append(f"{'met' if ok else 'MISSED'}: {text}")

    find = {k: next((r for j, r in by.items() if j.endswith(k) and "error" not in r and "skipped" not in r), None)
            for k in ("-auto-plus", "-auto-plus-speed", "-autobatch-0.60", "-auto-plus-speed-cached")}  # fmt: skip
    default, speed, stock, cached = find.values()
    rivals = [r for r in results if ("-fixed-" in r["job"] or "-autobatch-" in r["job"]) and _ips(r)]
    if speed and rivals and _ips(speed):
        best = max(rivals, key=_ips)
        share = _ips(speed) / _ips(best)
        mark(
            share >= TARGETS["speed_share"], f"auto-plus:speed {share:.2f}x the best images/s ({best['job']}) >= 0.97x"
        )
    if default and stock and _ips(default) and _ips(stock):
        mark(_ips(default) >= _ips(stock), f"auto-plus {_ips(default)} images/s >= AutoBatch -1's {_ips(stock)}")
    if stock and stock.get("decision_s"):
        for r in (default, speed):
            if r and r.get("decision_s") is not None:
                share = r["decision_s"] / stock["decision_s"]
                mark(share <= TARGETS["first_decision"], f"{r['job']} decided in {share:.2f}x AutoBatch -1's seconds")
    if cached and cached.get("decision_s") is not None:
        ok = cached["decision_s"] <= TARGETS["cached_s"] and cached.get("cache") == "hit"
        mark(ok, f"cached decision {cached['decision_s']}s ({cached.get('cache')}) <= 5 s")
        if speed and speed.get("pick") is not None:
            mark(cached.get("pick") == speed["pick"], f"cached pick {cached.get('pick')} == first pick {speed['pick']}")
    hooks = {r["hook"] for r in results if r.get("hook")}
    if hooks:  # a `pip install --target` skips .pth files: the plugin then loads only by the explicit import
        mark(hooks == {"startup .pth"}, f"the startup hook ran in every training job ({', '.join(sorted(hooks))})")
    for r in results:
        if r.get("verified_peak") and r.get("predicted_peak") and "auto-plus" in r["job"]:
            err = r["predicted_peak"] / r["verified_peak"] - 1
            mark(abs(err) <= TARGETS["prediction"], f"{r['job']}: prediction {err:+.1%} of the verified step")
        if r.get("oom_events"):
            mark(False, f"{r['job']}: {r['oom_events']} out-of-memory event(s)")
    return notes


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
        f"\n{gpu}, imgsz {o['imgsz']}, {o['n_train']} busy images, {o['epochs']} epochs a stretch, "
        f"{time.perf_counter() - t:.0f}s in all, {time.strftime('%Y-%m-%d')}"
    )
    print("\n".join(lines))
    Path(o["out"]).write_text(json.dumps({"options": o, "results": results, "table": lines}, indent=1, default=str))
    print(f"\nwrote {o['out']}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")
    sys.exit(main(sys.argv[1:]))
