#!/usr/bin/env python3
"""Fault suite for `keywatch run`, run by hand (not in CI): real crashes, a
paused broker, a full disk and a damaged findings store, each against its
own local tansu broker on 127.0.0.1, each compared at the end with a clean
run of the same topic (fresh state directory, fresh group id, no faults).

usage: benches/faults.py [--cases a,b] [--keep] [--kill-seed N]
                         [--keys 30] [--days 20] [--seed 7]
(benches/faults.sh builds the release binary first and runs this.)

Cases:
  kill9_no_changelog  changelog off: three `kill -9`s in quick succession at
                      irregular moments while it consumes (the third as a
                      finding reaches the file sink), then a final run
  kill9_changelog     the same with the changelog on
  broker_pause        tansu stopped (SIGSTOP) for 40 s while it consumes:
                      /readyz 503 naming the broker, a WARN, then SIGCONT
                      (session.timeout.ms 60 s here, see the case for why)
  disk_full           store and checkpoints on a 4 MiB tmpfs that fills up
                      while findings are raised (needs root to mount)
  damaged_store       16 KiB of 0xA5 over the middle of the findings store
                      between two runs: the daemon must start and rebuild
  kill9_before_checkpoint
                      one `kill -9` once every offset is committed but
                      before the first checkpoint (checkpoint.interval at
                      its default, 60s), then a final run

Per case one line, e.g.
  kill9_no_changelog: keys 368/368 equal, principals 38/38 equal, findings in store 24 of 24
  (principal findings, not compared: 3, clean 4) -> lost 0
Keys and principals (a role session counted as its role, as keywatch does;
those either run tracks) are compared through /api/v1/keys/{id}: a key's
events, first_seen, last_seen and active_days; a principal's events,
first_seen and last_seen (its active_days depends on how its partitions
interleave: shown when it differs). Findings are compared through the ids
/api/v1/findings lists from the store: the key findings (entity key_id),
which a clean run reproduces id for id. Principal findings are counted, not
compared: which of a role's keys raises one, and whether its rate spike
fires, depends on how events of different partitions interleave, and two
clean runs of one topic already store different ones. Exits 1 when anything
was lost or a check failed; the working directory (logs, configs, stores)
is then kept.
Everything listens on and talks to 127.0.0.1 only.
"""

import argparse
import atexit
import errno
import heapq
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CI_PYTHON = ROOT / "target" / "ci-tools" / "python"
if CI_PYTHON.is_dir():
    sys.path.insert(0, str(CI_PYTHON))
try:
    from confluent_kafka import Consumer, Producer, TopicPartition
except ImportError:
    print(
        f"faults: the Python confluent-kafka client is missing: it is not in {CI_PYTHON} "
        "(.ci/test pip-installs it there) nor importable from PYTHONPATH",
        file=sys.stderr,
    )
    sys.exit(2)

KW = ROOT / "target" / "release" / "keywatch"
PARTITIONS = 6
CASES = ["kill9_no_changelog", "kill9_changelog", "broker_pause", "disk_full", "damaged_store",
         "kill9_before_checkpoint"]

# ---------------------------------------------------------------- processes

CHILDREN = []


def spawn(args, log, cwd, env=None):
    with open(log, "ab") as err:
        p = subprocess.Popen(
            [str(a) for a in args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=cwd,
            env=env,
        )
    CHILDREN.append(p)
    return p


def reap(p):
    """Ends one child we started (a stopped one is continued first)."""
    if p.poll() is None:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        pass


def reap_all():
    for p in CHILDREN:
        reap(p)


atexit.register(reap_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(f"  {msg}", flush=True)


class Failed(Exception):
    """A case could not go on (a check failed or something timed out)."""


def wait_until(what, done, timeout, step=0.25):
    deadline = time.monotonic() + timeout
    while True:
        v = done()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------- the broker


class Tansu:
    def __init__(self, work, exe):
        self.exe = exe
        self.addr = f"127.0.0.1:{free_port()}"
        url = f"tcp://{self.addr}"
        self.proc = spawn(
            [exe, "broker", "--storage-engine", "memory://tansu/",
             "--listener-url", url, "--advertised-listener-url", url],
            work / "tansu.log", cwd=work,
        )
        host, port = self.addr.split(":")

        def listening():
            if self.proc.poll() is not None:
                raise Failed(f"tansu exited: {tail(work / 'tansu.log')}")
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(f"tansu to listen on {self.addr}", listening, 30, 0.1)

    def create_topic(self, name, partitions=PARTITIONS):
        r = subprocess.run(
            [self.exe, "topic", "create", name, "--broker", f"tcp://{self.addr}",
             "--partitions", str(partitions)],
            capture_output=True, text=True,
        )
        if r.returncode != 0:
            raise Failed(f"creating topic {name}: {r.stderr.strip()}")

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        reap(self.proc)


class ProduceThread(threading.Thread):
    """Produces events keyed by key id (as tests/e2e/produce.py does), in
    `chunks` flushed chunks `pause` seconds apart."""

    def __init__(self, addr, topic, events, chunks=1, pause=0.0):
        super().__init__(daemon=True)
        self.addr, self.topic, self.events = addr, topic, events
        self.chunks, self.pause = chunks, pause
        self.delivered, self.failed, self.error = 0, [], None

    def run(self):
        try:
            self._run()
        except Exception as e:  # reported by join_checked
            self.error = e

    def _report(self, err, _msg):
        if err is not None:
            self.failed.append(str(err))
        else:
            self.delivered += 1

    def _run(self):
        p = Producer({"bootstrap.servers": self.addr, "linger.ms": 20})
        n = len(self.events)
        for i in range(self.chunks):
            for key, value in self.events[i * n // self.chunks:(i + 1) * n // self.chunks]:
                while True:
                    try:
                        p.produce(self.topic, value, key=key, on_delivery=self._report)
                        break
                    except BufferError:
                        p.poll(0.1)
                p.poll(0)
            while p.flush(1) > 0:
                pass
            if self.pause and i + 1 < self.chunks:
                time.sleep(self.pause)

    def join_checked(self, timeout=300):
        self.join(timeout)
        if self.is_alive():
            raise Failed("the producer did not finish")
        if self.error:
            raise Failed(f"producing: {self.error}")
        if self.failed:
            raise Failed(f"{len(self.failed)} deliveries failed, first: {self.failed[0]}")
        return self.delivered


def produce(addr, topic, events, chunks=1, pause=0.0):
    t = ProduceThread(addr, topic, events, chunks, pause)
    t.start()
    return t


def committed(addr, group, topic):
    c = Consumer({"bootstrap.servers": addr, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum(max(tp.offset, 0) for tp in c.committed(parts, timeout=10))
    except Exception:
        return -1
    finally:
        c.close()


# ---------------------------------------------------------------- the daemon


def tail(path, lines=15):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def records(text):
    """Log records, a record's continuation lines (a multi-line field)
    joined to it with " | "."""
    out = []
    for line in text.splitlines():
        if out and not re.match(r"^\d{4}-\d\d-\d\dT", line):
            out[-1] += " | " + line
        else:
            out.append(line)
    return out


def brief(record, width=400):
    """A log record without its timestamp, cut to `width`."""
    r = re.sub(r"^\S+\s+", "", record)
    return r if len(r) <= width else r[:width] + "..."


class Api:
    """A keep-alive HTTP client for one daemon on 127.0.0.1."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path, timeout=10):
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                body = r.read()
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                return r.status, doc
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt:
                    return None, None
        return None, None

    def readyz(self):
        return self.get("/readyz", timeout=5)

    def metric(self, name):
        """The sum of a Prometheus family's series on /metrics, or None."""
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode(errors="replace")
            c.close()
        except (OSError, http.client.HTTPException):
            return None
        values = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        return int(sum(float(v) for v in values)) if values else None

    def owned(self):
        return self.metric("keywatch_kafka_partitions_owned")


class Daemon:
    """`keywatch run -c CONFIG` with its own HTTP port and log per start."""

    def __init__(self, case_dir, name, settings):
        self.dir = case_dir
        self.name = name
        self.settings = settings
        self.proc = None
        self.port = None
        self.log = None

    def start(self, run_name):
        self.port = free_port()
        self.log = self.dir / f"{run_name}.log"
        cfg = self.dir / f"{run_name}.toml"
        cfg.write_text(config(self.settings, self.port, self.dir))
        env = dict(os.environ, KEYWATCH_LOG="info")
        self.proc = spawn([KW, "run", "-c", cfg], self.log, cwd=self.dir, env=env)
        self.api = Api(self.port)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def check_alive(self):
        if not self.alive():
            raise Failed(f"{self.name}: keywatch exited ({self.proc.returncode}):\n{tail(self.log)}")

    def wait_assigned(self, timeout=60):
        pat = re.compile(r"partitions assigned.*owned=[1-9]")

        def assigned():
            self.check_alive()
            return pat.search(self.text())

        try:
            wait_until(f"{self.name}: partitions assigned", assigned, timeout, 0.05)
        except Failed as e:
            if "partitions assigned assigned=0 owned=0" in self.text():
                raise Failed(f"{e} (the group gave it an empty assignment and never rebalanced: "
                             "tansu 0.6 does that to a member that joins while a killed "
                             "member's session is still open)") from None
            raise

    def wait_ready(self, timeout, messages=None):
        def ready():
            self.check_alive()
            status, doc = self.api.readyz()
            return status == 200 and (messages is None or doc.get("messages") == messages)

        what = "ready" if messages is None else f"ready with {messages} messages"
        wait_until(f"{self.name}: {what}", ready, timeout)

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def term(self, timeout=30):
        if not self.alive():
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            reap(self.proc)
            return None


def stop(dm, problems):
    """SIGTERM, and a problem when it does not exit or exits non-zero."""
    rc = dm.term()
    if rc is None:
        problems.append(f"{dm.name}: did not exit within 30s of SIGTERM (killed)")
    elif rc != 0:
        problems.append(f"{dm.name}: exited {rc} on SIGTERM:\n{tail(dm.log)}")


def config(s, port, case_dir):
    """The TOML of one run: `s` holds broker, topic, group, checkpoint dir,
    store path, alerts path, changelog (bool) and extra `[kafka]` lines."""
    lines = [
        "[kafka]",
        f'brokers = "{s["broker"]}"',
        f'topics = ["{s["topic"]}"]',
        f'group_id = "{s["group"]}"',
        'commit_interval = "1s"',
        'startup_timeout = "20s"',
        'shutdown_timeout = "20s"',
        *s.get("kafka_extra", []),
        "[kafka.properties]",
        f'"session.timeout.ms" = "{s.get("session_timeout_ms", 6000)}"',
        '"heartbeat.interval.ms" = "500"',
        "[http]",
        f'listen = "127.0.0.1:{port}"',
        "[checkpoint]",
        f'dir = "{s["checkpoints"]}"',
        f'interval = "{s.get("checkpoint_interval", "1s")}"',
        "keep = 3",
        "[changelog]",
        f'enabled = {"true" if s["changelog"] else "false"}',
    ]
    if s["changelog"]:
        lines.append(f'topic = "keywatch-state-{s["group"]}"')
    lines += [
        "[store]",
        f'path = "{s["store"]}"',
        "[alerts]",
        f'dead_letter_path = "{case_dir / (s["group"] + "-dead-letter.jsonl")}"',
        "[[alerts.sinks]]",
        'type = "file"',
        f'path = "{s["alerts"]}"',
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- comparing


def entity_fields(status, doc):
    if status == 404:
        return None
    if status != 200 or not isinstance(doc, dict):
        raise Failed(f"/api/v1/keys answered {status}: {doc}")
    return (doc.get("events"), doc.get("first_seen"), doc.get("last_seen"), doc.get("active_days"))


def state(api, data):
    """Each key's and principal's (events, first_seen, last_seen, active_days)."""
    keys = {k: entity_fields(*api.get(f"/api/v1/keys/{urllib.parse.quote(k, safe='')}"))
            for k in data.keys}
    principals = {
        p: entity_fields(*api.get(f"/api/v1/keys/{urllib.parse.quote(p, safe='')}?entity=principal"))
        for p in data.principals
    }
    return keys, principals


# Each finding id seen in a store, and its entity (key_id or principal).
ENTITY = {}


def key_findings(ids):
    """The ids of key findings (entity key_id) among `ids`."""
    return {i for i in ids if ENTITY.get(i) != "principal"}


def store_ids(api):
    """The ids of the findings in the store, every page; None when the API
    does not answer."""
    ids, cursor = set(), None
    while True:
        path = "/api/v1/findings?limit=1000"
        if cursor:
            path += "&cursor=" + urllib.parse.quote(cursor, safe="")
        status, doc = api.get(path)
        if status != 200 or not isinstance(doc, dict):
            return None
        for f in doc.get("findings", []):
            ids.add(f["id"])
            ENTITY[f["id"]] = f.get("entity")
        cursor = doc.get("next_cursor")
        if not cursor:
            return ids


def alert_ids(path):
    ids = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    ids.add(json.loads(line)["id"])
                except (ValueError, KeyError, TypeError):
                    pass
    except OSError:
        pass
    return ids


def wait_store_settled(api, alerts_path, timeout=30):
    """Until the store holds every alerted id and its list stops changing."""
    last = [None]

    def settled():
        ids = store_ids(api)
        ok = ids is not None and alert_ids(alerts_path) <= ids and ids == last[0]
        last[0] = ids
        return ok

    try:
        wait_until("the store to hold every alerted finding", settled, timeout, 1.0)
    except Failed:
        pass
    return last[0] or set()


class Snapshot:
    def __init__(self, keys, principals, ids):
        self.keys, self.principals, self.ids = keys, principals, ids


def clean_run(ctx, case_dir, broker, topic, n):
    """The reference: the same topic, a fresh group and state, no faults."""
    d = case_dir / "clean"
    d.mkdir()
    settings = dict(
        broker=broker, topic=topic, group=f"clean-{case_dir.name}", changelog=False,
        checkpoints=d / "checkpoints", store=d / "findings.db", alerts=d / "alerts.jsonl",
    )
    dm = Daemon(d, "clean run", settings).start("clean")
    try:
        dm.wait_ready(120, messages=n)
        ids = wait_store_settled(dm.api, settings["alerts"])
        keys, principals = state(dm.api, ctx.data)
    finally:
        dm.term()
    return Snapshot(keys, principals, ids)


def settle(dm, clean, ctx, broker, group, topic, n, timeout=120, want_ids=True):
    """Waits for the faulted run to catch up: its state equals the clean
    run's (and its store holds the clean run's findings), or it stops
    changing while ready with every offset committed. Returns its snapshot."""
    deadline = time.monotonic() + timeout
    last, same_since = None, None
    while True:
        dm.check_alive()
        keys, principals = state(dm.api, ctx.data)
        ids = store_ids(dm.api) or set()
        snap = Snapshot(keys, principals, ids)
        now = time.monotonic()
        if keys == clean.keys and first3(principals) == first3(clean.principals) and (
                not want_ids or key_findings(clean.ids) <= ids):
            return snap
        cur = (keys, principals, ids)
        if cur != last:
            last, same_since = cur, now
        elif now - same_since >= 6 and dm.api.readyz()[0] == 200 and committed(broker, group, topic) >= n:
            return snap
        if now > deadline:
            log(f"{dm.name}: still changing after {timeout}s; comparing what it has")
            return snap
        time.sleep(1)


def first3(states):
    """(events, first_seen, last_seen) of each state: what does not depend
    on the order of a principal's partitions."""
    return {k: (v[:3] if v else v) for k, v in states.items()}


def differ(a, b):
    """The names tracked by either run, and those whose states differ."""
    tracked = [k for k in a if a[k] is not None or b.get(k) is not None]
    return tracked, sorted(k for k in tracked if a[k] != b.get(k))


def compare(name, clean, got, extra_lost=0, extra="", findings=None):
    """The case's line, and how much was lost; `findings` replaces the
    comparison of the store with the clean run's."""
    # A key's events come in order from its one partition, so all four
    # fields must match. A principal's come from several partitions
    # interleaved: the count, the first and the last are the same in any
    # order, its active_days is not (an event older than the principal's
    # last_seen never starts a day), so it is shown, not compared.
    (tk, dk) = differ(clean.keys, got.keys)
    (tp, dp) = differ(first3(clean.principals), first3(got.principals))
    days = [k for k in tp if k not in dp and clean.principals[k] != got.principals.get(k)]
    for k in days:
        log(f"principal {k}: active_days {got.principals[k][3]}, clean {clean.principals[k][3]} "
            f"(order across partitions, not compared)")
    # A principal's finding depends on the order its keys' events arrive
    # from different partitions (which key's event is first past a line,
    # how the principal's rate buckets fill), and that order differs from
    # run to run even without faults: two clean runs of one topic store
    # different principal findings. Key findings are compared by id.
    clean_k, got_k = key_findings(clean.ids), key_findings(got.ids)
    clean_p, got_p = len(clean.ids) - len(clean_k), len(got.ids) - len(got_k)
    missing = clean_k - got_k if findings is None else set()
    lost = len(dk) + len(dp) + len(missing) + extra_lost
    for what, names, ref, have in (("key", dk, clean.keys, got.keys),
                                   ("principal", dp, clean.principals, got.principals)):
        for k in names[:5]:
            log(f"{what} {k}: clean (events, first_seen, last_seen, active_days) {ref[k]}, here {have.get(k)}")
        if len(names) > 5:
            log(f"... and {len(names) - 5} more {what}s differ")
    for i in sorted(missing)[:10]:
        log(f"finding {i} of the clean run is not in the store")
    more = got_k - clean_k
    line = (f"{name}: keys {len(tk) - len(dk)}/{len(tk)} equal, "
            f"principals {len(tp) - len(dp)}/{len(tp)} equal, "
            + (findings if findings is not None else
               f"findings in store {len(clean_k) - len(missing)} of {len(clean_k)}"
               + (f" (+{len(more)} the clean run has not)" if more else "")
               + f" (principal findings, not compared: {got_p}, clean {clean_p})")
            + extra + f" -> lost {lost}")
    return line, lost


# ---------------------------------------------------------------- the cases


class Ctx:
    def __init__(self, work, data, tansu_exe, rng, args):
        self.work, self.data, self.tansu_exe, self.rng = work, data, tansu_exe, rng
        self.args = args


def principal_identity(p):
    """The principal keywatch tracks for `p`: a role session
    (arn:aws:sts::1:assumed-role/ROLE/SESSION) is its role."""
    i = p.find(":assumed-role/")
    if i >= 0:
        start = i + len(":assumed-role/")
        j = p.find("/", start)
        if j >= 0:
            return p[:j]
    return p


class Data:
    def __init__(self, path):
        self.events = []  # (key bytes, value bytes)
        keys, principals = set(), set()
        with open(path, "rb") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                e = json.loads(line)
                k = e.get("key_id") or ""
                self.events.append((k.encode(), line))
                if k:
                    keys.add(k)
                if e.get("principal"):
                    principals.add(principal_identity(e["principal"]))
        self.keys, self.principals = sorted(keys), sorted(principals)


def case_settings(case_dir, broker, topic, changelog, state_dir=None, **extra):
    state_dir = state_dir or case_dir
    return dict(
        broker=broker, topic=topic, group=f"faulted-{case_dir.name}", changelog=changelog,
        checkpoints=state_dir / "checkpoints", store=state_dir / "findings.db",
        alerts=case_dir / "alerts.jsonl", **extra,
    )


def kill9(ctx, case_dir, name, changelog):
    tansu = Tansu(case_dir, ctx.tansu_exe)
    try:
        topic = "audit"
        tansu.create_topic(topic)
        s = case_settings(case_dir, tansu.addr, topic, changelog)
        n = len(ctx.data.events)
        # Most findings come from the attacks of the last days (the last
        # quarter of the events): the first 70% wait in the topic, the rest
        # arrive over ~18 s while the daemon is killed and restarted, so
        # the later runs die while findings are being raised and stored.
        cut = n * 7 // 10
        produce(tansu.addr, topic, ctx.data.events[:cut]).join_checked()
        producer = produce(tansu.addr, topic, ctx.data.events[cut:], chunks=18, pause=1.0)
        dm = Daemon(case_dir, name, s)
        for i in range(3):
            dm.start(f"run{i}")
            dm.wait_assigned()
            if i < 2:
                wait = round(ctx.rng.uniform(0.2, 2.5), 2)
                time.sleep(wait)
                when = f"{wait}s after its partitions were assigned"
            else:
                # The third dies the moment a finding reaches the file sink
                # (the store's writer may not have it yet), or after 3 s.
                seen, t0 = len(alert_ids(s["alerts"])), time.monotonic()
                while time.monotonic() - t0 < 3 and len(alert_ids(s["alerts"])) == seen:
                    time.sleep(0.005)
                alerted = len(alert_ids(s["alerts"])) > seen
                when = (f"{time.monotonic() - t0:.2f}s after its partitions were assigned, "
                        + ("as a new finding reached the file sink" if alerted else
                           "no new finding within 3s"))
            dm.check_alive()
            applied = dm.api.metric("keywatch_events_total")
            dm.kill9()
            log(f"run {i + 1}: kill -9 {when}; {applied} events applied since its start "
                f"({cut + producer.delivered} of {n} produced by then)")
        # Restarted at once, as the others: tansu 0.6 gives a member that
        # joins 1-6 s after a member was killed (its session still open) an
        # empty assignment, and never rebalances once that session lapses,
        # so waiting for the producer first could leave the final run
        # without partitions for good.
        dm.start("final")
        if producer.join_checked() != n - cut:
            raise Failed(f"produced {cut + producer.delivered} of {n}")
        dm.wait_assigned()
        clean = clean_run(ctx, case_dir, tansu.addr, topic, n)
        got = settle(dm, clean, ctx, tansu.addr, s["group"], topic, n)
        text = dm.text()
        if changelog:
            restored = "partition state restored" in text
            log("final run: " + ("partition state restored from the changelog/checkpoint"
                                 if restored else "no 'partition state restored' line"))
        problems = []
        stop(dm, problems)
        return (*compare(name, clean, got), problems)
    finally:
        tansu.stop()


def case_kill9_before_checkpoint(ctx, case_dir):
    """A kill -9 after the group committed every offset but before the first
    checkpoint (checkpoint.interval at its default, 60s; the changelog on,
    the default): the restart has no state for any partition."""
    name = "kill9_before_checkpoint"
    tansu = Tansu(case_dir, ctx.tansu_exe)
    problems = []
    try:
        topic = "audit"
        tansu.create_topic(topic)
        s = case_settings(case_dir, tansu.addr, topic, True, checkpoint_interval="60s")
        n = len(ctx.data.events)
        produce(tansu.addr, topic, ctx.data.events).join_checked()
        dm = Daemon(case_dir, name, s).start("run0")
        dm.wait_ready(120, messages=n)
        wait_until("the group to commit every offset",
                   lambda: committed(tansu.addr, s["group"], topic) >= n, 30, 0.2)
        written = list(Path(s["checkpoints"]).glob("*.kwc"))
        applied = dm.api.metric("keywatch_events_total")
        dm.kill9()
        log(f"run 1: kill -9 with {applied} events applied, {n} offsets committed, "
            f"{len(written)} checkpoint(s) written")
        dm.start("final")
        dm.wait_assigned()
        for what in ("no checkpoint to restore", "no state for the partition"):
            said = [r for r in records(dm.text()) if what in r]
            if said:
                log(f"final run ({len(said)}x): " + brief(said[0], 300))
        clean = clean_run(ctx, case_dir, tansu.addr, topic, n)
        got = settle(dm, clean, ctx, tansu.addr, s["group"], topic, n, timeout=60)
        status, doc = dm.api.readyz()
        log(f"final run: /readyz {status} {doc}")
        stop(dm, problems)
        return (*compare(name, clean, got), problems)
    finally:
        tansu.stop()


def case_kill9_no_changelog(ctx, case_dir):
    return kill9(ctx, case_dir, "kill9_no_changelog", False)


def case_kill9_changelog(ctx, case_dir):
    return kill9(ctx, case_dir, "kill9_changelog", True)


def case_broker_pause(ctx, case_dir):
    name = "broker_pause"
    tansu = Tansu(case_dir, ctx.tansu_exe)
    problems = []
    try:
        topic = "audit"
        tansu.create_topic(topic)
        # A session longer than the pause: with 6 s the consumer's session
        # lapses while tansu is stopped, and tansu 0.6 then never gives the
        # group its partitions again -- its JoinGroup answers name as
        # leader a member id from a join sent during the pause, which
        # nobody holds, so every SyncGroup fails ("rebalance in progress",
        # "unknown member"). A bare confluent-kafka consumer (eager or
        # cooperative) stays without partitions just the same.
        s = case_settings(case_dir, tansu.addr, topic, True, session_timeout_ms=60000,
                          kafka_extra=['unreachable_after = "10s"'])
        n = len(ctx.data.events)
        log("session.timeout.ms 60000 here (with 6000 tansu 0.6 never gives the group its "
            "partitions back after the pause)")
        dm = Daemon(case_dir, name, s).start("run")
        dm.wait_assigned()
        producer = produce(tansu.addr, topic, ctx.data.events, chunks=20, pause=0.75)
        time.sleep(4)
        dm.check_alive()
        at = producer.delivered
        tansu.pause()
        paused = time.monotonic()
        log(f"tansu stopped (SIGSTOP) with {at} of {n} events produced")
        reason = None
        try:
            while time.monotonic() - paused < 40:
                dm.check_alive()
                status, doc = dm.api.readyz()
                if status == 503 and reason is None:
                    reason = (doc or {}).get("error", "")
                    log(f"/readyz 503 after {time.monotonic() - paused:.1f}s: {reason}")
                time.sleep(0.5)
        finally:
            tansu.resume()
        log("tansu continued (SIGCONT) after 40s")
        if reason is None:
            problems.append("/readyz never turned 503 during the pause")
        elif "broker" not in reason.lower():
            problems.append(f"/readyz 503 did not mention the broker: {reason}")
        warns = [l for l in records(dm.text()) if " WARN " in l and "broker" in l.lower()]
        if warns:
            log("log: " + brief(warns[0]))
        else:
            problems.append("no WARN line about the broker in the log")
        if producer.join_checked() != n:
            raise Failed(f"produced {producer.delivered} of {n}")
        dm.wait_ready(90)
        try:
            wait_until("a partition owned again after the pause", lambda: (dm.api.owned() or 0) > 0, 60)
        except Failed as e:
            problems.append(f"{e}: keywatch_kafka_partitions_owned {dm.api.owned()} while /readyz "
                            f"answers {dm.api.readyz()[0]}")
            raise Failed(problems[-1])
        if "a Kafka broker is reachable again" not in dm.text():
            problems.append("no 'a Kafka broker is reachable again' line")
        clean = clean_run(ctx, case_dir, tansu.addr, topic, n)
        got = settle(dm, clean, ctx, tansu.addr, s["group"], topic, n)
        stop(dm, problems)
        line, lost = compare(name, clean, got)
        return line, lost, problems
    finally:
        tansu.stop()


class Filler(threading.Thread):
    """Keeps a filesystem full: appends to a file whenever there is room."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.full = threading.Event()
        self.bytes = 0

    def run(self):
        chunk = b"\0" * 4096
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while not self.stop.is_set():
                try:
                    self.bytes += os.write(fd, chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    self.full.set()
                    time.sleep(0.02)
        finally:
            os.close(fd)

    def release(self):
        self.stop.set()
        self.join(10)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def case_disk_full(ctx, case_dir):
    name = "disk_full"
    mnt = case_dir / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"{name}: skipped (needs root)", 0, [], True
    problems = []
    dm = filler = None
    tansu = None
    try:
        tansu = Tansu(case_dir, ctx.tansu_exe)
        topic = "audit"
        tansu.create_topic(topic)
        s = case_settings(case_dir, tansu.addr, topic, True, state_dir=mnt)
        events = ctx.data.events
        n = len(events)
        # Most findings come from the attacks of the last days: the first
        # 70% are consumed before the disk fills, the rest after.
        cut = n * 7 // 10
        produce(tansu.addr, topic, events[:cut]).join_checked()
        dm = Daemon(case_dir, name, s).start("run")
        dm.wait_ready(120, messages=cut)
        before = wait_store_settled(dm.api, s["alerts"])
        filler = Filler(mnt / "filler")
        filler.start()
        wait_until("the tmpfs to fill", filler.full.is_set, 30, 0.05)
        log(f"tmpfs full ({filler.bytes // 1024} KiB of filler) with {len(before)} findings stored; "
            f"producing the last {n - cut} events")
        producer = produce(tansu.addr, topic, events[cut:], chunks=5, pause=0.5)
        reason = [None]

        def not_ready():
            dm.check_alive()
            status, doc = dm.api.readyz()
            if status == 503 and "findings store" in (doc or {}).get("error", ""):
                reason[0] = doc["error"]
            return reason[0]

        try:
            wait_until("/readyz 503 naming the findings store", not_ready, 60)
            log(f"/readyz 503: {reason[0]}")
        except Failed as e:
            status, doc = dm.api.readyz()
            problems.append(f"{e} (last: {status} {doc})")
        producer.join_checked()
        time.sleep(5)  # findings keep coming while the disk is full
        status, doc = dm.api.readyz()
        held = alert_ids(s["alerts"]) - (store_ids(dm.api) or set())
        log(f"while full: /readyz {status}, {len(held)} alerted findings not in the store yet")
        warns = [l for l in records(dm.text())
                 if (" WARN " in l or " ERROR " in l) and "store" in l]
        for w in warns[:2]:
            log("log: " + brief(w))
        if not warns:
            problems.append("no WARN/ERROR line about the findings store in the log")
        filler.release()
        filler = None
        log("filler removed")
        dm.wait_ready(90)
        clean = clean_run(ctx, case_dir, tansu.addr, topic, n)
        got = settle(dm, clean, ctx, tansu.addr, s["group"], topic, n)
        got.ids = wait_store_settled(dm.api, s["alerts"]) | got.ids
        dropped = dm.api.metric("keywatch_store_dropped_total")
        if dropped:
            problems.append(f"keywatch_store_dropped_total {dropped}")
        alerted = alert_ids(s["alerts"])
        not_stored = alerted - got.ids
        for i in sorted(not_stored)[:10]:
            log(f"finding {i} was alerted (file sink) but is not in the store")
        stop(dm, problems)
        line, lost = compare(
            name, clean, got, extra_lost=len(not_stored),
            extra=f", alerted {len(alerted) - len(not_stored)} of {len(alerted)} in the store")
        return line, lost, problems
    finally:
        if filler is not None:
            filler.release()
        if dm is not None and dm.alive():
            dm.term()
        if tansu is not None:
            tansu.stop()
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def more_events(ctx, case_dir, seeds=(101, 102, 103)):
    """The suite's events merged (by time) with those of more generated
    fleets (`keywatch gen --seed S --volume 0.05 --attacks`, their own keys
    and attacks): about four times the findings, for a store where 16 KiB is
    a few percent of the rows rather than a tenth."""
    files = [ctx.work / "events.jsonl"]
    for seed in seeds:
        f = case_dir / f"events-{seed}.jsonl"
        subprocess.run(
            [KW, "gen", "--keys", str(ctx.args.keys), "--days", str(ctx.args.days),
             "--seed", str(seed), "--volume", "0.05", "--attacks",
             "--truth", case_dir / f"truth-{seed}.json", "-o", f, "--log", "warn"],
            check=True,
        )
        files.append(f)
    merged = case_dir / "events.jsonl"
    handles = [open(f, "rb") for f in files]
    try:
        # Every line starts {"time":"...": the ISO times sort as bytes.
        with open(merged, "wb") as out:
            out.writelines(heapq.merge(*handles, key=lambda line: line[:40]))
    finally:
        for h in handles:
            h.close()
    return Data(merged)


def case_damaged_store(ctx, case_dir):
    name = "damaged_store"
    data = more_events(ctx, case_dir)
    log(f"{len(data.events)} events of {len(data.keys)} keys (the suite's and 3 more fleets')")
    ctx = Ctx(ctx.work, data, ctx.tansu_exe, ctx.rng, ctx.args)
    tansu = Tansu(case_dir, ctx.tansu_exe)
    problems = []
    try:
        topic = "audit"
        tansu.create_topic(topic)
        s = case_settings(case_dir, tansu.addr, topic, True)
        n = len(ctx.data.events)
        produce(tansu.addr, topic, ctx.data.events).join_checked()
        dm = Daemon(case_dir, name, s).start("run")
        dm.wait_ready(120, messages=n)
        before = wait_store_settled(dm.api, s["alerts"])
        stop(dm, problems)
        store = Path(s["store"])
        data = bytearray(store.read_bytes())
        (store.parent / "before-damage.db").write_bytes(bytes(data))
        mid = len(data) // 2 // 4096 * 4096
        data[mid:mid + 16384] = b"\xa5" * min(16384, len(data) - mid)
        store.write_bytes(bytes(data))
        hit, on_damaged, overflow = damage_map(store.parent / "before-damage.db",
                                               mid // 4096 + 1, 4)
        if hit:
            log(f"the damaged pages: {hit}; {len(on_damaged)} stored findings on them")
        wal = Path(str(store) + "-wal")
        log(f"{len(before)} findings stored; 16 KiB of 0xA5 written at offset {mid} of "
            f"{len(data)} bytes" + (f" (a WAL of {wal.stat().st_size} bytes is beside it)"
                                    if wal.exists() else ""))
        dm.start("restart")
        dm.wait_ready(90)
        text = dm.text()
        said = [l for l in records(text) if "findings store was damaged" in l]
        if said:
            log("log: " + brief(said[0], 600))
        else:
            problems.append("the log does not say the store was damaged and rebuilt")
        aside = [p.name for p in store.parent.iterdir()
                 if p.name.startswith(store.name + ".damaged-")
                 and not p.name.endswith(("-wal", "-shm"))]
        if not aside:
            problems.append(f"no {store.name}.damaged-<ms> beside the store")
        after = store_ids(dm.api)
        if after is None:
            raise Failed("the restarted daemon's /api/v1/findings does not answer")
        clean = clean_run(ctx, case_dir, tansu.addr, topic, n)
        got = settle(dm, clean, ctx, tansu.addr, s["group"], topic, n, want_ids=False)
        stop(dm, problems)
        gone = before - after
        share = len(gone) / len(before) if before else 0.0
        if share > 0.10:
            problems.append(f"more than 10% of the stored findings lost ({share:.1%})")
        # The rows of the damaged pages may go (and one row per damaged
        # overflow page); a row that still read elsewhere may not.
        readable = gone - on_damaged
        extra = max(0, len(readable) - overflow) if hit is not None else 0
        if extra:
            log(f"{len(readable)} lost findings were on undamaged pages: "
                + ", ".join(sorted(readable)[:8]) + (" ..." if len(readable) > 8 else ""))
        line, lost = compare(
            name, clean, got, extra_lost=extra,
            findings=(f"findings in store {len(before) - len(gone)} of {len(before)} after the "
                      f"damage (lost {len(gone)}, {share:.1%}, up to 10% allowed; "
                      + (f"{len(gone) - len(readable)} on the damaged pages, {len(readable)} "
                         f"elsewhere" if hit is not None else "pages not mapped") + ")"))
        return line, lost, problems
    finally:
        tansu.stop()


def damage_map(path, first, count):
    """What pages first..first+count-1 of the SQLite file held (dbstat):
    their description, the ids of the findings whose rows sit on them (the
    findings table's leaf pages, in key order along their b-tree paths), and
    how many of them are overflow pages of findings (a row whose overflow
    page is hit goes too, whichever leaf holds it). (None, set(), 0) when
    it cannot tell."""
    last = first + count - 1
    try:
        import sqlite3
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        pages = c.execute(
            "SELECT pageno, name, pagetype FROM dbstat WHERE pageno BETWEEN ? AND ? "
            "ORDER BY pageno", (first, last)).fetchall()
        leaves = c.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = 'findings' AND pagetype = 'leaf' "
            "ORDER BY path").fetchall()
        ids = [r[0] for r in c.execute("SELECT id FROM findings ORDER BY rowid")]
        c.close()
    except Exception:
        return None, set(), 0
    on_damaged, at = set(), 0
    for page, cells in leaves:
        if first <= page <= last:
            on_damaged.update(ids[at:at + cells])
        at += cells
    overflow = sum(1 for _, name, kind in pages if name == "findings" and kind == "overflow")
    return ", ".join(f"page {p} {name} ({kind})" for p, name, kind in pages), on_damaged, overflow


CASE_FUNCS = {
    "kill9_no_changelog": case_kill9_no_changelog,
    "kill9_changelog": case_kill9_changelog,
    "broker_pause": case_broker_pause,
    "disk_full": case_disk_full,
    "damaged_store": case_damaged_store,
    "kill9_before_checkpoint": case_kill9_before_checkpoint,
}


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES),
                    help="comma-separated subset of: " + ", ".join(CASES))
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    ap.add_argument("--kill-seed", type=int, default=None,
                    help="seed of the kill -9 moments (default: random, printed)")
    ap.add_argument("--keys", type=int, default=30)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASE_FUNCS]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")

    missing = []
    if not KW.exists():
        missing.append(f"{KW} (cargo build --release --locked)")
    tansu_exe = shutil.which("tansu") or str(Path.home() / ".cargo" / "bin" / "tansu")
    if not os.access(tansu_exe, os.X_OK):
        missing.append("tansu (.ci/test installs it with cargo install)")
        tansu_exe = None
    if missing:
        print("faults: missing " + "; ".join(missing), file=sys.stderr)
        return 2

    kill_seed = args.kill_seed if args.kill_seed is not None else random.randrange(1 << 30)
    work = Path(tempfile.mkdtemp(prefix="keywatch-faults-"))
    t_all = time.monotonic()
    events = work / "events.jsonl"
    subprocess.run(
        [KW, "gen", "--keys", str(args.keys), "--days", str(args.days), "--seed", str(args.seed),
         "--attacks", "--truth", work / "truth.json", "-o", events, "--log", "warn"],
        check=True,
    )
    data = Data(events)
    print(f"faults: {len(data.events)} events of {len(data.keys)} keys and {len(data.principals)} "
          f"principals (keywatch gen --keys {args.keys} --days {args.days} --seed {args.seed} "
          f"--attacks); kill seed {kill_seed}; work dir {work}", flush=True)
    ctx = Ctx(work, data, tansu_exe, random.Random(kill_seed), args)

    results, bad = [], False
    for case in cases:
        print(f"-- {case}", flush=True)
        case_dir = work / case
        case_dir.mkdir()
        t0 = time.monotonic()
        try:
            out = CASE_FUNCS[case](ctx, case_dir)
            line, lost, problems = out[0], out[1], out[2] if len(out) > 2 else []
        except Failed as e:
            line, lost, problems = f"{case}: FAILED", 0, [str(e)]
        secs = time.monotonic() - t0
        ok = lost == 0 and not problems
        bad |= not ok
        if problems:
            line += "; FAILED: " + "; ".join(p.splitlines()[0] for p in problems)
            for p in problems:
                if "\n" in p:
                    print(p, flush=True)
        results.append(f"{line}  ({secs:.0f}s)")
        print(results[-1], flush=True)
        reap_all()

    print(f"== {len(cases)} case(s) in {time.monotonic() - t_all:.0f}s, kill seed {kill_seed}")
    for r in results:
        print(r)
    if bad or args.keep:
        print(f"logs, configs and stores kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
