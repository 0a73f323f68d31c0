"""Shared by the CAM tests (not collected by pytest: no ``test_`` prefix): the gradient a
reference needs, taken with the backend's own autodiff (``tf.GradientTape``,
``jax.grad``, ``torch.autograd``) and never through ``chollet_viz.backend`` or the
package's replay, so the CAM tests run under every ``KERAS_BACKEND``; and the skip mark of
the tests whose code or reference is TensorFlow-only.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()

tensorflow_only = pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason=f"TensorFlow only (Keras runs on {BACKEND}): tf-keras-vis, and the package's pixel "
    "attributions, guided backpropagation and faithfulness curves, still need TensorFlow",
)


def gradient(f, x) -> np.ndarray:
    """d sum(f(x)) / d x as float32 NumPy, for ``f`` written with Keras layers and
    ``keras.ops``; ``x`` is NumPy or a tensor of the backend. Summing gives each sample's
    own gradient because samples do not interact."""
    x = np.asarray(keras.ops.convert_to_numpy(x), np.float32)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        t = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            total = tf.reduce_sum(f(t))
        return tape.gradient(total, t).numpy()
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        return np.asarray(jax.grad(lambda v: jnp.sum(f(v)))(jnp.asarray(x)))
    if BACKEND == "torch":
        import torch

        t = torch.tensor(x, requires_grad=True)
        f(t).sum().backward()
        return t.grad.detach().cpu().numpy()
    raise RuntimeError(f"No autodiff reference for the {BACKEND!r} backend.")


def numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))
