"""The torchvision peer of ``benchmarks/bench_train.py``, run in its own venv (``.venv-bench``).

GluonCV 0.10.5 refuses to import when torch >= 2 is installed beside it, so the PyTorch side
of the comparison lives in a separate interpreter. This script imports nothing from the
project. It stays up for the whole benchmark so that the two sides can take turns in short
chunks (the machine is shared, and load comes in bursts): it reads one JSON command per line
on stdin and answers with one JSON object per line on stdout.

Commands:
  {"cmd": "info"}                      versions and thread counts
  {"cmd": "loader", "epochs": E}       ``ImageFolder`` + ``DataLoader(num_workers=W)``: E full
                                       epochs, images/sec (the first call warms the workers up)
  {"cmd": "train", "batches": N, "warmup": K}
                                       a plain torchvision ResNet-18 training loop (SGD,
                                       cross-entropy, batch 32) fed by its own DataLoader: K
                                       untimed then N timed steps, images/sec
  {"cmd": "quit"}

    python benchmarks/peers/torch_peer.py --root IMAGES [--workers 2] < commands
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


class Peer:
    def __init__(self, args: argparse.Namespace):
        import torch

        self.args = args
        torch.manual_seed(args.seed)
        self.loader = None
        self.train_state = None

    def make_loader(self, *, drop_last: bool):
        import torch
        from torchvision import datasets

        args = self.args
        dataset = datasets.ImageFolder(
            args.root, transform=make_transform(args.transform, args.size)
        )
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
            drop_last=drop_last,
            generator=torch.Generator().manual_seed(args.seed),
        )

    def info(self, _cmd: dict) -> dict:
        import PIL
        import torch
        import torchvision

        return {
            "versions": {
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
                "pillow": PIL.__version__,
            },
            "torch_threads": torch.get_num_threads(),
            "workers": self.args.workers,
            "transform": self.args.transform,
        }

    def run_loader(self, cmd: dict) -> dict:
        if self.loader is None:
            self.loader = self.make_loader(drop_last=False)
            for i, _ in enumerate(self.loader):  # start the workers, untimed
                if i >= 2:
                    break
        epochs = []
        for _ in range(int(cmd.get("epochs", 1))):
            count = 0
            start = time.perf_counter()
            for images, _labels in self.loader:
                count += images.shape[0]
            elapsed = time.perf_counter() - start
            epochs.append({"images": count, "seconds": elapsed, "images_per_sec": count / elapsed})
        total = sum(e["images"] for e in epochs)
        seconds = sum(e["seconds"] for e in epochs)
        return {"images": total, "seconds": seconds, "images_per_sec": total / seconds}

    def close_loader(self, _cmd: dict) -> dict:
        self.loader = None  # ends its persistent workers
        return {}

    def _setup_train(self):
        import torch
        from torchvision import models

        loader = self.make_loader(drop_last=True)
        net = models.resnet18(num_classes=len(loader.dataset.classes))
        net.train()
        optimizer = torch.optim.SGD(
            net.parameters(), lr=self.args.lr, momentum=0.9, weight_decay=1e-4
        )

        def batches():
            while True:
                yield from loader

        return net, optimizer, torch.nn.CrossEntropyLoss(), batches()

    def run_train(self, cmd: dict) -> dict:
        if self.train_state is None:
            self.train_state = self._setup_train()
        net, optimizer, criterion, batches = self.train_state

        def step() -> tuple[int, float, int]:
            images, labels = next(batches)
            optimizer.zero_grad(set_to_none=True)
            outputs = net(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            # Read loss and accuracy back every batch, as the MXNet trainer does.
            correct = int((outputs.argmax(dim=1) == labels).sum().item())
            return images.shape[0], float(loss.item()), correct

        for _ in range(int(cmd.get("warmup", 0))):
            step()
        count, loss_sum, correct = 0, 0.0, 0
        cpu = _cpu_seconds()
        start = time.perf_counter()
        for _ in range(int(cmd["batches"])):
            n, loss, c = step()
            count += n
            loss_sum += loss * n
            correct += c
        elapsed = time.perf_counter() - start
        return {
            "images": count,
            "seconds": elapsed,
            "images_per_sec": count / elapsed,
            "cpu_utilisation": (_cpu_seconds() - cpu) / elapsed,  # this process, not workers
            "loss": loss_sum / count,
            "accuracy": correct / count,
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="ImageFolder root (a folder per class)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--transform", choices=("rrc", "resize-crop"), default="rrc")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    peer = Peer(args)
    handlers = {
        "info": peer.info,
        "loader": peer.run_loader,
        "close_loader": peer.close_loader,
        "train": peer.run_train,
    }
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        try:
            reply = handlers[cmd["cmd"]](cmd)
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
