"""Conv + BatchNorm folding for inference.

Protocol: a module holding ``conv`` (``nn.Conv2d``) and ``bn`` (``nn.BatchNorm2d``) and a
``forward_fuse`` method is folded generically. A block with another layout defines
``fuse(self) -> None`` and is asked to fold itself instead.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse_model(model: nn.Module) -> int:
    """Fold every foldable Conv+BN pair in eval mode; return how many were folded."""
    was_training = model.training
    model.eval()
    folded = 0
    for module in list(model.modules()):
        if module is model:
            continue
        custom = getattr(module, "fuse", None)
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if callable(custom) and not isinstance(module, nn.Sequential):
            custom()
            folded += 1
        elif isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and hasattr(module, "forward_fuse"):
            module.conv = fuse_conv_bn_eval(conv, bn)
            del module.bn
            module.forward = module.forward_fuse  # type: ignore[assignment]  # an instance override
            folded += 1
    model.train(was_training)
    return folded
