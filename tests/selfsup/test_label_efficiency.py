"""benchmarks/label_efficiency.py at toy size on the bundled digits: pretraining must earn its keep."""

from tests.benchmark_scripts import load_benchmark


def test_simclr_features_beat_random_features_with_few_labels(tmp_path, one_thread):
    bench = load_benchmark("label_efficiency")
    rows = bench.label_efficiency(bench.digits_recipe(), [0.05], pretrain_epochs=3, epochs_full=3, min_steps=40,
                                  method="simclr", workdir=tmp_path, echo=lambda line: None)
    accuracy = {r["method"]: r["test_accuracy"] for r in rows}
    assert set(accuracy) == set(bench.METHODS) and rows[0]["labels"] == 63  # 5% of 1,257, class-balanced
    # 63 labels: a linear probe of 3 epochs of SimCLR features beats the same probe of random features by far
    # (measured 0.90 vs 0.73); fine-tuning and scratch training both learn something
    assert accuracy["linear"] > accuracy["linear_random"] + 0.08
    assert accuracy["finetune"] > 0.5 and accuracy["scratch"] > 0.3
    assert "| linear_random |" in bench.table(rows)
