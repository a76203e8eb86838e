#!/usr/bin/env python3
"""Measures what one server process needs, for the resource requests and limits of
deploy/kubernetes/deployment.yaml: starts the server over HTTP against its sandbox portal
with a Redis store (as a team server runs: stateless, shared pacing bucket), drives tool
calls from many clients at once, and reads the process's peak memory (VmHWM) and CPU time
from /proc.

    python3 deploy/measure.py BINARY [--clients 32] [--calls 4000]

Needs redis-server on PATH. Prints one line of figures; nothing is written.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid):
    text = open(f"/proc/{pid}/status").read()
    kb = lambda k: int(re.search(rf"^{k}:\s+(\d+) kB", text, re.M).group(1))
    return kb("VmHWM"), kb("VmRSS")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(url, token, body):
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {token}",
        },
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--calls", type=int, default=4000)
    a = ap.parse_args()

    redis_port, port = free_port(), free_port()
    tmp = tempfile.mkdtemp()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    token = os.urandom(16).hex()
    env = dict(
        os.environ,
        MCP_AUTH_TOKEN=token,
        MCP_STORE=f"redis://127.0.0.1:{redis_port}/0",
        MCP_STORE_KEY=os.urandom(32).hex(),
        BITRIX24_PLAN="unlimited",
        RUST_LOG="warn",
    )
    server = subprocess.Popen(
        [a.binary, "--sandbox", "--transport", "http", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    idle_hwm, idle_rss = status(server.pid)
    cpu0 = cpu_seconds(server.pid)

    calls = [
        ("task_result_add", {"taskId": 51, "text": "measured " + "x" * 2000}),
        ("task_result_list", {"taskId": 51, "limit": 50}),
        ("task_get", {"taskId": 51}),
        ("task_search", {"query": "a"}),
    ]

    def one(i):
        name, args = calls[i % len(calls)]
        answer = post(url, token, {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                   "params": {"name": name, "arguments": args}})
        return "error" not in answer

    started = time.time()
    with ThreadPoolExecutor(a.clients) as pool:
        ok = sum(pool.map(one, range(a.calls)))
    wall = time.time() - started
    cpu = cpu_seconds(server.pid) - cpu0
    hwm, rss = status(server.pid)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
    redis.terminate()
    redis.wait()
    print(
        f"idle: VmRSS {idle_rss / 1024:.1f} MiB; {a.calls} calls ({ok} ok) from {a.clients} clients "
        f"in {wall:.1f} s ({a.calls / wall:.0f}/s): CPU {cpu:.2f} s = {cpu / wall:.2f} cores, "
        f"peak VmHWM {hwm / 1024:.1f} MiB, VmRSS after {rss / 1024:.1f} MiB"
    )
    return 0 if ok == a.calls else 1


if __name__ == "__main__":
    sys.exit(main())
