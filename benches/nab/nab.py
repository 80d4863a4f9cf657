#!/usr/bin/env python3
"""keywatch's rate_spike on the Numenta Anomaly Benchmark's count series.

Standard library only. Reads NAB from a bare git mirror (or a checkout),
replays each count series of the subset through one or more keywatch
binaries as the events of a single key, and scores the findings with a
reimplementation of NAB's scoring (standard profile), next to NAB's own
`numenta` (HTM) and `skyline` results on the same files.

    python3 benches/nab/nab.py --keywatch /tmp/kw-now --keywatch /tmp/kw-b
    python3 benches/nab/nab.py --keywatch /tmp/kw-now,/tmp/kw-b --json out.json

The subset (series whose values are counts of events per interval):

    realTweets/Twitter_volume_*.csv (10 series)   tweets per 5 minutes
    realKnownCause/nyc_taxi.csv                   passengers per 30 minutes
    realAWSCloudwatch/elb_request_count_8c0756.csv  ELB requests per 5 minutes

Scoring, as NAB defines it (nab/sweeper.py, nab/scorer.py, nab/runner.py),
written afresh here:

- A row is a detection when its anomaly score is at least the threshold.
- The first min(floor(0.15 * rows), 750) rows of a file (the probationary
  period) are not scored: detections there count for nothing, and a window
  lying wholly inside it is neither found nor missed.
- A window (a labelled stretch of rows) is worth its earliest scored
  detection: tp * s(p) / s(-1) with s(p) = 2 / (1 + exp(5p)) - 1 and
  p = -(right - i + 1) / width, so the window's first row earns tp and its
  last about nothing. A window without one costs -fn.
- A detection outside every window costs fp * s(d) where d is its distance
  past the end of the previous window over (that window's width - 1), and
  s = -1 when d > 3 or when no window ended before it.
- A file's raw score is the sum; a set of files is normalised as
  100 * (raw - null) / (perfect - null), null being the raw score of
  detecting nothing (-fn per scored window) and perfect tp per labelled
  window.

keywatch: each row becomes one generic event of key AKIANAB whose `count` is
the row's value rounded to an integer (at least 0), at the row's timestamp
read as UTC. A rate_spike or error_spike finding marks one row: the row in
the 5-minute bucket the finding names (`evidence.observed.bucket_start`), or
failing that the last row at or before `observed_at`; that row gets anomaly
score 1, every other row 0, threshold 0.5.
"""

import argparse
import bisect
import calendar
import concurrent.futures
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

DEFAULT_NAB = "/work/.mirror/numenta+NAB/repo"

TWEETS = ["AAPL", "AMZN", "CRM", "CVS", "FB", "GOOG", "IBM", "KO", "PFE", "UPS"]
SUBSET = (
    ["realTweets/Twitter_volume_%s.csv" % s for s in TWEETS]
    + ["realKnownCause/nyc_taxi.csv", "realAWSCloudwatch/elb_request_count_8c0756.csv"]
)

# NAB's standard profile (config/profiles.json, read at run time; these are
# only the fallback).
STANDARD = {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11}
PROBATION_SHARE = 0.15
PROBATION_CAP_ROWS = 5000  # NAB caps the period at 15% of 5000 rows
BASELINES = ["numenta", "skyline"]
KEY = "AKIANAB"
LEARNING_S = 7 * 86400  # keywatch's default learning period
FINDING_DETECTORS = ("rate_spike", "error_spike")


# --------------------------------------------------------------------------
# Reading NAB


class NabSource:
    """Files of NAB, from a checkout or a bare git repository."""

    def __init__(self, path):
        self.path = path
        self.checkout = os.path.isdir(os.path.join(path, "data"))
        self._cat = None

    def read(self, rel):
        if self.checkout:
            with open(os.path.join(self.path, rel), encoding="utf-8") as f:
                return f.read()
        if self._cat is None:
            self._cat = subprocess.Popen(
                ["git", "-C", self.path, "cat-file", "--batch"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._cat.stdin.write(("HEAD:%s\n" % rel).encode())
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().decode().split()
        if len(header) != 3 or header[1] != "blob":
            raise FileNotFoundError("%s not in %s" % (rel, self.path))
        body = self._cat.stdout.read(int(header[2]))
        self._cat.stdout.read(1)  # the newline after each object
        return body.decode("utf-8")

    def json(self, rel):
        return json.loads(self.read(rel))

    def close(self):
        if self._cat is not None:
            self._cat.stdin.close()
            self._cat.wait()
            self._cat = None


def epoch(text):
    """NAB's naive timestamps ("2015-02-26 21:42:53[.000000]") as UTC seconds."""
    dt = datetime.fromisoformat(text.strip().replace("T", " "))
    return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6


def rfc3339(text):
    return epoch(text.replace("Z", "").split("+")[0])


def read_csv(text):
    lines = text.splitlines()
    head = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:] if line.strip()]
    return head, rows


def load_series(nab, rel):
    head, rows = read_csv(nab.read("data/" + rel))
    ti, vi = head.index("timestamp"), head.index("value")
    return [epoch(r[ti]) for r in rows], [float(r[vi]) for r in rows]


def load_results(nab, detector, rel):
    category, name = rel.split("/")
    head, rows = read_csv(nab.read("results/%s/%s/%s_%s" % (detector, category, detector, name)))
    ai = head.index("anomaly_score")
    return [float(r[ai]) for r in rows]


# --------------------------------------------------------------------------
# Scoring


def s_curve(p):
    """NAB's scaled sigmoid: 1 at p = -inf, 0 at p = 0, -1 well past it."""
    if p > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


def probation_rows(n):
    return min(math.floor(PROBATION_SHARE * n), PROBATION_SHARE * PROBATION_CAP_ROWS)


def score_file(times, detected_rows, windows, cost):
    """Scores one file.

    times: row timestamps; detected_rows: indices of the rows that are
    detections; windows: [(start, end)] timestamps, each a row's timestamp.
    Returns a dict with raw, null, perfect and window counts.
    """
    tp_w, fp_w, fn_w = cost["tpWeight"], cost["fpWeight"], cost["fnWeight"]
    row_of = {t: i for i, t in enumerate(times)}
    spans = sorted((row_of[a], row_of[b]) for a, b in windows)
    for (l0, r0), (l1, _) in zip(spans, spans[1:]):
        if l1 <= r0:
            raise ValueError("overlapping or touching windows %s" % (spans,))
    starts = [l for l, _ in spans]
    prob = probation_rows(len(times))
    top = s_curve(-1.0)

    best = {}  # window number -> best credit among its scored detections
    fp_cost = 0.0
    fp_rows = 0
    for i in sorted(set(detected_rows)):
        if i < prob:
            continue
        w = bisect.bisect_right(starts, i) - 1  # last window starting at or before i
        if w >= 0 and i <= spans[w][1]:
            left, right = spans[w]
            width = right - left + 1
            credit = tp_w * s_curve(-(right - i + 1) / width) / top
            best[w] = max(best.get(w, credit), credit)
            continue
        fp_rows += 1
        if w < 0:
            fp_cost += -1.0 * fp_w
        else:
            left, right = spans[w]
            fp_cost += fp_w * s_curve((i - right) / (right - left))

    scored = [w for w, (_, right) in enumerate(spans) if right >= prob]
    found = [w for w in scored if w in best]
    raw = sum(best[w] for w in found) - fn_w * (len(scored) - len(found)) + fp_cost
    return {
        "raw": raw,
        "null": -fn_w * len(scored),
        "perfect": tp_w * len(spans),
        "windows": len(spans),
        "scored_windows": len(scored),
        "tp": len(found),
        "fn": len(scored) - len(found),
        "fp": fp_rows,
        "probation_rows": prob,
    }


def normalised(raw, null, perfect):
    if perfect == null:
        return None
    return 100.0 * (raw - null) / (perfect - null)


def total(scores):
    t = {k: sum(s[k] for s in scores) for k in
         ("raw", "null", "perfect", "windows", "scored_windows", "tp", "fn", "fp")}
    t["score"] = normalised(t["raw"], t["null"], t["perfect"])
    return t


# --------------------------------------------------------------------------
# keywatch


def write_events(path, times, values):
    kept = 0
    with open(path, "w") as f:
        for t, v in zip(times, values):
            count = max(0, int(math.floor(v + 0.5)))
            if count == 0:
                continue  # "a usage record with count 0 teaches nothing" (docs/detectors.md)
            f.write(json.dumps({"time": int(t), "key_id": KEY, "source": "203.0.113.10",
                                "action": "s3:GetObject", "count": count}) + "\n")
            kept += 1
    return kept


def finding_row(finding, times):
    """The row a finding marks: the row in the bucket it names, else the
    last row at or before observed_at."""
    obs = (finding.get("evidence") or {}).get("observed") or {}
    if obs.get("bucket_start"):
        start = rfc3339(obs["bucket_start"])
        width = obs.get("bucket_s") or 300
        i = bisect.bisect_left(times, start)
        if i < len(times) and times[i] < start + width:
            return i
    i = bisect.bisect_right(times, rfc3339(finding["observed_at"])) - 1
    return max(i, 0)


def run_keywatch(binary, events_path, times, config=None):
    cmd = [binary, "replay", "--profile", "generic"]
    if config:
        cmd += ["-c", config]
    proc = subprocess.run(cmd + [events_path],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError("%s replay %s exited %d: %s"
                           % (binary, events_path, proc.returncode, proc.stderr[-2000:]))
    rows, by_detector = set(), {}
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        f = json.loads(line)
        by_detector[f["detector"]] = by_detector.get(f["detector"], 0) + 1
        if f["detector"] in FINDING_DETECTORS:
            rows.add(finding_row(f, times))
    return sorted(rows), by_detector


# --------------------------------------------------------------------------
# Main


def parse_binaries(values):
    out, seen = [], set()
    for v in values or []:
        for path in v.split(","):
            path = path.strip()
            if not path:
                continue
            name = os.path.basename(path)
            while name in seen:
                name += "'"
            seen.add(name)
            out.append((name, path))
    return out


def fmt_score(x):
    return "n/a" if x is None else "%.1f" % x


def print_table(files, columns, results, learning_windows, out):
    cw = 18
    name_w = max([len(short(f)) for f in files] + [len("subset total")]) + 1
    print("NAB standard profile (tp 1, fn 1, fp 0.11), normalised score and windows "
          "TP/FP/FN (FP: detections outside windows)", file=out)
    head = "%-*s %8s" % (name_w, "file", "windows") + "".join(" | %-*s" % (cw, c) for c in columns)
    print(head, file=out)
    print("-" * len(head), file=out)

    def cell(s):
        return "%6s %3d/%d/%d" % (fmt_score(s["score"]), s["tp"], s["fp"], s["fn"])

    for f in files:
        first = next(iter(results.values()))["files"][f]
        w = "%d (%d)" % (first["windows"], learning_windows[f])
        print("%-*s %8s" % (name_w, short(f), w)
              + "".join(" | %-*s" % (cw, cell(results[c]["files"][f])) for c in columns), file=out)
    print("-" * len(head), file=out)
    t0 = next(iter(results.values()))["total"]
    print("%-*s %8s" % (name_w, "subset total", "%d (%d)" % (t0["windows"], sum(learning_windows.values())))
          + "".join(" | %-*s" % (cw, cell(results[c]["total"])) for c in columns), file=out)
    print("windows (n): n of them end within keywatch's first 7 days of the file "
          "(its learning period); a window inside NAB's probationary rows is neither "
          "found nor missed.", file=out)


def short(rel):
    return rel.split("/")[1][:-4].replace("Twitter_volume_", "tweets_")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keywatch", action="append", metavar="PATH",
                    help="a keywatch binary (repeatable, or a comma list)")
    ap.add_argument("--nab", default=DEFAULT_NAB, help="NAB: bare git repository or checkout")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    ap.add_argument("--no-check", action="store_true",
                    help="skip reproducing NAB's published full-corpus scores")
    ap.add_argument("--jobs", type=int, default=4, help="keywatch runs at once")
    ap.add_argument("--config", metavar="FILE",
                    help="keywatch configuration for every binary (default: none, the defaults)")
    ap.add_argument("--keep", metavar="DIR", help="keep the events and findings here")
    args = ap.parse_args()

    started = time.time()
    nab = NabSource(args.nab)
    profiles = nab.json("config/profiles.json")
    cost = profiles.get("standard", {}).get("CostMatrix", STANDARD)
    thresholds = nab.json("config/thresholds.json")
    labels = nab.json("labels/combined_windows.json")
    windows = {rel: [(epoch(a), epoch(b)) for a, b in w] for rel, w in labels.items()}
    binaries = parse_binaries(args.keywatch)

    series = {rel: load_series(nab, rel) for rel in SUBSET}
    report = {"profile": "standard", "cost": cost, "subset": SUBSET, "detectors": {},
              "keywatch_config": args.config}

    # NAB's detectors from their published results, at their standard thresholds.
    results = {}
    for det in BASELINES:
        thr = thresholds[det]["standard"]["threshold"]
        per = {}
        for rel in SUBSET:
            scores = load_results(nab, det, rel)
            times = series[rel][0]
            if len(scores) != len(times):
                raise ValueError("%s %s: %d scores for %d rows" % (det, rel, len(scores), len(times)))
            s = score_file(times, [i for i, x in enumerate(scores) if x >= thr], windows[rel], cost)
            s["score"] = normalised(s["raw"], s["null"], s["perfect"])
            per[rel] = s
        results[det] = {"threshold": thr, "files": per, "total": total(per.values())}

    # keywatch.
    with tempfile.TemporaryDirectory(prefix="kw-nab-") as tmp:
        work = args.keep or tmp
        os.makedirs(work, exist_ok=True)
        events = {}
        for rel in SUBSET:
            path = os.path.join(work, short(rel) + ".jsonl")
            write_events(path, *series[rel])
            events[rel] = path
        jobs = {}
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            for name, path in binaries:
                for rel in SUBSET:
                    jobs[(name, rel)] = pool.submit(run_keywatch, path, events[rel], series[rel][0],
                                                 args.config)
        for name, path in binaries:
            per = {}
            for rel in SUBSET:
                rows, by_det = jobs[(name, rel)].result()
                s = score_file(series[rel][0], rows, windows[rel], cost)
                s["score"] = normalised(s["raw"], s["null"], s["perfect"])
                s["findings"] = by_det
                s["detection_rows"] = rows
                s["detection_times"] = [
                    datetime.fromtimestamp(series[rel][0][i], timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                    for i in rows]
                per[rel] = s
            results[name] = {"binary": path, "threshold": 0.5, "files": per,
                             "total": total(per.values())}

    learning_windows = {
        rel: sum(1 for _, b in windows[rel] if b < series[rel][0][0] + LEARNING_S)
        for rel in SUBSET}
    columns = [n for n, _ in binaries] + BASELINES
    print_table(SUBSET, columns, results, learning_windows, sys.stdout)
    report["detectors"] = results
    report["windows_ending_in_learning"] = learning_windows

    if not args.no_check:
        report["reproduction"] = reproduce(nab, thresholds, windows, cost, sys.stdout)
    nab.close()
    report["seconds"] = round(time.time() - started, 1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)
            f.write("\n")


def reproduce(nab, thresholds, windows, cost, out):
    """Scores numenta and skyline on the whole corpus from their results
    files and compares with results/final_results.json and NAB's per-file
    raw scores (results/<det>/<det>_standard_scores.csv)."""
    published = nab.json("results/final_results.json")
    check = {}
    print("\nFull corpus (%d files, %d windows), standard profile: ours vs published"
          % (len(windows), sum(len(w) for w in windows.values())), file=out)
    for det in BASELINES:
        thr = thresholds[det]["standard"]["threshold"]
        _, rows = read_csv(nab.read("results/%s/%s_standard_scores.csv" % (det, det)))
        pub_raw = {r[2]: float(r[4]) for r in rows if r[0] != "Totals"}
        per, worst = [], 0.0
        for rel in sorted(windows):
            times, _ = load_series(nab, rel)
            scores = load_results(nab, det, rel)
            s = score_file(times, [i for i, x in enumerate(scores) if x >= thr], windows[rel], cost)
            per.append(s)
            if rel in pub_raw:
                worst = max(worst, abs(s["raw"] - pub_raw[rel]))
        t = total(per)
        pub = published[det]["standard"]
        check[det] = {"threshold": thr, "raw": t["raw"], "null": t["null"],
                      "perfect": t["perfect"], "score": t["score"], "published": pub,
                      "difference": t["score"] - pub,
                      "published_raw_total": sum(pub_raw.values()),
                      "max_file_raw_difference": worst}
        print("  %-8s threshold %.6f  raw %.6f (published %.6f, worst file off by %.1e)  "
              "score %.6f (published %.6f, off by %.1e)"
              % (det, thr, t["raw"], sum(pub_raw.values()), worst, t["score"], pub,
                 t["score"] - pub), file=out)
    return check


if __name__ == "__main__":
    main()
