"""`python -m hydranet …` is the `hydranet` command, so torchrun can start it: `torchrun --nproc-per-node N -m
hydranet train EXP`."""

from hydranet.cli import main

main()
