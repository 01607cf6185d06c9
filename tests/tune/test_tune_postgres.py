"""`--storage postgresql://…`: workers that share one study through a real PostgreSQL server on 127.0.0.1.

The fixture runs Debian's PostgreSQL binaries (`.ci/run` installs the `postgresql` package where they are missing)
on a temporary cluster and a free port; without them the test is skipped and says why.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState

import hydranet as hn
from tests.ports import free_port


def postgres_bin() -> Path | None:
    """The folder with initdb and pg_ctl: on PATH, or where Debian's package puts them."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((d for d in candidates if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL cluster: trust authentication on 127.0.0.1 only, removed afterwards."""
    binaries = postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin; "
                    "install Debian's postgresql package (.ci/run does)")
    pytest.importorskip("psycopg", reason="needs the psycopg driver (pip install 'hydranet[postgres]')")
    root = Path(tempfile.mkdtemp(prefix="hydranet-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root: run them as an unprivileged user
        name = "postgres" if _user_exists("postgres") else "nobody"
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
        user = pwd.getpwnam(name)
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", name, "--"]
    data, port = root / "data", free_port()
    subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "hydranet", "--auth=trust", "--no-sync"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://hydranet@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_machines_share_one_postgresql_study(postgres_url, tiny_search, tmp_path, one_thread):
    """"Machine a" runs two trials, then "machine b" joins the same study from its own folder and adds the third.
    (Concurrent workers are tested on the journal storage; here each worker process would cost seconds of imports.)"""
    experiment = hn.Experiment(tiny_search)
    quiet = {"storage": postgres_url, "study": "shared", "sampler": "random", "echo": lambda line: None}
    experiment.tune(2, dir=tmp_path / "a", **quiet)
    second = experiment.tune(3, dir=tmp_path / "b", **quiet)
    trials = second.study.trials
    assert [t.number for t in trials] == [0, 1, 2] and all(t.state == TrialState.COMPLETE for t in trials)
    assert [Path(t.user_attrs["run_dir"]).parent.parent.name for t in trials] == ["a", "a", "b"]
    assert second.study.metric_names == ["val/loss"]
    assert len(pd.read_csv(tmp_path / "b" / "trials.csv")) == 3  # each machine's report covers the whole study
    assert (tmp_path / "b" / "best.yaml").exists() and not (tmp_path / "b" / "journal.log").exists()
