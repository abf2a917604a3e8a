"""Diagnostics and plots for what variational inference produced."""

from pyrovi.diagnostics.plots import plot_image_rows, plot_latent, project_2d

__all__ = ["plot_image_rows", "plot_latent", "project_2d"]
