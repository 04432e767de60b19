"""Pictures a person can look at: sample grids, 2-D densities, text samples, training curves."""

from dgm.viz.samples import density_plot, image_grid, save_samples, training_curves

__all__ = ["density_plot", "image_grid", "save_samples", "training_curves"]
