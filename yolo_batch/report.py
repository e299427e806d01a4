"""Reading finished runs: the decision table and final metrics of one run, and comparisons across runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from yolo_batch.callbacks import DECISION_FILE, EFFECT_FILE, decision_table
from yolo_batch.effect import read_csv

METRICS = ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)")


def load_run(run: str | Path) -> dict[str, Any]:
    """A run folder's decision (or None), effect rows and results.csv rows."""
    run = Path(run)
    decision = run / DECISION_FILE
    return {
        "dir": run,
        "decision": json.loads(decision.read_text()) if decision.exists() else None,
        "effect": read_csv(run / EFFECT_FILE) if (run / EFFECT_FILE).exists() else [],
        "results": read_csv(run / "results.csv") if (run / "results.csv").exists() else [],
    }


def print_run(run: str | Path) -> None:
    """Print a run's decision table and its final metrics."""
    r = load_run(run)
    if r["decision"]:
        print("\nDecision (batch_decision.json):")
        for line in decision_table(r["decision"]):
            print("  " + line)
    final = next((row for row in r["effect"] if row.get("epoch") == "final"), None)
    last = r["results"][-1] if r["results"] else {}
    source = final or last
    if source:
        print("\nFinal metrics (best.pt on the validation set):" if final else "\nLast epoch metrics:")
        print("  " + "  ".join(f"{m.split('/')[1].replace('(B)', '')} {float(source[m]):.3f}" for m in METRICS if source.get(m)))
    print(f"\nRun folder: {r['dir']}")
