#!/usr/bin/python3
# test/bench/bench.py: runs the transport benchmarks against a throwaway Apache (build/devserver)
# with the module built by `make -C test/bench` and prints their figures.
#
#   test/bench/bench.py handshake        server CPU per handshake vs. the raw Noise responder
#   test/bench/bench.py memory [N ...]   memory per idle connection (cleartext N..., TLS 1000)
#   test/bench/bench.py restart [N]      reconnection after a graceful restart (default 5000)
#
# Each benchmark starts its own Apache instance (state under a temporary directory) and stops
# it at the end. Output: the tool's "key value" lines plus a summary block per benchmark.
import argparse
import datetime
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(HERE, "build")
TSLOAD = os.path.join(BUILD, "tsload")
NOISEBENCH = os.path.join(BUILD, "noisebench")
CONNMEM = os.path.join(BUILD, "connmem")
MODULE = os.environ.get("BENCH_MODULE", os.path.join(BUILD, "mod_ts2021.so"))
import resource
# The hard limit: this box's root lacks CAP_SYS_RESOURCE, so it cannot be raised (20000 here).
NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if NOFILE == resource.RLIM_INFINITY or NOFILE > 1048576:
    NOFILE = 1048576


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Apache:
    """build/devserver under prlimit, with the test endpoints; stopped with SIGTERM."""

    def __init__(self, name, tls=False, threads=25, servers=2, global_conf="", extra_conf=""):
        self.dir = tempfile.mkdtemp(prefix=f"tsbench-{name}-")
        os.chmod(self.dir, 0o755)
        self.state = os.path.join(self.dir, "state")
        self.port = free_port()
        self.tls = tls
        args = ["prlimit", f"--nofile={NOFILE}:{NOFILE}",
                os.path.join(TOP, "build", "devserver"), "--port", str(self.port),
                "--state", self.state, "--test-endpoints", "--module", MODULE,
                "--threads", str(threads), "--servers", str(servers)]
        if tls:
            args.append("--tls")
        for flag, text in (("--global-conf", global_conf), ("--extra-conf", extra_conf)):
            if text:
                path = os.path.join(self.dir, flag.strip("-") + ".conf")
                with open(path, "w") as f:
                    f.write(text)
                args += [flag, path]
        self.args = args
        self.proc = None

    def __enter__(self):
        log("starting Apache: " + " ".join(self.args[2:]))
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.proc.wait(timeout=30)
            os.environ["BENCH_KEEP"] = "1"      # keep the error log for the post-mortem
            self.__exit__(None, None, None)
            raise RuntimeError(f"devserver did not come up (see {self.state}/apache/error.log)")
        with open(os.path.join(self.state, "apache", "httpd.pid")) as f:
            self.pid = int(f.read().strip())
        # Let every child finish starting its threads before anything is measured.
        time.sleep(3)
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        errlog = os.path.join(self.state, "apache", "error.log")
        self.errors = []
        try:
            with open(errlog) as f:
                self.errors = [l.rstrip() for l in f if ":error]" in l or ":crit]" in l
                               or ":emerg]" in l or "segfault" in l.lower()
                               or "exit signal" in l]
        except OSError:
            pass
        for l in self.errors[:10]:
            log("Apache error log: " + l)
        if os.environ.get("BENCH_KEEP"):
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def tsload(self, mode, *extra, timeout=900):
        cmd = [TSLOAD, mode, "--port", str(self.port), "--apache-pid", str(self.pid)]
        if self.tls:
            cmd.append("--tls")
        cmd += [str(x) for x in extra]
        log("running " + " ".join(cmd[1:]))
        k0 = tcp_counters()
        b0, a0 = busy_seconds(), instance_cpu(self.pid)
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(["prlimit", f"--nofile={NOFILE}:{NOFILE}"] + cmd,
                           stdout=subprocess.PIPE, text=True, timeout=timeout)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy, apache = busy_seconds() - b0, instance_cpu(self.pid) - a0
        client = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
        d = parse(r.stdout)
        # What neither this Apache nor tsload used: other people's work on a shared box.
        d["box_other_cpu_s"] = [f"{busy - apache - client:.2f}"]
        for k, v in tcp_counters().items():
            d[f"kernel_{k}"] = [str(v - k0.get(k, 0))]
        return r.returncode, d


def tcp_counters():
    """Kernel TCP counters that reveal refused or retried connections (listen queue full)."""
    want = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPReqQFullDoCookies")
    out = {}
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
        for names, values in zip(lines[0::2], lines[1::2]):
            for k, v in zip(names.split()[1:], values.split()[1:]):
                if k in want:
                    out[k] = int(v)
    except OSError:
        pass
    return out


def busy_seconds():
    """CPU seconds the whole box has been busy (all CPUs, /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def instance_cpu(parent):
    """CPU seconds of an Apache instance: parent, live children, reaped children."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid = int(fields[1])
        if int(pid) == parent:
            total += sum(int(x) for x in fields[11:15])
        elif ppid == parent:
            total += int(fields[11]) + int(fields[12])
    return total / tck


def wait_idle(limit_s, max_busy=0.25):
    """Waits (up to limit_s) until the box is idle: others' benchmarks distort CPU figures."""
    t0 = time.monotonic()
    while True:
        b0 = busy_seconds()
        time.sleep(2)
        load = (busy_seconds() - b0) / 2
        if load <= max_busy:
            return load
        if time.monotonic() - t0 > limit_s:
            log(f"box still busy ({load:.2f} CPUs in use by others); measuring anyway")
            return load
        log(f"box busy ({load:.2f} CPUs in use by others); waiting")


def parse(text):
    out = {}
    for line in text.splitlines():
        if " " in line:
            k, v = line.split(" ", 1)
            out.setdefault(k, []).append(v)
    return out


def val(d, k, default=None):
    v = d.get(k)
    if not v:
        return default
    try:
        return float(v[0])
    except ValueError:
        return v[0]


def dump(title, d):
    print(f"--- {title}")
    for k, vs in d.items():
        for v in vs:
            print(f"  {k} {v}")


def header():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rev = "?"
    try:
        with open(os.path.join(BUILD, "src", ".rev")) as f:
            tree, _, commit = f.read().strip().partition(" ")
            rev = f"{commit} (mod_ts2021 tree {tree[:12]})"
    except OSError:
        pass
    if os.environ.get("BENCH_MODULE"):
        rev = os.environ["BENCH_MODULE"]
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{os.cpu_count()} CPUs ({cpu}), kernel {platform.release()}, module {rev}")


# Settings for many long-lived connections (docs/mpm.md): a deep accept queue, small stacks;
# and, as in Debian's apache2.conf, no .htaccess lookups (devserver's config has no such block,
# so every request would try to open .htaccess in each directory above DocumentRoot).
GLOBAL_CONF = ("ListenBacklog 4096\nThreadStackSize 262144\n"
               "<Directory />\n    AllowOverride None\n</Directory>\n")


def bench_handshake(a):
    header()
    r = subprocess.run([NOISEBENCH, "--iterations", "20000"], stdout=subprocess.PIPE, text=True,
                       check=True)
    raw = parse(r.stdout)
    dump("raw crypto (noisebench, 1 thread)", raw)
    wait_idle(a.wait_idle)
    with Apache("handshake", tls=a.tls, threads=a.threads, servers=2, global_conf=GLOBAL_CONF) as ap:
        rc, hs = ap.tsload("handshake", "--duration", a.duration, "--concurrency", a.concurrency,
                           "--quiet")
        # The floor: what the same Apache spends on a new connection and a trivial request.
        _, floor = ap.tsload("handshake", "--http-get", "--duration", a.duration / 2,
                             "--concurrency", a.concurrency, "--quiet")
    dump(f"handshakes (tsload, exit {rc})", hs)
    dump("new connection + GET /key, no TS2021 (tsload --http-get)", floor)
    # raw crypto again, same run: the box may have changed speed
    r = subprocess.run([NOISEBENCH, "--iterations", "20000"], stdout=subprocess.PIPE, text=True,
                       check=True)
    raw2 = parse(r.stdout)
    raw_us = (val(raw, "noise_respond_us") + val(raw2, "noise_respond_us")) / 2
    per = val(hs, "server_cpu_us_per_handshake")
    print(f"=== handshake CPU{' (TLS: the TLS handshake is included)' if a.tls else ''}")
    print(f"  raw ts_noise_respond           {raw_us:8.1f} us  (before {val(raw, 'noise_respond_us')},"
          f" after {val(raw2, 'noise_respond_us')})")
    print(f"  raw + early payload seal       {raw_us + val(raw, 'early_payload_us'):8.1f} us")
    if per:
        print(f"  server CPU per handshake       {per:8.1f} us  "
              f"({val(hs, 'server_cpu_us_per_handshake_uncorrected')} us before subtracting idle)")
        print(f"  efficiency raw/handshake       {100 * raw_us / per:8.1f} %   (target >= 60 %)")
    print(f"  Apache floor (conn + GET /key) {val(floor, 'server_cpu_us_per_handshake', 0):8.1f} us  "
          f"(what any request on a new connection costs this Apache)")
    if per:
        rest = per - raw_us - val(raw, "early_payload_us") - val(floor, "server_cpu_us_per_handshake", 0)
        print(f"  rest (takeover, loop, HTTP/2)  {rest:8.1f} us")
    print(f"  other processes on the box     {val(hs, 'box_other_cpu_s')} CPU-s during the "
          f"{val(hs, 'wall_s')} s run (should be near 0)")
    print(f"  handshakes ok / failed         {int(val(hs, 'handshakes_ok', 0))} / "
          f"{int(val(hs, 'handshakes_failed', 0))}  at {val(hs, 'rate_per_s')}/s, "
          f"client {val(hs, 'client_cpu_us_per_handshake')} us CPU each")
    return rc


def bench_memory(a):
    header()
    rc_all = 0
    results = []
    runs = [(n, False) for n in a.conns] + ([(n, True) for n in a.tls_conns])
    for n, tls in runs:
        if tls:
            # every TLS connection keeps a worker thread: room for all, plus some
            threads, servers = 256, max(2, (n + 256 + 255) // 256)
        else:
            threads, servers = 64, 2
        with Apache(f"mem{n}{'tls' if tls else ''}", tls=tls, threads=threads, servers=servers,
                    global_conf=GLOBAL_CONF) as ap:
            rc, d = ap.tsload("idle", "--conns", n, "--concurrency", 64 if tls else 200,
                              "--settle", a.settle, "--hold", a.hold)
        dump(f"{'TLS' if tls else 'cleartext'} {n} idle connections (tsload, exit {rc}; "
             f"Apache {servers} x {threads} threads)", d)
        rc_all |= rc
        results.append((n, tls, threads, servers, d))
    # The sans-I/O core alone (no Apache): how much of that is the connection itself.
    r = subprocess.run([CONNMEM, "--conns", "10000"], stdout=subprocess.PIPE, text=True)
    core = parse(r.stdout)
    dump("module core alone (connmem: ts_conn_t + nghttp2, 10000 connections, no Apache)", core)
    print("=== memory per idle connection with an open stream (Apache instance, all processes)")
    print("  transport   conns  ok      failed dropped  PSS before  PSS after   per conn PSS  "
          "per conn RSS  target")
    for n, tls, threads, servers, d in results:
        dropped = int(val(d, "dropped_goaway", 0) + val(d, "dropped_closed", 0))
        print(f"  {'TLS' if tls else 'cleartext':10s} {n:6d}  {int(val(d, 'connected', 0)):6d}  "
              f"{int(val(d, 'refused_or_failed', 0)):6d} {dropped:7d}  "
              f"{int(val(d, 'before_pss_kib', 0)):7d} KiB {int(val(d, 'after_pss_kib', 0)):7d} KiB "
              f"{val(d, 'per_conn_pss_kib', 0):8.2f} KiB  {val(d, 'per_conn_rss_kib', 0):8.2f} KiB  "
              f"{'48' if tls else '16'} KiB")
    clear = [(n, d) for n, tls, _, _, d in results if not tls and val(d, "connected", 0)]
    for (n0, d0), (n1, d1) in zip(clear, clear[1:]):
        dn = val(d1, "connected") - val(d0, "connected")
        if dn > 0:
            print(f"  cleartext marginal {n0}->{n1}: "
                  f"{(val(d1, 'after_pss_kib') - val(d0, 'after_pss_kib')) / dn:.2f} KiB PSS per "
                  f"connection (fixed costs excluded)")
    print(f"  module core alone: {val(core, 'ts_conn_rss_kib_per_conn')} KiB resident, "
          f"{val(core, 'ts_conn_heap_bytes_per_conn')} B allocated per connection, of which "
          f"HTTP/2 (nghttp2 + ts_h2) {val(core, 'ts_h2_session_bytes_per_conn')} B")
    return rc_all


def bench_restart(a):
    header()
    wait_idle(a.wait_idle)
    with Apache("restart", threads=64, servers=2, global_conf=GLOBAL_CONF) as ap:
        rc, d = ap.tsload("restart", "--conns", a.conns, "--concurrency", 1000,
                          "--restart-timeout", a.timeout)
    dump(f"graceful restart with {a.conns} connections (tsload, exit {rc})", d)
    print("=== reconnect after graceful restart (SIGUSR1, TS2021DrainTime 10 s default)")
    print(f"  all {a.conns} working again after   {val(d, 'all_reconnected_s')} s   (target <= 30 s)")
    print(f"  other processes on the box     {val(d, 'box_other_cpu_s')} CPU-s during the run")
    print(f"  GOAWAYs seen from {val(d, 'first_drop_s')} s to {val(d, 'last_drop_s')} s; "
          f"closed without GOAWAY {int(val(d, 'closed_without_goaway', 0))}")
    print(f"  reconnect latency p50/p99/max  {val(d, 'reconnect_latency_p50_ms')} / "
          f"{val(d, 'reconnect_latency_p99_ms')} / {val(d, 'reconnect_latency_max_ms')} ms")
    print(f"  failed reconnect attempts {int(val(d, 'reconnect_attempts_failed', 0))}, "
          f"clients without a connection at the end {int(val(d, 'slots_without_connection', 0))}")
    return rc


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("handshake")
    h.add_argument("--duration", type=float, default=20)
    h.add_argument("--concurrency", type=int, default=16)
    h.add_argument("--threads", type=int, default=64)
    h.add_argument("--tls", action="store_true", help="over TLS (not a target: for comparison)")
    h.add_argument("--wait-idle", type=float, default=600,
                   help="wait up to this many seconds for other load on the box to stop")
    m = sub.add_parser("memory")
    m.add_argument("--conns", type=int, nargs="*", default=[1000, 5000, 10000],
                   help="cleartext runs (none: --conns alone)")
    m.add_argument("--tls-conns", type=int, nargs="*", default=[1000],
                   help="TLS runs (none: --tls-conns alone)")
    m.add_argument("--settle", type=float, default=5)
    m.add_argument("--hold", type=float, default=10)
    r = sub.add_parser("restart")
    r.add_argument("conns", type=int, nargs="?", default=5000)
    r.add_argument("--timeout", type=float, default=120)
    r.add_argument("--wait-idle", type=float, default=600)
    a = ap.parse_args(argv)
    for tool in (TSLOAD, NOISEBENCH, CONNMEM, MODULE):
        if not os.path.exists(tool):
            sys.exit(f"bench: {tool} missing: run make -C test/bench")
    return {"handshake": bench_handshake, "memory": bench_memory, "restart": bench_restart}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
