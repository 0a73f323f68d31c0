"""chollet_viz: the code of the course "Visualizing what convnets learn", made reusable."""

import os as _os
import sys as _sys

__version__ = "0.2.0"  # the Colab install cells name the tag v<version> (tests/test_install.py)


def _keras_backend() -> str:
    """The backend Keras will run on, read as Keras reads it, without importing Keras
    (which, on the TensorFlow backend, imports TensorFlow loudly)."""
    if "keras" in _sys.modules:
        return _sys.modules["keras"].backend.backend()
    name = _os.environ.get("KERAS_BACKEND")
    if name:
        return name
    import json

    home = _os.environ.get("KERAS_HOME") or _os.path.join(_os.path.expanduser("~"), ".keras")
    try:
        with open(_os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def _import_tensorflow_quietly():
    # TensorFlow 2.21 writes a C++ start-up banner ("oneDNN custom operations are on")
    # straight to file descriptor 2, which no setting silences; notebooks would store it
    # as output. Python-level errors during the import still surface normally. Only on
    # Keras' TensorFlow backend: on JAX or PyTorch the algorithms never touch TensorFlow.
    if "tensorflow" in _sys.modules or _keras_backend() != "tensorflow":
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
