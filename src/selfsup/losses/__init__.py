"""Loss functions: pure functions of tensors, one family per module, the paper's defaults as keywords."""
from .contrastive import dcl, dclw, info_nce, moco_v3_loss, negative_cosine, nnclr_loss, nt_xent, simsiam_loss, supcon
from .distillation import byol_loss
from .masked import masked_patch_mse
from .redundancy import (barlow_twins, covariance, cross_correlation, invariance, off_diagonal,
                         off_diagonal_loss, on_diagonal_loss, standardize, variance, vicreg)

__all__ = ["nt_xent", "info_nce", "moco_v3_loss", "negative_cosine", "simsiam_loss", "nnclr_loss", "dcl", "dclw",
           "supcon", "byol_loss", "masked_patch_mse", "barlow_twins", "cross_correlation", "on_diagonal_loss",
           "off_diagonal_loss", "off_diagonal", "standardize", "invariance", "variance", "covariance", "vicreg"]
