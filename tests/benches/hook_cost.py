#!/usr/bin/env python3
"""Api hook cost, pinned and interleaved: the loop behind the README's per-hook figures.

Starts one `berth daemon` per argument NAME=BERTH_BINARY:NPLUGINS[:ENV=VALUE,...] (the first one
is the baseline, normally with 0 plugins), each with NPLUGINS `api-policy` processes on sockets
(loaded as policy0.. through `POST /berth/plugins/load`; a negative count loads ONE process that
many times, to tell process switching from the hook itself). PLUGIN=observe in a daemon's ENV
list runs its plugins as `api-policy --observe`: the same subscriptions, every hook answered "no
change" (the like-for-like case for the plugin-call bench, whose plugin does nothing); without it
the post-hook on `GET /version` rewrites the response (adds a field), as a policy would. Daemons, plugins and this client
run on one CPU (CPU=N, default 0; CPU=none unpins) at nice -20, so run it as root. Rounds of PER
`GET /version` (which every `api-policy` post-hooks) and `GET /containers/json` (which none
hooks) rotate over the daemons; per daemon it prints the median, the median of per-round ratios
to the baseline with p10-p90, and for `/version` the per-hook cost: the per-round difference to
the baseline divided by the number of hooks. Then, for each daemon and separately its plugins,
PERF_N (2000) requests measure user and system CPU per request from /proc (no tool attached), and
as many again under `perf stat` count context switches and page faults (PERF=0 skips both); PROFILE=1 instead records
`perf record -g` of the last daemon and its first plugin under load and exits.

Example (release builds):
  python3 tests/benches/hook_cost.py plain=target/release/berth:0 hooked=target/release/berth:4 \
      shared=target/release/berth:-4 observe=target/release/berth:4:PLUGIN=observe \
      bare=target/release/berth:4:APIPOL=target/release/bare-api
(`bare-api` answers every hook "no change" without the SDK: the engine's own part of a hook.)
REPLICAS=R starts R daemons per argument and reports, per round, the mean of their medians:
two identical daemons differ by up to ±3 % in a run (each process gets its own memory layout),
which is the size of the idle effect being measured, so R=4 is what the idle figure needs.
Environment: ROUNDS (30), PER (200), CPU (0), REPLICAS (1), PERF_N (2000), APIPOL (target/release/api-policy; APIPOL=PATH in a
daemon's ENV list overrides it for that daemon, to compare plugin builds), WORK_DIR
(/tmp/berth-hook-cost). BASE=NAME in a daemon's ENV list compares it with that daemon instead of
the first (e.g. a build's hooked daemon with the same build's daemon without plugins).
"""
import json, os, socket, subprocess, sys, time, statistics, shutil, signal

CPU = os.environ.get("CPU", "0")
APIPOL = os.environ.get("APIPOL", "target/release/api-policy")
ROUNDS = int(os.environ.get("ROUNDS", "30"))
PER = int(os.environ.get("PER", "200"))
BASE = os.environ.get("WORK_DIR", "/tmp/berth-hook-cost")
REPLICAS = int(os.environ.get("REPLICAS", "1"))


class Api:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.buf = b""

    def req(self, method, path, body=None):
        data = b""
        hdr = f"{method} {path} HTTP/1.1\r\nHost: d\r\n"
        if body is not None:
            data = json.dumps(body).encode()
            hdr += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self.s.sendall(hdr.encode() + b"\r\n" + data)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(65536)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        n = 0
        for l in lines[1:]:
            k, v = l.split(b":", 1)
            if k.strip().lower() == b"content-length":
                n = int(v)
        while len(self.buf) < n:
            self.buf += self.s.recv(65536)
        b, self.buf = self.buf[:n], self.buf[n:]
        return status, b


def proc_times(pid):
    """(utime, stime) of a process, all its threads, in clock ticks."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]), int(f[12])


def pin():
    if CPU != "none":
        os.sched_setaffinity(0, {int(CPU)})
    os.nice(-20)


def start(name, binary, nplug, env):
    env = dict(env)
    apipol = env.pop("APIPOL", APIPOL)
    kind = env.pop("PLUGIN", "rewrite")
    if kind not in ("rewrite", "observe"):
        sys.exit(f"{name}: PLUGIN={kind}: expected rewrite or observe")
    plug_args = ["--observe"] if kind == "observe" else []
    d = f"{BASE}/{name}"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d + "/root")
    sock = f"{d}/berth.sock"
    e = dict(os.environ, RUST_LOG="warn", **env)
    log = open(f"{d}/daemon.log", "w")
    p = subprocess.Popen([binary, "daemon", "--root", d + "/root", "--host", "unix://" + sock],
                         env=e, stdout=log, stderr=log, preexec_fn=pin, start_new_session=True)
    for _ in range(300):
        if os.path.exists(sock):
            try:
                a = Api(sock)
                if a.req("GET", "/_ping")[0] == 200:
                    break
            except OSError:
                pass
        time.sleep(0.05)
    plugs = []
    shared = nplug < 0
    nplug = abs(nplug)
    for i in range(nplug):
        ps = f"{d}/p{0 if shared else i}.sock"
        if shared and i > 0:
            st, b = Api(sock).req("POST", "/berth/plugins/load",
                                  {"Name": f"policy{i}", "Socket": ps, "Timeout": "20s"})
            assert st == 200, b
            continue
        pp = subprocess.Popen([os.path.abspath(apipol), "--socket", ps, "--name", f"policy{i}"] + plug_args,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin,
                              start_new_session=True)
        plugs.append(pp)
        for _ in range(200):
            if os.path.exists(ps) or pp.poll() is not None:
                break
            time.sleep(0.02)
        if pp.poll() is not None or not os.path.exists(ps):
            sys.exit(f"{name}: {apipol} {' '.join(plug_args)} did not start (exit {pp.poll()})")
        st, b = Api(sock).req("POST", "/berth/plugins/load",
                              {"Name": f"policy{i}", "Socket": ps, "Timeout": "20s"})
        assert st == 200, b
    return p, plugs, sock


def main():
    specs = []
    base_of = {}
    for a in sys.argv[1:]:
        name, rest = a.split("=", 1)
        parts = rest.split(":")
        env = {}
        if len(parts) > 2 and parts[2]:
            for kv in parts[2].split(","):
                k, v = kv.split("=", 1)
                env[k] = v
        base_of[name] = env.pop("BASE", None)
        specs.append((name, os.path.abspath(parts[0]), int(parts[1]), env))
    if not specs:
        sys.exit(__doc__)
    pin()
    procs = []
    try:
        apis = []
        # groups[i] = the indices (into procs/apis) of spec i's replicas.
        groups = []
        for name, b, n, env in specs:
            groups.append([])
            for rep in range(REPLICAS):
                p, plugs, sock = start(name if REPLICAS == 1 else f"{name}.{rep}", b, n, env)
                groups[-1].append(len(procs))
                procs.append((p, plugs))
                apis.append(Api(sock))
        k = len(procs)
        if os.environ.get("PROFILE"):
            p, plugs = procs[-1]
            for who, group in (("daemon", [p]), ("plugin", plugs[:1])):
                pids = ",".join(str(x.pid) for x in group)
                perf = subprocess.Popen(["perf", "record", "-F", "20000", "-g", "-o", f"{BASE}/perf-{who}.data", "-p", pids],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                for _ in range(5000):
                    apis[-1].req("GET", "/version")
                perf.send_signal(signal.SIGINT)
                perf.wait()
            return
        paths = ["/version", "/containers/json"]
        per_daemon = {(di, pa): [] for di in range(k) for pa in paths}
        for r in range(ROUNDS + 1):
            for pa in paths:
                for j in range(k):
                    di = (r + j) % k
                    xs = []
                    a = apis[di]
                    for _ in range(PER):
                        t = time.perf_counter_ns()
                        st, _ = a.req("GET", pa)
                        xs.append(time.perf_counter_ns() - t)
                        assert st == 200
                    if r > 0:
                        per_daemon[(di, pa)].append(statistics.median(xs) / 1e3)
        # A spec's figure in a round: the mean of its replicas' medians.
        meds = {(s[0], pa): [statistics.fmean(v) for v in zip(*(per_daemon[(di, pa)] for di in g))]
                for s, g in zip(specs, groups) for pa in paths}
        for pa in paths:
            print(f"== {pa}")
            for s in specs:
                base = base_of[s[0]] or specs[0][0]
                m = meds[(s[0], pa)]
                diffs = sorted(x - y for x, y in zip(m, meds[(base, pa)]))
                ratios = sorted(x / y for x, y in zip(m, meds[(base, pa)]))
                n = len(ratios)
                per_hook = ""
                nh = abs(s[2])
                if nh and pa == "/version":
                    per_hook = f"  per hook {statistics.median(diffs)/nh:.1f} us [p10 {diffs[n//10]/nh:.1f} p90 {diffs[(9*n)//10]/nh:.1f}]"
                print(f"{s[0]:<14} median {statistics.median(m):8.1f} us  ratio {statistics.median(ratios):.3f} [p10 {ratios[n//10]:.3f} p90 {ratios[(9*n)//10]:.3f}]{per_hook}")
        # context switches per request
        if shutil.which("perf") and os.environ.get("PERF", "1") == "1":
            print("== per GET /version: context switches and CPU (perf stat)")
            for s, g in zip(specs, groups):
                di = g[0]
                p, plugs = procs[di]
                for who, group in (("daemon", [p]), ("plugins", plugs)):
                    if not group:
                        continue
                    pids = ",".join(str(x.pid) for x in group)
                    out = f"{BASE}/perf-{s[0]}.txt"
                    N = int(os.environ.get("PERF_N", "2000"))
                    # CPU time first, without perf (which adds to every context switch) ...
                    before = [proc_times(x.pid) for x in group]
                    for _ in range(N):
                        apis[di].req("GET", "/version")
                    after = [proc_times(x.pid) for x in group]
                    tick = os.sysconf("SC_CLK_TCK")
                    user = sum(a[0] - b[0] for a, b in zip(after, before)) / tick / N * 1e6
                    system = sum(a[1] - b[1] for a, b in zip(after, before)) / tick / N * 1e6
                    # ... then the counts.
                    perf = subprocess.Popen(["perf", "stat", "-x,", "-o", out, "-e",
                                             "context-switches,cpu-migrations,task-clock,page-faults", "-p", pids])
                    time.sleep(0.3)
                    for _ in range(N):
                        apis[di].req("GET", "/version")
                    perf.send_signal(signal.SIGINT)
                    perf.wait()
                    vals = {}
                    for line in open(out):
                        f = line.strip().split(",")
                        if len(f) > 2 and f[0] and f[0][0].isdigit():
                            vals[f[2]] = float(f[0])
                    cs = vals.get("context-switches", 0) / N
                    cpu = vals.get("task-clock", 0) / N * 1e3
                    print(f"{s[0]:<8} {who:<8} cs/req {cs:6.2f}  migrations/req {vals.get('cpu-migrations',0)/N:.3f}  "
                          f"faults/req {vals.get('page-faults',0)/N:.2f}  cpu us/req {cpu:.1f} under perf; "
                          f"without: user {user:.1f}, system {system:.1f}")
    finally:
        for p, plugs in procs:
            for x in plugs:
                x.kill()
            p.send_signal(signal.SIGTERM)
        for p, plugs in procs:
            try:
                p.wait(10)
            except Exception:
                p.kill()
            for x in plugs:
                x.wait()


main()
