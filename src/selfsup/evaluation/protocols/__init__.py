"""One module per evaluation protocol; importing this package registers them all."""
from . import (adversarial, alignment_uniformity, alpha_req, classic, cluster, coretune, fewshot, finetune,  # noqa: F401
               fractions, knn, linear, longtail, loki, multilayer, ood, rankme, ridge, robustness, separability,
               svm)
