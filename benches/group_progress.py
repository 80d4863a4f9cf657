#!/usr/bin/env python3
"""Waits until a consumer group has committed COUNT messages of a topic and
prints the seconds it took from start; with --steady, also the steady-state
rate (messages/s between 10% and 100% committed: no group join, no warm-up).
usage: group_progress.py BROKERS GROUP TOPIC COUNT [--steady]"""
import sys
import time

from confluent_kafka import Consumer, TopicPartition

brokers, group, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
parts = [TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
steady = "--steady" in sys.argv[5:]
start = time.monotonic()
tenth = None
while True:
    done = sum(max(tp.offset, 0) for tp in c.committed(parts, timeout=10))
    now = time.monotonic()
    if tenth is None and done >= count / 10:
        tenth = (now, done)
    if done >= count:
        if steady:
            t0, d0 = tenth
            rate = (done - d0) / max(now - t0, 1e-3)
            print(f"{now - start:.2f} {rate:.0f}")
        else:
            print(f"{now - start:.2f}")
        break
    if time.monotonic() - start > 600:
        print(f"timeout after {done}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.05)
