"""chollet_viz: the code of the course "Visualizing what convnets learn", made reusable."""

__version__ = "0.1.0"
