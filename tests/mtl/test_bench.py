"""`bench mtl`: Δm on hand-made numbers, the run plan, and a whole tiny benchmark through Python and the CLI."""

import json

import pytest

from hydranet.config import load_config
from hydranet.errors import UserError
from hydranet.mtl.bench import _plan, delta_m, run_bench, stats


def test_delta_m_by_hand():
    # accuracy 0.9 vs 1.0: −10 %; mae 0.5 vs 0.4 (lower is better): −25 %; mean −17.5 %
    assert delta_m({"a": 0.9, "m": 0.5}, {"a": 1.0, "m": 0.4}, {"a": False, "m": True}) == pytest.approx(-17.5)
    # better on both: accuracy 0.88 vs 0.8 (+10 %), mae 0.3 vs 0.4 (+25 %)
    assert delta_m({"a": 0.88, "m": 0.3}, {"a": 0.8, "m": 0.4}, {"a": False, "m": True}) == pytest.approx(17.5)
    assert delta_m({"a": 0.8}, {"a": 0.8}, {"a": False}) == 0


def test_stats_mean_and_sample_std():
    assert stats([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(2 ** 0.5), "values": [1.0, 3.0]}
    assert stats([5.0])["std"] == 0.0


def test_plan_baselines_share_the_split_and_watch_their_own_task():
    base = load_config("quickstart")  # stratified on digit, early stopping on val/digit/accuracy
    plan = _plan(base, ["equal", "static"], ["hard"], seeds=2)
    labels = [label for label, _, _ in plan]
    assert labels[:3] == ["single-digit-s0", "single-parity-s0", "single-ink-s0"] and len(plan) == 6 + 4
    single_ink = dict((label, cfg) for label, _, cfg in plan)["single-ink-s1"]
    assert list(single_ink.tasks) == ["ink"] and single_ink.seed == 1 and single_ink.mtl.balancer.name == "equal"
    assert single_ink.train.early_stopping.monitor == "val/ink/mae"
    assert all(cfg.data.split.stratify is None for _, _, cfg in plan)  # same examples in every run of a seed


def test_run_bench_end_to_end(tmp_path, one_thread):
    lines = []
    results = run_bench("quickstart", ["equal", "static"], ["hard"], 1,
                        ["data.limit=300", "train.epochs=1", "train.early_stopping.monitor=null"], tmp_path / "b",
                        echo=lines.append)
    out = tmp_path / "b"
    assert {"bench.json", "bench.md", "bench.png", "runs"} <= {p.name for p in out.iterdir()}
    assert len(lines) == 3 + 2 + 1 and lines[0].startswith("[1/5] single-digit-s0: digit accuracy ")
    saved = json.loads((out / "bench.json").read_text())
    assert saved["tasks"]["ink"] == {"metric": "mae", "lower_is_better": True}
    equal = saved["methods"][0]
    base = {t: saved["baseline"][t]["mean"] for t in saved["tasks"]}
    mine = {t: equal["metrics"][t]["mean"] for t in saved["tasks"]}
    expected = 100 / 3 * sum((mine[t] - base[t]) / base[t] * (-1 if t == "ink" else 1) for t in base)
    assert equal["delta_m"]["mean"] == pytest.approx(expected) and equal["time_vs_equal"] == 1.0
    # static with every weight 1 trains exactly what equal trains
    assert saved["methods"][1]["metrics"] == equal["metrics"]
    table = (out / "bench.md").read_text()
    assert "| equal | hard |" in table and "ink mae ↓" in table and "seeds: 0" in table
    assert results["methods"][0]["delta_m"] == equal["delta_m"]


def test_user_errors_before_any_run(tmp_path):
    with pytest.raises(UserError, match="--balancers: unknown balancer 'nope'"):
        run_bench("quickstart", ["equal", "nope"], None, 1, [], tmp_path / "x")
    with pytest.raises(UserError, match="--sharings: unknown sharing 'star'"):
        run_bench("quickstart", ["equal"], ["star"], 1, [], tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "bench.json").write_text("{}")
    with pytest.raises(UserError, match="already exists and is not an empty folder"):
        run_bench("quickstart", ["equal"], None, 1, [], tmp_path / "full")
    assert not (tmp_path / "x").exists()


def test_cli_unknown_balancer_is_one_line_and_exit_2(cli):
    code, out, err = cli("bench", "mtl", "quickstart", "--balancers", "equal,nope", "--seeds", "1")
    assert code == 2 and err.count("\n") == 1 and "unknown balancer 'nope'" in err
