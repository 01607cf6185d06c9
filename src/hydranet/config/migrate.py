"""Keys that moved when methods got their own options: read from old run directories, refused in new input.

A run directory written before the move still loads, evaluates, predicts and resumes: its stored config is
upgraded when read (a moved option goes to its method when that method declares it; otherwise it was unused
and is dropped, as are a trunk's settings for other trunks). In an experiment file or `--set` an old key is
a clear error naming its new place.
"""

from __future__ import annotations

import copy
from typing import Any

from hydranet.config.sections import AdversarialMethod, BalancerMethod, SharingMethod, SSLMethod, TrunkMethod
from hydranet.errors import UserError

# old section.key → (method field, the methods that have the option, its name there)
MOVED: dict[tuple[str, str], tuple[str, tuple[str, ...], str]] = {
    ("mtl", "dwa_temperature"): ("mtl.balancer", ("dwa",), "temperature"),
    ("mtl", "gradnorm_alpha"): ("mtl.balancer", ("gradnorm",), "alpha"),
    ("mtl", "gradnorm_lr"): ("mtl.balancer", ("gradnorm",), "lr"),
    ("mtl", "cagrad_c"): ("mtl.balancer", ("cagrad",), "c"),
    ("mtl", "nash_update_every"): ("mtl.balancer", ("nash_mtl",), "update_every"),
    ("mtl", "nash_max_norm"): ("mtl.balancer", ("nash_mtl",), "max_norm"),
    ("mtl", "famo_lr"): ("mtl.balancer", ("famo",), "lr"),
    ("mtl", "famo_gamma"): ("mtl.balancer", ("famo",), "gamma"),
    ("model", "experts"): ("model.sharing", ("mmoe",), "experts"),
    ("model", "shared_experts"): ("model.sharing", ("cgc",), "shared_experts"),
    ("model", "task_experts"): ("model.sharing", ("cgc",), "task_experts"),
    ("model", "expert_width_mult"): ("model.sharing", ("mmoe", "cgc"), "expert_width_mult"),
    ("model", "gate_pool"): ("model.sharing", ("mmoe", "cgc"), "gate_pool"),
    ("model", "cross_stitch_self"): ("model.sharing", ("cross_stitch",), "self_weight"),
    ("adversarial", "steps"): ("adversarial.method", ("pgd", "trades"), "steps"),
    ("adversarial", "step_size"): ("adversarial.method", ("fgsm_rs", "pgd", "trades"), "step_size"),
    ("adversarial", "beta"): ("adversarial.method", ("trades",), "beta"),
    ("ssl", "temperature"): ("ssl.method", ("simclr",), "temperature"),
    ("ssl", "projection_dim"): ("ssl.method", ("simclr", "byol"), "projection_dim"),
    ("ssl", "projection_hidden"): ("ssl.method", ("simclr", "byol"), "projection_hidden"),
    ("ssl", "byol_tau"): ("ssl.method", ("byol",), "tau"),
    ("ssl", "mask_ratio"): ("ssl.method", ("denoising",), "mask_ratio"),
    ("ssl", "noise_std"): ("ssl.method", ("denoising",), "noise_std"),
    ("ssl", "decoder_hidden"): ("ssl.method", ("denoising",), "decoder_hidden"),
}
RENAMED = {("ssl", "objective"): "method"}  # the self-supervised method: "objective" meant four things
METHOD_TYPES = {"model.trunk": TrunkMethod, "model.sharing": SharingMethod, "mtl.balancer": BalancerMethod,
                "adversarial.method": AdversarialMethod, "ssl.method": SSLMethod}


def refuse_old_keys(data: dict[str, Any]) -> None:
    """An experiment file or `--set` that uses a moved key gets a one-line error naming the new place."""
    for (section, key), new in RENAMED.items():
        if isinstance(data.get(section), dict) and key in data[section]:
            raise UserError(f"config: {section}.{key} is now {section}.{new} (e.g. {section}: {{{new}: {data[section][key]}}})")
    for (section, key), (field, methods, option) in MOVED.items():
        if isinstance(data.get(section), dict) and key in data[section]:
            name = field.rsplit(".", 1)[1]
            raise UserError(f"config: {section}.{key} moved to {field}.{option} (with the {' or '.join(methods)} "
                            f"{name}: {name}: {{name: {methods[0]}, {option}: {data[section][key]}}}, "
                            f"or --set {field}.{option}=…)")


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A stored config in today's layout: renamed and moved keys put in place, unused ones dropped."""
    data = copy.deepcopy(data)
    for (section, key), new in RENAMED.items():
        if isinstance(data.get(section), dict) and key in data[section]:
            data[section].setdefault(new, data[section].pop(key))
    for (section, key), (field, methods, option) in MOVED.items():
        if not (isinstance(data.get(section), dict) and key in data[section]):
            continue
        value = data[section].pop(key)
        method = _method_dict(data, field)
        if method is not None and method["name"] in methods:
            method.setdefault(option, value)
    _drop_undeclared(data)
    _drop_unused_ensemble_style(data)
    return data


def _drop_unused_ensemble_style(data: dict[str, Any]) -> None:
    """A plain model (ensemble 1) saved with a style (tabm while it was the default, or a mini that did nothing)
    loads as the plain model it is; new input refuses mini there (Config._check_ensemble)."""
    model = data.get("model")
    if isinstance(model, dict) and model.get("ensemble", 1) == 1:
        model.pop("ensemble_style", None)


def _method_dict(data: dict[str, Any], field: str) -> dict[str, Any] | None:
    """The method at a dotted field as a `{name, …}` dict in place (a bare name is expanded), or None."""
    section, key = field.split(".")
    holder = data.get(section)
    if not isinstance(holder, dict) or key not in holder:
        return None
    if isinstance(holder[key], str):
        holder[key] = {"name": holder[key]}
    return holder[key] if isinstance(holder[key], dict) and "name" in holder[key] else None


def _drop_undeclared(data: dict[str, Any]) -> None:
    """Old runs stored every trunk's settings in `model.trunk`: keep those of the chosen trunk only."""
    for field, method_type in METHOD_TYPES.items():
        method = _method_dict(data, field)
        if method is None:
            continue
        try:
            declared = method_type(name=method["name"]).declared()
        except ValueError:
            continue  # an unknown name: validation will say so
        for key in [k for k in method if k != "name" and k not in declared.model_fields]:
            del method[key]
