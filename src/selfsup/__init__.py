"""selfsup: self-supervised representation learning. Pretrain, evaluate and embed, from one API.

    import selfsup
    run = selfsup.pretrain(data="fashion-mnist", method="simclr", steps=2000, out="runs/fm")
    selfsup.evaluate("runs/fm", data="fashion-mnist")
    encoder = selfsup.load_encoder("runs/fm")
"""
from .api import embed, evaluate, pretrain, shard, study
from .encoder import Encoder, load_encoder, save_encoder
from .errors import SelfsupError

__version__ = "0.1.0"
__all__ = ["pretrain", "evaluate", "study", "embed", "shard", "load_encoder", "save_encoder", "Encoder", "SelfsupError", "__version__"]
