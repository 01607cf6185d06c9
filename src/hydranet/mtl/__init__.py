"""Multi-task loss balancing: the Balancer extension point (`mtl.balancer`), one method per file.

A balancer factory takes `(options, tasks, seed)`: its own validated options (`mtl.balancer: {name, …}`), the
Task objects and the run's seed; the object's `backward(losses, shared_params)` runs the backward pass itself,
leaves `.grad` set and returns the weight it gave each loss term.
"""

from hydranet import registry
from hydranet.config import Method
from hydranet.mtl import (  # noqa: F401  (importing registers the built-in balancers)
    aligned_mtl,
    cagrad,
    db_mtl,
    dwa,
    equal,
    fairgrad,
    famo,
    graddrop,
    gradnorm,
    gradvac,
    imtl,
    mgda,
    nash_mtl,
    pcgrad,
    rlw,
    static,
    uncertainty,
    upgrad,
)


def build_balancer(method: Method, tasks: dict, seed: int):
    """The balancer `mtl.balancer` names, made with its own options."""
    return registry.get("balancer", method.name, "mtl.balancer")(method.options, tasks, seed)
