"""benchmarks/mtl_speed.py and benchmarks/mtl_solvers.py at toy size: every row they report is measured, and the
floor row writes the shared gradient the exact methods write (the sum of the task rows)."""

import torch
from tests.benchmark_scripts import load_benchmark


def test_the_solver_benchmark_times_every_solve_and_its_references():
    medians = load_benchmark("mtl_solvers").measure(tasks=3, steps=7)
    assert set(medians) == {"gram", "pcgrad", "mgda", "cagrad", "nash_mtl", "np.sum", "np.linalg.solve",
                            "np.sum again", "np.linalg.solve again"}
    assert all(us > 0 for us in medians.values())


def test_the_floor_writes_the_sum_of_the_task_gradients():
    speed = load_benchmark("mtl_speed")
    model, batch = speed.build("mlp", 3, 16)
    speed.floor_step(model, batched=False)(speed.losses_of(model, batch))
    shared = model.shared_parameters()
    floor = [p.grad.clone() for p in shared]
    model.zero_grad(set_to_none=True)
    sum(speed.losses_of(model, batch).values()).backward()
    for p, grad in zip(shared, floor):
        torch.testing.assert_close(grad, p.grad, rtol=1e-5, atol=1e-6)
