#!/usr/bin/env python3
"""Score keywatch on independent fleets (benches/fleets/fleet.py).

    python3 benches/fleets/score.py --seeds 1-10 [--keys 120 --days 50] [--kinds k1,k2]
        [--families f1,f2] [--keywatch PATH] [--config FILE] [--workdir DIR] [--json OUT]
        [--fresh] [--samples 3]

For each seed: generate the fleet (cached in WORKDIR by seed, size, kinds and
the generator's own hash), run `keywatch replay --profile generic [-c FILE]
events.jsonl` (findings cached by binary, config and fleet; --fresh reruns),
and judge:

- an attack is found when its expected detector raised a finding on the attack
  key (for stolen_sessions: any finding whose principal names the role) with
  observed_at in [start - 1s, deadline];
- every other finding is a false positive, except findings on an attacked key
  (role, for stolen_sessions) in [start - 1s, end + 1h];
- findings with the same id count once (a run's record of folded findings
  is printed at each update).

Pure Python 3.11, standard library only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FLEET = HERE / "fleet.py"
SEVERITIES = ["critical", "high", "medium", "low", "info"]
SEC = 1000
HOUR = 3600 * SEC
DAY = 24 * HOUR


def parse_seeds(s: str) -> list[int]:
    out = []
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def ms(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def short_hash(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:10]


def role_of(principal: str | None) -> str | None:
    if not principal:
        return None
    if ":assumed-role/" in principal:
        return principal.split(":assumed-role/", 1)[1].split("/")[0]
    if ":role/" in principal:
        return principal.split(":role/", 1)[1].split("/")[-1]
    return None


def fmt_dur(s: float) -> str:
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.1f}m"


# ---------------------------------------------------------------- running

def ensure_fleet(args, seed: int) -> tuple[Path, float]:
    gen_hash = short_hash(FLEET.read_bytes())
    tag = f"s{seed}-k{args.keys}-d{args.days}"
    if args.kinds or args.families:
        tag += "-" + short_hash(args.kinds, args.families)[:6]
    d = Path(args.workdir) / f"fleet-{tag}-g{gen_hash}"
    if (d / "events.jsonl").exists() and (d / "truth.json").exists():
        return d, 0.0
    cmd = [sys.executable, str(FLEET), "--seed", str(seed), "--keys", str(args.keys),
           "--days", str(args.days), "--out", str(d)]
    if args.kinds:
        cmd += ["--kinds", args.kinds]
    if args.families:
        cmd += ["--families", args.families]
    t0 = time.time()
    subprocess.run(cmd, check=True)
    return d, time.time() - t0


def run_replay(args, fleet_dir: Path) -> tuple[Path, float, str]:
    kw = Path(args.keywatch)
    st = kw.stat()
    cfg = Path(args.config).read_bytes() if args.config else b""
    tag = short_hash(str(kw.resolve()), st.st_size, st.st_mtime_ns, cfg, args.profile)
    out = fleet_dir / f"findings-{tag}.jsonl"
    err = fleet_dir / f"replay-{tag}.stderr"
    if out.exists() and err.exists() and not args.fresh:
        return out, 0.0, err.read_text(errors="replace")
    cmd = [str(kw), "replay", "--profile", args.profile]
    if args.config:
        cmd += ["-c", args.config]
    cmd.append(str(fleet_dir / "events.jsonl"))
    t0 = time.time()
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as fo, open(err, "wb") as fe:
        rc = subprocess.run(cmd, stdout=fo, stderr=fe).returncode
    dt = time.time() - t0
    if rc != 0:
        sys.exit(f"keywatch replay failed (exit {rc}) on {fleet_dir}; see {err}")
    os.replace(tmp, out)
    return out, dt, err.read_text(errors="replace")


# ---------------------------------------------------------------- judging

def matches(f: dict, a: dict) -> bool:
    if f.get("key_id") == a["key_id"]:
        return True
    if a["family"] == "stolen_sessions":
        return role_of(f.get("principal")) == role_of(a["principal"])
    return False


def judge(seed: int, truth: dict, findings: list[dict]) -> dict:
    keymap = {k["key_id"]: k for k in truth["keys"]}
    roles = {}
    for k in truth["keys"]:
        r = role_of(k.get("principal"))
        if r and k["kind"] == "role_session":
            roles[r] = k
    attacks = []
    for a in truth["attacks"]:
        a = dict(a)
        a["_s"], a["_e"], a["_d"] = ms(a["start"]), ms(a["end"]), ms(a["deadline"])
        a["found"] = None
        a["on_key"] = Counter()
        attacks.append(a)
    fps = []
    detected = []
    for f in findings:
        t = ms(f["observed_at"])
        f["_t"] = t
        exempt = False
        for a in attacks:
            if not matches(f, a):
                continue
            if a["_s"] - SEC <= t <= max(a["_d"], a["_e"] + HOUR):
                a["on_key"][f["detector"]] += 1
            if f["detector"] == a["detector"] and a["_s"] - SEC <= t <= a["_d"]:
                if a["found"] is None or t < a["found"][0]:
                    a["found"] = (t, f.get("severity"))
                exempt = True
            elif a["_s"] - SEC <= t <= a["_e"] + HOUR:
                exempt = True
        if exempt:
            detected.append(f)
            continue
        k = keymap.get(f.get("key_id"))
        if k is None:
            k = roles.get(role_of(f.get("principal")))
        kind = k["kind"] if k else "unknown"
        unit = k.get("unit", k["key_id"]) if k else f.get("key_id")
        fps.append({"seed": seed, "detector": f["detector"], "severity": f.get("severity"),
                    "kind": kind, "unit": unit, "key_id": f.get("key_id"), "t": t,
                    "observed_at": f["observed_at"], "summary": f.get("summary", ""),
                    "entity": f.get("entity"), "record": bool(f.get("folded"))})
    units_by_kind = defaultdict(set)
    for k in truth["keys"]:
        if not k["kind"].startswith("attack:"):
            units_by_kind[k["kind"]].add(k.get("unit", k["key_id"]))
    res_attacks = [{"family": a["family"], "detector": a["detector"], "kind": a.get("kind"),
                    "key_id": a["key_id"], "found": a["found"] is not None,
                    "latency_s": (a["found"][0] - a["_s"]) / 1000 if a["found"] else None,
                    "severity": a["found"][1] if a["found"] else None,
                    "start": a["start"], "on_key": dict(a["on_key"])} for a in attacks]
    return {"seed": seed, "attacks": res_attacks, "fps": fps,
            "detected_severity": Counter(f.get("severity") for f in detected),
            "units_by_kind": {k: sorted(v) for k, v in units_by_kind.items()},
            "skipped": truth.get("skipped_attacks", []), "events": truth.get("events"),
            "start_ms": ms(truth["start"])}


def repeated_pairs(fps: list[dict]) -> tuple[int, int, Counter]:
    """(unit, detector) pairs (per fleet) that raised more than 2 findings within
    any 30 days (a run's record of folded findings is not raised)."""
    by = defaultdict(list)
    for f in fps:
        if f.get("record"):
            continue
        by[(f["seed"], f["unit"], f["detector"])].append(f["t"])
    n, det = 0, Counter()
    for (s, u, d), ts in by.items():
        ts.sort()
        if any(ts[i + 2] - ts[i] <= 30 * DAY for i in range(len(ts) - 2)):
            n += 1
            det[d] += 1
    return n, len(by), det


# ---------------------------------------------------------------- printing

def table(headers, rows, title=None):
    rows = [[str(c) for c in r] for r in rows]
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out = []
    if title:
        out.append(f"\n{title}")
    out.append("  ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(headers)))
    out.append("  ".join("-" * x for x in w))
    for r in rows:
        out.append("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
    print("\n".join(out))


def report(results, runs, args):
    seeds = [r["seed"] for r in results]
    nf = len(results)
    # recall
    fam = defaultdict(list)
    for r in results:
        for a in r["attacks"]:
            fam[a["family"]].append(a)
    rows = []
    recall = {}
    for name, lst in fam.items():
        found = [a for a in lst if a["found"]]
        lat = [a["latency_s"] for a in found]
        missed_kinds = Counter(a["kind"] for a in lst if not a["found"])
        fired = Counter()
        for a in lst:
            if not a["found"]:
                fired.update(a["on_key"])
        recall[name] = {"detector": lst[0]["detector"], "found": len(found), "total": len(lst),
                        "median_latency_s": statistics.median(lat) if lat else None,
                        "missed_kinds": dict(missed_kinds), "fired_on_missed": dict(fired),
                        "severity": dict(Counter(a["severity"] for a in found))}
        rows.append([name, lst[0]["detector"], f"{len(found)}/{len(lst)}",
                     fmt_dur(statistics.median(lat)) if lat else "-",
                     ",".join(f"{k}" for k in sorted(Counter(a["kind"] for a in lst))) or "-",
                     " ".join(f"{k}:{v}" for k, v in sorted(missed_kinds.items())) or "-",
                     " ".join(f"{k}:{v}" for k, v in sorted(fired.items())) or "-"])
    total_found = sum(v["found"] for v in recall.values())
    total = sum(v["total"] for v in recall.values())
    table(["family", "detector", "found", "median lat", "victim kinds", "missed on", "fired instead"],
          rows, f"RECALL per attack family ({total_found}/{total} over {nf} fleets)")
    skipped = Counter(s["family"] for r in results for s in r["skipped"])
    if skipped:
        print("  skipped (no eligible key): " + ", ".join(f"{k}x{v}" for k, v in skipped.items()))

    fps = [f for r in results for f in r["fps"]]
    # per detector
    by_det = defaultdict(list)
    for f in fps:
        by_det[f["detector"]].append(f)
    rows = []
    det_json = {}
    for d in sorted(by_det, key=lambda d: -len(by_det[d])):
        lst = by_det[d]
        per = Counter(f["seed"] for f in lst)
        sev = Counter(f["severity"] for f in lst)
        worst = max(per[s] for s in seeds)
        det_json[d] = {"total": len(lst), "mean_per_fleet": len(lst) / nf, "worst_fleet": worst,
                       "severity": dict(sev)}
        rows.append([d, len(lst), f"{len(lst) / nf:.1f}", worst] + [sev.get(s, 0) for s in SEVERITIES]
                    + [sum(sev.get(s, 0) for s in SEVERITIES[:3])])
    sev_all = Counter(f["severity"] for f in fps)
    rows.append(["TOTAL", len(fps), f"{len(fps) / nf:.1f}",
                 max(sum(1 for f in fps if f["seed"] == s) for s in seeds)]
                + [sev_all.get(s, 0) for s in SEVERITIES] + [sum(sev_all.get(s, 0) for s in SEVERITIES[:3])])
    table(["detector", "FPs", "/fleet", "worst"] + SEVERITIES + ["med+"], rows,
          "FALSE POSITIVES per detector (all fleets)")

    # by week of the fleet (keywatch learns each key for a week)
    starts = {r["seed"]: r["start_ms"] for r in results}
    weeks = max(1, (args.days + 6) // 7)
    rows = []
    week_json = {}
    for d in sorted(by_det, key=lambda d: -len(by_det[d])):
        c = Counter(min(weeks - 1, (f["t"] - starts[f["seed"]]) // (7 * DAY)) for f in by_det[d])
        week_json[d] = [c.get(w, 0) for w in range(weeks)]
        rows.append([d] + week_json[d])
    table(["detector"] + [f"w{w + 1}" for w in range(weeks)], rows,
          "FALSE POSITIVES by week of the fleet (w1 = days 0-6)")

    # per kind
    kinds = sorted({k for r in results for k in r["units_by_kind"]} | {f["kind"] for f in fps})
    rows = []
    kind_json = {}
    for kd in kinds:
        lst = [f for f in fps if f["kind"] == kd]
        units_total = sum(len(r["units_by_kind"].get(kd, [])) for r in results)
        noisy = len({(f["seed"], f["unit"]) for f in lst})
        noisy_med = len({(f["seed"], f["unit"]) for f in lst if f["severity"] in SEVERITIES[:3]})
        dets = Counter(f["detector"] for f in lst)
        kind_json[kd] = {"findings": len(lst), "noisy_units": noisy, "units": units_total,
                         "noisy_units_medium_plus": noisy_med, "by_detector": dict(dets)}
        rows.append([kd, len(lst), sum(1 for f in lst if f["severity"] in SEVERITIES[:3]),
                     f"{noisy}/{units_total}", f"{noisy_med}/{units_total}",
                     " ".join(f"{d}:{c}" for d, c in dets.most_common())])
    table(["kind", "FPs", "med+", "noisy keys", "noisy med+", "by detector"], rows,
          "FALSE POSITIVES per kind (noisy keys: keys with >= 1 FP, of all keys of the kind; "
          "a rotated key or a role counts once)")

    # per fleet
    rows = []
    fleet_json = []
    for r, run in zip(results, runs):
        n = len(r["fps"])
        nm = sum(1 for f in r["fps"] if f["severity"] in SEVERITIES[:3])
        fnd = sum(a["found"] for a in r["attacks"])
        fleet_json.append({"seed": r["seed"], "events": r["events"], "fps": n, "fps_medium_plus": nm,
                           "found": fnd, "attacks": len(r["attacks"]), **run})
        rows.append([r["seed"], r["events"], f"{fnd}/{len(r['attacks'])}", n, nm,
                     f"{run['gen_s']:.0f}s" if run["gen_s"] else "cached",
                     f"{run['replay_s']:.0f}s" if run["replay_s"] else "cached"])
    fl = [x["fps"] for x in fleet_json]
    flm = [x["fps_medium_plus"] for x in fleet_json]
    rows.append(["mean", "", "", f"{statistics.mean(fl):.1f}", f"{statistics.mean(flm):.1f}", "", ""])
    rows.append(["worst", "", "", max(fl), max(flm), "", ""])
    table(["seed", "events", "found", "FPs", "med+", "gen", "replay"], rows, "PER FLEET")

    # severity
    det_sev = Counter()
    for r in results:
        det_sev.update(r["detected_severity"])
    table(["findings"] + SEVERITIES,
          [["false positives"] + [sev_all.get(s, 0) for s in SEVERITIES],
           ["during attacks"] + [det_sev.get(s, 0) for s in SEVERITIES]],
          "SEVERITY breakdown")

    rep, pairs, rep_det = repeated_pairs(fps)
    records = sum(1 for f in fps if f.get("record"))
    print(f"\nREPEATS: {rep} of {pairs} benign (key, detector) pairs raised more than 2 findings "
          f"within 30 days" + (" (" + ", ".join(f"{d}:{c}" for d, c in rep_det.most_common()) + ")"
                               if rep_det else "")
          + f"; {records} of the false positives are runs' records of folded findings (no alert)")

    # samples
    if args.samples:
        print(f"\nSAMPLE false positives ({args.samples} per kind and detector, spread over fleets and time)")
        groups = defaultdict(list)
        for f in fps:
            groups[(f["kind"], f["detector"])].append(f)
        for (kd, d) in sorted(groups):
            lst = sorted(groups[(kd, d)], key=lambda f: (f["seed"], f["t"]))
            n = len(lst)
            m = min(n, args.samples)
            idx = sorted({round(i * (n - 1) / max(1, m - 1)) for i in range(m)})
            print(f"  [{kd} / {d}] {n} FPs")
            for i in idx:
                f = lst[i]
                s = f["summary"]
                if len(s) > args.width:
                    s = s[:args.width - 1] + "…"
                print(f"    s{f['seed']} {f['severity']:<6} {f['observed_at'][:16]} {s}")

    return {"seeds": seeds, "keys": args.keys, "days": args.days, "kinds": args.kinds or "all",
            "keywatch": str(args.keywatch), "config": args.config,
            "recall": recall, "recall_total": [total_found, total],
            "false_positives_by_detector": det_json, "false_positives_total": len(fps),
            "false_positives_by_week": week_json,
            "false_positives_by_severity": dict(sev_all), "detected_by_severity": dict(det_sev),
            "by_kind": kind_json, "fleets": fleet_json,
            "fps_per_fleet": {"mean": statistics.mean(fl), "worst": max(fl),
                              "mean_medium_plus": statistics.mean(flm), "worst_medium_plus": max(flm)},
            "repeated_pairs": {"over_2_in_30d": rep, "pairs_with_fps": pairs, "by_detector": dict(rep_det)},
            "attacks": [dict(a, seed=r["seed"]) for r in results for a in r["attacks"]],
            "skipped_attacks": dict(skipped)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1-10")
    ap.add_argument("--keys", type=int, default=120)
    ap.add_argument("--days", type=int, default=50)
    ap.add_argument("--kinds", default="")
    ap.add_argument("--families", default="")
    ap.add_argument("--keywatch", default=str(REPO / "target" / "release" / "keywatch"))
    ap.add_argument("--config", default=None)
    ap.add_argument("--profile", default="generic")
    ap.add_argument("--workdir", default=os.environ.get("KEYWATCH_FLEETS", "/tmp/keywatch-fleets"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--fresh", action="store_true", help="replay again even if findings are cached")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--width", type=int, default=230, help="summary width in samples")
    args = ap.parse_args(argv)
    if not Path(args.keywatch).exists():
        sys.exit(f"no keywatch binary at {args.keywatch}")
    os.makedirs(args.workdir, exist_ok=True)
    results, runs = [], []
    t_all = time.time()
    for seed in parse_seeds(args.seeds):
        d, gen_s = ensure_fleet(args, seed)
        truth = json.loads((d / "truth.json").read_text())
        out, rep_s, stderr = run_replay(args, d)
        # One finding per id: a run's record (a finding folded into an open
        # run) is printed again with the same id each time it is updated;
        # the store keeps one row with the count, and so do we. Its first
        # version is judged (when it was raised).
        findings, ids = [], set()
        with open(out) as fh:
            for line in fh:
                line = line.strip()
                if line.startswith("{"):
                    f = json.loads(line)
                    if f.get("id") not in ids:
                        ids.add(f.get("id"))
                        findings.append(f)
        r = judge(seed, truth, findings)
        results.append(r)
        runs.append({"gen_s": round(gen_s, 1), "replay_s": round(rep_s, 1), "findings": len(findings),
                     "dir": str(d)})
        print(f"seed {seed}: {truth.get('events')} events, {len(findings)} findings, "
              f"{sum(a['found'] for a in r['attacks'])}/{len(r['attacks'])} attacks found, "
              f"{len(r['fps'])} FPs (gen {gen_s:.0f}s, replay {rep_s:.0f}s)", file=sys.stderr)
    out = report(results, runs, args)
    out["wall_s"] = round(time.time() - t_all, 1)
    out["false_positive_list"] = [
        {k: v for k, v in f.items() if k != "t"} for r in results for f in r["fps"]]
    print(f"\nwall time {out['wall_s']}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
