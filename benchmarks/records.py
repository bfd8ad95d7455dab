"""The last recorded figures of each benchmark, per CPU, and how a run compares with them.

Issue 16 asks that no ratio goal regress: a benchmark prints, beside each figure, the last
one recorded for this CPU and thread count, and flags a change for the worse beyond the
noise this machine shows from run to run (``TOLERANCE``). ``--record`` stores the run's
figures as the new reference (``benchmarks/records.json``, committed with the change that
moved them).

    rec = records.Records("bench_llvm", threads=2)
    rec.note("W1 x base", 1.31, higher_is_better=True)    # prints the comparison
    rec.save() if args.record else None

Figures are ratios measured in one run against a baseline of the same run (speed-ups,
microseconds over the kernels), so they compare across days on one CPU; across CPUs they do
not, hence the key.
"""
import json
from pathlib import Path

from graphc.runtime.jit import host_target

PATH = Path(__file__).resolve().parent / "records.json"
TOLERANCE = 0.10  # a change for the worse above this fraction is flagged


def cpu_key(threads):
    """``<llvm cpu name>/<widest vectors>/<threads>t``: figures are comparable within one."""
    host = host_target()
    width = "avx512" if "+avx512f" in host.features.split(",") else \
        "avx2" if "+avx2" in host.features.split(",") else "other"
    return f"{host.cpu}/{width}/{threads}t"


class Records:
    """The figures of one benchmark on this CPU and thread count: ``note`` compares a new
    figure with the recorded one, ``save`` records this run's."""

    def __init__(self, bench, threads, path=PATH):
        self.bench, self.key, self.path = bench, cpu_key(threads), Path(path)
        self.all = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.old = self.all.get(bench, {}).get(self.key, {})
        self.new = {}
        self.worse = []

    def note(self, name, value, higher_is_better=True):
        """Remember ``value`` of figure ``name``; returns a short comparison with the recorded
        figure ("was 1.31, -4%"; "REGRESSED" past ``TOLERANCE``; "" when none recorded)."""
        self.new[name] = value
        old = self.old.get(name)
        if old is None or old == 0:
            return ""
        change = (value - old) / abs(old)
        worse = -change if higher_is_better else change
        flag = ""
        if worse > TOLERANCE:
            flag = " REGRESSED"
            self.worse.append(name)
        return f"was {old:g}, {change:+.0%}{flag}"

    def summary(self):
        """One line: which figures regressed against the record, or that none did."""
        if not self.old:
            return f"no figures recorded for {self.bench} on {self.key} (--record stores these)"
        if self.worse:
            return (f"regressed against the record ({self.key}, beyond {TOLERANCE:.0%}): "
                    + ", ".join(self.worse))
        return f"no figure regressed against the record ({self.key}, tolerance {TOLERANCE:.0%})"

    def save(self):
        """Record this run's figures for this benchmark, CPU and thread count."""
        self.all.setdefault(self.bench, {})[self.key] = self.new
        self.path.write_text(json.dumps(self.all, indent=1, sort_keys=True) + "\n")
