"""Build shim: setup.cfg holds the metadata; this adds the startup hook ``yolo_batch.pth`` to every install.

Python imports ``yolo_batch`` at start through that file, so ``yolo train ... batch=auto-plus`` works with
no wrapper command. A setuptools package cannot ship a file at the top of site-packages declaratively, and
an editable install (``pip install -e .``) skips ``build_py``'s output, so the hook is written to both the
build folder (wheels) and, in editable mode, to the editable wheel's root.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "yolo_batch.pth"
HOOK = "import yolo_batch\n"


class BuildPyWithHook(build_py):
    """``build_py`` that also writes the startup hook."""

    def run(self):
        super().run()
        targets = [Path(self.build_lib)]
        if getattr(self, "editable_mode", False):  # PEP 660: the editable wheel is assembled in install_lib
            targets.append(Path(self.get_finalized_command("install").install_lib))
        for folder in targets:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / PTH).write_text(HOOK, encoding="utf-8")

    def get_outputs(self, include_bytecode=1):
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]


setup(cmdclass={"build_py": BuildPyWithHook})
