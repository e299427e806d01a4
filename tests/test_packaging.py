"""A package ready to publish: one supported Ultralytics range, extras, changelog, and the sdist path of the hook."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from yolo_batch import __version__
from yolo_batch.activate import SUPPORTED


def _requires(section: str, key: str) -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return [line.strip() for line in cfg[section][key].splitlines() if line.strip() and not line.startswith("#")]


def test_the_supported_ultralytics_range_is_activate_supported_everywhere():
    """activate.SUPPORTED is the one place; setup.cfg's requirement and the README say the same."""
    from packaging.requirements import Requirement

    (req,) = [Requirement(r) for r in _requires("options", "install_requires") if r.startswith("ultralytics")]
    minors = sorted(tuple(int(p) for p in s.rstrip(".").split(".")) for s in SUPPORTED)
    for major, minor in minors:  # every supported minor, first and late patch releases
        assert req.specifier.contains(f"{major}.{minor}.0") and req.specifier.contains(f"{major}.{minor}.999")
    (lo_major, lo_minor), (hi_major, hi_minor) = minors[0], minors[-1]
    assert not req.specifier.contains(f"{lo_major}.{lo_minor - 1}.999")  # nothing below the oldest
    assert not req.specifier.contains(f"{hi_major}.{hi_minor + 1}.0")  # nothing above the newest
    assert len(minors) == hi_minor - lo_minor + 1 and lo_major == hi_major  # no gap the specifier would hide
    releases = ", ".join(s + "x" for s in SUPPORTED)  # as activate's warning words it
    assert f"Supported Ultralytics releases: {releases}" in (ROOT / "README.md").read_text(encoding="utf-8")


def _extra(name: str) -> set[str]:
    from packaging.requirements import Requirement

    return {Requirement(r).name.lower().replace("_", "-") for r in _requires("options.extras_require", name)}


# Ultralytics' fresh settings turn these on, and each then acts in every stock yolo train (README "Install").
ON_BY_DEFAULT = {"mlflow", "dvclive", "comet-ml", "clearml"}


def test_one_extra_per_logger_and_loggers_is_all_of_them():
    each = {"mlflow": "mlflow", "wandb": "wandb", "dvc": "dvclive", "comet": "comet-ml", "clearml": "clearml"}
    each["tensorboard"] = "tensorboard"
    for extra, package in each.items():
        assert _extra(extra) == {package}
    assert _extra("loggers") == set(each.values())


def test_dev_holds_no_logger_that_acts_in_a_stock_run(tmp_path):
    """``make demo``/``make test`` install [dev] into .venv: its own yolo train must stay stock (test_stock_run)."""
    from ultralytics.utils import SettingsManager

    defaults = SettingsManager(tmp_path / "settings.json")  # Ultralytics' defaults, as a new user has them
    on = {k for k in ("clearml", "comet", "dvc", "mlflow", "tensorboard", "wandb") if defaults[k]}
    assert on == {"clearml", "comet", "dvc", "mlflow"}  # the packages of ON_BY_DEFAULT
    assert not _extra("dev") & ON_BY_DEFAULT


def test_the_logger_tests_get_the_loggers_extra_from_the_makefile():
    """`make install` builds .loggers from [loggers]; the logger tests put it on their path (conftest)."""
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "install: $(STAMP) $(LOGGERS)/.installed" in make
    assert "$(BIN)/python tests/loggers_target.py $(LOGGERS)" in make
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import loggers_target
    finally:
        sys.path.remove(str(ROOT / "tests"))
    assert {r.split(">")[0].replace("_", "-") for r in loggers_target.requirements()} == _extra("loggers")


def test_lint_type_checks_and_ci_runs_lint_before_the_tests():
    """`make lint` runs mypy (its settings in pyproject.toml, mypy in [dev]); `.ci/run` runs lint, then test."""
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    lint = make.split("\nlint: install\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split()[0] for line in lint] == ["$(BIN)/ruff", "$(BIN)/ruff", "$(BIN)/mypy"]
    assert 'files = ["yolo_batch"]' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert {"mypy", "types-pyyaml", "types-psutil"} <= _extra("dev")
    steps = [
        line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if line.startswith("make")
    ]
    assert steps == ["make lint", "make test"]


def test_the_changelog_has_the_current_version_and_an_unreleased_section():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[?([^\]\s]+)\]?", text, flags=re.M)
    assert headings[0] == "Unreleased" and __version__ in headings, headings


def _venv_site(venv) -> str:
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return r.stdout.strip()


@pytest.mark.slow
@pytest.mark.xdist_group("source-tree")  # builds in the source tree (build/, *.egg-info)
def test_sdist_and_wheel_pass_twine_and_pip_builds_the_hook_from_the_sdist(tmp_path):
    """``python -m build`` (sdist, then the wheel from it), ``twine check``, then pip from the sdist into a venv."""
    pytest.importorskip("build")
    pytest.importorskip("twine")
    dist = tmp_path / "dist"
    run = {"capture_output": True, "text": True, "check": False, "timeout": 600}
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "-o", str(dist), str(ROOT)], **run)
    assert r.returncode == 0, r.stderr[-3000:]
    (sdist,) = dist.glob("yolo_batch-*.tar.gz")
    (wheel,) = dist.glob("yolo_batch-*.whl")
    assert sdist.name == f"yolo_batch-{__version__}.tar.gz"
    r = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)], **run)
    assert r.returncode == 0 and r.stdout.count("PASSED") == 2, r.stdout + r.stderr
    top = f"yolo_batch-{__version__}/"
    names = {n[len(top) :] for n in tarfile.open(sdist).getnames()}
    assert {"setup.py", "LICENSE", "CHANGELOG.md", "cfg/auto_plus.yaml", "tests/conftest.py"} <= names
    assert "yolo_batch.pth" in zipfile.ZipFile(wheel).namelist()  # the wheel build made from the sdist

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = _venv_site(venv)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", site]
    r = subprocess.run([*pip, str(sdist)], **run)  # pip builds a wheel from the sdist, then installs it
    assert r.returncode == 0, r.stderr[-3000:]
    assert (Path(site) / "yolo_batch.pth").read_text().strip() == "import yolo_batch"
    code = "import sys; m = sys.modules.get('yolo_batch'); print(m is not None, m and m.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only the venv's own site
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env, **run)  # site runs
    started, where = r.stdout.split()
    assert started == "True" and where.startswith(site), r.stdout + r.stderr
