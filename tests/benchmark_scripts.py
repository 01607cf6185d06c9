"""Loading a script of benchmarks/ as a module, for the tests that check a benchmark at toy size."""

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module, with benchmarks/ on sys.path while it loads, as when the script runs (some
    import a sibling: compress.py imports distill.py's SETUPS, mtl_solvers.py mtl_speed.py's model)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))
