"""chollet_viz: the code of the course "Visualizing what convnets learn", made reusable."""

import os as _os
import sys as _sys

__version__ = "0.2.0"  # the Colab install cells name the tag v<version> (tests/test_install.py)


def _import_tensorflow_quietly():
    # TensorFlow 2.21 writes a C++ start-up banner ("oneDNN custom operations are on")
    # straight to file descriptor 2, which no setting silences; notebooks would store it
    # as output. Python-level errors during the import still surface normally.
    if "tensorflow" in _sys.modules:
        return
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved = _os.dup(2)
    try:
        with open(_os.devnull, "w") as devnull:
            _os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "chollet_viz runs on Keras 3 with TensorFlow, which is not installed. Colab has it; "
            "elsewhere install the CPU build with pip install 'chollet_viz[cpu]' (or the project "
            "checkout with pip install -e '.[cpu]'), or the full build with pip install tensorflow."
        ) from exc
    finally:
        _os.dup2(saved, 2)
        _os.close(saved)


_import_tensorflow_quietly()
