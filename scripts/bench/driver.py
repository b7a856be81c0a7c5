#!/usr/bin/env python3
"""One benchmark round for one plugin. Runs INSIDE the plugin's node namespace (started
once per round with `ip netns exec NODE python3 driver.py ...`) and execs the plugin
itself for every call, the way a runtime does: CNI_* environment, config on a stdin
pipe, stdout read back from a pipe.

Per call it records the wall time from just before spawn to the child's exit
(perf_counter; exit seen through a pidfd) and the child's peak RSS (os.wait4 rusage
ru_maxrss, KiB; includes the child's own reaped children such as host-local). Each ADD
result must be one JSON document with an IP address; each DEL must exit 0.

Phases of a round (cid = r<round>-<phase>-<index>, pod = <pod-prefix><index>):
  warm  1 ADD + 1 DEL on pod 0 (warm-up; round 1's also sets the node up)
  cold  (only with --clear-cache): empty the cache dir, 1 ADD + 1 DEL on pod 0; the
        ADD misses the precompiled cache and compiles, the DEL hits again
  install, first  (with cold): empty the cache dir again, then what installing a guest
        on a node does, `EXE guest check --cache-dir CACHE GUEST` (phase install, cmd
        PRECOMPILE; GUEST is the config's), then 1 ADD + 1 DEL on pod 0: that first
        ADD after install must load the precompiled guest (its call-log line says
        cache=Some(Hit); scripts/bench/report.py counts anything else as an error)
  version, true  20 VERSION calls of the plugin and 20 spawns of /bin/true (floors)
  seq   N sequential ADDs (pods 0..N-1), then N sequential DELs
  kernel floor  (only with --kernel-floor EXE): `EXE kernel-floor N ...` once, in this
        node namespace: N veths made like an ADD's (peer in pods 0..N-1), then
        deleted in one process, each netlink request timed (bench/native-floor)
  conc  C ADDs started at once (pods 0..C-1), then C DELs at once; the batch wall time
        runs from the first spawn to the last exit
With --seq-only (the dual-stack rows) a round is warm + seq only. With --families 4,6
each ADD result must hold an IPv4 and an IPv6 address.
Writes one JSON document (the records) to --out.
"""
import argparse
import ipaddress
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time

VERSION_CALLS = 20
RUNNING = {}  # pid -> Call, so a signal can end our own children


class Call:
    __slots__ = ("phase", "cmd", "cid", "idx", "exe", "args", "pid", "pidfd", "out_r",
                 "err_r", "out", "err", "t0", "t1", "rc", "maxrss", "ok", "error", "ip")

    def __init__(self, phase, cmd, cid, idx, exe=None, args=()):
        self.phase, self.cmd, self.cid, self.idx, self.exe = phase, cmd, cid, idx, exe
        self.args = list(args)
        self.out, self.err = bytearray(), bytearray()
        self.pid = self.pidfd = self.out_r = self.err_r = None
        self.t0 = self.t1 = None
        self.rc = self.maxrss = None
        self.ok, self.error, self.ip = False, None, None

    def record(self):
        return {
            "phase": self.phase, "cmd": self.cmd, "cid": self.cid, "idx": self.idx,
            "wall_us": None if self.t1 is None else round((self.t1 - self.t0) * 1e6, 1),
            "maxrss_kib": self.maxrss, "rc": self.rc, "ok": self.ok,
            "error": self.error, "ip": self.ip,
        }


class Driver:
    def __init__(self, a):
        self.a = a
        with open(a.conf, "rb") as f:
            self.conf = f.read()
        self.base_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                         "CNI_PATH": a.cni_path, "CNI_IFNAME": "eth0"}

    def spawn(self, c):
        env = dict(self.base_env)
        env.update(CNI_COMMAND=c.cmd, CNI_CONTAINERID=c.cid,
                   CNI_NETNS="/run/netns/%s%d" % (self.a.pod_prefix, c.idx))
        # The config sits in a pipe before the spawn (it is far below the pipe buffer),
        # so writing it costs the timed window nothing. All our fds are O_CLOEXEC; only
        # the dup2'ed 0/1/2 reach the child.
        in_r, in_w = os.pipe()
        os.write(in_w, self.conf)
        os.close(in_w)
        c.out_r, out_w = os.pipe()
        c.err_r, err_w = os.pipe()
        fa = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
              (os.POSIX_SPAWN_DUP2, err_w, 2)]
        c.t0 = time.perf_counter()
        exe = c.exe or self.a.exe
        c.pid = os.posix_spawn(exe, [exe] + c.args, env, file_actions=fa)
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        c.pidfd = os.pidfd_open(c.pid)
        RUNNING[c.pid] = c

    def run_batch(self, calls):
        """Spawn all calls at once and wait for all. Returns the batch wall time (s)."""
        sel = selectors.DefaultSelector()
        t0 = time.perf_counter()
        for c in calls:
            self.spawn(c)
            sel.register(c.pidfd, selectors.EVENT_READ, ("exit", c))
            sel.register(c.out_r, selectors.EVENT_READ, ("out", c))
            sel.register(c.err_r, selectors.EVENT_READ, ("err", c))
        pending = len(calls)
        deadline = time.monotonic() + self.a.call_timeout
        killed = False
        while pending or sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0 and not killed:
                self.kill_all("timed out after %ss" % self.a.call_timeout)
                killed, deadline, left = True, time.monotonic() + 5.0, 5.0
            elif left <= 0:
                # Killed, reaped, and still a pipe open (a grandchild holds it): stop
                # reading; the namespaces' removal ends whatever is left.
                for key in list(sel.get_map().values()):
                    sel.unregister(key.fd)
                    os.close(key.fd)
                    if key.data[0] == "exit":
                        key.data[1].t1 = time.perf_counter()
                break
            for key, _ in sel.select(timeout=left):
                kind, c = key.data
                if kind == "exit":
                    c.t1 = time.perf_counter()
                    sel.unregister(key.fd)
                    os.close(key.fd)
                    _, status, ru = os.wait4(c.pid, 0)
                    RUNNING.pop(c.pid, None)
                    c.rc = os.waitstatus_to_exitcode(status)
                    c.maxrss = ru.ru_maxrss
                    pending -= 1
                else:
                    data = os.read(key.fd, 65536)
                    if data:
                        (c.out if kind == "out" else c.err).extend(data)
                    else:
                        sel.unregister(key.fd)
                        os.close(key.fd)
        t1 = max(c.t1 for c in calls)
        sel.close()
        for c in calls:
            self.verify(c)
        return t1 - t0

    def kill_all(self, why):
        for pid, c in list(RUNNING.items()):
            c.error = why
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def verify(self, c):
        if c.error:
            return
        if c.rc != 0:
            c.error = "exit %s: %s %s" % (c.rc, c.out.decode(errors="replace").strip()[:300],
                                          c.err.decode(errors="replace").strip()[:300])
            return
        if c.cmd == "ADD":
            try:
                doc = json.loads(c.out)
                addrs = [ipaddress.ip_interface(i["address"]).ip for i in doc["ips"]]
                c.ip = str(addrs[0])
            except (ValueError, KeyError, IndexError, TypeError) as e:
                c.error = "bad ADD result (%s): %s" % (e, c.out.decode(errors="replace")[:300])
                return
            missing = sorted(set(self.a.families) - {a.version for a in addrs})
            if missing:
                c.error = "ADD result without an IPv%s address: %s" % (
                    missing[0], c.out.decode(errors="replace")[:300])
                return
        c.ok = True

    def one(self, phase, cmd, cid, idx, exe=None, args=()):
        c = Call(phase, cmd, cid, idx, exe, args)
        self.run_batch([c])
        return c


def guest_of(conf):
    """The guest file a network config (or a conflist's first plugin) names."""
    doc = json.loads(conf)
    return (doc["plugins"][0] if "plugins" in doc else doc)["guest"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exe", required=True)
    p.add_argument("--conf", required=True)
    p.add_argument("--pod-prefix", required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("-n", type=int, required=True)
    p.add_argument("-c", type=int, required=True)
    p.add_argument("--clear-cache", help="cache dir to empty for one cold ADD")
    p.add_argument("--kernel-floor", help="bench/native-floor binary: run its kernel floor")
    p.add_argument("--kernel-floor-subnet", default="200.200.1.0/24")
    p.add_argument("--cni-path", default="/usr/lib/cni")
    p.add_argument("--call-timeout", type=float, default=60.0)
    p.add_argument("--seq-only", action="store_true", help="warm-up and sequential phase only")
    p.add_argument("--families", default="4", help="address families each ADD must give (4 or 4,6)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    try:
        a.families = sorted({int(f) for f in a.families.split(",")})
        if not set(a.families) <= {4, 6}:
            raise ValueError(a.families)
    except ValueError:
        p.error("--families: 4, 6 or 4,6")

    def on_signal(signum, _frame):
        for pid in list(RUNNING):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    d = Driver(a)
    r = a.round
    calls, batches = [], []
    # Warm-up first (it also does the node's one-time setup: bridge, firewall), so the
    # cold ADD below measures only the cache miss.
    calls.append(d.one("warm", "ADD", "r%d-warm-0" % r, 0))
    calls.append(d.one("warm", "DEL", "r%d-warm-0" % r, 0))
    if a.clear_cache and not a.seq_only:
        shutil.rmtree(a.clear_cache, ignore_errors=True)
        calls.append(d.one("cold", "ADD", "r%d-cold-0" % r, 0))
        calls.append(d.one("cold", "DEL", "r%d-cold-0" % r, 0))
        # The node as installing the guest leaves it: precompiled by the runner's `guest
        # check` into the config's cache, then its first pod.
        shutil.rmtree(a.clear_cache, ignore_errors=True)
        calls.append(d.one("install", "PRECOMPILE", "r%d-install-0" % r, 0,
                           args=["guest", "check", "--cache-dir", a.clear_cache, guest_of(d.conf)]))
        calls.append(d.one("first", "ADD", "r%d-first-0" % r, 0))
        calls.append(d.one("first", "DEL", "r%d-first-0" % r, 0))
    # Floors: the plugin answering VERSION (exec, runtime start, stdin, exit; no work)
    # and /bin/true (what this driver's spawn and wait cost by themselves).
    for i in range(0 if a.seq_only else VERSION_CALLS):
        calls.append(d.one("version", "VERSION", "r%d-version-%d" % (r, i), 0))
    for i in range(0 if a.seq_only else VERSION_CALLS):
        calls.append(d.one("true", "TRUE", "r%d-true-%d" % (r, i), 0, exe="/bin/true"))
    for cmd in ("ADD", "DEL"):
        for i in range(a.n):
            calls.append(d.one("seq", cmd, "r%d-seq-%d" % (r, i), i))
    kernel_floor = None
    if a.kernel_floor and not a.seq_only:
        # The N pods are free again (the sequential DELs ran): the same veths, made and
        # deleted in one process, with no exec, store or lock.
        kcmd = [a.kernel_floor, "kernel-floor", str(a.n), "/run/netns/%s" % a.pod_prefix,
                a.kernel_floor_subnet]
        try:
            pr = subprocess.run(kcmd, capture_output=True, timeout=a.call_timeout + 60 * a.n / 250)
            if pr.returncode == 0:
                kernel_floor = json.loads(pr.stdout)
            else:
                kernel_floor = {"error": "exit %d: %s" % (pr.returncode,
                                                          pr.stderr.decode(errors="replace").strip()[:300])}
        except (subprocess.TimeoutExpired, ValueError) as e:
            kernel_floor = {"error": str(e)}
    for cmd in () if a.seq_only else ("ADD", "DEL"):
        batch = [Call("conc", cmd, "r%d-conc-%d" % (r, i), i) for i in range(a.c)]
        wall = d.run_batch(batch)
        errors = sum(not c.ok for c in batch)
        if cmd == "ADD":
            ips = [c.ip for c in batch if c.ip]
            dup = len(ips) - len(set(ips))
            if dup:
                errors += dup
        else:
            dup = 0
        batches.append({"phase": "conc", "cmd": cmd, "n": a.c, "wall_us": round(wall * 1e6, 1),
                        "errors": errors, "duplicate_ips": dup})
        calls.extend(batch)
    with open(a.out, "w") as f:
        doc = {"round": r, "calls": [c.record() for c in calls], "batches": batches}
        if kernel_floor is not None:
            doc["kernel_floor"] = kernel_floor
        json.dump(doc, f)


if __name__ == "__main__":
    main()
