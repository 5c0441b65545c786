"""PyTorch side of benchmarks/bench_train_step: the same CIFAR-variant networks (ResNet-18, VGG-16,
MobileNetV2, layer for layer as models/*.cpp, BatchNorm without affine parameters), the same
MD-tanh-S step (Adam on the dual variable x~, then x = tanh(beta x~) for every parameter,
DESIGN.md E1/E6/E8), on random CIFAR-shaped data already on the GPU (no loader).

usage: python3 benchmarks/pytorch_train_step.py [--models resnet18,vgg16,mobilenetv2]
       [--batches 128,512] [--precisions fp32,tf32,bf16] [--modes eager,compile]
       [--compile-precisions fp32,tf32,bf16] [--static-compile] [--channels-last] [--steps 30] [--warmup 5]

bf16 runs under torch.autocast (the master weights, duals and Adam moments stay f32), tf32 and
fp32 set cuDNN's and cuBLAS's allow_tf32; cudnn.benchmark is on. 'compile' compiles the model
(forward and backward) with torch.compile once per model and precision, with the batch dimension
marked dynamic so that both batch sizes share it; --static-compile compiles once per batch size
instead (PyTorch's best case, and one more slow compile per batch). The optimizer is PyTorch's
default Adam (foreach on CUDA) in both modes. Activations are NCHW, as a plain PyTorch script
has them; --channels-last makes the model and data NHWC. One line per configuration:
  train-step impl=torch-eager model=resnet18 batch=128 precision=bf16 img_per_s=... ms_per_step=...
    peak_alloc_mib=... peak_reserved_mib=... params=... [compile_s=...]
peak_alloc_mib is torch.cuda.max_memory_allocated, peak_reserved_mib max_memory_reserved, both
over the configuration (model, duals, Adam state, data and the steps). The timed steps are the
profiler's capture range (cudaProfilerStart/Stop), for scripts/profile-train-step.sh.
"""
import argparse
import gc
import sys
import time

BETA = 1.0  # E10's beta at the start of a run; its value does not change the cost of a step
VGG16_PLAN = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# (expansion t, channels c, blocks n, first stride s); CIFAR: stride 1 in the second stage.
MOBILENETV2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                      (6, 320, 1, 1)]


def make_model(name, classes=10):
    """The CIFAR variant (3x32x32 input) of resnet18 | vgg16 | mobilenetv2, as models/*.cpp builds it."""
    import torch.nn as nn

    class Residual(nn.Module):
        """mdq's nn::Residual: act(body(x) + shortcut(x)); None means identity shortcut, no act."""

        def __init__(self, body, shortcut=None, act=None):
            super().__init__()
            self.body, self.shortcut, self.act = body, shortcut, act

        def forward(self, x):
            y = self.body(x) + (x if self.shortcut is None else self.shortcut(x))
            return y if self.act is None else self.act(y)

    def conv_bn_act(cin, cout, k, stride=1, groups=1, act=nn.ReLU, bias=False):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias), nn.BatchNorm2d(cout, affine=False)]
        return layers + ([act()] if act else [])

    if name == "resnet18":
        layers, cin = conv_bn_act(3, 64, 3), 64
        for stage, width in enumerate([64, 128, 256, 512]):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                body = nn.Sequential(*conv_bn_act(cin, width, 3, stride), *conv_bn_act(width, width, 3, act=None))
                shortcut = None
                if stride != 1 or cin != width:
                    shortcut = nn.Sequential(*conv_bn_act(cin, width, 1, stride, act=None))
                layers.append(Residual(body, shortcut, nn.ReLU()))
                cin = width
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))
    if name == "vgg16":
        layers, cin = [], 3
        for c in VGG16_PLAN:
            if c == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += conv_bn_act(cin, c, 3, bias=True)
                cin = c
        classifier = [nn.Linear(512, 512), nn.BatchNorm1d(512, affine=False), nn.ReLU(),
                      nn.Linear(512, 512), nn.BatchNorm1d(512, affine=False), nn.ReLU(), nn.Linear(512, classes)]
        return nn.Sequential(*layers, nn.Flatten(), *classifier)
    if name == "mobilenetv2":
        layers, cin = conv_bn_act(3, 32, 3, act=nn.ReLU6), 32
        for t, c, n, s in MOBILENETV2_STAGES:
            for i in range(n):
                stride, hidden = s if i == 0 else 1, cin * t
                body = conv_bn_act(cin, hidden, 1, act=nn.ReLU6) if t != 1 else []
                body += conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6)
                body += conv_bn_act(hidden, c, 1, act=None)
                body = nn.Sequential(*body)
                layers.append(Residual(body) if stride == 1 and cin == c else body)
                cin = c
        layers += conv_bn_act(cin, 1280, 1, act=nn.ReLU6)
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes))
    raise SystemExit(f"pytorch_train_step: unknown model '{name}' (resnet18, vgg16, mobilenetv2)")


def mib(n):
    return n / 2**20


def bench(a, name, precision, mode):
    """Times one model at one precision and mode at every batch size; prints one line per batch."""
    import torch
    import torch.nn.functional as F

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision != "fp32"
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    layout = torch.channels_last if a.channels_last else torch.contiguous_format
    model = make_model(name).cuda().train().to(memory_format=layout)
    params = list(model.parameters())
    # MD-tanh-S: the optimizer owns the duals x~ (x~ = w at the start); the network reads x = tanh(beta x~).
    duals = [q.detach().clone().requires_grad_(True) for q in params]
    opt = torch.optim.Adam(duals, lr=1e-3)
    net = model
    if mode == "compile":
        torch._dynamo.reset()
        net = torch.compile(model, dynamic=False if a.static_compile else None)

    for batch in a.batches:
        x = (torch.rand(batch, 3, 32, 32, device="cuda") * 2 - 1).contiguous(memory_format=layout)
        y = torch.arange(batch, device="cuda") % 10
        if mode == "compile" and not a.static_compile:
            torch._dynamo.mark_dynamic(x, 0)  # one compiled graph for every batch size

        def step():
            with torch.no_grad():
                torch._foreach_copy_(params, torch._foreach_tanh(torch._foreach_mul(duals, BETA)))  # E6 projection
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(net(x), y)
            loss.backward()
            for q, d in zip(params, duals):
                d.grad = q.grad  # E6: the direction comes from g at x unchanged (no Jacobian of tanh)
            opt.step()
            opt.zero_grad(set_to_none=True)  # the duals' grads alias the parameters' ones: drop both
            model.zero_grad(set_to_none=True)

        torch.cuda.synchronize()
        t = time.perf_counter()
        step()  # the first step compiles (mode compile) and runs cuDNN's algorithm search
        torch.cuda.synchronize()
        first_s = time.perf_counter() - t
        for _ in range(a.warmup - 1):
            step()
        torch.cuda.synchronize()
        torch.cuda.profiler.start()  # the timed steps alone are the profiler's capture range
        t = time.perf_counter()
        for _ in range(a.steps):
            step()
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / a.steps
        torch.cuda.profiler.stop()
        extra = f" compile_s={first_s:.1f}" if mode == "compile" else ""
        print(f"train-step impl=torch-{mode} model={name} batch={batch} precision={precision} img_per_s={batch / dt:.0f} "
              f"ms_per_step={dt * 1e3:.3f} peak_alloc_mib={mib(torch.cuda.max_memory_allocated()):.1f} "
              f"peak_reserved_mib={mib(torch.cuda.max_memory_reserved()):.1f} "
              f"params={sum(q.numel() for q in params)}{extra}", flush=True)
        del x, y
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()  # the next batch size starts from the model's state alone


def comma_list(convert=str):
    return lambda s: [convert(v) for v in s.split(",") if v]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=comma_list(), default=["resnet18", "vgg16", "mobilenetv2"])
    p.add_argument("--batches", type=comma_list(int), default=[128, 512])
    p.add_argument("--precisions", type=comma_list(), default=["fp32", "tf32", "bf16"])
    p.add_argument("--modes", type=comma_list(), default=["eager", "compile"])
    p.add_argument("--compile-precisions", type=comma_list(), default=None,
                   help="the precisions that are also compiled (default: all of --precisions)")
    p.add_argument("--static-compile", action="store_true", help="compile once per batch size (slower warm-up)")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and data (NCHW by default)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    a = p.parse_args(argv)
    for v in a.precisions + (a.compile_precisions or []):
        if v not in ("fp32", "tf32", "bf16"):
            p.error(f"unknown precision '{v}': use fp32, tf32 or bf16")
    for v in a.modes:
        if v not in ("eager", "compile"):
            p.error(f"unknown mode '{v}': use eager or compile")
    if a.steps < 1 or a.warmup < 1 or min(a.batches, default=0) < 1:
        p.error("--steps, --warmup and every batch must be at least 1")
    return a


def configs(a):
    """(model, precision, mode) in run order: compile only at the --compile-precisions."""
    compiled = a.precisions if a.compile_precisions is None else a.compile_precisions
    return [(m, p, mode) for m in a.models for p in a.precisions for mode in a.modes
            if mode == "eager" or p in compiled]


def cuda_torch(who):
    """(torch with cudnn.benchmark on, None), or (None, exit status) when there is nothing to
    measure: 2 without torch, 0 without a GPU (a benchmark never fails for want of one)."""
    try:
        import torch
    except ImportError:
        print(f"{who}: torch is not installed; nothing to measure.", file=sys.stderr)
        return None, 2
    if not torch.cuda.is_available():
        print(f"{who}: no GPU (torch.cuda.is_available() is False); nothing to measure.")
        return None, 0
    torch.backends.cudnn.benchmark = True
    return torch, None


def main():
    a = parse_args()
    torch, status = cuda_torch("pytorch_train_step")
    if torch is None:
        return status
    print(f"# pytorch_train_step on {torch.cuda.get_device_name()}, torch {torch.__version__}: MD-tanh-S + Adam, "
          f"synthetic 3x32x32 data on the device, {a.warmup} warm-up and {a.steps} timed steps per configuration",
          flush=True)
    failed = 0
    for name, precision, mode in configs(a):
        try:
            bench(a, name, precision, mode)
        except Exception as e:  # e.g. out of memory or a compile failure: report it, measure the rest
            print(f'train-step impl=torch-{mode} model={name} precision={precision} error="{type(e).__name__}: '
                  f'{str(e).splitlines()[0] if str(e) else ""}"', flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
