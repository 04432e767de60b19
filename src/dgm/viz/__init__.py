"""Pictures a person can look at: sample grids, 2-D densities, text samples, training curves."""

from dgm.viz.samples import compare_curves, density_plot, image_grid, save_samples, training_curves

__all__ = ["compare_curves", "density_plot", "image_grid", "save_samples", "training_curves"]
