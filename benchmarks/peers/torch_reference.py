#!/usr/bin/env python3
"""PyTorch peer baseline: SupCon training throughput of a CIFAR ResNet-20 on this machine.

The model follows the PyTorch reimplementation the project is measured against:
He et al. (2016) CIFAR ResNet-20 with option-A (zero-padded identity) shortcuts,
L2-normalised 64-d embedding, 64-64 MLP projection head, SupCon loss at
temperature 0.07, SGD with momentum 0.9 and weight decay 1e-4.

Run in the peers' environment (`make peers` builds .peer-venv):
    .peer-venv/bin/python benchmarks/peers/torch_reference.py --batch 128 --steps 10
The last line is `images/s: N` (views per second, both views counted).
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def shortcut(self, x):
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, proj_dim=64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        blocks, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(3):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, proj_dim))

    def forward(self, x):
        h = F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1)
        return F.normalize(self.head(F.normalize(h, dim=1)), dim=1)


def supcon(z, labels, temperature=0.07):
    logits = z @ z.T / temperature
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool)
    logits = logits.masked_fill(self_mask, float("-inf"))
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -(log_prob.masked_fill(~pos, 0).sum(1) / pos.sum(1)).mean()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128, help="samples per step; two views each")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="0 keeps torch's default")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ResNet20()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.rand(2 * a.batch, 3, 32, 32)
    y = torch.randint(0, 10, (a.batch,)).repeat(2)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = supcon(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = (time.perf_counter() - t) / a.steps
    print(f"params: {sum(p.numel() for p in model.parameters())}")
    print(f"step seconds: {dt:.4f}")
    print(f"images/s: {2 * a.batch / dt:.1f}")


if __name__ == "__main__":
    main()
