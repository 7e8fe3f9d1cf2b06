"""The torchvision peer of ``benchmarks/bench_train.py``, run in its own venv (``.venv-bench``).

GluonCV 0.10.5 refuses to import when torch >= 2 is installed beside it, so the PyTorch side
of the comparison lives in a separate interpreter. This script imports nothing from the
project; it prints one JSON object on its last line of stdout.

Tasks:
  loader  ``ImageFolder`` + ``DataLoader(num_workers=W)``: images/sec over full epochs.
  train   a plain torchvision ResNet-18 training loop (SGD, cross-entropy) fed by that loader:
          images/sec over ``--batches`` steps after ``--warmup`` steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def make_transform(kind: str, size: int):
    from torchvision import transforms as T

    if kind == "rrc":
        geometry = [T.RandomResizedCrop(size)]
    elif kind == "resize-crop":
        geometry = [T.Resize(round(size * 256 / 224)), T.RandomCrop(size)]
    else:
        raise SystemExit(f"unknown transform {kind!r}")
    return T.Compose([*geometry, T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])


def make_loader(args, *, drop_last: bool):
    import torch
    from torchvision import datasets

    dataset = datasets.ImageFolder(args.root, transform=make_transform(args.transform, args.size))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(args.seed),
    )


def run_loader(args) -> dict:
    loader = make_loader(args, drop_last=False)
    # Warm-up: start the workers and run a few batches, untimed.
    for i, _ in enumerate(loader):
        if i + 1 >= args.warmup:
            break
    epochs = []
    for _ in range(args.epochs):
        count = 0
        start = time.perf_counter()
        for images, _labels in loader:
            count += images.shape[0]
        elapsed = time.perf_counter() - start
        epochs.append({"images": count, "seconds": elapsed, "images_per_sec": count / elapsed})
    total = sum(e["images"] for e in epochs)
    seconds = sum(e["seconds"] for e in epochs)
    result = {"images": total, "seconds": seconds, "images_per_sec": total / seconds}
    result["epochs"] = epochs
    return result


def _batches(loader):
    while True:
        yield from loader


def run_train(args) -> dict:
    import torch
    from torchvision import models

    torch.manual_seed(args.seed)
    loader = make_loader(args, drop_last=True)
    num_classes = len(loader.dataset.classes)
    net = models.resnet18(num_classes=num_classes)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    batches = _batches(loader)

    def step() -> tuple[int, float, float]:
        images, labels = next(batches)
        optimizer.zero_grad(set_to_none=True)
        outputs = net(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        # Read the loss and accuracy back every batch, as the MXNet trainer does.
        correct = (outputs.argmax(dim=1) == labels).sum().item()
        return images.shape[0], loss.item(), correct

    for _ in range(args.warmup):
        step()
    count, loss_sum, correct = 0, 0.0, 0
    start = time.perf_counter()
    for _ in range(args.batches):
        n, loss, c = step()
        count += n
        loss_sum += loss * n
        correct += c
    elapsed = time.perf_counter() - start
    return {
        "images": count,
        "seconds": elapsed,
        "images_per_sec": count / elapsed,
        "loss": loss_sum / count,
        "accuracy": correct / count,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=("loader", "train", "info"))
    parser.add_argument("--root", help="ImageFolder root (one sub-folder per class)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--transform", choices=("rrc", "resize-crop"), default="rrc")
    parser.add_argument("--epochs", type=int, default=1, help="loader: timed epochs")
    parser.add_argument("--batches", type=int, default=8, help="train: timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import PIL
    import torch
    import torchvision

    result = {
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "pillow": PIL.__version__,
        },
        "torch_threads": torch.get_num_threads(),
    }
    if args.task == "loader":
        result.update(run_loader(args))
    elif args.task == "train":
        result.update(run_train(args))
    sys.stdout.flush()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
