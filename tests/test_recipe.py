"""``speed`` v2's pure rules: the large-batch recipe (`recipe`), within nbs first, the refit of a far time law.

The H100 numbers are the recorded ones of ``tests/test_throughput.py`` (yolo11s at 640, AMP: 221.6 images/s at
batch 16, 404.1 at 32, the dataloader's 510.5, the refitted memory law and its budget); the fit pick of 224
trained at 421 images/s there (``docs/gpu/``).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from tests.memory_laws import YOLO11S_640_H100
from tests.test_throughput import H100_BUDGET, H100_MEMORY, H100_S16, H100_S32, h100_pace
from yolo_batch.core import recipe
from yolo_batch.core.policy import decide
from yolo_batch.core.spec import BatchSpec
from yolo_batch.core.throughput import Pace, TimeLaw, refit_time_law
from yolo_batch.decide import retime
from yolo_batch.session import ATTR, Session
from yolo_batch.train import lrscale

# --------------------------------------------------------------------------------------------------------------------
# optimizer=auto, as Ultralytics 8.4.190 resolves it


@pytest.mark.parametrize(
    ("n", "batch", "epochs", "expected"),
    [
        pytest.param(118287, 16, 100, ("MuSGD", 184900), id="coco-16: ceil(118287 / 64) x 100"),
        pytest.param(118287, 224, 10, ("AdamW", 5290), id="coco-224-10-epochs: ceil(118287 / 224) x 10"),
        pytest.param(2560, 256, 30, ("AdamW", 300), id="bench-256"),
        pytest.param(640001, 64, 1, ("MuSGD", 10001), id="just-above-10000"),
        pytest.param(640000, 64, 1, ("AdamW", 10000), id="10000-is-not-above"),
    ],
)
def test_auto_optimizer_counts_iterations_as_ultralytics(n, batch, epochs, expected):
    assert recipe.auto_optimizer(n, batch, 64, epochs) == expected


def test_the_decision_says_when_the_pick_changes_what_auto_builds():
    # COCO for 10 epochs: at the stock 16 ceil(118287 / 64) x 10 = 18490 > 10000 -> MuSGD; at 224: 5290 -> AdamW
    assert recipe.optimizer_note("auto", 118287, 224, 64, 10) == (
        "optimizer=auto builds AdamW at 224 (5290 iterations <= 10000), not MuSGD as at the stock batch 16 (18490)"
    )
    assert recipe.optimizer_note("auto", 118287, 224, 64, 100) == ""  # MuSGD at both
    assert recipe.optimizer_note("auto", 118287, 64, 64, 10) == ""  # at or below nbs: the same iterations
    assert recipe.optimizer_note("AdamW", 118287, 224, 64, 10) == ""  # the user chose


# --------------------------------------------------------------------------------------------------------------------
# The recipe's rules


@pytest.mark.parametrize(
    ("optimizer", "scaling"),
    [
        *(pytest.param(name, "sqrt", id=name) for name in ("Adam", "AdamW", "adamw", "Adamax", "NAdam", "RAdam")),
        pytest.param("RMSprop", "sqrt", id="RMSprop"),
        pytest.param("SGD", "none", id="SGD: the summed loss scales its step already"),
        pytest.param("MuSGD", "none", id="MuSGD"),
        pytest.param("Lion", "none", id="unknown"),
    ],
)
def test_lr_rule_per_family(optimizer, scaling):
    assert recipe.lr_rule(optimizer)[0] == scaling


def test_large_batch_recipe_at_the_bench_shape():
    # 2560 images, 30 epochs, warmup_epochs 3, optimizer=auto at 128: ceil(2560 / 128) x 30 = 600 -> AdamW;
    # sqrt(128 / 64) = 1.414; warm-up 3 x 20 = 60 iterations, the floor 100
    r = recipe.large_batch(128, 64, "auto", "none", 2560, 30, 3.0)
    assert (r.optimizer, r.lr_scaling, r.warmup_iterations, r.warmup_ultralytics, r.warmup_floor) == (
        "AdamW",
        "sqrt",
        100,
        60,
        100,
    )
    assert r.lr_factor == pytest.approx(math.sqrt(2))
    assert r.as_record()["bn_momentum"] == "auto" and "Malladi 2022" in r.why
    assert r.words() == (
        "large-batch recipe above nbs=64: AdamW lr0 x1.41 (sqrt), warm-up 100 iterations (the recipe's floor; "
        "Ultralytics: 60), bn_momentum auto"
    )
    sgd = recipe.large_batch(256, 64, "SGD", "none", 2560, 30, 3.0)
    assert (sgd.lr_factor, sgd.warmup_iterations, sgd.warmup_ultralytics) == (1.0, 100, 30)
    assert "lr0 kept" in sgd.words()
    assert recipe.large_batch(64, 64, "SGD", "none", 2560, 30, 3.0) is None  # at nbs: Ultralytics' recipe
    none = recipe.large_batch(128, 64, "SGD", "none", 2560, 30, 0.0)
    assert none.warmup_floor == 0 and "no warm-up (none in this run: warmup_epochs=0" in none.words()
    busy = recipe.large_batch(128, 64, "SGD", "none", 100000, 30, 3.0)  # 782 iterations an epoch: above the floor
    assert "warm-up 2346 iterations (Ultralytics' own, at least the recipe's floor 100)" in busy.words()


@pytest.mark.parametrize(
    ("images", "epochs", "warmup_epochs", "expected", "words"),
    [
        pytest.param(
            896,
            4,
            1.0,
            21,
            "the recipe's floor 100, capped at 21 to leave the final epoch; Ultralytics: 7",
            id="28 iterations: the floor capped before the final epoch",
        ),
        pytest.param(2560, 30, 3.0, 100, "the recipe's floor; Ultralytics: 60", id="the floor"),
        pytest.param(100000, 30, 3.0, 2346, "Ultralytics' own, at least the recipe's floor 100", id="Ultralytics' own"),
        pytest.param(
            896,
            2,
            3.0,
            7,
            "the recipe's floor 100, capped at 7 to leave the final epoch; Ultralytics: 7",
            id="Ultralytics' cut too",
        ),
        pytest.param(896, 4, 0.0, 0, "no warm-up", id="none"),
    ],
)
def test_the_recipe_states_the_warmup_the_loop_uses(images, epochs, warmup_epochs, expected, words):
    """The record and the line state the iterations Ultralytics' loop warms up for (`lrscale.warmup` on Ultralytics'
    own ``_get_warmup_iterations``), and which rule set them: Ultralytics', the floor, or the floor capped."""
    from ultralytics.engine.trainer import BaseTrainer

    r = recipe.large_batch(128, 64, "AdamW", "none", images, epochs, warmup_epochs)
    t = _trainer(128)
    t.epochs, t.args.warmup_epochs = epochs, warmup_epochs
    s = Session(BatchSpec(policy="speed"), decides=True, value="auto-plus:speed")
    lrscale.plan(t, s, "none", 128, r)
    setattr(t, ATTR, s)
    stock = lambda nb: BaseTrainer._get_warmup_iterations(t, nb)  # noqa: E731  # Ultralytics' own formula
    nb = math.ceil(images / 128)
    assert r.warmup_iterations == lrscale.warmup(t, stock, nb) == expected
    assert r.as_record()["warmup_iterations"] == expected and r.as_record()["warmup_ultralytics"] == stock(nb)
    assert f"warm-up {expected} iterations ({words})" in r.words() if expected else words in r.words()


def test_warmup_floor_leaves_the_final_epoch_as_ultralytics():
    # 20 iterations an epoch: the floor 100 fits in 5 epochs of 30; with 3 epochs only 2 x 20 = 40 may warm up
    assert recipe.warmup_iterations(60, 100, 30, 20) == 100
    assert recipe.warmup_iterations(40, 100, 3, 20) == 40
    assert recipe.warmup_iterations(300, 100, 30, 100) == 300  # above the floor: Ultralytics' own
    assert recipe.warmup_iterations(7, 0, 30, 20) == 7  # no recipe: stock


# --------------------------------------------------------------------------------------------------------------------
# The policy on the H100: within nbs first


def _h100_step_only() -> Pace:
    """The H100's step law alone (no dataloader ceiling), fitted on 16 and 32, over the 2048-image set."""
    return Pace(h100_pace().law, points=((16, H100_S16), (32, H100_S32)), dataset_size=2048)


def test_h100_as_measured_stays_within_nbs():
    # the dataloader's 510.5 binds from 43 on: nothing above 64 is faster, so 48 (as speed v1) and no recipe
    d = decide(H100_MEMORY, H100_BUDGET, policy="speed", pace=h100_pace(), max_batch=512, dataset_size=2048)
    assert d.batch == 48 and "gains +0%, not above speed_gain 10%" in d.reason


def test_h100_step_alone_goes_above_nbs_only_past_speed_gain():
    # step alone: 64 -> 64 / (0.065216 + 64 x 0.00043663) = 687 images/s; 208 -> 1324 over the 2048 images
    # (9 iterations of 208 + one of 176): +93 %, above speed_gain 10 % and below 100 %
    pace = _h100_step_only()
    d = decide(H100_MEMORY, H100_BUDGET, policy="speed", pace=pace, max_batch=512, dataset_size=2048)
    assert d.batch == 208
    assert "208 above nbs=64 reaches 1324 images/s, +93% over 64 (687)" in d.reason
    assert d.reason.startswith("step-bound at 1324 images/s (the dataloader not timed); ")
    kept = decide(H100_MEMORY, H100_BUDGET, policy="speed", pace=pace, dataset_size=2048, speed_gain=1.0)
    assert kept.batch == 64 and "gains +93%, not above speed_gain 100%" in kept.reason
    # the memory law of the H100's probe and verified steps agrees that 208 fits: 70.9 GB measured at 224
    assert YOLO11S_640_H100.at(208) < H100_BUDGET


def test_far_pick_is_timed_and_the_refit_brings_it_back_within_nbs():
    """208 is 6.5x the largest timed 32: a step there is timed; at the 421 images/s 224 trained at, the refit wins."""
    pace = _h100_step_only()
    first = decide(H100_MEMORY, H100_BUDGET, policy="speed", pace=pace, max_batch=512, dataset_size=2048)
    assert first.batch == 208
    steps = []

    class Prober:
        dataset_size = 2048
        trainer = SimpleNamespace(args=SimpleNamespace(fraction=1.0))

        def train_step(self, n: int, reset: bool = True) -> None:
            steps.append((n, reset))
            self.last_seconds = (n / 421, 0.0)

    spec = BatchSpec(policy="speed")
    again_pace, again, record, words = retime.retimed(Prober(), spec, 1, H100_MEMORY, H100_BUDGET, pace, 208, True)
    assert steps == [(208, False)]  # one warm step after the verification's; the peak meter left alone
    # kept up to 32; above it the line from the law's 0.079188 s at 32 to 208 / 421 = 0.494062 s at 208:
    # (0.494062 - 0.079188) / 176 = 0.0023572 s per image
    law = {"fixed_seconds": 0.065216, "per_image_seconds": 0.0004366, "optimizer_seconds": 0.0, "nbs": 64}
    assert record == {
        "largest_timed": 32,
        "point": [208, 0.49406],
        "predicted_seconds": 0.15604,
        "before": law,
        "after": {**law, "knee": 32, "beyond_per_image_seconds": 0.0023572},
        "batch_before": 208,
        "batch_after": 32,
    }
    # now 64 -> 414 images/s, the fastest above nbs (<= 208) 415: +0 %, so within nbs: 32 reaches 97 % of 414
    assert again.batch == 32 and "within nbs=64" in again.reason
    assert again_pace.points[-1] == (208, pytest.approx(0.494062, abs=1e-6))
    assert words == (
        "the time law from batches up to 32 put a step at 208 at 156 ms, it took 494 ms (-68%): time law refitted "
        "through it, re-decided 32"
    )
    cold = []
    Prober.train_step = lambda self, n, reset=True: cold.append(n) or setattr(self, "last_seconds", (n / 421, 0.0))
    retime.retimed(Prober(), spec, 1, H100_MEMORY, H100_BUDGET, pace, 208, False)
    assert cold == [208, 208]  # not verified: a first step pays fresh memory, the second is timed
    near = decide(H100_MEMORY, H100_BUDGET, policy="speed", pace=pace, max_batch=64, dataset_size=2048)
    assert retime.retimed(Prober(), spec, 1, H100_MEMORY, H100_BUDGET, pace, near.batch, True) is None  # 64 = 2 x 32


def test_refit_time_law_edges():
    law = TimeLaw(0.1, 0.01, 0.02, 64)
    assert refit_time_law(law, [(8, 0.18)], 8, 0.5) is None  # not above the timed sizes
    # a step at 64 faster than the law at 8 (0.18 s): images above the knee cost nothing, never less
    flat = refit_time_law(law, [(4, 0.15), (8, 0.18)], 64, 0.1)
    assert (flat.knee, flat.beyond_per_image_seconds, flat.work_seconds(64)) == (8, 0.0, pytest.approx(0.18))
    # the fitted sizes keep the law (a CPU's curve that bends down above them does not send the pick to 1)
    bent = refit_time_law(law, [(4, 0.15), (8, 0.18)], 64, 1.5)
    assert bent.work_seconds(4) == pytest.approx(0.14) and bent.work_seconds(8) == pytest.approx(0.18)
    assert bent.work_seconds(64) == pytest.approx(1.5) and bent.beyond_per_image_seconds == pytest.approx(1.32 / 56)
    assert Pace(bent).images_per_s(8) > Pace(bent).images_per_s(64)  # 8 / 0.18 + ... beats 64 / 1.5


# --------------------------------------------------------------------------------------------------------------------
# Applying it: lrscale (lr and warm-up floor) and the BatchNorm switch


def _trainer(batch: int, optimizer: str = "AdamW"):
    groups = [{"lr": 0.001, "initial_lr": 0.001} for _ in range(3)]
    return SimpleNamespace(
        batch_size=batch,
        epochs=30,
        args=SimpleNamespace(nbs=64, lr0=0.001, optimizer=optimizer),
        optimizer=SimpleNamespace(param_groups=groups),
        scheduler=SimpleNamespace(base_lrs=[0.001] * 3),
    )


def test_recipe_scales_adamw_from_the_base_and_floors_the_warmup():
    t, s = _trainer(256), Session(BatchSpec(policy="speed"), decides=True, value="auto-plus:speed")
    r = recipe.large_batch(256, 64, "AdamW", "none", 2560, 30, 3.0)
    fields = lrscale.plan(t, s, "none", 256, r)
    assert fields == {"lr_scaling": "sqrt", "lr0": 0.001, "lr0_scaled": 0.002, "effective_batch": 256}
    assert (s.lr.applies, s.lr.warmup_floor, s.lr.bn_auto) == (True, 100, True)
    lrscale.start(t, s)
    assert t.args.lr0 == 0.001 and t.scheduler.base_lrs == [pytest.approx(0.002)] * 3  # args keep the base
    # 2560 / 256 = 10 iterations an epoch: Ultralytics' 30, the floor 100 (within 29 x 10)
    stock = lambda nb: round(3.0 * nb)  # noqa: E731
    setattr(t, ATTR, s)
    assert lrscale.warmup(t, stock, 10) == 100
    t.epochs = 5
    assert lrscale.warmup(t, stock, 10) == 40  # 4 x 10: the final epoch trains without warm-up
    # a resume reads the recipe back from the decision it continues
    again = Session(BatchSpec(), decides=False, value=None)
    lrscale.from_record(t, again, {"lr_scaling": "sqrt", "recipe": r.as_record()})
    assert (again.lr.scaling, again.lr.applies, again.lr.warmup_floor, again.lr.bn_auto) == ("sqrt", True, 100, True)


def test_no_recipe_keeps_the_warmup_stock():
    t, s = _trainer(32), Session(BatchSpec(policy="speed"), decides=True, value="auto-plus:speed")
    lrscale.plan(t, s, "none", 32)
    setattr(t, ATTR, s)
    assert lrscale.warmup(t, lambda nb: round(3.0 * nb), 80) == 240
    assert not s.lr.bn_auto


def test_a_refit_that_favours_larger_batches_stays_at_the_timed_pick():
    """The timed step at 128 runs at 2000 images/s: the refit would go above 128, where memory was not verified."""
    pace = _h100_step_only()
    first = decide(H100_MEMORY, H100_BUDGET, policy="speed", pace=pace, max_batch=128, dataset_size=2048)
    assert first.batch == 128  # above nbs: the step law alone makes it far faster than 64

    class Prober:
        dataset_size = 2048
        trainer = SimpleNamespace(args=SimpleNamespace(fraction=1.0))

        def train_step(self, n: int, reset: bool = True) -> None:
            self.last_seconds = (n / 2000, 0.0)

    _, again, record, words = retime.retimed(
        Prober(), BatchSpec(policy="speed"), 1, H100_MEMORY, H100_BUDGET, pace, first.batch, True
    )
    assert again.batch == 128 and record["batch_after"] == 128
    assert "(the largest that fits is 128: capped at the timed 128)" in again.reason
    assert words.startswith("the time law from batches up to 32 put a step at 128 at 121 ms, it took 64 ms (+89%)")
    assert words.endswith("128 stands")


def test_a_low_speed_threshold_is_content_with_the_recipes_pick():
    """speed_threshold 0.01: min_batch 8 already reaches 1 % of the fastest above nbs, so no recipe is needed."""
    pace, kw = _h100_step_only(), {"policy": "speed", "dataset_size": 2048, "min_batch": 8, "speed_gain": 0.0}
    d = decide(H100_MEMORY, H100_BUDGET, pace=pace, speed_threshold=0.01, **kw)
    assert d.batch == 8  # 72 above nbs is +7 % over 64 (above speed_gain 0), but 8 is content at 1 % of 1324
    assert "8 reaches speed_threshold 0.01 of the fastest above it too (1324 images/s)" in d.reason


# ---------------------------------------------------------------------------------------------------------
# speed_min_steps: a short run stays within nbs (the time-to-mAP bench's sparse set: 2560 images, 5 epochs)

CPU_LAW = TimeLaw(0.0758, 0.00377, 0.0276)  # the time law `speed` measured there (64 px, 2 CPU cores)


@pytest.mark.parametrize(("epochs", "floor", "above"), [(5, 10000, False), (5, 0, True), (500, 10000, True)])
def test_a_short_run_stays_within_nbs_however_fast_a_larger_batch_goes(epochs, floor, above):
    from yolo_batch.core.policy import GIB, Law, MemoryModel, decide

    pace = Pace(CPU_LAW, dataset_size=2560, epochs=epochs)
    d = decide(MemoryModel(Law(GIB, 2**20)), 20 * GIB, policy="speed", max_batch=128, pace=pace, speed_min_steps=floor)
    assert (d.batch > 64) is above
    if not above:  # 112 is predicted +13% faster, but 5 epochs make 115 steps at it
        assert "would make 115 optimizer steps there, fewer than speed_min_steps 10000" in d.reason


@pytest.mark.parametrize("bad", [-1, 1.5, True, "many"])
def test_speed_min_steps_must_be_a_whole_number_of_steps(bad):
    from yolo_batch.core.spec import AutoPlusError, BatchSpec

    with pytest.raises(AutoPlusError, match=r"speed_min_steps=.* a whole number of optimizer steps >= 0"):
        BatchSpec(speed_min_steps=bad)
