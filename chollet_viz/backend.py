"""The few things that differ between Keras 3's backends: TensorFlow, JAX and PyTorch.

Everything else in the package is written with ``keras.ops``. This module holds:

- ``value_and_grad(fn, *inputs)``: a per-sample score and its gradient with respect to
  the inputs (``tf.GradientTape``, ``jax.value_and_grad``, ``torch.autograd.grad``);
- ``compile(fn, state=...)``: ``tf.function``, ``jax.jit`` or, for PyTorch, the function
  itself (eager; see ``compile``);
- ``relu(rule, max_value)``: ReLUs whose backward pass follows guided backpropagation or
  the deconvnet rule (``tf.custom_gradient``, ``jax.custom_vjp``, ``torch.autograd.Function``);
- ``Ascent``: the state of an image being optimised and one compiled ascent step;
- ``to_numpy``.

An image being optimised is the one piece of state: TensorFlow updates a variable in
place inside ``tf.function`` (its Keras optimizers refuse ``stateless_apply``), while
under ``jax.jit`` an in-place ``assign`` leaks tracers, so JAX threads the values and the
optimizer's slots through a pure step (``stateless_apply``). ``Ascent`` hides the
difference behind ``step``.

The backend's library is imported only when it is the one Keras runs on (Keras has
already imported it then), so JAX and PyTorch users never import TensorFlow from here.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")
RULES = ("backprop", "guided", "deconvnet")


def name() -> str:
    """The Keras backend in use, checked to be one this package supports."""
    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise RuntimeError(
            f"Keras runs on the {backend!r} backend, which chollet_viz does not support: it "
            f"needs gradients. Valid backends are {', '.join(BACKENDS)}; set the environment "
            "variable KERAS_BACKEND to one of them before importing keras."
        )
    return backend


def to_numpy(x):
    """A tensor (or a list, tuple or dict of them) of any backend as NumPy arrays."""
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), x)


# --- gradients --------------------------------------------------------------------------


def _split(out, has_aux: bool):
    if not has_aux:
        return out, None
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError("With has_aux=True, fn must return a pair (score, aux).")
    return out[0], out[1]


def _float_inputs(inputs):
    if not inputs:
        raise TypeError("value_and_grad needs at least one input to differentiate with respect to.")
    tensors = [keras.ops.convert_to_tensor(x) for x in inputs]
    for i, t in enumerate(tensors):
        if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(t.dtype)):
            raise TypeError(
                f"Input {i} has dtype {keras.backend.standardize_dtype(t.dtype)}; gradients need "
                "floating-point inputs. Pass integer arguments (class indices) through a closure."
            )
    return tensors


def value_and_grad(fn, *inputs, has_aux: bool = False):
    """``fn(*inputs)`` and the gradient of its sum with respect to each input.

    ``fn`` returns a score, usually one per sample (b,); its sum is differentiated, which
    gives each sample's own gradient because samples do not interact (keep models in
    inference mode: ``training=False``, no batch statistics). With ``has_aux=True`` ``fn``
    returns ``(score, aux)`` and ``aux`` (anything, e.g. the logits or a feature map) is
    passed through undifferentiated.

    Returns ``(score, grads)``, or ``((score, aux), grads)`` with ``has_aux``; ``grads``
    is a tuple with one gradient per input, zeros where the score does not depend on it.
    Usable inside ``compile``; integer arguments go in through a closure.
    """
    backend = name()
    xs = _float_inputs(inputs)
    if backend == "tensorflow":
        value, aux, grads = _tf_value_and_grad(fn, xs, has_aux)
    elif backend == "jax":
        value, aux, grads = _jax_value_and_grad(fn, xs, has_aux)
    else:
        value, aux, grads = _torch_value_and_grad(fn, xs, has_aux)
    return ((value, aux), grads) if has_aux else (value, grads)


def _tf_value_and_grad(fn, xs, has_aux):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        # Watching the inputs records every op, even in a frozen model whose weights are
        # not trainable, and for inputs that are plain tensors rather than variables.
        for x in xs:
            tape.watch(x)
        value, aux = _split(fn(*xs), has_aux)
        total = tf.reduce_sum(value)
    grads = tape.gradient(total, xs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return value, aux, tuple(grads)


def _jax_value_and_grad(fn, xs, has_aux):
    import jax
    import jax.numpy as jnp

    def total(*args):
        value, aux = _split(fn(*args), has_aux)
        return jnp.sum(value), (value, aux)

    (_, (value, aux)), grads = jax.value_and_grad(total, argnums=tuple(range(len(xs))), has_aux=True)(*xs)
    return value, aux, tuple(grads)


def _torch_value_and_grad(fn, xs, has_aux):
    import torch

    # Fresh leaves: the caller's tensors are neither modified nor kept in a graph.
    leaves = [x.detach().requires_grad_(True) for x in xs]
    with torch.enable_grad():  # also inside a caller's torch.no_grad()
        value, aux = _split(fn(*leaves), has_aux)
        if not value.requires_grad:  # the score depends on no input
            return value.detach(), aux, tuple(torch.zeros_like(x) for x in xs)
        grads = torch.autograd.grad(value.sum(), leaves, allow_unused=True)
    grads = tuple(torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads))
    aux = keras.tree.map_structure(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, aux)
    return value.detach(), aux, grads


# --- compilation ------------------------------------------------------------------------


def _is_array(a) -> bool:
    """An array, or a list / tuple / dict of arrays only (a traced argument of ``jax.jit``)."""
    if isinstance(a, (list, tuple, dict)):
        return all(_is_array(leaf) for leaf in keras.tree.flatten(a))
    return isinstance(a, (np.ndarray, np.generic)) or keras.ops.is_tensor(a)


def _variables(state):
    if state is None:
        return []
    if isinstance(state, (keras.layers.Layer, keras.Model)):
        return list(state.variables)
    return list(state)


def compile(fn, state=None):
    """``fn`` compiled for the backend, called like ``fn`` (positional arguments).

    - TensorFlow: ``tf.function(reduce_retracing=True)``. TF counts retracing per code
      object, so several method objects would share one count and trigger a spurious
      "retracing" warning; a ``functools.partial`` gets a count of its own.
    - JAX: ``jax.jit``. Arguments that are not arrays (ints, strings, tuples of them) are
      static, one compiled function per value, as ``tf.function`` does with Python
      values. ``jax.jit`` would bake the weights in as constants at the first trace, so
      that a model changed afterwards (``set_weights``) gave stale answers; the values of
      the variables of ``state`` (a layer or model, or a list of variables) are passed as
      arguments on every call instead and read through ``keras.StatelessScope``.
    - PyTorch: eager, ``fn`` itself. ``torch.compile`` works on these functions but does
      not help: measured on a small convnet's input gradient (batch 4, 16x16, 2 CPU
      cores), its first call took 74 s (inductor compiles C++) and later calls were 4x
      slower than eager (0.088 s against 0.023 s), Keras' Python layer dispatch breaking
      the graph; eager is also the PyTorch baseline every user has.
    """
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(functools.partial(fn), reduce_retracing=True)
    if backend == "torch":
        return fn
    return _JaxCompiled(fn, state)


class _JaxCompiled:
    def __init__(self, fn, state):
        self.fn = fn
        self.state = state
        self._jitted = {}  # static arguments -> jitted function of the array arguments

    def __call__(self, *args):
        import jax

        arrays = [i for i, a in enumerate(args) if _is_array(a)]
        static = tuple((i, a) for i, a in enumerate(args) if i not in arrays)
        try:
            jitted = self._jitted.get(static)
        except TypeError as error:  # an unhashable static argument (a list, a dict)
            raise TypeError(
                "Arguments of a compiled function must be arrays or hashable values "
                f"(numbers, strings, tuples); got {[type(a).__name__ for _, a in static]}."
            ) from error
        if jitted is None:

            def pure(values, *array_args):
                full = dict(static)
                full.update(zip(arrays, array_args))
                # Read at tracing, as the values are: a model built after ``compile`` counts.
                variables = _variables(self.state)
                with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                    return self.fn(*(full[i] for i in range(len(args))))

            jitted = self._jitted[static] = jax.jit(pure)
        return jitted([v.value for v in _variables(self.state)], *(args[i] for i in arrays))


# --- ReLUs with a replaced backward pass ------------------------------------------------


def _mask(rule, x, dy, max_value):
    """Where the backward pass lets ``dy`` through (see ``relu``)."""
    ops = keras.ops
    if rule == "deconvnet":
        return dy > 0
    active = x > 0 if max_value is None else ops.logical_and(x > 0, x < max_value)
    return ops.logical_and(active, dy > 0) if rule == "guided" else active


def _forward(x, max_value):
    y = keras.ops.relu(x)
    return y if max_value is None else keras.ops.minimum(y, keras.ops.cast(max_value, y.dtype))


class _RuleReLU(keras.Operation):
    """A Keras operation, so that it also works on the symbolic tensors of a Functional
    model being built (a plain function of backend tensors would fail there, or be
    left out of the graph)."""

    def __init__(self, fn, name):
        super().__init__(name=name)
        self.fn = fn
        self.__name__ = name  # read like an activation's name (cam._core does)

    def call(self, x):
        return self.fn(x)

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, x.dtype)


@functools.cache
def relu(rule: str = "guided", max_value: float | None = None):
    """A ReLU (clipped at ``max_value``: 6 for ReLU6) whose backward pass follows ``rule``.

    The forward pass is the ordinary ReLU. Backward, the upstream gradient ``dy`` passes
    - ``"backprop"``: where ``0 < x`` (and ``x < max_value``): the true gradient;
    - ``"guided"``: there and only where ``dy > 0`` (Springenberg et al., 2015);
    - ``"deconvnet"``: wherever ``dy > 0``, whatever the sign of ``x`` (Zeiler & Fergus, 2014).
    Elsewhere it is 0; at ``x == 0`` or ``x == max_value`` the gradient is 0, as TF's is.
    Use it as a layer's activation, a replacement layer in ``replay``, or on tensors.
    """
    if rule not in RULES:
        raise ValueError(f"Unknown rule {rule!r}; valid rules are {RULES}.")
    if max_value is not None:
        max_value = float(max_value)
        if not max_value > 0:
            raise ValueError(f"max_value must be positive (6 for ReLU6) or None, got {max_value}.")
    backend = name()

    def backward(x, dy):
        return dy * keras.ops.cast(_mask(rule, x, dy, max_value), dy.dtype)

    custom = {"tensorflow": _tf_custom, "jax": _jax_custom, "torch": _torch_custom}[backend]
    suffix = "" if max_value is None else ("6" if max_value == 6 else f"_max{max_value:g}")
    return _RuleReLU(custom(lambda x: _forward(x, max_value), backward), f"{rule}_relu{suffix}")


def _tf_custom(forward, backward):
    import tensorflow as tf

    @tf.custom_gradient
    def f(x):
        return forward(x), lambda dy: backward(x, dy)

    return f


def _jax_custom(forward, backward):
    import jax

    @jax.custom_vjp
    def f(x):
        return forward(x)

    f.defvjp(lambda x: (forward(x), x), lambda x, dy: (backward(x, dy),))
    return f


def _torch_custom(forward, backward):
    import torch

    class Rule(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return forward(x)

        @staticmethod
        def backward(ctx, dy):
            (x,) = ctx.saved_tensors
            return backward(x, dy)

    return lambda x: Rule.apply(keras.ops.convert_to_tensor(x))


# --- an image being optimised ----------------------------------------------------------


class Ascent:
    """Tensors being optimised (an image's pixels, a spectrum) and one ascent step on them.

    ``start``: one array or a list of them; a ``keras.Variable`` among them is optimised
    in place (it is the variable of a parameterisation, say), any other array is copied
    into a new variable. ``optimizer``: a Keras optimizer (it
    minimises, so it is given the negated gradient) or a function ``update(grads,
    values) -> new values`` (the book's normalised step, say), written with
    ``keras.ops``. ``step(score, *args)`` computes ``score(*values, *args)`` (one score
    per image), its gradient, updates the values and returns the score; it is compiled
    at its first call, once per ``score`` (pass a new ``Ascent`` for a new objective).
    ``args`` are arrays (a random seed, say) or static Python values. ``state``: the
    model the score calls, passed to ``compile`` (under JAX its weights are then
    arguments of the compiled step rather than constants copied into it).
    """

    def __init__(self, start, optimizer, state=None):
        arrays = list(start) if isinstance(start, (list, tuple)) else [start]
        self.variables = [a if isinstance(a, keras.Variable) else keras.Variable(np.asarray(a, np.float32), trainable=True) for a in arrays]
        self.optimizer = optimizer
        self._keras = isinstance(optimizer, keras.optimizers.Optimizer)
        if self._keras:
            optimizer.build(self.variables)
        elif not callable(optimizer):
            raise TypeError(f"optimizer must be a Keras optimizer or a function update(grads, values), got {optimizer!r}.")
        self._state = state
        self._step = None
        self._score = None

    @property
    def values(self) -> list:
        return [v.value for v in self.variables]

    def _gradient(self, score, values, args):
        return value_and_grad(lambda *vs: score(*vs, *args), *values)

    def _update(self, grads, values):
        new = self.optimizer(list(grads), list(values))
        if len(new) != len(values):
            raise ValueError(f"update returned {len(new)} tensors for {len(values)} values.")
        return new

    def _in_place(self, score, *args):  # TensorFlow (inside tf.function) and PyTorch
        value, grads = self._gradient(score, self.values, args)
        if self._keras:
            self.optimizer.apply([-g for g in grads], self.variables)
        else:
            for variable, new in zip(self.variables, self._update(grads, self.values)):
                variable.assign(new)
        return value

    def _pure(self, score, values, slots, *args):  # JAX, under jax.jit
        value, grads = self._gradient(score, values, args)
        if self._keras:
            values, slots = self.optimizer.stateless_apply(slots, [-g for g in grads], values)
        else:
            values = self._update(grads, values)
        return value, values, slots

    def step(self, score, *args):
        if self._step is None or score is not self._score:
            self._score = score
            if name() == "jax":
                self._step = compile(functools.partial(self._pure, score), self._state)
            else:
                self._step = compile(functools.partial(self._in_place, score), self._state)
        if name() != "jax":
            return self._step(*args)
        slots = [v.value for v in self.optimizer.variables] if self._keras else []
        value, values, slots = self._step(self.values, slots, *args)
        for variable, new in zip(self.variables, values):
            variable.assign(new)
        for variable, new in zip(self.optimizer.variables if self._keras else [], slots):
            variable.assign(new)
        return value


__all__ = ["BACKENDS", "RULES", "name", "to_numpy", "value_and_grad", "compile", "relu", "Ascent"]
