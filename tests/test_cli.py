"""The ``yolo-batch`` command: help and version, one-line errors, Ctrl-C, make-data, defaults, the demo end to end."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import running
from yolo_batch.core.spec import BatchSpec
from yolo_batch.record.effect import read_csv
from yolo_batch.tools import cli

TOOL = str(Path(sys.executable).with_name("yolo-batch"))


def run(*args: str, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([TOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False)


@pytest.mark.parametrize("args", [[], ["--help"], ["-h"], ["help"]], ids=["bare", "--help", "-h", "help"])
def test_help_lists_every_command(args):
    r = run(*args)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("usage: yolo-batch [-h] [--version] COMMAND [key=value ...]")
    for name, command in cli.COMMANDS.items():
        assert f"\n    {name.ljust(20)}{command.summary}\n" in r.stdout


def test_version_names_the_releases():
    import ultralytics

    from yolo_batch import __version__

    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.startswith(f"yolo-batch {__version__} (ultralytics {ultralytics.__version__}, torch ")


@pytest.mark.parametrize("name", list(cli.COMMANDS))
@pytest.mark.parametrize("how", ["--help", "help"])
def test_each_command_has_help_with_its_arguments(name, how):
    r = run(name, "--help") if how == "--help" else run("help", name)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith(f"usage: yolo-batch {name}")
    for key, meaning in cli.COMMANDS[name].keys:
        assert f"  {key}" in r.stdout and meaning in r.stdout


def test_make_data_help_shows_make_dataset_defaults():
    from yolo_batch.tools.datasets import make_dataset

    defaults = {k: p.default for k, p in inspect.signature(make_dataset).parameters.items() if k in cli.MAKE_DATA}
    assert defaults == {k: v for k, v in cli.MAKE_DATA.items() if k != "out"}
    shown = dict(k.split("=", 1) for k, _ in cli.COMMANDS["make-data"].keys)
    assert shown == {
        k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v).lower() for k, v in cli.MAKE_DATA.items()
    }


def test_help_and_version_load_neither_torch_nor_ultralytics():
    code = (
        "import sys, contextlib, io; from yolo_batch.tools import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert cli.main(['--help']) == 0 and cli.main(['sweep', '--help']) == 0 and cli.main(['--version']) == 0\n"
        "print(sorted(m for m in ('torch', 'ultralytics', 'numpy', 'yaml') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.stdout.strip() == "[]", r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["swep"], "unknown command 'swep' (did you mean 'sweep'?)", id="misspelt-command"),
        pytest.param(["make-data", "n_trian=5"], "unknown argument 'n_trian' (did you mean 'n_train'?)", id="bad-key"),
        pytest.param(["make-data", "imgsz=big"], "make-data: imgsz='big' is invalid", id="bad-int"),
        pytest.param(["make-data", "dense=maybe"], "dense='maybe' is invalid: expected true or false", id="bad-bool"),
        pytest.param(["make-data", "classes=12"], "classes=12 is invalid", id="out-of-range"),
        pytest.param(
            ["make-data", "dense=true", "imgsz=64"],
            "make-data: dense=true puts 300 objects in every image, on a grid of 6 px cells, and imgsz=64 holds 100; "
            "use imgsz=108 or more\n",
            id="dense-small-imgsz",
        ),
        pytest.param(["make-data", "objects=5"], "objects='5' is invalid: expected MIN,MAX, e.g. 2,30", id="bad-pair"),
        pytest.param(["make-data", "aspect=9"], "make-data: aspect=9.0 is invalid, expected a number", id="bad-aspect"),
        pytest.param(["demo", "epochs"], "argument 'epochs' must be key=value", id="no-equals"),
        pytest.param(["--verbose"], "unrecognized arguments: --verbose", id="unknown-option"),
        pytest.param(
            ["sweep", "--epochs=3"],
            "sweep: unrecognized arguments: --epochs=3; sweep takes key=value words without dashes, e.g. epochs=3",
            id="dashes",
        ),
        pytest.param(  # issue 21: it suggested "e.g. epochs=3", but cache takes no key=value
            ["cache", "clear", "--force"],
            "cache: unrecognized arguments: --force; cache takes list or clear\n",
            id="cache",
        ),
        pytest.param(["defaults", "--all"], "defaults takes no arguments\n", id="defaults-option"),
        pytest.param(["defaults", "policy=fit"], "defaults takes no arguments, got 'policy=fit'", id="defaults-arg"),
    ],
)
def test_bad_arguments_get_one_line(tmp_path, args, message):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("yolo-batch: error: ")
    assert message in r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_make_data_writes_a_yolo_dataset(tmp_path):
    r = run("make-data", f"out={tmp_path / 'd'}", "n_train=4", "n_val=2", "imgsz=64", "seed=3")
    assert r.returncode == 0, r.stderr
    data = Path(r.stdout.strip())
    assert data == tmp_path / "d" / "data.yaml" and yaml.safe_load(data.read_text())["train"] == "images/train"
    assert len(list((tmp_path / "d" / "images" / "train").iterdir())) == 4
    r = run("make-data", f"out={tmp_path / 'w'}", "n_train=2", "n_val=1", "imgsz=64", "objects=2,30", "aspect=2")
    assert r.returncode == 0, r.stderr
    assert '"objects": [2, 30]' in Path(r.stdout.strip()).read_text()
    cv2 = pytest.importorskip("cv2")
    assert cv2.imread(str(next((tmp_path / "w" / "images" / "train").iterdir()))).shape == (32, 64, 3)


def test_defaults_print_the_shipped_settings():
    r = run("defaults")
    printed = yaml.safe_load(r.stdout)
    shipped = yaml.safe_load((Path(__file__).parents[1] / "cfg" / "auto_plus.yaml").read_text())
    assert printed == shipped
    assert printed["policy"] == BatchSpec().policy and printed["probe"]["batches"] == list(BatchSpec().probe_batches)


@pytest.mark.slow
def test_demo_trains_to_a_useful_map(tmp_path):
    r = run("demo", f"out={tmp_path / 'demo'}", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    final = read_csv(tmp_path / "demo" / "train" / "batch_effect.csv")[-1]
    assert final["epoch"] == "final" and float(final["metrics/mAP50(B)"]) > 0.2
    assert "<- pick" in r.stdout and "Final metrics (best.pt on the validation set):" in r.stdout
    assert " train model=yolo11n.yaml " in r.stdout and "batch=auto-plus" in r.stdout  # the stock yolo command


def test_ctrl_c_stops_the_training_child_quietly(tmp_path):
    """Ctrl-C at a terminal signals the foreground process group: here the parent's group. The child runs in its
    own session, so only the parent sees it and stops the child with SIGTERM: no second traceback, no orphan."""
    parent = (
        "import sys\n"
        "from yolo_batch.tools.cmdline import run_child\n"
        "child = 'import os, time; print(os.getpid(), flush=True); time.sleep(60)'\n"
        "try:\n"
        "    run_child([sys.executable, '-c', child])\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped', file=sys.stderr)\n"
        "    sys.exit(130)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = int(proc.stdout.readline())
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == "stopped\n"  # the child printed no KeyboardInterrupt traceback
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_child_stops_when_its_parent_is_killed_without_a_word():
    """``kill -9`` (or the OOM killer) on the process that runs a training: the child, in a session of its own,
    gets SIGTERM from the kernel (``yolo_batch.tools.tether``) instead of training on, unseen."""
    parent = (
        "import sys\n"
        "from yolo_batch.tools.cmdline import run_child\n"
        "run_child([sys.executable, '-c', 'import os, time; print(os.getpid(), flush=True); time.sleep(60)'])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while running(child):
        assert time.monotonic() < deadline, "the child outlived its killed parent"
        time.sleep(0.1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_tether_refuses_an_orphan_and_names_a_command_it_cannot_start():
    def tether(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "yolo_batch.tools.tether", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    assert tether("1", "true").returncode == 143  # its parent is not pid 1: gone already, the command never runs
    r = tether(str(os.getpid()), "no-such-yolo")
    assert r.returncode == 127
    assert r.stderr.splitlines() == ["yolo-batch: error: cannot start no-such-yolo: No such file or directory"]
    assert tether(str(os.getpid()), sys.executable, "-c", "import sys; sys.exit(7)").returncode == 7  # its own


def test_command_modules_stand_on_cmdline_not_on_each_other():
    """No import cycle cli <-> report <-> sweep: at import time each imports cmdline, never another command module."""
    import ast

    root = Path(cli.__file__).parent
    for name in ("cli", "report", "sweep", "cmdline"):
        tree = ast.parse((root / f"{name}.py").read_text())
        top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
        top |= {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        others = {f"yolo_batch.{m}" for m in ("cli", "report", "sweep")} - {f"yolo_batch.{name}"}
        assert not top & others, (name, top & others)
        if name != "cmdline":
            assert "yolo_batch.tools.cmdline" in top, name


def test_the_demo_time_is_said_once():
    """issue 21: ``yolo-batch demo --help`` said about 10 minutes, the README 2 min 33 s: one measured figure."""
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    demo = readme[readme.index("`make demo` (`yolo-batch demo`)") :][:800]
    measured = re.search(r"(\d+ min \d+ s) in all", demo)
    assert measured, "the README's quick start states the demo's measured time"
    help_text = cli.COMMANDS["demo"].description
    assert f"{measured.group(1)} in all on 2 idle CPU cores" in help_text
    assert not re.search(r"\b(about|around|~) ?\d+ minutes\b", help_text, re.IGNORECASE)
