"""The CPU's FP32 peak (cores × FMA units × vector lanes × 2 × the measured clock) and a large-GEMM
rate, for the %-of-peak columns of ``benchmarks/throughput.py``."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from unet_runtime import machine_info

# -- the CPU's FP32 peak --------------------------------------------------------------------------
# A dependent chain of integer adds retires one add per cycle on every x86 core, so its rate is the
# clock the core actually runs at (the boost clock, which /proc/cpuinfo does not show). Twelve
# independent FMA chains keep every FMA pipe busy (latency 4 × 2 pipes < 12), so their rate is the
# core's FMA throughput, which checks the FMA-units assumption of the peak formula.
_PEAK_C = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define CH(M,T,P) T M##0=P##_set1_ps(0),M##1=P##_set1_ps(1),M##2=P##_set1_ps(2),M##3=P##_set1_ps(3),\
 M##4=P##_set1_ps(4),M##5=P##_set1_ps(5),M##6=P##_set1_ps(6),M##7=P##_set1_ps(7),M##8=P##_set1_ps(8),\
 M##9=P##_set1_ps(9),M##10=P##_set1_ps(10),M##11=P##_set1_ps(11);
#define ST(M,P) M##0=P##_fmadd_ps(M##0,b,c);M##1=P##_fmadd_ps(M##1,b,c);M##2=P##_fmadd_ps(M##2,b,c);\
 M##3=P##_fmadd_ps(M##3,b,c);M##4=P##_fmadd_ps(M##4,b,c);M##5=P##_fmadd_ps(M##5,b,c);\
 M##6=P##_fmadd_ps(M##6,b,c);M##7=P##_fmadd_ps(M##7,b,c);M##8=P##_fmadd_ps(M##8,b,c);\
 M##9=P##_fmadd_ps(M##9,b,c);M##10=P##_fmadd_ps(M##10,b,c);M##11=P##_fmadd_ps(M##11,b,c);
#define SUM(M,P) P##_add_ps(P##_add_ps(P##_add_ps(M##0,M##1),P##_add_ps(M##2,M##3)),\
 P##_add_ps(P##_add_ps(P##_add_ps(M##4,M##5),P##_add_ps(M##6,M##7)),\
 P##_add_ps(P##_add_ps(M##8,M##9),P##_add_ps(M##10,M##11))))
volatile float sink;
__attribute__((target("avx512f"))) double fma512(long n){
  __m512 b=_mm512_set1_ps(1.0000001f),c=_mm512_set1_ps(1e-9f); CH(a,__m512,_mm512)
  double t=now(); for(long k=0;k<n;k++){ST(a,_mm512)} t=now()-t;
  float o[16]; _mm512_storeu_ps(o,SUM(a,_mm512)); sink=o[0]; return n*12.0*16*2/t/1e9;}
__attribute__((target("avx2,fma"))) double fma256(long n){
  __m256 b=_mm256_set1_ps(1.0000001f),c=_mm256_set1_ps(1e-9f); CH(a,__m256,_mm256)
  double t=now(); for(long k=0;k<n;k++){ST(a,_mm256)} t=now()-t;
  float o[8]; _mm256_storeu_ps(o,SUM(a,_mm256)); sink=o[0]; return n*12.0*8*2/t/1e9;}
double clock_ghz(long n){ long x=0; double t=now();
  for(long k=0;k<n;k++){ __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\t"
     "add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0":"+r"(x)); }
  t=now()-t; return n*8.0/t/1e9; }
int main(int argc,char**argv){ double c=0,f5=0,f2=0,v; int avx512=argc>1;
  for(int r=0;r<25;r++){ v=clock_ghz(10000000); if(v>c)c=v;
    if(avx512){v=fma512(5000000); if(v>f5)f5=v;}
    v=fma256(5000000); if(v>f2)f2=v; }
  printf("{\"clock_ghz\": %.3f, \"fma512_gflops_core\": %.1f, \"fma256_gflops_core\": %.1f}\n",c,f5,f2);
  return 0; }
"""

FMA_UNITS_PER_CORE = 2  # Zen 4/5 and Intel server cores since Skylake-SP have two FMA pipes


def _cpuinfo_mhz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return None


def cpu_peak(threads: int) -> dict:
    """FP32 peak of ``threads`` cores at the ISA oneDNN may use: cores × FMA units × lanes × 2 ×
    clock, with the clock measured (falls back to /proc/cpuinfo's, the base clock, without a C
    compiler). The lanes follow ``ONEDNN_MAX_CPU_ISA``: 16 with AVX-512, 8 under an AVX2 cap."""
    import shutil
    import tempfile

    info = machine_info()
    isa_cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or "").upper()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    avx512 = " avx512f" in flags and (not isa_cap or "AVX512" in isa_cap or isa_cap == "ALL")
    out: dict = {"cpuinfo_mhz": _cpuinfo_mhz(), "fma_units_per_core": FMA_UNITS_PER_CORE,
                 "lanes": 16 if avx512 else 8, "cores": threads, "isa": info.get("isa")}  # fmt: skip
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        with tempfile.TemporaryDirectory() as d:
            src, exe = Path(d) / "peak.c", Path(d) / "peak"
            src.write_text(_PEAK_C)
            build = subprocess.run([cc, "-O2", "-o", str(exe), str(src)], capture_output=True)
            if build.returncode == 0:
                run = subprocess.run([str(exe), *(["512"] if " avx512f" in flags else [])],
                                     capture_output=True, text=True)  # fmt: skip
                out.update(json.loads(run.stdout))
    clock = out.get("clock_ghz") or (out["cpuinfo_mhz"] or 0) / 1000
    out["clock_used_ghz"] = clock
    out["peak_gflops"] = threads * FMA_UNITS_PER_CORE * out["lanes"] * 2 * clock
    return out


def gemm_gflops(threads: int, n: int = 4096, reps: int = 5) -> dict:
    """A large FP32 GEMM two ways: ``torch.mm`` (MKL) and a 1×1 convolution (oneDNN, the library
    the convolutions run in), best of ``reps``."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    x = torch.rand(1, n, 64, 64).contiguous(memory_format=torch.channels_last)  # M = 64², K = n
    w = torch.rand(n, n, 1, 1)
    out = {}
    for name, fn, flops in (("mkl_mm", lambda: torch.mm(a, b), 2 * n**3),
                            ("onednn_1x1_conv", lambda: F.conv2d(x, w), 2 * n * n * 64 * 64)):  # fmt: skip
        fn()
        best = min(_timed(fn) for _ in range(reps))
        out[name] = flops / best / 1e9
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
