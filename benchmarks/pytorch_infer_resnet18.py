"""PyTorch side of benchmarks/bench_packed_resnet18 (issue #16's fair baselines): ResNet-18 inference
in bf16, channels-last, eager and torch.compile, on random images already on the GPU.

usage: python3 benchmarks/pytorch_infer_resnet18.py [--models imagenet,cifar] [--batches 1,32,256]
       [--modes eager,compile] [--compile-mode max-autotune] [--iters 50] [--warmup 10]

imagenet is torchvision's resnet18 (3x224x224, 1000 classes), the network bench_packed_resnet18
times; cifar is mdq's CIFAR variant (3x32x32, 10 classes, BatchNorm without affine parameters,
benchmarks/pytorch_train_step.py make_model). Weights are random: only throughput is measured.
The model and the data are bf16 and channels-last (NHWC), in eval mode under inference_mode;
cudnn.benchmark is on. 'compile' compiles once per model and batch (static shapes) with
--compile-mode (max-autotune by default: minutes per shape; 'default' is quicker). One line per
configuration:
  infer impl=torch-eager model=resnet18-imagenet batch=256 img_per_s=... ms_per_batch=... weight_mb=... [compile_s=...]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_train_step import comma_list, cuda_torch  # noqa: E402


def make(name):
    """(model, input shape) for imagenet | cifar."""
    if name == "imagenet":
        import torchvision
        return torchvision.models.resnet18(weights=None), (3, 224, 224)
    from pytorch_train_step import make_model
    return make_model("resnet18"), (3, 32, 32)


def bench(a, name, batch, mode):
    import torch
    model, shape = make(name)
    model = model.eval().to(device="cuda", dtype=torch.bfloat16, memory_format=torch.channels_last)
    x = torch.randn(batch, *shape, device="cuda").to(dtype=torch.bfloat16, memory_format=torch.channels_last)
    weight_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    run = torch.compile(model, mode=a.compile_mode) if mode == "compile" else model
    extra = ""
    with torch.inference_mode():
        t0 = time.perf_counter()
        run(x)  # the compile, when there is one
        torch.cuda.synchronize()
        if mode == "compile":
            extra = f" compile_s={time.perf_counter() - t0:.1f}"
        for _ in range(a.warmup):
            run(x)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(a.iters):
            run(x)
        end.record()
        torch.cuda.synchronize()
    ms = start.elapsed_time(end) / a.iters
    print(f"infer impl=torch-{mode} model=resnet18-{name} batch={batch} img_per_s={batch * 1e3 / ms:.0f} "
          f"ms_per_batch={ms:.3f} weight_mb={weight_mb:.2f}{extra}", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=comma_list(), default=["imagenet", "cifar"])
    p.add_argument("--batches", type=comma_list(int), default=[1, 32, 256])
    p.add_argument("--modes", type=comma_list(), default=["eager", "compile"])
    p.add_argument("--compile-mode", default="max-autotune",
                   help="torch.compile's mode: max-autotune (default), max-autotune-no-cudagraphs, reduce-overhead, default")
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    a = p.parse_args(argv)
    for v in a.models:
        if v not in ("imagenet", "cifar"):
            p.error(f"unknown model '{v}': use imagenet or cifar")
    for v in a.modes:
        if v not in ("eager", "compile"):
            p.error(f"unknown mode '{v}': use eager or compile")
    if a.iters < 1 or a.warmup < 0 or min(a.batches, default=0) < 1:
        p.error("--iters and every batch must be at least 1, --warmup at least 0")
    return a


def main():
    a = parse_args()
    torch, status = cuda_torch("pytorch_infer_resnet18")
    if torch is None:
        return status
    print(f"# pytorch_infer_resnet18 on {torch.cuda.get_device_name()}, torch {torch.__version__}: bf16 channels-last, "
          f"eval, random weights and images on the device, {a.warmup} warm-up and {a.iters} timed batches", flush=True)
    failed = 0
    for name in a.models:
        for mode in a.modes:
            for batch in a.batches:
                try:
                    bench(a, name, batch, mode)
                except Exception as e:  # out of memory, a compile failure: report it, measure the rest
                    msg = str(e).splitlines()[0] if str(e) else ""
                    print(f'infer impl=torch-{mode} model=resnet18-{name} batch={batch} error="{type(e).__name__}: {msg}"',
                          flush=True)
                    failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
