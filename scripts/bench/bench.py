#!/usr/bin/env python3
"""Orchestrator of scripts/bench.sh (runs in the root namespace, touches no network
itself): for each round and each plugin, starts driver.py once inside that plugin's node
namespace, collects its records, then parses wasm-cni's call log and writes
OUT/raw.json; report.py turns that into the table, results.json and the plot.

Plugins alternate round by round, the order reversed each round (round 1: wasm-cni,
reference, native-floor; round 2: native-floor, reference, wasm-cni; ...), so slow drift
of the machine hits them alike. native-floor (bench/native-floor) does the default
guest's ADD/DEL work as a plain native plugin: the floor for an exec'd plugin; in
wasm-cni's rounds the driver also runs its in-process kernel floor (veth create and
delete) in wasm-cni's node namespace.

The dual-stack pair (wasm-cni-ds: the default guest with an IPv6 subnet too;
reference-ds: bridge + host-local with both ranges) runs after the three in every round,
its own order flipped each round, in namespaces of its own: warm-up and the sequential
phase only (driver.py --seq-only), each ADD checked for an address of each family.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, HERE)
import report  # noqa: E402

LINE = re.compile(r"^(\S+) (\S+)\s+\[(\d+)\] (\S+) (\S+): (.*)$")
OK = re.compile(r"^ok ([0-9.]+)ms (.*)$")
FAILED = re.compile(r"^failed code=(\d+) ([0-9.]+)ms (.*)$")
HOST_OP = re.compile(r"^(\S+)=(\d+)us$")


def parse_log(path):
    """(cmd, cid) -> {"ok_ms", "fields", "host": [[op, us], ...], "failed"} from the
    runner's call log: the INFO/ERROR summary line and the DEBUG host-call line."""
    calls = {}
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return calls
    with f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            _ts, level, pid, cmd, cid, msg = m.groups()
            e = calls.setdefault("%s %s" % (cmd, cid), {"pid": int(pid)})
            if level == "DEBUG" and msg.startswith("host calls:"):
                ops = []
                for tok in msg[len("host calls:"):].split():
                    hm = HOST_OP.match(tok)
                    if hm:
                        ops.append([hm.group(1), int(hm.group(2))])
                e["host"] = ops
                continue
            sm = OK.match(msg)
            fm = None if sm else FAILED.match(msg)
            if not (sm or fm):
                continue
            ms, rest = (sm.group(1), sm.group(2)) if sm else (fm.group(2), fm.group(3))
            fields = {}
            for tok in rest.split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    fields[k] = int(v) if v.isdigit() else v.rstrip(":")
            e["ok_ms"] = float(ms)
            e["fields"] = fields
            e["failed"] = fm is not None
    return calls


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tmp", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("-n", type=int, required=True)
    p.add_argument("-c", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--deadline", type=float, required=True, help="seconds for all rounds")
    p.add_argument("--call-timeout", type=float, default=60.0)
    p.add_argument("--meta", required=True, help="JSON file: machine and versions")
    for who in ("wasm", "ref", "floor", "wasm6", "ref6"):
        p.add_argument("--%s-node" % who, required=True)
        p.add_argument("--%s-pods" % who, required=True, help="pod namespace prefix")
        p.add_argument("--%s-exe" % who, required=True)
        p.add_argument("--%s-conf" % who, required=True)
    p.add_argument("--wasm-cache", required=True)
    p.add_argument("--wasm-log", required=True)
    a = p.parse_args()

    plugins = {
        "wasm-cni": dict(node=a.wasm_node, pods=a.wasm_pods, exe=a.wasm_exe, conf=a.wasm_conf,
                         extra=["--clear-cache", a.wasm_cache]),
        "reference": dict(node=a.ref_node, pods=a.ref_pods, exe=a.ref_exe, conf=a.ref_conf,
                          extra=[]),
        "native-floor": dict(node=a.floor_node, pods=a.floor_pods, exe=a.floor_exe,
                             conf=a.floor_conf, extra=[]),
    }
    ds = ["--seq-only", "--families", "4,6"]
    plugins["wasm-cni-ds"] = dict(node=a.wasm6_node, pods=a.wasm6_pods, exe=a.wasm6_exe,
                                  conf=a.wasm6_conf, extra=ds)
    plugins["reference-ds"] = dict(node=a.ref6_node, pods=a.ref6_pods, exe=a.ref6_exe,
                                   conf=a.ref6_conf, extra=ds)
    plugins["wasm-cni"]["extra"] += ["--kernel-floor", a.floor_exe]
    order = ["wasm-cni", "reference", "native-floor"]
    order_ds = ["wasm-cni-ds", "reference-ds"]
    end = time.monotonic() + a.deadline
    rounds = {name: [] for name in plugins}
    schedule = []
    for r in range(1, a.rounds + 1):
        for name in (order + order_ds if r % 2 else order[::-1] + order_ds[::-1]):
            pl = plugins[name]
            out = os.path.join(a.tmp, "round-%d-%s.json" % (r, name))
            cmd = ["ip", "netns", "exec", pl["node"], sys.executable,
                   os.path.join(HERE, "driver.py"), "--exe", pl["exe"], "--conf", pl["conf"],
                   "--pod-prefix", pl["pods"], "--round", str(r), "-n", str(a.n), "-c", str(a.c),
                   "--call-timeout", str(a.call_timeout), "--out", out] + pl["extra"]
            left = end - time.monotonic()
            if left <= 0:
                sys.exit("bench: out of time (--timeout) before round %d %s" % (r, name))
            t = time.monotonic()
            try:
                subprocess.run(cmd, check=True, timeout=left)
            except subprocess.TimeoutExpired:
                sys.exit("bench: out of time (--timeout) in round %d %s" % (r, name))
            except subprocess.CalledProcessError as e:
                sys.exit("bench: driver failed in round %d %s (exit %d)" % (r, name, e.returncode))
            with open(out) as f:
                data = json.load(f)
            errs = sum(not c["ok"] for c in data["calls"]) + sum(b["duplicate_ips"] for b in data["batches"])
            kf = data.get("kernel_floor") or {}
            if "error" in kf:
                errs += 1
                print("bench:   kernel floor: %s" % kf["error"], file=sys.stderr)
            print("bench: round %d/%d %-13s %6.1fs  %d calls, %d errors"
                  % (r, a.rounds, name, time.monotonic() - t, len(data["calls"]), errs),
                  file=sys.stderr, flush=True)
            for c in data["calls"]:
                if not c["ok"]:
                    print("bench:   %s %s %s: %s" % (name, c["cmd"], c["cid"], c["error"]),
                          file=sys.stderr)
            rounds[name].append(data)
            schedule.append("%d:%s" % (r, name))

    log = parse_log(a.wasm_log)
    for data in rounds["wasm-cni"]:
        for c in data["calls"]:
            c["log"] = log.get("%s %s" % (c["cmd"], c["cid"]))
    with open(a.meta) as f:
        meta = json.load(f)
    with open("/proc/loadavg") as f:
        load_end = " ".join(f.read().split()[:3])
    meta.update(n=a.n, c=a.c, rounds=a.rounds, schedule=schedule, load_end=load_end)
    raw = {"meta": meta, "plugins": rounds}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "raw.json"), "w") as f:
        json.dump(raw, f)
    res = report.write_all(raw, a.out)
    errors = sum(res[name]["errors"] for name in plugins) + res["kernel_floor"]["errors"]
    if errors:
        print("bench: %d failed calls (see above)" % errors, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
