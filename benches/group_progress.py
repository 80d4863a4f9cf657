#!/usr/bin/env python3
"""Waits until a consumer group has committed COUNT messages of a topic and
prints the seconds it took from start. usage: group_progress.py BROKERS GROUP TOPIC COUNT"""
import sys
import time

from confluent_kafka import Consumer, TopicPartition

brokers, group, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
parts = [TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
start = time.monotonic()
while True:
    done = sum(max(tp.offset, 0) for tp in c.committed(parts, timeout=10))
    if done >= count:
        print(f"{time.monotonic() - start:.2f}")
        break
    if time.monotonic() - start > 600:
        print(f"timeout after {done}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.2)
