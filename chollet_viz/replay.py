"""Replaying a Keras model layer by layer: now part of ``chollet_viz.layers``.

Kept so that ``from chollet_viz.replay import replay, leaf_layers`` goes on working.
"""

from .layers import Hook, Replay, is_container, leaf_layers, output_layer, replay

__all__ = ["Hook", "Replay", "is_container", "leaf_layers", "output_layer", "replay"]
