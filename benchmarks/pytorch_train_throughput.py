"""PyTorch side-by-side for mdq-train's throughput: the same CIFAR-variant ResNet-18 (3x3 stride-1
stem, no max-pool, BatchNorm without affine parameters), the same MD-tanh-S step (Adam on the
dual variable x~, then x = tanh(beta x~), DESIGN.md E1/E6/E8), batch 128, on random CIFAR-shaped
data already on the GPU (so it measures the training step, not the loader).

usage: python3 benchmarks/pytorch_train_throughput.py [--iters 200] [--batch 128] [--channels 3]
       [--size 32] [--precision fp32|tf32|bf16] [--compile]
Prints one line: 'pytorch resnet18 md-tanh-s: N img/s (precision, batch B, device)'.
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
        self.b1 = nn.BatchNorm2d(cout, affine=False)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout, affine=False)
        self.sc = None
        if stride != 1 or cin != cout:
            self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, affine=False))

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (self.sc(x) if self.sc is not None else x))


class ResNet18(nn.Module):
    def __init__(self, channels, classes):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64, affine=False), nn.ReLU())
        layers, cin = [], 64
        for i, w in enumerate([64, 128, 256, 512]):
            for b in range(2):
                layers.append(Block(cin, w, 2 if i > 0 and b == 0 else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--precision", default="tf32", choices=["fp32", "tf32", "bf16"])
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = a.precision != "fp32"
    torch.backends.cudnn.allow_tf32 = a.precision != "fp32"
    dev = "cuda"
    model = ResNet18(a.channels, 10).to(dev)
    # MD-tanh-S: the optimizer owns the dual variables; the network reads x = tanh(beta * dual).
    duals = [q.detach().clone().requires_grad_(True) for q in model.parameters()]
    opt = torch.optim.Adam(duals, lr=1e-3)
    beta = 1.0
    step_model = torch.compile(model) if a.compile else model
    x = torch.randn(a.batch, a.channels, a.size, a.size, device=dev)
    y = torch.randint(0, 10, (a.batch,), device=dev)

    def step():
        with torch.no_grad():
            for q, d in zip(model.parameters(), duals):
                q.copy_(torch.tanh(beta * d))
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = F.cross_entropy(step_model(x), y)
        model.zero_grad(set_to_none=True)
        loss.backward()
        for q, d in zip(model.parameters(), duals):
            d.grad = q.grad  # E6: the direction comes from g unchanged (no Jacobian of tanh)
        opt.step()

    for _ in range(20):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(a.iters):
        step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    print(f"pytorch resnet18 md-tanh-s: {a.iters * a.batch / dt:.0f} img/s ({a.precision}, batch {a.batch}, "
          f"{a.channels}x{a.size}x{a.size}, {torch.cuda.get_device_name()}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
