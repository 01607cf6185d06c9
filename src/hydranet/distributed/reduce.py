"""The all-reduces that keep every rank's step equal to one process's on the global batch: task losses over all
labelled examples, gradients, per-task gradient matrices, BatchNorm statistics and running sums.

Each function is the identity in a single process. Every collective turns a dead or silent peer into one clear
`PeerLost` line (`context.exchanging`).
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from hydranet.distributed.context import active, exchanging, world_size


def transport_device(tensor: Tensor) -> torch.device:
    """Where the backend can move `tensor`: NCCL moves only GPU tensors, so a CPU one (the epoch means of plain
    numbers such as the balancer weights, a time budget's seconds) travels through this rank's GPU; gloo moves
    tensors where they are."""
    if tensor.device.type == "cpu" and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def _all_reduce(tensor: Tensor, what: str) -> Tensor:
    """Sum `tensor` over the ranks, in place."""
    moved = tensor.to(transport_device(tensor))
    with exchanging(what):
        dist.all_reduce(moved)
    if moved is not tensor:
        tensor.copy_(moved)
    return tensor


def summed(tensor: Tensor, what: str = "a sum") -> Tensor:
    """A new tensor: `tensor` summed over the ranks (no gradient flows through it)."""
    if not active():
        return tensor
    return _all_reduce(tensor.detach().clone(), what)


def averaged(tensor: Tensor, what: str = "task gradients") -> Tensor:
    """A new tensor: the mean of `tensor` over the ranks (the per-task gradient matrix of a gradient balancer)."""
    if not active():
        return tensor
    return summed(tensor, what) / world_size()


def concatenated(tensor: Tensor, what: str) -> Tensor:
    """Every rank's `tensor` side by side along its last axis, in rank order (all the same shape); no gradient."""
    if not active():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    with exchanging(what):
        dist.all_gather(parts, tensor.detach().contiguous())
    return torch.cat(parts, dim=-1)


def from_rank0(value: float, what: str) -> float:
    """Rank 0's `value` on every rank: a decision that must be the same everywhere although each rank measures its
    own (how many seconds a time budget has used: the ranks' clocks differ, and a rank that stopped one iteration
    before the others would leave them waiting in a collective)."""
    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    tensor = tensor.to(transport_device(tensor))
    with exchanging(what):
        dist.broadcast(tensor, src=0)
    return float(tensor)


def global_mean(mean: Tensor, count: Tensor) -> Tensor:
    """This rank's share of a loss whose mean runs over the labelled elements of every rank.

    `mean` (a scalar, or one mean per column) is the rank's own mean over its `count` labelled elements (0 when it
    has none). The returned term has gradient W·count/C·∇mean, with C the count summed over the W ranks, so the
    ranks' average gradient is the gradient of Σ sums / C: the loss of one process on the global batch, however
    unevenly the labels fall. A per-rank mean would weigh a rank's few labels as much as another's many. Its value
    is the global mean itself (identical on every rank), so balancers that read loss values (FAMO, GradNorm, the
    logged losses) agree."""
    if not active():
        return mean
    count = count.to(mean.dtype)
    local = torch.cat([(mean.detach() * count).reshape(-1), count.reshape(1)])  # this rank's sum(s) and count
    reduced = summed(local, "the labelled-example counts")
    total, labelled = reduced[:-1].view_as(mean), reduced[-1]
    denominator = torch.where(labelled > 0, labelled, torch.ones_like(labelled))
    share = mean * (count * world_size() / denominator)
    return share + (total / denominator - share).detach()  # value: the global mean; gradient: this rank's share


def average_gradients(params: Iterable[Tensor]) -> None:
    """Replace every `.grad` by its mean over the ranks, in one flat all-reduce.

    Called once after the balancer's backward, rather than wrapping the model in DistributedDataParallel: DDP's
    hooks fire only on `.backward()`, not on the `torch.autograd.grad` calls of the gradient balancers, it hides
    the model behind a wrapper every component would have to look through, and its overlap of communication with
    backward saves nothing between CPU processes that share the cores. A parameter without a gradient on some rank
    (a head its labels did not reach) gets zeros there, so the buffers line up; one without any on every rank
    keeps None, as in one process."""
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    present = summed(has_grad, "which gradients exist")
    reduced = [p for p, n in zip(params, present.tolist()) if n]
    for p in reduced:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not reduced:
        return
    flat = _all_reduce(torch.cat([p.grad.reshape(-1) for p in reduced]), "the gradients") / world_size()
    offset = 0
    for p in reduced:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


@torch.no_grad()
def average_buffers(module: nn.Module) -> None:
    """Set every floating-point buffer (BatchNorm's running mean and variance) to its mean over the ranks.

    Each rank updates its statistics from its own share of the batch; they are linear in the batch statistics, so
    one average per epoch equals an average after every step (and the weight average of `train.ema`, linear too,
    follows). Integer buffers (step counters) agree on every rank already."""
    if not active():
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = _all_reduce(torch.cat([b.reshape(-1) for b in buffers]), "the BatchNorm statistics") / world_size()
    offset = 0
    for b in buffers:
        b.copy_(flat[offset:offset + b.numel()].view_as(b))
        offset += b.numel()
