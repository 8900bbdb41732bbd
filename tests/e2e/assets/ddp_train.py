"""Train a tiny model with DistributedDataParallel over gloo on CPU, and say how it went.

The workload of the distributed-training tests and of the PyTorchJob-versus-torchrun
benchmark: the same file runs as one process per pod (the training operator's
environment: MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK) and under
`torchrun --nproc_per_node=N`, which sets those and LOCAL_RANK itself, so the two runs
compare the platform, not the script. `init_process_group("gloo")` reads the rendezvous
from the environment either way.

The model learns y = x.w + b + noise from synthetic data drawn per rank (seed + rank), so
each rank sees different batches and only DDP's gradient averaging keeps the replicas
equal. Each rank prints one JSON line:

    {"rank": 0, "world_size": 3, "local_rank": 0, "host": "...", "steps": 200,
     "first_loss": 12.3, "last_loss": 0.01, "replicas_agree": true,
     "seconds": {"import": 0.9, "init": 0.4, "train": 1.1, "total": 2.5}}

`replicas_agree` is true when every rank ended with the same parameters (checked with
an all-reduce, so it also proves the collective works both ways). The exit code is 0
only if the loss fell and the replicas agree. Options: `--steps`, `--batch`,
`--features`, `--lr`, `--seed`, `--timeout` (for the rendezvous).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import time
from datetime import timedelta


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds to wait for the other ranks at rendezvous")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    # Imported here to time it: loading torch is a good part of a rank's start-up.
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    imported = time.monotonic()
    # One thread per rank: the ranks share the machine's cores (torchrun sets
    # OMP_NUM_THREADS=1 for the same reason), and the model is far too small to split.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group("gloo", timeout=timedelta(seconds=args.timeout))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    initialized = time.monotonic()

    torch.manual_seed(args.seed)  # the same target and initial weights on every rank
    true_w = torch.randn(args.features, 1)
    model = DistributedDataParallel(torch.nn.Linear(args.features, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    data = torch.Generator().manual_seed(args.seed + 1 + rank)  # each rank its own batches
    losses = []
    for _ in range(args.steps):
        x = torch.randn(args.batch, args.features, generator=data)
        y = x @ true_w + 0.5 + 0.01 * torch.randn(args.batch, 1, generator=data)
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    trained = time.monotonic()

    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    spread = torch.stack([flat, -flat])
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)  # max(p) and -min(p) over the ranks
    agree = bool((spread[0] + spread[1]).abs().max() <= 1e-6)
    # DDP's reducer sits in a reference cycle; left to the collector at interpreter exit,
    # its C++ threads are torn down half-alive and the process aborts ("terminate called
    # without an active exception", SIGABRT) in about one run of three with torch 2.13.
    del model, optimizer
    gc.collect()
    dist.destroy_process_group()

    done = time.monotonic()
    print(json.dumps({
        "rank": rank, "world_size": world_size,
        "local_rank": int(os.environ.get("LOCAL_RANK", "0")), "host": socket.gethostname(),
        "steps": args.steps, "first_loss": losses[0], "last_loss": losses[-1],
        "replicas_agree": agree,
        "seconds": {"import": round(imported - started, 3),
                    "init": round(initialized - imported, 3),
                    "train": round(trained - initialized, 3),
                    "total": round(done - started, 3)}}), flush=True)
    return 0 if agree and losses[-1] < losses[0] else 1


if __name__ == "__main__":
    raise SystemExit(main())
