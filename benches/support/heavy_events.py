#!/usr/bin/env python3
"""CloudTrail records of a few busy keys with long histories, in time order.

Each key rotates through more networks than a key remembers (96 /24s in
twelve /16s against `max_sources_per_key` 64), 120 actions over 12 services
and 24 clients, so the engine keeps learning and forgetting: the other kind
of fleet a user has beside many light keys (`keywatch gen`).

    heavy_events.py EVENTS [KEYS] [DAYS] > events.jsonl
"""
import json
import random
import sys
import time

events = int(sys.argv[1])
keys = int(sys.argv[2]) if len(sys.argv) > 2 else 81
days = float(sys.argv[3]) if len(sys.argv) > 3 else 14
rng = random.Random(18)
start = 1_767_571_200  # 2026-01-05T00:00:00Z
step = days * 86_400 / events
services = [f"svc{i}.amazonaws.com" for i in range(12)]
out = sys.stdout
for i in range(events):
    k = rng.randrange(keys)
    t = start + int(i * step)
    net = rng.randrange(96)
    action = rng.randrange(120)
    ua = rng.randrange(24)
    failed = rng.random() < 0.02
    rec = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "arn": f"arn:aws:iam::123456789012:user/svc-{k}",
            "accountId": "123456789012",
            "accessKeyId": f"AKIAHEAVY{k:011d}",
        },
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
        "eventSource": services[action % 12],
        "eventName": f"Action{action}",
        "awsRegion": "us-east-1",
        "sourceIPAddress": f"10.{net // 8}.{net}.{rng.randrange(1, 250)}",
        "userAgent": f"client-{ua}/1.{ua} (linux; x86_64)",
        "requestParameters": {"bucketName": f"bucket-{k}"},
        "responseElements": None,
        "eventID": f"{i:032x}",
        "readOnly": True,
        "eventType": "AwsApiCall",
        "recipientAccountId": "123456789012",
    }
    if failed:
        rec["errorCode"] = "AccessDenied"
    out.write(json.dumps(rec, separators=(",", ":")))
    out.write("\n")
