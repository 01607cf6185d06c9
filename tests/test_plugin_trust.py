"""A run folder's `plugins:` never run just because someone reads the run: only when the user allows them.

The plugin below leaves a marker file whenever it is imported, so each check sees whether its code ran.
Subprocesses, because an in-process import would stay in `sys.modules` for every later test.
"""

import os
import subprocess
import sys

import yaml

import hydranet as hn
from hydranet import registry

PLUGIN = '''
from pathlib import Path
import hydranet as hn
from hydranet import registry
from hydranet.mtl.equal import Equal

Path(__file__).with_suffix(".ran").touch()  # proof that this module's code ran
hn.register("balancer", "marker_equal")(Equal)
'''


def hydranet(tmp_path, *args, allow_env=None):
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "mods"), "HYDRANET_CACHE": str(tmp_path / "cache")}
    env.pop("HYDRANET_ALLOW_PLUGINS", None)
    if allow_env is not None:
        env["HYDRANET_ALLOW_PLUGINS"] = allow_env
    return subprocess.run([sys.executable, "-c", "from hydranet.cli import main; main()", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_reading_a_run_imports_its_plugins_only_when_allowed(tmp_path, monkeypatch):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "marker_plugin.py").write_text(PLUGIN)
    marker = tmp_path / "mods" / "marker_plugin.ran"
    experiment = {"name": "p", "plugins": ["marker_plugin"], "data": {"source": "digits", "limit": 150},
                  "tasks": {"digit": {"kind": "classification"}}, "model": {"trunk": {"name": "mlp", "hidden": [8]}},
                  "mtl": {"balancer": "marker_equal"}, "train": {"epochs": 1, "progress": False, "threads": 1}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(experiment))

    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    for table in ("_TABLES", "_OPTIONS"):  # the plugin's registration ends with this test
        monkeypatch.setattr(registry, table, {kind: dict(names) for kind, names in getattr(registry, table).items()})
    monkeypatch.setitem(sys.modules, "marker_plugin", None)
    del sys.modules["marker_plugin"]  # imported afresh below, and removed again when the test ends
    hn.Experiment(str(tmp_path / "p.yaml")).fit(tmp_path / "run")  # the user's own file: allowed (in-process: fast)
    assert marker.exists()
    marker.unlink()

    refused = hydranet(tmp_path, "evaluate", "run")
    assert refused.returncode == 2 and not marker.exists()
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "marker_plugin" in lines[0] and "--allow-plugins" in lines[0], refused.stderr

    assert hydranet(tmp_path, "--allow-plugins", "evaluate", "run").returncode == 0 and marker.exists()
    marker.unlink()
    assert hydranet(tmp_path, "evaluate", "run", allow_env="other_module,marker_plugin").returncode == 0 and marker.exists()
