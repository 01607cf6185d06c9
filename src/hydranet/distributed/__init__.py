"""Data-parallel training over torch.distributed (launched by torchrun): which rank this process is, how the
global batch is shared, and the collectives that keep every rank's losses, task gradients, metrics and
contrastive negatives equal to one process's. It sits on the ground floor (it needs only torch and the errors),
so the data, training, multi-task and self-supervised layers can all ask it; in a single process every helper
here is the identity."""
