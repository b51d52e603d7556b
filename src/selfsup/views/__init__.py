"""Batched view generators (images, tables): augmentation on the compute device, returning the parameters drawn."""
from .fourier import batch_styles_standardization
from .image import (ImageViewConfig, ImageViews, byol_views, fmnist_views, mae_views, multicrop_views, normalize,
                    simclr_views)
from .table import TableViewConfig, TableViews, scarf_views

__all__ = ["ImageViewConfig", "ImageViews", "normalize", "simclr_views", "byol_views", "fmnist_views", "mae_views",
           "multicrop_views", "batch_styles_standardization", "TableViewConfig", "TableViews", "scarf_views"]
