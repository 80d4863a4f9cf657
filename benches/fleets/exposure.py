#!/usr/bin/env python3
"""How many keys a careful thief could use from a new network unseen.

    python3 benches/fleets/exposure.py --seeds 4-10 [--keywatch PATH] [--config FILE ...]

Recall on planted attacks says little about a rule that keeps `new_source`
quiet: each fleet has one stolen key, on whichever key the dice chose. This
probe asks every key instead. After each fleet's last event, every benign
key (the latest key of a principal whose keys were rotated) gets one call, a minute after its own last one,
from an address in a /24 and a /16 no key ever used, with the key's own
last user agent, action and region: a thief who copied the client. The
keys whose probe raises `new_source` (or `source_fanout`) on the key or its
principal are covered; the rest are exposed, by kind. Run it beside
`score.py` when a setting trades false positives for silence: a setting
that cuts false positives by silencing keys shows here.

`--probe recon --calls N` is the thief who explores from his own network:
N calls of actions the key never made (recon lists, none sensitive) from a
new network, with the key's own client, within two minutes; covered when
`new_source`, `source_fanout` or `new_action` is raised.

`--probe actions` asks the door the holds of `new_action` leave instead:
the same key, a minute after its last call, from its own address and with
its own client, calls actions it never called: one (`--calls 1`), or a
session of several within two minutes (`--calls 5`; recon lists, none of
them sensitive). Covered when `new_action` is raised on the key or its
principal.

Fleets come from score.py's cache (generated there first). Pure Python 3.11,
standard library only.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import score  # noqa: E402  (the cache and the fleet generator's parameters)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Reads a thief lists to see what a key can do; none is sensitive
# (core/src/engine/detect/sensitive.rs).
RECON = [
    "iam:ListRoles", "s3:ListBuckets", "ec2:DescribeInstances", "lambda:ListFunctions",
    "dynamodb:ListTables", "rds:DescribeDBInstances", "sns:ListTopics", "sqs:ListQueues",
    "ecr:DescribeRepositories", "eks:ListClusters", "kms:ListKeys", "logs:DescribeLogGroups",
    "cloudformation:ListStacks", "ec2:DescribeVpcs", "iam:ListGroups", "glue:GetDatabases",
]


def probes(events: Path, truth: dict, probe: str = "network", calls: int = 1) -> tuple[list[dict], dict[str, str]]:
    """One probe per key: the key's last event, a minute later, from a new
    network; or (`actions`) from its own, calling `calls` actions it never called."""
    attacked = {a["key_id"] for a in truth["attacks"]}
    # Role sessions are hourly keys of a role: the role's baseline judges
    # them, and probing each of thousands says nothing more. Planted attack
    # keys are not benign.
    kind = {k["key_id"]: k["kind"] for k in truth["keys"]
            if k["kind"] != "role_session" and not k["kind"].startswith("attack")}
    # One probe per unit (a principal with its rotated keys): its latest
    # key. Probing every key of a principal within minutes would let the
    # first probe unsettle the principal for the others.
    unit = {k["key_id"]: k.get("unit") or k["key_id"] for k in truth["keys"]}
    last: dict[str, dict] = {}
    used: dict[str, set] = defaultdict(set)
    with events.open() as f:
        for line in f:
            ev = json.loads(line)
            if ev["key_id"] in kind and ev["key_id"] not in attacked:
                last[unit[ev["key_id"]]] = ev
                used[unit[ev["key_id"]]].add(ev.get("action"))
    last = {ev["key_id"]: ev for ev in last.values()}
    out, kinds = [], {}
    # 5.0.0.0/8 onwards: first octets no fleet key uses (fleet.py keeps
    # attackers on octets disjoint from benign traffic; these are past both).
    for i, (key, ev) in enumerate(sorted(last.items())):
        t = score.ms(ev["time"]) + 60_000
        kinds[key] = kind[key]
        if probe in ("actions", "recon"):
            fresh = [a for a in RECON if a not in used[unit[key]]][:calls]
            for j, action in enumerate(fresh):
                call = dict(ev, time=iso(t + j * 120_000 // max(1, calls)), action=action, outcome="success")
                if probe == "recon":
                    call["source"] = f"{5 + i // 65_000}.{(i // 250) % 256}.{i % 250}.{7}"
                call.pop("error_code", None)
                out.append(call)
            continue
        call = dict(ev)
        call["time"] = iso(t)
        call["source"] = f"{5 + i // 65_000}.{(i // 250) % 256}.{i % 250}.{7}"
        call["outcome"] = "success"
        call.pop("error_code", None)
        out.append(call)
    return out, kinds


def run(keywatch: str, config: str | None, events: Path, extra: list[dict]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        probe_file = Path(tmp) / "probes.jsonl"
        probe_file.write_text("".join(json.dumps(p) + "\n" for p in sorted(extra, key=lambda p: p["time"])))
        cmd = [keywatch, "replay", "--profile", "generic"]
        if config:
            cmd += ["-c", config]
        cmd += [str(events), str(probe_file)]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if res.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {res.stderr[-2000:]}")
        return [json.loads(l) for l in res.stdout.splitlines() if l.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="4-10")
    ap.add_argument("--keys", type=int, default=120)
    ap.add_argument("--days", type=int, default=50)
    ap.add_argument("--keywatch", default=str(score.REPO / "target/release/keywatch"))
    ap.add_argument("--config", action="append", default=[None],
                    help="a configuration to compare (repeatable; the defaults always run)")
    ap.add_argument("--workdir", default="/tmp/keywatch-fleets")
    ap.add_argument("--probe", choices=["network", "recon", "actions"], default="network")
    ap.add_argument("--calls", type=int, default=1, help="actions per probe (--probe actions)")
    a = ap.parse_args()
    a.kinds = a.families = None
    configs = list(dict.fromkeys(a.config))
    covered: dict[str | None, Counter] = defaultdict(Counter)
    folded_only: dict[str | None, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    kind_of: dict[str, str] = {}
    for seed in score.parse_seeds(a.seeds):
        d, _ = score.ensure_fleet(a, seed)
        truth = json.loads((d / "truth.json").read_text())
        extra, kinds = probes(d / "events.jsonl", truth, a.probe, a.calls)
        detectors = {"actions": ("new_action",), "network": ("new_source", "source_fanout"),
                     "recon": ("new_source", "source_fanout", "new_action")}[a.probe]
        kind_of.update(kinds)
        for key, k in kinds.items():
            totals[k] += 1
        probe_at: dict[str, int] = {}
        for p in extra:
            probe_at.setdefault(p["key_id"], score.ms(p["time"]))
        for cfg in configs:
            for f in run(a.keywatch, cfg, d / "events.jsonl", extra):
                key = f.get("key_id")
                if key in probe_at and f["detector"] in detectors \
                        and score.ms(f["observed_at"]) >= probe_at[key]:
                    if f.get("folded"):
                        folded_only[cfg][key] = 1
                    else:
                        covered[cfg][key] = 1
        print(f"seed {seed}: {len(extra)} keys probed", file=sys.stderr)
    by_kind = {cfg: Counter() for cfg in configs}
    folded_kind = {cfg: Counter() for cfg in configs}
    for cfg in configs:
        for key in covered[cfg]:
            by_kind[cfg][kind_of[key]] += 1
        for key in folded_only[cfg]:
            if key not in covered[cfg]:
                folded_kind[cfg][kind_of[key]] += 1
    names = [Path(c).name if c else "defaults" for c in configs]
    width = max(12, *(len(n) for n in names))
    print(f"{'kind':15s} {'keys':>5s}  " + "  ".join(f"{n:>{width + 5}s}" for n in names))
    what = {"actions": "new_action", "network": "new_source",
            "recon": "new_source or new_action"}[a.probe]
    print(f"exposed keys: the careful thief's call raised no {what} alert (share of the kind's"
          " keys); +N: of them, folded into an open run's record (seen in the console, no alert)")
    for k in sorted(totals):
        cells = []
        for cfg in configs:
            exposed = totals[k] - by_kind[cfg][k]
            cells.append(f"{exposed:>{width - 12}d} ({100 * exposed / totals[k]:3.0f}%) +{folded_kind[cfg][k]:<3d}")
        print(f"{k:15s} {totals[k]:5d}  " + "  ".join(cells))
    n = sum(totals.values())
    cells = []
    for cfg in configs:
        exposed = n - sum(by_kind[cfg].values())
        cells.append(f"{exposed:>{width - 12}d} ({100 * exposed / n:3.0f}%) +{sum(folded_kind[cfg].values()):<3d}")
    print(f"{'all':15s} {n:5d}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
