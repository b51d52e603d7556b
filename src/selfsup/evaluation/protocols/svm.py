"""The RBF SVM probe (TS2Vec's classification protocol; evaluation/svm.py)."""
from __future__ import annotations

from ..context import EvalContext, protocol


@protocol("svm", needs_labels=True)
def svm_protocol(ctx: EvalContext, folds: int = 5, max_train: int = 2000) -> dict[str, float]:
    """RBF SVM on the frozen features, C chosen by 5-fold cross-validation (TS2Vec's protocol), on at
    most `max_train` train rows (a stratified sample; TS2Vec's code caps at 10,000)."""
    from ..svm import svm_probe

    return svm_probe(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"), folds,
                     max_train=max_train if max_train > 0 else None, seed=ctx.seed)
