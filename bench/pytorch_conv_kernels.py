#!/usr/bin/env python3
"""Which cuDNN kernels PyTorch runs for one VGG16 convolution, and how long forward + backward
takes: the evidence behind the fp32 paragraph of bench/RESULTS.md.

For each layout (channels_last, contiguous NCHW) and each shape, it times forward and both
backwards with cudnn.benchmark, then lists the six GPU kernels that took the most time in one
profiled pass (torch.profiler). Kernel names tell the algorithm family: implicit_gemm, fft2d_*,
winograd*, and nhwcToNchwKernel where cuDNN converts layouts inside its engine.

usage: python3 bench/pytorch_conv_kernels.py [--precision fp32|tf32|bf16]
                                             [--shape N,H,C,K ...]   (default 64,224,64,64 64,56,256,256)
"""
import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"))
    ap.add_argument("--shape", nargs="*", default=["64,224,64,64", "64,56,256,256"],
                    help="N,H,C,K: batch, height (= width), input and output channels")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        ap.error("needs a CUDA GPU")
    torch.backends.cudnn.benchmark = True
    tf32 = args.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    for fmt in ("channels_last", "contiguous"):
        mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        for spec in args.shape:
            n, h, c, k = (int(v) for v in spec.split(","))
            x = torch.randn(n, c, h, h, device="cuda", dtype=dtype)
            x = x.to(memory_format=mf).requires_grad_()
            conv = torch.nn.Conv2d(c, k, 3, padding=1).cuda().to(dtype=dtype, memory_format=mf)

            def step():
                y = conv(x)
                y.backward(torch.ones_like(y))

            for _ in range(3):
                step()
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(args.reps):
                step()
            torch.cuda.synchronize()
            ms = (time.perf_counter() - t) / args.reps * 1e3
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                step()
                torch.cuda.synchronize()
            print(f"== {args.precision} {fmt} conv ({n}, {h}, {h}, {c}) -> {k}: "
                  f"forward + backward {ms:.2f} ms")
            events = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)
            for e in events[:6]:
                print(f"   {e.device_time_total / 1e3:8.3f} ms  {e.key[:150]}")


if __name__ == "__main__":
    main()
