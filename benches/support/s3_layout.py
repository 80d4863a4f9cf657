#!/usr/bin/env python3
"""Files CloudTrail JSON Lines (in time order, on stdin) the way CloudTrail
delivers them to S3: one gzip `{"Records":[...]}` document per account,
region and 5 minutes, under AWSLogs/<account>/CloudTrail/<region>/<yyyy>/<mm>/<dd>/.
Prints the uncompressed bytes written.

    keywatch gen --format cloudtrail ... | s3_layout.py DIR
"""
import gzip
import os
import sys

root = sys.argv[1]
account = "123456789012"
current, out, first, total = None, None, True, 0
for line in sys.stdin.buffer:
    line = line.rstrip(b"\n")
    if not line:
        continue
    i = line.find(b'"eventTime":"') + 13
    stamp = line[i:i + 16].decode()  # 2026-01-05T03:42
    minute = int(stamp[14:16]) // 5 * 5
    slot = (stamp[:13], minute)
    if slot != current:
        if out:
            out.write(b"]}")
            out.close()
        current = slot
        day = stamp[:10].replace("-", "/")
        region = "us-east-1"
        d = os.path.join(root, "AWSLogs", account, "CloudTrail", region, day)
        os.makedirs(d, exist_ok=True)
        name = f"{account}_CloudTrail_{region}_{stamp[:13].replace('-', '')}{minute:02d}Z_keywatch.json.gz"
        out = gzip.open(os.path.join(d, name), "wb", compresslevel=1)
        out.write(b'{"Records":[')
        first = True
    if not first:
        out.write(b",")
    out.write(line)
    first = False
    total += len(line) + 1
if out:
    out.write(b"]}")
    out.close()
print(total)
