"""The machine's floor for a training step: its multiply-adds at this CPU's measured peak.

The floor of a step is the time its GEMM and convolution multiply-adds take at the peak
fused multiply-add rate of the cores it runs on (elementwise work, memory traffic and calls
are not counted, so no step reaches it). ``bench_llvm.py`` prints floor / graphc with the floor
of this machine; the issue's fixed figures (``bench_llvm.FLOOR_MS``) were read off an
AVX-512 CPU and overstate the floor's speed on any other.

    python benchmarks/floor.py [--threads 1 2]     # peak MACs/s and the floors of W1-W5

Peak: a native loop of independent vector FMA chains (enough of them to cover the FMA
units' latency, few enough to stay in registers), compiled with llvmlite for this host, timed
in runs of about 50 ms; the best of 15 (on a busy machine the best run is the one that had the
core to itself: measure on a quiet one). With ``threads`` > 1 the loop runs on that many
threads at once and the floor uses their summed rate (hardware threads that share a core's
vector units give less than twice one; ``bench_threads.py`` measures a step's own scaling).
"""
import argparse
import ctypes
import functools
import sys
import threading
import time
from pathlib import Path

import llvmlite.binding as llvm

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHAINS = 12  # independent accumulators: 2 FMA ports x 4-5 cycles of latency, and spare

_KERNEL = """
define i64 @peak(i64 %n) {{
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%next, %loop]
{phis}
{fmas}
  %next = add i64 %i, 1
  %done = icmp eq i64 %next, %n
  br i1 %done, label %exit, label %loop
exit:
{sums}
  %bits = bitcast <{lanes} x float> %s{last} to <{lanes} x i32>
  %lane = extractelement <{lanes} x i32> %bits, i32 0
  %r = zext i32 %lane to i64
  ret i64 %r
}}
declare <{lanes} x float> @llvm.fma.v{lanes}f32(<{lanes} x float>, <{lanes} x float>,
                                              <{lanes} x float>)
"""


def _lanes(features):
    """fp32 lanes of the widest vector FMA the host has."""
    if "+avx512f" in features:
        return 16
    if "+fma" in features and "+avx" in features:
        return 8
    return 4


@functools.lru_cache(maxsize=1)
def _peak_function():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple()
    features = llvm.get_host_cpu_features().flatten()
    machine = target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=features,
                                           opt=2)
    lanes = _lanes(features)
    vec = f"<{lanes} x float>"
    one = f"<{', '.join(['float 1.0'] * lanes)}>"
    tiny = f"<{', '.join(['float 0x3EB0C6F7A0000000'] * lanes)}>"  # 1e-6: never overflows
    phis = "\n".join(f"  %a{c} = phi {vec} [{one}, %entry], [%b{c}, %loop]"
                     for c in range(CHAINS))
    fmas = "\n".join(f"  %b{c} = call {vec} @llvm.fma.v{lanes}f32({vec} %a{c}, {vec} {one}, "
                     f"{vec} {tiny})" for c in range(CHAINS))
    sums = [f"  %s0 = fadd {vec} %b0, %b1"]
    sums += [f"  %s{c - 1} = fadd {vec} %s{c - 2}, %b{c}" for c in range(2, CHAINS)]
    text = _KERNEL.format(phis=phis, fmas=fmas, sums="\n".join(sums), lanes=lanes,
                          last=CHAINS - 2)
    module = llvm.parse_assembly(text)
    module.verify()
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    fn = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(engine.get_function_address("peak"))
    return fn, engine, lanes


def peak_macs_per_second(runs=15, seconds=0.05, threads=1):
    """The peak fp32 multiply-adds per second of ``threads`` cores running the loop at once
    (best of ``runs``): with two hardware threads sharing a core's vector units, or a
    hypervisor's, two cores give less than twice one."""
    fn, _, lanes = _peak_function()
    n = 1 << 16
    while True:  # calibrate: one call of about ``seconds``
        t = time.perf_counter()
        fn(n)
        took = time.perf_counter() - t
        if took > seconds / 4:
            break
        n *= 4
    n = int(n * seconds / took)
    best = float("inf")
    for _ in range(runs):  # (ctypes lets go of the GIL for the native call)
        start = threading.Barrier(threads + 1)
        workers = [threading.Thread(target=lambda: (start.wait(), fn(n))) for _ in range(threads)]
        for w in workers:
            w.start()
        start.wait()
        t = time.perf_counter()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - t)
    return n * CHAINS * lanes * threads / best


def step_macs(program):
    """Multiply-adds of the GEMMs and convolutions of a compiled step's ``program``
    (``OpDef.macs``: matmul, the update ``w - a @ b`` fused from one, conv2d and its
    gradients), those of loop bodies once per iteration (a step cut over parts of its batch
    runs its GEMMs in a loop over the parts: ``ir.passes.split``)."""
    from graphc.ir.loops import body_program, check_trip
    total = 0
    for node in program.nodes:
        if node.op_name == "loop":
            total += step_macs(body_program(node)) * check_trip(node)
        else:
            total += node.opdef.multiply_adds(node) or 0
    return total


def floor_seconds(program, threads=1, peak=None):
    """The floor of a step: its multiply-adds at the peak of ``threads`` cores running at once
    (``peak``: that rate, measured when not given)."""
    return step_macs(program) / (peak or peak_macs_per_second(threads=threads))


def main(argv=None):
    import bench_llvm
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    peaks = {t: peak_macs_per_second(threads=t) for t in args.threads}
    _, _, lanes = _peak_function()
    for t, peak in peaks.items():
        print(f"peak, {t} core(s) at once: {peak / 1e9:.1f} GMAC/s ({lanes} fp32 lanes, "
              f"{CHAINS} FMA chains)")
    print("| workload | MACs per step | " +
          " | ".join(f"floor, {t} core(s), ms" for t in args.threads) +
          " | issue's fixed floor, ms |")
    print("|---|---|" + "---|" * len(args.threads) + "---|")
    for w in bench_llvm.GOAL:
        program = bench_llvm.GraphcStep(w, "llvm", bench_llvm.baselines.make_data(w)).step.program
        floors = " | ".join(f"{floor_seconds(program, t, peaks[t]) * 1e3:.4f}"
                            for t in args.threads)
        print(f"| {w} | {step_macs(program) / 1e6:.2f}M | {floors} | {bench_llvm.FLOOR_MS[w]} |")


if __name__ == "__main__":
    main()
