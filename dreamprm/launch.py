"""How a multi-GPU, multi-node bi-level run is laid out, checked before any model loads (`train.py --dry_run`).

Launched by torchrun (one process per GPU; under Slurm, `srun` starts one torchrun per node, see
reweighting/README.md), every rank reads its place from torchrun's environment. betty's distributed strategies
(distributed, zero, fsdp) then give rank r every world_size-th batch of the loader (betty/patch/data_loader.py):
each rank steps on --train_batch_size samples (and --meta_batch_size meta records), so one optimiser step sees
world_size times that, and each rank pins GPU rank % (GPUs per node).

The dry run forms the real process group (gloo, so it runs on CPU login nodes too), gathers every rank's view,
and rank 0 prints the table; a launch whose ranks disagree, or that gives a node more ranks than GPUs, fails here.
"""
from __future__ import annotations

import os
import socket

DISTRIBUTED = ("distributed", "zero", "fsdp")


def layout(strategy: str, train_batch: int, meta_batch: int, env=os.environ, gpus_per_node: int | None = None) -> dict:
    """This process's place in the run and the batch it sees, from torchrun's environment."""
    world = int(env.get("WORLD_SIZE", 1))
    if strategy in DISTRIBUTED and world < 2:
        raise RuntimeError(f"--strategy {strategy} needs at least 2 ranks (betty asserts it); launch with torchrun "
                           f"--nproc_per_node N (N >= 2), got WORLD_SIZE={world}")
    if strategy not in DISTRIBUTED and world > 1:
        raise RuntimeError(f"{world} ranks launched but --strategy {strategy} trains on one device: every rank would "
                           "train its own copy; pass --strategy distributed, zero or fsdp")
    local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    rank, local_rank = int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0))
    return {"world_size": world, "rank": rank, "local_rank": local_rank, "node_rank": int(env.get("GROUP_RANK", 0)),
            "ranks_per_node": local_world, "host": socket.gethostname(),
            "gpu": rank % gpus_per_node if gpus_per_node else None, "gpus_per_node": gpus_per_node,
            "per_rank_train_batch": train_batch, "global_train_batch": train_batch * world,
            "per_rank_meta_batch": meta_batch, "global_meta_batch": meta_batch * world,
            "master": f"{env.get('MASTER_ADDR', 'localhost')}:{env.get('MASTER_PORT', '-')}"}


def check(rows: list[dict]) -> list[str]:
    """What is wrong with a gathered launch (empty when nothing is)."""
    problems = []
    if sorted(r["rank"] for r in rows) != list(range(len(rows))):
        problems.append(f"ranks {sorted(r['rank'] for r in rows)} are not 0..{len(rows) - 1}")
    for r in rows:
        if r["gpus_per_node"] is not None and r["ranks_per_node"] > r["gpus_per_node"]:
            problems.append(f"node {r['node_rank']} ({r['host']}) runs {r['ranks_per_node']} ranks on "
                            f"{r['gpus_per_node']} GPUs: betty pins one GPU per rank")
            break
    # betty's device pinning (rank % GPUs) equals LOCAL_RANK only when every node runs as many ranks as it has GPUs
    if any(r["gpu"] is not None and r["gpu"] != r["local_rank"] for r in rows) and not problems:
        problems.append("a rank's GPU (rank % GPUs per node) is not its LOCAL_RANK: run as many ranks per node as "
                        "it has GPUs (--nproc_per_node = GPUs per node)")
    return problems


def dry_run(strategy: str, train_batch: int, meta_batch: int) -> list[dict] | None:
    """Gather every rank's layout (rank 0 gets the list, others None) and print it on rank 0."""
    import torch
    import torch.distributed as dist

    gpus = torch.cuda.device_count() or None
    me = layout(strategy, train_batch, meta_batch, gpus_per_node=gpus)
    if me["world_size"] == 1:
        rows = [me]
    else:
        dist.init_process_group("gloo")
        rows = [None] * me["world_size"]
        dist.all_gather_object(rows, me)
        dist.destroy_process_group()
    if me["rank"] != 0:
        return None
    print(f"dry run: strategy {strategy}, world size {me['world_size']} on "
          f"{len({r['node_rank'] for r in rows})} node(s), master {me['master']}; per rank: train batch "
          f"{train_batch}, meta batch {meta_batch}; per optimiser step: train {me['global_train_batch']}, "
          f"meta {me['global_meta_batch']}")
    print(f"{'rank':>5} {'node':>5} {'local':>6} {'gpu':>4}  host")
    for r in sorted(rows, key=lambda r: r["rank"]):
        print(f"{r['rank']:>5} {r['node_rank']:>5} {r['local_rank']:>6} {str(r['gpu'] if r['gpu'] is not None else '-'):>4}"
              f"  {r['host']}")
    if problems := check(rows):
        raise RuntimeError("; ".join(problems))
    return rows
