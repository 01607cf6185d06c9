"""Multi-task loss balancing: the Balancer extension point (`mtl.balancer`), one method per file.

A balancer factory takes `(Config, tasks)`; the object's `backward(losses, shared_params)` runs the
backward pass itself, leaves `.grad` set and returns the weight it gave each loss term.
"""

from hydranet.mtl import (  # noqa: F401  (importing registers the built-in balancers)
    cagrad,
    dwa,
    equal,
    famo,
    gradnorm,
    mgda,
    nash_mtl,
    pcgrad,
    rlw,
    static,
    uncertainty,
)
