"""Self-supervised pretraining methods (`ssl.method`), one per file, registered under the `ssl` kind.

A method factory takes `(options, trunk, views)`: its own validated options, the trunk it pretrains and the
`ViewMaker` with the run's view settings; the object is an nn.Module the trainer calls as an extra loss,
`method(model, batch) → {name: loss}`, optimizing its own parameters (projection heads, decoders) with the
trunk, checkpointing its state and calling its hooks.
"""

from hydranet.ssl.methods import byol, denoising, mlm, simclr  # noqa: F401  (importing registers the built-ins)
