#!/usr/bin/env python3
"""Produce JSON Lines events to Kafka the way a user's pipeline would:
one message per event, keyed by its key id, with the confluent-kafka client.

usage: produce.py --brokers HOST:PORT --topic TOPIC FILE [--key-field key_id]
(--key-field takes a dotted path: userIdentity.accessKeyId for CloudTrail)
FILE may be gzip-compressed. Prints the number of events delivered.
"""
import argparse
import gzip
import json
import sys

from confluent_kafka import Producer


def lines(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                yield line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--key-field", default="key_id")
    ap.add_argument("file")
    args = ap.parse_args()

    failed = []
    delivered = [0]

    def report(err, _msg):
        if err is not None:
            failed.append(str(err))
        else:
            delivered[0] += 1

    p = Producer({"bootstrap.servers": args.brokers, "linger.ms": 20})
    for line in lines(args.file):
        value = json.loads(line)
        for part in args.key_field.split("."):
            value = value.get(part, "") if isinstance(value, dict) else ""
        key = value
        while True:
            try:
                p.produce(args.topic, line.encode(), key=str(key).encode(), on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    p.flush(60)
    if failed:
        print(f"{len(failed)} deliveries failed, first: {failed[0]}", file=sys.stderr)
        sys.exit(1)
    print(delivered[0])


if __name__ == "__main__":
    main()
