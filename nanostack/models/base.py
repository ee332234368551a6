"""LanguageModel: what every torch model of models/ shares besides its forward pass.

The one interface is `model(idx, targets=None) -> (logits, loss)` with `model.config` (a
ModelConfig); this base adds the parameter count, so no model writes it again.
"""
import torch.nn as nn


class LanguageModel(nn.Module):
    def num_params(self) -> int:
        """Trained parameters (a tied weight once; buffers such as a bigram's counts are not parameters)."""
        return sum(p.numel() for p in self.parameters())
