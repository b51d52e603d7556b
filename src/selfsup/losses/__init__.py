"""Loss functions: pure functions of tensors, one family per module, the paper's defaults as keywords."""
from .contrastive import nt_xent
from .distillation import byol_loss
from .masked import masked_patch_mse
from .redundancy import (barlow_twins, covariance, cross_correlation, invariance, off_diagonal,
                         off_diagonal_loss, on_diagonal_loss, standardize, variance, vicreg)

__all__ = ["nt_xent", "byol_loss", "masked_patch_mse", "barlow_twins", "cross_correlation", "on_diagonal_loss",
           "off_diagonal_loss", "off_diagonal", "standardize", "invariance", "variance", "covariance", "vicreg"]
