"""The training scores of the PyTorch engine: kept on the device, then summed over the ranks."""

from __future__ import annotations

import torch

from train.scoring import Scores


def flush(scores: Scores, pending: list) -> None:
    """Score the batches kept on the device (one host copy for all of them)."""
    if pending:
        labels, outputs, losses_ = (
            torch.cat(parts).cpu().numpy() for parts in zip(*pending, strict=True)
        )
        scores.update(labels, outputs, losses_)
        pending.clear()


def sum_over_ranks(scores: Scores, device: torch.device) -> None:
    """Every rank's training samples in the epoch's accuracy and loss, as MXNet's one process
    per host scores all its devices' outputs (a no-op without ``torch.distributed``)."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return
    totals = [scores.correct, scores.correct_k, float(scores.count), scores.loss_sum]
    summed = torch.tensor(totals, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(summed)
    scores.correct, scores.correct_k, count, scores.loss_sum = summed.tolist()
    scores.count = int(count)
