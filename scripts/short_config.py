#!/usr/bin/env python3
"""Writes a short-run config from a 100k-iteration reference config in configs/.

The short recipe (as in configs/*-30ep.cfg): E epochs at the reference batch size, and the
reference's lr steps and β interval T scaled by (iterations of E epochs) / 100000, rounded to
the nearest integer (T at least 1). Everything else (lr, γ, ρ, optimizer) is kept.

  scripts/short_config.py configs/cifar10-vgg16-md-tanh.cfg 30
      -> configs/cifar10-vgg16-md-tanh-30ep.cfg
  scripts/short_config.py configs/cifar10-resnet18-md-tanh-s.cfg 30 --method bc
      -> configs/cifar10-resnet18-bc-30ep.cfg (a method without a reference config of its own
         takes the (lr, γ, ρ, T) of SRC's method; the file's first line says so)
  scripts/short_config.py configs/cifar10-resnet18-md-tanh-s.cfg 30 --model mobilenetv2
      -> configs/cifar10-mobilenetv2-md-tanh-s-30ep.cfg (another architecture on SRC's recipe)

--check compares with the file already there instead of writing it.
"""
import argparse
import os
import sys

TRAIN_IMAGES = {"cifar10": 45000, "cifar100": 45000, "fashion-mnist": 54000, "mnist": 54000}
REFERENCE_ITERS = 100000
ORDER = ["model", "dataset", "method", "levels", "epochs", "batch-size", "lr", "lr-step", "lr-gamma",
         "optimizer", "beta-rho", "beta-interval"]


def read_cfg(path):
    keys = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            k, v = (s.strip() for s in line.split("=", 1))
            keys[k] = v
    return keys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="a 100k-iteration reference config")
    ap.add_argument("epochs", type=int)
    ap.add_argument("--method", help="write a config for this method on SRC's hyperparameters")
    ap.add_argument("--model", help="write a config for this model on SRC's hyperparameters")
    ap.add_argument("--check", action="store_true", help="compare with the existing file, write nothing")
    a = ap.parse_args()

    k = read_cfg(a.src)
    if int(k.get("iters", 0)) != REFERENCE_ITERS:
        sys.exit(f"{a.src}: not a {REFERENCE_ITERS}-iteration reference config (iters = {k.get('iters')})")
    src_method, src_model = k["method"], k["model"]
    method = a.method or src_method
    model = a.model or src_model
    batch = int(k.get("batch-size", 128))
    images = TRAIN_IMAGES[k["dataset"]]
    iters = images // batch * a.epochs
    scale = iters / REFERENCE_ITERS
    out = dict(k)
    out["method"], out["model"] = method, model
    out.setdefault("levels", "2")
    out.pop("iters")
    out["epochs"] = str(a.epochs)
    out["lr-step"] = ",".join(str(round(int(s) * scale)) for s in k["lr-step"].split(","))
    if "beta-interval" in k:
        out["beta-interval"] = str(max(1, round(int(k["beta-interval"]) * scale)))
    if method == "float":
        out.pop("beta-rho", None)
        out.pop("beta-interval", None)

    header = (f"# Short run: {a.epochs} epochs ({iters} iterations at batch {batch} on {images} training images); "
              f"the reference recipe with T and the lr steps scaled by {scale:.4f}.")
    if method != src_method:
        header += (f"\n# {method} has no reference config: these are the lr, gamma, rho and T of "
                   f"{os.path.basename(a.src)} ({src_method}).")
    if model != src_model:
        header += f"\n# {model} on the recipe of {os.path.basename(a.src)} ({src_model})."
    lines = [header] + [f"{key} = {out[key]}" for key in ORDER if key in out]
    lines += [f"{key} = {v}" for key, v in out.items() if key not in ORDER]
    text = "\n".join(lines) + "\n"

    name = f"{k['dataset']}-{model}-{method}-{a.epochs}ep.cfg"
    path = os.path.join(os.path.dirname(a.src), name)
    if a.check:
        old = open(path).read() if os.path.exists(path) else ""
        same = [l for l in old.splitlines() if not l.startswith("#")] == \
               [l for l in text.splitlines() if not l.startswith("#")]
        print(f"{path}: {'same keys' if same else 'DIFFERS'}")
        return 0 if same else 1
    with open(path, "w") as f:
        f.write(text)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
