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
from yolo_batch.activate import SUPPORTED, release, supported_range


def _requires(section: str, key: str) -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return [line.strip() for line in cfg[section][key].splitlines() if line.strip() and not line.startswith("#")]


def test_the_supported_ultralytics_range_is_activate_supported_everywhere():
    """activate.SUPPORTED is the one place; setup.cfg, the README, its releases table and releases.txt agree."""
    from packaging.requirements import Requirement

    from tests.compat.releases import listed, readme_rows

    spec = supported_range()
    (req,) = [r for r in _requires("options", "install_requires") if r.startswith("ultralytics")]
    assert req == f"ultralytics{spec}"
    (low, high), specifier = SUPPORTED, Requirement(req).specifier
    first = ".".join(map(str, low))
    assert specifier.contains(first) and specifier.contains(f"{high[0]}.{high[1] - 1}.999")
    assert not specifier.contains(f"{low[0]}.{low[1]}.{low[2] - 1}") and not specifier.contains(
        f"{high[0]}.{high[1]}.0"
    )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"Supported Ultralytics releases: `{spec}`" in readme
    assert f"yolo-batch supports Ultralytics `{spec}`" in readme
    tested = listed()
    assert list(readme_rows()) == list(tested)  # one row per release make compat tests, in its order
    assert next(iter(tested)) == first and tested[first] == ""  # the oldest claimed is tested
    for version, mark in tested.items():
        assert (low <= release(version) < high) is (mark != "below"), version
    assert list(tested.values()).count("below") == 1


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
    """`make lint` runs mypy (its settings in pyproject.toml, mypy in [dev]); `.ci/run` runs lint, test, then compat."""
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    lint = make.split("\nlint: install\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split()[0] for line in lint] == ["$(BIN)/ruff", "$(BIN)/ruff", "$(BIN)/mypy"]
    assert 'files = ["yolo_batch"]' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert {"mypy", "types-pyyaml", "types-psutil"} <= _extra("dev")
    steps = [
        line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if line.startswith("make")
    ]
    assert steps == ["make lint", "make test", "make compat"]


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
