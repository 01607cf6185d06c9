"""Lifecycle hooks of registered components: the trainer calls balancers, perturbations, extra losses and
self-supervised methods through the same optional hooks as callbacks, so each `on_*` method a component
defines must be one of them, callable as the trainer calls it (a misspelt `on_epoch_ends` would never run).
"""

import inspect

import pytest

from hydranet import registry
from tests.contracts.conftest import HOOKS

COMPONENTS = [(kind, name) for kind in ("balancer", "perturbation", "loss", "ssl") for name in registry.names(kind)]


@pytest.mark.parametrize("kind, name", COMPONENTS)
def test_hooks_are_the_trainers_and_take_its_arguments(kind, name):
    component = registry.get(kind, name)
    if not isinstance(component, type):
        return  # a factory function: its object is checked by the kind's own suite
    for attr in dir(component):
        if not attr.startswith("on_"):
            continue
        assert attr in HOOKS, f"{kind} {name}: {attr} is not a trainer hook (hooks: {', '.join(HOOKS)})"
        inspect.signature(getattr(component, attr)).bind("self", "trainer", *HOOKS[attr])
