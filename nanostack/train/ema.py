"""Weight averaging: an exponential moving average (EMA) of the weights, kept beside the optimizer.

After every optimizer step, average <- decay * average + (1 - decay) * weights. The average sits
in a flatter, lower-loss spot than the last noisy iterate, so it is what a run evaluates and keeps
as its best checkpoint; training itself always continues from the live weights.

`WeightAverage` wraps an optimizer and keeps its surface (param_groups, step, zero_grad,
state_dict, load_state_dict), so the average is saved and restored with the optimizer state and
a resumed run continues it exactly. It holds the average as a second copy of the model
(`.model`), ready to evaluate and save. Buffers (BatchNorm's running statistics) are copied from
the live model, not averaged.
"""
import copy

import torch


class WeightAverage:
    def __init__(self, optimizer, model, decay: float):
        self.optimizer, self.decay, self.live = optimizer, decay, model
        self.model = copy.deepcopy(model).requires_grad_(False)  # deepcopy keeps tied weights tied
        self.params = list(model.parameters())  # a tied weight once, in the same order in both
        self.average = list(self.model.parameters())

    @property
    def param_groups(self) -> list:
        return self.optimizer.param_groups

    def step(self):
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - self.decay)
            for mine, live in zip(self.model.buffers(), self.live.buffers()):
                mine.copy_(live)

    def zero_grad(self, set_to_none: bool = True):
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "average": [a.clone() for a in self.average]}

    def load_state_dict(self, state: dict):
        self.optimizer.load_state_dict(state["optimizer"])
        if len(state["average"]) != len(self.average):
            raise ValueError("the saved weight average is for another model")
        for mine, saved in zip(self.average, state["average"]):
            mine.copy_(saved)
