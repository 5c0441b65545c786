#!/usr/bin/env python3
"""Writes a toy dataset in Fashion-MNIST's idx format into DIR (320 training, 96 test images of
28x28): 4 classes, a bright 7x7 square in one quadrant per class over noise. Small CPU runs of
mdq-train learn it in a few dozen steps (the kill/resume drill, the reproduce script's test).
  scripts/make-toy-idx.py DIR"""
import os
import random
import struct
import sys


def write(d, prefix, count, seed):
    rng = random.Random(seed)
    with open(f"{d}/{prefix}-images-idx3-ubyte", "wb") as im, open(f"{d}/{prefix}-labels-idx1-ubyte", "wb") as lb:
        im.write(struct.pack(">IIII", 0x803, count, 28, 28))
        lb.write(struct.pack(">II", 0x801, count))
        for _ in range(count):
            c = rng.randrange(4)
            px = bytearray(rng.randrange(60) for _ in range(784))
            r0, c0 = (c // 2) * 14 + 3, (c % 2) * 14 + 3
            for r in range(7):
                for k in range(7):
                    px[(r0 + r) * 28 + c0 + k] = 250
            im.write(px)
            lb.write(bytes([c]))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    os.makedirs(sys.argv[1])
    write(sys.argv[1], "train", 320, 1)
    write(sys.argv[1], "t10k", 96, 2)
