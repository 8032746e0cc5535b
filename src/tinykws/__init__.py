"""tinykws: keyword spotting networks from audio to microcontroller.

Importing the package is cheap: heavy libraries (torch, matplotlib, LiteRT, ONNX) are imported by
the functions that need them.
"""

__version__ = "0.1.0"

from tinykws.errors import TinyKWSError  # noqa: E402

__all__ = ["TinyKWSError", "__version__"]
