#!/usr/bin/env python3
"""Waits until a deployment on the hub is final, asking the hub every 20 ms.

Usage: wait_deployment.py HUB_URL TOKEN ID_FILE
Creates ID_FILE.ready once started, then reads the deployment's id from ID_FILE (a named pipe:
it is started before the deployment exists, so that Python's start-up, a third of a second here,
is not timed). Exits 0 when the deployment is
complete, 1 when it failed or was cancelled (printing its state), 2 after 10 minutes. Used by
delivery_bench.sh instead of running `airlock status` in a loop, which took CPU from the delivery
it timed.
"""
import json
import sys
import time
import urllib.request

hub_url, token, id_file = sys.argv[1], sys.argv[2], sys.argv[3]
open(id_file + ".ready", "w").close()
with open(id_file) as f:
    deployment = f.read().strip()
request = urllib.request.Request(f"{hub_url}/api/v1/deployments/{deployment}",
                                 headers={"Authorization": f"Bearer {token}"})
deadline = time.monotonic() + 600
state = "unknown"
while time.monotonic() < deadline:
    with urllib.request.urlopen(request, timeout=10) as answer:
        state = json.load(answer).get("state", "")
    if state == "complete":
        sys.exit(0)
    if state in ("failed", "cancelled"):
        print(f"wait_deployment: {deployment} ended {state}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.02)
print(f"wait_deployment: {deployment} still {state} after 10 minutes", file=sys.stderr)
sys.exit(2)
