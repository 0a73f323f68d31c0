"""Interactive explorers (ipywidgets) for Jupyter and Colab, one module per chapter topic."""
