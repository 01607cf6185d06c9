"""One worker process of `hydranet tune --workers W`: `python -P -m hydranet.tune.worker INDEX TRIALS`, with the
study's Settings as JSON on stdin. It runs its share of the trials against the shared storage and exits 130 on Ctrl-C.

The imports sit inside `main`'s try: a Ctrl-C during the seconds it takes to import torch must also exit 130.
"""

import os
import sys


def main() -> None:
    try:  # the imports too: a Ctrl-C while torch loads still exits 130
        import torch

        from hydranet.tune.settings import Settings  # lazy: inside the try (above)
        from hydranet.tune.workers import run_worker  # lazy: inside the try (above)

        index, n_trials = int(sys.argv[1]), int(sys.argv[2])
        settings = Settings.from_json(sys.stdin.read())
        if settings.base["train"]["threads"] is None:  # the cores are shared among the workers
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
        run_worker(settings, index, n_trials, lambda line: print(f"[worker {index}] {line}", flush=True))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
