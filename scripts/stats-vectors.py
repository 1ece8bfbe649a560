#!/usr/bin/env python3
"""Test vectors for the tower's results statistics (crates/tower/src/results/compute.rs),
computed independently with scipy from per-client counts.

The tower sees only rollup numbers per arm (clients n, clients with an event, Σx, Σx²);
this script draws the per-client counts themselves and asks scipy:
  - the mean's 95 % interval: scipy.stats.t.ppf(0.975, n-1) * scipy.stats.sem(x);
  - the share's Wilson interval: scipy.stats.binomtest(k, n).proportion_ci(method="wilson");
  - Welch's t-test: scipy.stats.ttest_ind(arm, control, equal_var=False) and its
    confidence_interval(0.95);
  - the two-proportion z-test's p-value: scipy.stats.chi2_contingency(table, correction=False)
    (its chi² is z² of the pooled test); its unpooled interval from scipy.stats.norm.ppf.
Undefined numbers (nan) are written as null.

Counts are drawn with Python's own `random.Random(seed)` (stable across versions), so the
output depends only on scipy's numbers.

    python3 scripts/stats-vectors.py OUT.json          # write the vectors
    python3 scripts/stats-vectors.py --check FILE.json # regenerate; fail if any number moved by more than 1e-9
"""

import json
import math
import random
import sys
import warnings

import numpy as np
from scipy import stats


def poisson(rng, lam):
    """A Poisson draw by inversion (Knuth), from uniform numbers only."""
    if lam <= 0:
        return 0
    if lam > 30:
        # Normal approximation, rounded and clipped at 0: enough for test data.
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def num(x):
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def rollup(xs):
    return {
        "n": len(xs),
        "withEvent": sum(1 for x in xs if x > 0),
        "sum": int(sum(xs)),
        "sumSq": int(sum(x * x for x in xs)),
    }


def mean_interval(xs):
    n = len(xs)
    if n == 0:
        return {"mean": None, "low": None, "high": None}
    m = float(np.mean(xs))
    if n < 2:
        return {"mean": m, "low": None, "high": None}
    sem = float(stats.sem(xs))
    half = float(stats.t.ppf(0.975, n - 1)) * sem
    return {"mean": m, "low": m - half, "high": m + half}


def share_interval(xs):
    n = len(xs)
    if n == 0:
        return {"value": None, "low": None, "high": None}
    k = sum(1 for x in xs if x > 0)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"value": k / n, "low": num(ci.low), "high": num(ci.high)}


def welch(arm, control):
    diff = (float(np.mean(arm)) - float(np.mean(control))) if arm and control else None
    if len(arm) < 2 or len(control) < 2:
        return {"diff": diff, "low": None, "high": None, "p": None}
    if np.var(arm) == 0 and np.var(control) == 0:
        return {"diff": diff, "low": None, "high": None, "p": None}
    r = stats.ttest_ind(arm, control, equal_var=False)
    ci = r.confidence_interval(0.95)
    return {"diff": diff, "low": num(ci.low), "high": num(ci.high), "p": num(r.pvalue)}


def two_proportions(arm, control):
    if not arm or not control:
        return {"diff": None, "low": None, "high": None, "p": None}
    na, nc = len(arm), len(control)
    ka, kc = sum(1 for x in arm if x > 0), sum(1 for x in control if x > 0)
    pa, pc = ka / na, kc / nc
    d = pa - pc
    z = float(stats.norm.ppf(0.975))
    se = math.sqrt(pa * (1 - pa) / na + pc * (1 - pc) / nc)
    table = [[ka, na - ka], [kc, nc - kc]]
    # chi2_contingency refuses a table with an empty row or column (no variance in the
    # pooled share): the test is undefined there.
    pooled = (ka + kc) / (na + nc)
    if pooled in (0.0, 1.0):
        p = None
    else:
        p = num(stats.chi2_contingency(table, correction=False).pvalue)
    return {"diff": d, "low": d - z * se, "high": d + z * se, "p": p}


def case(name, arms):
    """`arms`: per-client counts per arm, the control first."""
    control = arms[0]
    out = {"name": name, "arms": []}
    for i, xs in enumerate(arms):
        a = {"rollup": rollup(xs), "perClient": mean_interval(xs), "share": share_interval(xs)}
        if i > 0:
            a["vsControl"] = {"perClient": welch(xs, control), "share": two_proportions(xs, control)}
        out["arms"].append(a)
    return out


def draw(rng, n, lam, zero_share=0.0):
    return [0 if rng.random() < zero_share else poisson(rng, lam) for _ in range(n)]


def cases():
    rng = random.Random(20270105)
    out = []
    # A known effect: 20 % more events per client and fewer clients without one.
    out.append(case("effect, 2,000 clients an arm", [draw(rng, 2000, 2.0, 0.4), draw(rng, 2000, 2.4, 0.3)]))
    # No effect, large n: the same distribution in both arms.
    out.append(case("no effect, 50,000 clients an arm", [draw(rng, 50000, 3.0, 0.2), draw(rng, 50000, 3.0, 0.2)]))
    out.append(case("no effect, three arms, small", [draw(rng, 30, 1.5), draw(rng, 25, 1.5), draw(rng, 40, 1.5)]))
    out.append(case("unequal sizes and variances", [draw(rng, 15, 0.5), draw(rng, 400, 8.0)]))
    out.append(case("heavy counts", [draw(rng, 300, 60.0), draw(rng, 320, 64.0)]))
    # Edge cases.
    out.append(case("one client an arm", [[3], [5]]))
    out.append(case("no clients in the second arm", [[1, 2, 0], []]))
    out.append(case("no variance in either arm", [[2, 2, 2], [4, 4, 4, 4]]))
    out.append(case("no variance in the control", [[1, 1, 1, 1], [0, 2, 5, 1]]))
    out.append(case("nobody with an event", [[0, 0, 0], [0, 0]]))
    out.append(case("everybody with an event", [[1, 2, 3], [4, 5]]))
    out.append(case("all against none", [[0, 0, 0, 0], [1, 1, 2]]))
    out.append(case("two clients", [[0, 1], [1, 3]]))
    return out


def compare(a, b, path="$"):
    """The places where a and b differ by more than 1e-9."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in compare(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in compare(x, y, f"{path}[{i}]")]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return [] if abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b)) else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main():
    # scipy warns of precision loss on nearly constant samples; the numbers are compared anyway.
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    args = sys.argv[1:]
    doc = {
        "about": "Generated by scripts/stats-vectors.py with scipy; do not edit. "
        "The tower's results statistics are held to these numbers (crates/tower/tests/stats.rs).",
        "cases": cases(),
    }
    if args[:1] == ["--check"] and len(args) == 2:
        with open(args[1]) as f:
            committed = json.load(f)
        diffs = compare(committed["cases"], doc["cases"])
        if diffs:
            print(f"{args[1]} differs from what scipy {__import__('scipy').__version__} computes now:", file=sys.stderr)
            for d in diffs[:20]:
                print("  " + d, file=sys.stderr)
            sys.exit(1)
        print(f"{args[1]}: {len(doc['cases'])} cases agree with scipy {__import__('scipy').__version__}")
        return
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    with open(args[0], "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
