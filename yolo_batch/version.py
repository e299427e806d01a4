"""The package's version, in a module of its own: every module reads it here, not through the package's ``__init__``.

Examples:
    >>> from yolo_batch.version import __version__
    >>> __version__.count(".")
    2
"""

__version__ = "0.1.0"
