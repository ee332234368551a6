"""The global sampler: one deterministic stream of training batches, dealt out to the ranks.

One process with gradient accumulation A draws micro-batches 0, 1, ..., A-1 of a step from the
data generator, in order. With W ranks, micro-batch j = k*W + r goes to rank r at its micro-step k:
every rank draws the same W micro-batches from the same generator (they hold the same seed and
state), keeps its own and drops the others (those are gathered on the CPU only: batch_size x
block_size tokens each, little beside a step). So W ranks x A/W micro-steps train on exactly the batches one process
sees with A, the generator state after a step is the same everywhere, and one rank is bit-for-bit
what `Dataset.batch` gives.
"""


class GlobalSampler:
    def __init__(self, data, rank: int = 0, world_size: int = 1):
        self.data, self.rank, self.world_size = data, rank, world_size

    def batch(self, split, batch_size, block_size, generator, device="cpu"):
        """This rank's (x, y) of the next world_size micro-batches of the global stream."""
        mine = None
        for r in range(self.world_size):
            drawn = self.data.batch(split, batch_size, block_size, generator, device if r == self.rank else "cpu")
            if r == self.rank:
                mine = drawn
        return mine

    def owned(self, index: int) -> bool:
        """Whether item `index` of a dealt sequence (an evaluation's batches) is this rank's."""
        return index % self.world_size == self.rank
