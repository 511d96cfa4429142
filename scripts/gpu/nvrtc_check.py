#!/usr/bin/env python3
"""Compile every CUDA kernel source of reprolm with NVRTC, as the CUDA build does at start-up, on a
machine without a GPU: a source that a normal CUDA compiler accepts can still fail under NVRTC, which
has no C headers (no INFINITY, no <math.h>), and that failure would otherwise show only on the GPU.

    python3 scripts/gpu/nvrtc_check.py            # every crates/**/*.cu, each after prelude.cu, for sm_90
    NVRTC_LIB=/path/to/libnvrtc.so.13 python3 scripts/gpu/nvrtc_check.py

libnvrtc is found through NVRTC_LIB, the `nvidia` Python packages (cu13, then cu12) or the loader path.
"""
import ctypes
import glob
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PRELUDE = os.path.join(ROOT, "crates/precision/src/cuda/prelude.cu")


def candidates():
    if os.environ.get("NVRTC_LIB"):
        yield os.environ["NVRTC_LIB"]
    try:
        import nvidia  # the CUDA wheels PyTorch depends on

        for base in nvidia.__path__:
            for sub in ("cu13/lib", "cuda_nvrtc/lib", "cu12/lib"):
                yield from sorted(glob.glob(os.path.join(base, sub, "libnvrtc.so.*[0-9]")))
    except ImportError:
        pass
    yield from ("libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so")


def load():
    for path in candidates():
        try:
            # libnvrtc opens its builtins library by name; load it first from the same directory.
            for b in glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so.*")):
                ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(path), path
        except OSError:
            continue
    sys.exit("nvrtc_check: no libnvrtc found (set NVRTC_LIB, or pip install nvidia-cuda-nvrtc)")


def main():
    lib, path = load()
    prelude = open(PRELUDE).read()
    sources = sorted(p for p in glob.glob(os.path.join(ROOT, "crates/**/*.cu"), recursive=True)
                     if os.path.abspath(p) != os.path.abspath(PRELUDE))
    failed = 0
    for src in sources:
        text = (prelude + "\n" + open(src).read()).encode()
        prog = ctypes.c_void_p()
        if lib.nvrtcCreateProgram(ctypes.byref(prog), text, b"default_program", 0, None, None) != 0:
            sys.exit(f"nvrtc_check: nvrtcCreateProgram failed for {src}")
        # The architecture the kernels are compiled for at run time on a Hopper GPU (the engine
        # passes the device's own compute capability).
        opts = (ctypes.c_char_p * 1)(b"--gpu-architecture=compute_90")
        rc = lib.nvrtcCompileProgram(prog, 1, opts)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
        rel = os.path.relpath(src, ROOT)
        if rc == 0:
            print(f"ok      {rel}")
        else:
            failed += 1
            print(f"FAILED  {rel}\n{log.value.decode(errors='replace')}")
    print(f"{len(sources) - failed}/{len(sources)} sources compile with {os.path.basename(path)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
