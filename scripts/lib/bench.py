"""The driver of scripts/bench: users, the wrk runs, what each process spent, the checks of
the databases, and the report. scripts/bench brings the cluster up (scripts/lib/cluster.sh)
and calls one command at a time; everything between commands lives in STATE/state.json.

  bench.py init STATE --cluster WORK/cluster.json --default-nginx URL [options]
                          # settings, the machine, RSS of every process while idle
  bench.py users STATE    # the hot user and the spread users (auth runs with a low bcrypt
                          # cost meanwhile; scripts/bench restarts it as deployed after)
  bench.py login-user STATE   # the login scenario's user, registered at the deployed cost
  bench.py scenario STATE NAME  # every connection count × repeat of one scenario; its checks
                          # go to STATE/checks-NAME.tsv (name, ok|fail, detail)
  bench.py report STATE OUT_DIR  # RSS after load; OUT_DIR/<UTC>.md/.json, latest.md/.json

Measured over each timed window only (never the warm-up): wrk's figures (its done() in
scripts/lib/bench/report.lua prints them as JSON), CPU time of every process from
/proc/PID/stat (utime+stime; a process group counts its children, live ones directly and
exited ones through the parent's cutime+cstime), wrk's own from its rusage, PostgreSQL's
transactions from pg_stat_database, and for the order scenarios the latency of each route
from nginx's access log ($request_time, written by the --bench rendering).

Standard library only; the databases are read with psql as the cluster's superuser.
"""
import argparse
import datetime
import glob
import http.client
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

SCENARIOS = {
    "static": "nginx answering a static 200 through the same config (the machine's ceiling)",
    "get-nginx": "protected GET /billing/current through nginx (auth keepalive applied)",
    "get-nginx-default": "the same GET through nginx as a default ingress-nginx renders it (no auth keepalive)",
    "get-direct": "the same GET straight to billing, with the identity headers nginx would add",
    "auth-direct": "GET /auth straight to auth, as the ingress's sub-request (the forward-auth check)",
    "order-pay-hot": "POST /order then PUT /order/{id}/pay per connection, one user, through nginx",
    "order-pay-spread": "the same with many users, each wrk thread cycling through its own slice",
    "login": "POST /login of one user (bcrypt at the deployed cost)",
}
ORDER_SCENARIOS = ("order-pay-hot", "order-pay-spread")
SERVICES = ("auth", "billing", "order", "notification")
GROUPS = ("nginx",) + SERVICES + ("postgres", "wrk")
DATABASES = SERVICES
ORDER_AMOUNT = 1                 # currency units per order
DEPOSIT = 1_000_000_000          # the largest amount one request may move (docs/api-contract.md)
PASSWORD = "bench-password"
LUA = "scripts/lib/bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(text=""):
    print(text, flush=True)


# ---- state -------------------------------------------------------------------------------

def load(state_dir):
    with open(os.path.join(state_dir, "state.json")) as f:
        return json.load(f)


def save(state_dir, state):
    path = os.path.join(state_dir, "state.json")
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)


# ---- HTTP (set-up only: the load is wrk's) --------------------------------------------------

class Client:
    """One keep-alive connection to a base URL."""

    def __init__(self, base):
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port
        self.conn = None

    def call(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, path, data, headers)
                res = self.conn.getresponse()
                return res.status, res.headers, res.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def new_user(base, prefix):
    """Registers, logs in and funds a user through the public API: (user id, cookie, login)."""
    client = Client(base)
    login = f"{prefix}_{uuid.uuid4().hex[:12]}"
    status, _, body = client.call("POST", "/register",
                                  {"login": login, "password": PASSWORD, "email": f"{login}@example.com"})
    if status != 200:
        raise RuntimeError(f"register {login}: {status} {body[:200]!r}")
    status, headers, body = client.call("POST", "/login", {"login": login, "password": PASSWORD})
    if status != 200:
        raise RuntimeError(f"login {login}: {status} {body[:200]!r}")
    cookie = headers["Set-Cookie"].split(";")[0]
    uid = json.loads(body)["id"]
    status, _, body = client.call("POST", "/billing/change", {"amount": DEPOSIT, "reason": "bench"},
                                  {"Cookie": cookie})
    if status != 200 or json.loads(body).get("status") != "OK":
        raise RuntimeError(f"deposit for {login}: {status} {body[:200]!r}")
    return uid, cookie, login


# ---- processes -------------------------------------------------------------------------------

def read_int(path):
    with open(path) as f:
        return int(f.readline().split()[0])


def proc_table():
    """pid -> (ppid, utime+stime, cutime+cstime) of every process, in clock ticks."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2:].split()   # fields 3 (state) onwards
        table[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]),
                            int(fields[13]) + int(fields[14]))
    return table


def group_pids(state):
    """The root pid of each measured process group (nginx: every master; postgres: the
    postmaster); a group is its roots and their direct children."""
    work = state["work"]
    roots = {"nginx": [read_int(os.path.join(d, "logs", "nginx.pid")) for d in state["nginx_dirs"]],
             "postgres": [read_int(os.path.join(state["pg_dir"], "data", "postmaster.pid"))]}
    pgbouncer = os.path.join(state["pg_dir"], "pgbouncer", "pgbouncer.pid")
    if os.path.exists(pgbouncer):   # --ha: the pooler's CPU is the database's
        roots["postgres"].append(read_int(pgbouncer))
    for s in SERVICES:   # every replica (cluster.sh: WORK/<service>-<i>.pid)
        roots[s] = [read_int(p) for p in sorted(glob.glob(os.path.join(work, f"{s}-*.pid")))]
    return roots


def cpu_ticks(state, table=None):
    """Clock ticks spent so far by each group: the roots' own and reaped children's time,
    plus the live children's own time. Differences of two of these are exact, whatever
    children started or ended in between."""
    table = table or proc_table()
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    ticks = {}
    for group, roots in group_pids(state).items():
        total = 0
        for root in roots:
            if root in table:
                total += table[root][1] + table[root][2]
                total += sum(table[c][1] for c in children.get(root, []))
        ticks[group] = total
    return ticks


def machine_ticks():
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values[:8]), idle


def memory(state):
    """MB of VmRSS, of its anonymous part (RssAnon: the heap and stacks, the process's own)
    and its file part (RssFile: mapped pages of the binary and the shared libraries, clean and
    shared with every process that maps the same file), and of Pss (shared pages divided among
    their users), per group."""
    table = proc_table()
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for group, roots in group_pids(state).items():
        rss = pss = anon = files = threads = 0
        for root in roots:
            for pid in [root] + children.get(root, []):
                try:
                    with open(f"/proc/{pid}/status") as f:
                        status = dict(line.split(":", 1) for line in f if ":" in line)
                    kb = {k: int(status[k].split()[0]) for k in ("VmRSS", "RssAnon", "RssFile")}
                    rss, anon, files = rss + kb["VmRSS"], anon + kb["RssAnon"], files + kb["RssFile"]
                    threads += int(status["Threads"])
                    with open(f"/proc/{pid}/smaps_rollup") as f:
                        pss += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
                except (OSError, StopIteration, KeyError, ValueError):
                    pass
        out[group] = {"rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1),
                      "anon_mb": round(anon / 1024, 1), "file_mb": round(files / 1024, 1),
                      "threads": threads,
                      "processes": sum(1 + len(children.get(r, [])) for r in roots)}
    return out


# ---- PostgreSQL --------------------------------------------------------------------------------

def psql(state, database, query):
    url = state["pg_url"].rsplit("/", 1)[0] + f"/{database}"
    out = subprocess.run(["psql", url, "-AtF", "\t", "-c", query], check=True,
                         capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def pg_xacts(state):
    rows = psql(state, "postgres", "select datname, xact_commit + xact_rollback from pg_stat_database "
                "where datname in ('auth', 'billing', 'order', 'notification')")
    return {name: int(n) for name, n in rows}


def pg_version(state):
    return psql(state, "postgres", "show server_version")[0][0]


def quiesce(state, limit=30.0):
    """Waits until the pay flow is at rest: the outbox empty and the counts of orders,
    charges and notifications unchanged for 0.5 s (bounded). Seconds waited, and whether
    the outbox emptied."""
    started = time.monotonic()
    last = None
    while True:
        outbox = int(psql(state, "order", "select count(*) from outbox where delivered_at is null "
                                          "and abandoned_at is null")[0][0])
        now = (int(psql(state, "order", "select count(*), coalesce(sum(case status when 'Pending' then 1 "
                                        "else 0 end), 0) from orders")[0][0]),
               int(psql(state, "billing", "select count(*) from payments")[0][0]),
               int(psql(state, "notification", "select count(*) from notifications")[0][0]))
        waited = time.monotonic() - started
        if outbox == 0 and now == last:
            return waited, True
        if waited > limit:
            return waited, outbox == 0
        last = now
        time.sleep(0.5)


def integrity(state, since):
    """Checks every order with id > since['order_id'] against billing and notification, and
    the balance drop since the previous check. Returns (figures, the new `since`)."""
    orders = {int(i): (s, int(a)) for i, s, a in
              psql(state, "order", f"select id, status, amount from orders where id > {since['order_id']}")}
    charges = {int(o): int(a) for o, a in
               psql(state, "billing", f"select order_id, amount from payments where order_id > {since['order_id']}")}
    ledger = {int(o): int(n) for o, n in
              psql(state, "billing", "select order_id, count(*) from ledger where order_id is not null "
                                     f"and order_id > {since['order_id']} group by order_id")}
    notes = {}
    for key, n in psql(state, "notification", "select idempotency_key, count(*) from notifications "
                                              f"where order_id > {since['order_id']} group by idempotency_key"):
        notes[key] = int(n)
    balance_sum = int(psql(state, "billing", "select coalesce(sum(balance), 0) from accounts")[0][0])
    status_count = {"Pending": 0, "Processing": 0, "Failed": 0}
    for status, _ in orders.values():
        status_count[status] = status_count.get(status, 0) + 1
    lost_charges = [o for o, (s, _) in orders.items() if s == "Processing" and (o not in charges or o not in ledger)]
    lost_charges += [o for o in charges if orders.get(o, ("missing",))[0] != "Processing"]
    expected_notes = {f"order-{o}-{s}" for o, (s, _) in orders.items() if s in ("Processing", "Failed")}
    lost_notes = sorted(expected_notes - set(notes))
    duplicated = [o for o, n in ledger.items() if n > 1] + [k for k, n in notes.items() if n > 1]
    charged = sum(charges.values())
    drop = since["balance_sum"] - balance_sum
    figures = {
        "orders": len(orders), "status": status_count, "charges": len(charges),
        "ledger_charges": sum(ledger.values()), "charged": charged, "balance_drop": drop,
        "notifications": sum(notes.values()), "notifications_expected": len(expected_notes),
        "lost": len(lost_charges) + len(lost_notes), "lost_charges": len(lost_charges),
        "lost_notifications": len(lost_notes), "duplicated": len(duplicated),
        "examples": {"lost_charges": sorted(lost_charges)[:5], "lost_notifications": lost_notes[:5],
                     "duplicated": [str(d) for d in duplicated[:5]]},
    }
    new_since = {"order_id": max([since["order_id"]] + list(orders)), "balance_sum": balance_sum}
    return figures, new_since


def integrity_watermark(state):
    return {"order_id": int(psql(state, "order", "select coalesce(max(id), 0) from orders")[0][0]),
            "balance_sum": int(psql(state, "billing", "select coalesce(sum(balance), 0) from accounts")[0][0])}


# ---- wrk ---------------------------------------------------------------------------------------

def wrk(state, url, connections, seconds, script, headers=(), args=(), out_path=None):
    """Runs wrk; (its done() JSON, its CPU seconds, its output)."""
    cmd = ["wrk", f"-t{state['threads']}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
           "-s", f"{LUA}/{script}"]
    for header in headers:
        cmd += ["-H", header]
    cmd.append(url)
    if args:
        cmd += ["--"] + [str(a) for a in args]
    out_path = out_path or os.path.join(state["state_dir"], "wrk.out")
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path) as f:
        text = f.read()
    found = re.search(r"^BENCH_JSON (.*)$", text, re.M)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {' '.join(cmd)}\n{text}")
    return json.loads(found.group(1)), usage.ru_utime + usage.ru_stime, text


def flush_access_logs(state):
    """nginx writes its buffered access log when told to reopen its logs (SIGUSR1)."""
    for d in state["nginx_dirs"]:
        os.kill(read_int(os.path.join(d, "logs", "nginx.pid")), signal.SIGUSR1)
    time.sleep(0.3)


def route_latencies(log_path, offset, t0, t1):
    """Per route of the pay flow, latencies ($request_time, ms) of the 2xx answers nginx
    logged within [t0, t1], and the other answers by status (499: a request wrk closed its
    connection on when it stopped)."""
    routes = {}
    with open(log_path) as f:
        f.seek(offset)
        for line in f:
            parts = line.split()
            if len(parts) < 5:
                continue
            msec, method, uri, status, request_time = parts[:5]
            if not t0 <= float(msec) <= t1:
                continue
            if method == "POST" and uri == "/order":
                route = "POST /order"
            elif method == "PUT" and re.fullmatch(r"/order/\d+/pay", uri):
                route = "PUT /order/*/pay"
            else:
                route = f"{method} {uri}"
            r = routes.setdefault(route, {"ok": [], "other": {}})
            if status.startswith("2"):
                r["ok"].append(float(request_time) * 1000)
            else:
                r["other"][status] = r["other"].get(status, 0) + 1
    out = {}
    for route, r in routes.items():
        values = sorted(r["ok"])
        out[route] = {"count": len(values), "non2xx": r["other"],
                      **{k: percentile(values, p) for k, p in (("p50", 50), ("p90", 90), ("p99", 99))},
                      "max": values[-1] if values else None}
    return out


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


# ---- scenarios -----------------------------------------------------------------------------------

def target(state, name):
    """(url, lua script, headers, script args) of a scenario."""
    hot = state["users"]["hot"]
    nginx, services = state["nginx"], state["services"]
    if name == "static":
        return f"{nginx}/__bench/static", "plain.lua", [], []
    if name == "get-nginx":
        return f"{nginx}/billing/current", "plain.lua", [f"Cookie: {hot['cookie']}"], []
    if name == "get-nginx-default":
        return f"{state['nginx_default']}/billing/current", "plain.lua", [f"Cookie: {hot['cookie']}"], []
    if name == "get-direct":
        return (f"{services['billing']}/billing/current", "plain.lua",
                [f"{k}: {v}" for k, v in hot["identity"].items()], [])
    if name == "auth-direct":
        return (f"{services['auth']}/auth", "plain.lua",
                [f"Cookie: {hot['cookie']}", "X-Original-URL: http://arch.homework/billing/current"], [])
    if name == "order-pay-hot":
        return f"{nginx}/order", "order_pay.lua", [], [state["users_files"]["hot"], ORDER_AMOUNT, state["threads"]]
    if name == "order-pay-spread":
        return (f"{nginx}/order", "order_pay.lua", [],
                [state["users_files"]["spread"], ORDER_AMOUNT, state["threads"]])
    if name == "login":
        return f"{nginx}/login", "login.lua", [], [state["login_user"]["login"], PASSWORD]
    raise SystemExit(f"unknown scenario {name}")


def units_of(stats, order_flow):
    """What a figure is divided by: answered requests, or completed pays (orders)."""
    return stats["counters"]["paid"] if order_flow else stats["requests"]


def log_sizes(state):
    """Bytes each service has written to its log (stdout and stderr, WORK/<service>.log)."""
    sizes = {}
    for s in SERVICES:
        try:
            sizes[s] = os.path.getsize(os.path.join(state["work"], f"{s}.log"))
        except OSError:
            sizes[s] = 0
    return sizes


def measured_run(state, name, connections, repeat, xacts_base=None):
    """One timed window. CPU and wrk's figures cover the window only. PostgreSQL's counters
    reach pg_stat_database lazily (PG 15: a backend flushes them when it goes idle, at most
    once a second, and an idle backend within PGSTAT_IDLE_INTERVAL, 10 s), so with
    pg_stats_wait > 0 the window's end is read after that wait, from a start that was read at
    rest: `xacts_base` = (counters read at rest before the warm-up, the warm-up's units) for
    the first repeat of a row, None (read now, at rest since the previous wait) after.
    With pg_stats_wait 0 (--smoke) both edges are read at once: approximate."""
    url, script, headers, args = target(state, name)
    order_flow = name in ORDER_SCENARIOS
    log_path = os.path.join(state["nginx_dirs"][0], "logs", "access.log")
    flush_access_logs(state)
    offset = os.path.getsize(log_path)
    xacts0, extra_units = xacts_base if xacts_base else (pg_xacts(state), 0)
    logs0 = log_sizes(state)
    table0 = proc_table()
    ticks0, machine0, t0 = cpu_ticks(state, table0), machine_ticks(), time.time()
    stats, wrk_cpu, text = wrk(state, url, connections, state["duration"], script, headers, args,
                               os.path.join(state["state_dir"], f"wrk-{name}-{connections}-{repeat}.out"))
    t1 = time.time()
    ticks1, machine1 = cpu_ticks(state), machine_ticks()
    logs1 = log_sizes(state)
    if state["pg_stats_wait"] > 0:
        time.sleep(state["pg_stats_wait"])
    xacts1 = pg_xacts(state)
    seconds = stats["duration_us"] / 1e6
    e = stats["errors"]
    counters = stats["counters"]
    non2xx = e["status"] + e["connect"] + e["read"] + e["write"] + e["timeout"]
    units = units_of(stats, order_flow)
    lat = stats["latency_us"]
    run = {
        "scenario": name, "connections": connections, "repeat": repeat, "seconds": round(seconds, 3),
        "requests": stats["requests"], "rps": stats["requests"] / seconds,
        "latency_ms": {"p50": lat["percentiles"]["50"] / 1000, "p90": lat["percentiles"]["90"] / 1000,
                       "p99": lat["percentiles"]["99"] / 1000, "max": lat["max"] / 1000,
                       "mean": lat["mean"] / 1000},
        "non2xx": non2xx, "errors": e, "counters": counters,
        "unit": "order" if order_flow else "request", "units": units,
    }
    cpu = {g: (ticks1[g] - ticks0[g]) / CLK_TCK for g in ticks0}
    cpu["wrk"] = wrk_cpu
    run["cpu_seconds"] = {g: round(v, 3) for g, v in cpu.items()}
    run["cpu_us_per_unit"] = {g: (v * 1e6 / units if units else None) for g, v in cpu.items()}
    run["cpu_us_per_unit"]["total"] = sum(cpu.values()) * 1e6 / units if units else None
    total, idle = machine1[0] - machine0[0], machine1[1] - machine0[1]
    run["machine_busy_pct"] = round(100 * (total - idle) / total, 1) if total else None
    # what the whole machine spent beyond the measured processes (the kernel's softirq work
    # for loopback traffic, and anything else running: a quiet machine keeps this small)
    other = (total - idle) / CLK_TCK - sum(cpu.values())
    run["cpu_us_per_unit"]["other"] = other * 1e6 / units if units else None
    xacts = {db: xacts1.get(db, 0) - xacts0.get(db, 0) for db in DATABASES}
    xacts["total"] = sum(xacts.values())
    xact_units = units + extra_units
    run["pg_xacts"] = xacts
    run["pg_xacts_units"] = xact_units
    run["pg_xacts_exact"] = state["pg_stats_wait"] > 0
    run["pg_xacts_per_unit"] = {db: (n / xact_units if xact_units else None) for db, n in xacts.items()}
    run["log_bytes_per_unit"] = {s: ((logs1[s] - logs0[s]) / units if units else None) for s in SERVICES}
    if order_flow:
        run["orders_per_s"] = units / seconds
        run["non2xx"] = max(non2xx, counters["non2xx"])   # the script's own count also sees 3xx
        flush_access_logs(state)
        run["routes"] = route_latencies(log_path, offset, t0, t1)
    return run


def fmt(value, digits=1):
    if value is None:
        return "–"
    if round(value, digits) == 0:
        value = 0.0   # no "-0": a difference of clock ticks may come out a hair below zero
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def run_line(run):
    unit = "order" if run["unit"] == "order" else "req"
    cpu = run["cpu_us_per_unit"]
    parts = [f"  {run['scenario']} c={run['connections']} #{run['repeat']}: {fmt(run['rps'], 0)} req/s"]
    if run["unit"] == "order":
        parts.append(f"({fmt(run['orders_per_s'], 0)} orders/s)")
    lat = run["latency_ms"]
    parts.append(f"p50 {fmt(lat['p50'], 2)} p90 {fmt(lat['p90'], 2)} p99 {fmt(lat['p99'], 2)} "
                 f"max {fmt(lat['max'], 1)} ms, non-2xx {run['non2xx']}")
    line = " ".join(parts)
    line += "\n    CPU µs/" + unit + ": " + ", ".join(f"{g} {fmt(cpu[g], 0)}" for g in GROUPS + ("total",))
    line += f"; rest of the machine {fmt(cpu.get('other'), 0)}; machine busy {fmt(run['machine_busy_pct'])}%"
    approx = "" if run["pg_xacts_exact"] else " (approximate: read without waiting for the stats flush)"
    line += "\n    PostgreSQL transactions/" + unit + approx + ": " + ", ".join(
        f"{db} {fmt(run['pg_xacts_per_unit'][db], 2)}" for db in DATABASES + ("total",))
    if run.get("routes"):
        for route in ("POST /order", "PUT /order/*/pay"):
            r = run["routes"].get(route)
            if r:
                line += (f"\n    {route}: {r['count']} answered 2xx in the window, p50 {fmt(r['p50'], 0)} "
                         f"p90 {fmt(r['p90'], 0)} p99 {fmt(r['p99'], 0)} max {fmt(r['max'], 0)} ms "
                         f"(nginx $request_time); not 2xx: {r['non2xx'] or 'none'}")
        c = run["counters"]
        line += (f"\n    wrk's script: {c['created']} created, {c['paid']} paid, {c['declined']} declined, "
                 f"{c['non2xx']} non-2xx, {c['unparsed']} unreadable answers")
    return line


def integrity_line(fig, repeat):
    s = fig["status"]
    since = "the warm-up's included" if repeat == 1 else "since the previous check"
    return (f"    databases: {fig['orders']} orders ({since}): "
            f"{s['Processing']} Processing, {s['Failed']} Failed, {s['Pending']} Pending; "
            f"{fig['charges']} charges, {fig['ledger_charges']} ledger charge rows; balance drop "
            f"{fig['balance_drop'] / 100:,.2f} vs charged {fig['charged'] / 100:,.2f}; "
            f"{fig['notifications']} notifications of {fig['notifications_expected']} expected; "
            f"lost {fig['lost']} (charges {fig['lost_charges']}, notifications {fig['lost_notifications']}), "
            f"duplicated {fig['duplicated']}")


def scenario(state_dir, name):
    state = load(state_dir)
    if name not in SCENARIOS:
        raise SystemExit(f"unknown scenario {name}; known: {', '.join(SCENARIOS)}")
    say(f"\n== {name}: {SCENARIOS[name]} ==")
    url, script, headers, args = target(state, name)
    order_flow = name in ORDER_SCENARIOS
    runs = []
    since = integrity_watermark(state) if order_flow else None
    exact = state["pg_stats_wait"] > 0
    if exact and not state.get("pg_stats_at_rest"):
        # the set-up's last transactions may still be on their way to pg_stat_database
        time.sleep(state["pg_stats_wait"])
    for connections in state["connections"]:
        xacts_base = None
        if state["warmup"] > 0:
            before = pg_xacts(state) if exact else None
            stats, _, _ = wrk(state, url, connections, state["warmup"], script, headers, args,
                              os.path.join(state_dir, f"wrk-{name}-{connections}-warmup.out"))
            if exact:
                xacts_base = (before, units_of(stats, order_flow))
            say(f"  {name} c={connections}: warm-up {state['warmup']} s (not counted)")
        for repeat in range(1, state["repeats"] + 1):
            run = measured_run(state, name, connections, repeat, xacts_base)
            xacts_base = None
            say(run_line(run))
            if order_flow:
                waited, emptied = quiesce(state)
                run["integrity"], since = integrity(state, since)
                run["integrity"]["quiesce_seconds"] = round(waited, 1)
                run["integrity"]["outbox_emptied"] = emptied
                say(integrity_line(run["integrity"], repeat) + f"; at rest after {waited:.1f} s"
                    + ("" if emptied else " (outbox NOT empty)"))
            runs.append(run)
    with open(os.path.join(state_dir, f"runs-{name}.json"), "w") as f:
        json.dump(runs, f, indent=1)
    state = load(state_dir)
    state["pg_stats_at_rest"] = exact
    save(state_dir, state)
    # the checks of this scenario, for scripts/bench's JUnit report
    checks = []
    bad = [r for r in runs if r["non2xx"] or r["requests"] == 0]
    details = [f"c={r['connections']} #{r['repeat']}: {r['non2xx']} non-2xx of {r['requests']} "
               f"(wrk's errors {r['errors']})" for r in bad]
    if order_flow:
        # a declined pay is a 200 too, but here it means the users ran out of money
        odd = [r for r in runs if r["counters"]["declined"] or r["counters"]["unparsed"]]
        details += [f"c={r['connections']} #{r['repeat']}: {r['counters']['declined']} pays declined, "
                    f"{r['counters']['unparsed']} unreadable answers" for r in odd]
        bad += odd
    detail = "; ".join(details)
    total = sum(r["requests"] for r in runs)
    checks.append((f"{name}: every answer 2xx", not bad, detail or f"{total} answers, all 2xx"))
    if order_flow:
        lost = sum(r["integrity"]["lost"] for r in runs)
        dup = sum(r["integrity"]["duplicated"] for r in runs)
        orders = sum(r["integrity"]["orders"] for r in runs)
        examples = [r["integrity"]["examples"] for r in runs if r["integrity"]["lost"] or r["integrity"]["duplicated"]]
        checks.append((f"{name}: lost = 0 (charges and notifications)", lost == 0,
                       f"{lost} lost of {orders} orders" + (f"; e.g. {examples[0]}" if examples else "")))
        checks.append((f"{name}: duplicated = 0 (ledger charges and notifications)", dup == 0,
                       f"{dup} duplicated of {orders} orders" + (f"; e.g. {examples[0]}" if examples else "")))
        off = [r for r in runs if r["integrity"]["balance_drop"] != r["integrity"]["charged"]]
        checks.append((f"{name}: balance drop = sum of the charges", not off,
                       "; ".join(f"c={r['connections']} #{r['repeat']}: drop {r['integrity']['balance_drop']} "
                                 f"≠ charged {r['integrity']['charged']} (minor units)" for r in off)
                       or f"{sum(r['integrity']['charged'] for r in runs) / 100:,.2f} charged, the same dropped"))
        unsettled = [r for r in runs if not r["integrity"]["outbox_emptied"]]
        checks.append((f"{name}: the outbox empties after the run", not unsettled,
                       f"{len(unsettled)} run(s) left undelivered messages after 30 s" if unsettled
                       else "every run"))
    with open(os.path.join(state_dir, f"checks-{name}.tsv"), "w") as f:
        for check_name, ok, text in checks:
            f.write(f"{check_name}\t{'ok' if ok else 'fail'}\t{text.replace(chr(9), ' ').replace(chr(10), ' ')}\n")


# ---- set-up commands ---------------------------------------------------------------------------

def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "ram_gib": round(mem_kb / 1024 / 1024, 1)}


def versions(state):
    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return (r.stdout + r.stderr).strip()
        except OSError:
            return "?"
    wrk_v = re.search(r"wrk (\S+)", out(["wrk", "-v"]))
    nginx_v = re.search(r"nginx/(\S+)", out(["nginx", "-v"]))
    return {"postgresql": pg_version(state), "nginx": nginx_v.group(1) if nginx_v else "?",
            "wrk": wrk_v.group(1) if wrk_v else "?"}


def git_revision():
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()
    rev = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"commit": rev, "uncommitted_changes": dirty, "subject": git("log", "-1", "--format=%s")}


def init(args):
    cluster = json.load(open(args.cluster))
    work = cluster["work"]
    state = {
        "state_dir": args.state, "work": work, "bin_dir": cluster["bin_dir"],
        "nginx": cluster["nginx"], "nginx_default": args.default_nginx,
        # the ingress, the default-controller rendering, and the Services with replicas > 1
        "nginx_dirs": [os.path.join(work, "nginx"), os.path.join(work, args.default_nginx_dir)]
                      + [d for d in [os.path.join(work, "services")] if os.path.isdir(d)],
        "services": {s: v["url"] for s, v in cluster["services"].items()},
        "pg_url": cluster["postgres"]["url"], "pg_dir": cluster["postgres"]["dir"],
        "smoke": args.smoke, "threads": args.threads, "duration": args.duration, "warmup": args.warmup,
        "repeats": args.repeats, "connections": [int(c) for c in args.connections.split(",")],
        "spread_users": args.spread_users, "command": args.command, "pg_stats_wait": args.pg_stats_wait,
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scenarios": [s for s in args.scenarios.split(",") if s],
    }
    unknown = [s for s in state["scenarios"] if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    state["machine"] = machine()
    state["versions"] = versions(state)
    state["git"] = git_revision()
    built = max(os.path.getmtime(os.path.join(state["bin_dir"], s)) for s in SERVICES)
    state["bin_built"] = datetime.datetime.fromtimestamp(built, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    state["rss_idle"] = memory(state)
    with open("/proc/loadavg") as f:
        state["loadavg_at_start"] = " ".join(f.read().split()[:3])
    save(args.state, state)
    m, v = state["machine"], state["versions"]
    say(f"machine: {m['nproc']} × {m['cpu']}, {m['ram_gib']} GiB, Linux {m['kernel']}; "
        f"PostgreSQL {v['postgresql']}, nginx {v['nginx']}, wrk {v['wrk']}")
    say("idle RSS (MB): " + ", ".join(f"{g} {r['rss_mb']}" for g, r in state["rss_idle"].items()))


def users(state_dir):
    state = load(state_dir)
    nginx = state["nginx"]
    started = time.monotonic()
    uid, cookie, login = new_user(nginx, "hot")
    state["users"] = {"hot": {"id": uid, "cookie": cookie, "login": login}}
    with ThreadPoolExecutor(8) as pool:
        spread = list(pool.map(lambda i: new_user(nginx, "spread"), range(state["spread_users"])))
    files = {"hot": os.path.join(state_dir, "users-hot.txt"), "spread": os.path.join(state_dir, "users-spread.txt")}
    with open(files["hot"], "w") as f:
        f.write(f"{uid} {cookie}\n")
    with open(files["spread"], "w") as f:
        for u, c, _ in spread:
            f.write(f"{u} {c}\n")
    state["users_files"] = files
    save(state_dir, state)
    say(f"1 hot user and {len(spread)} spread users registered, logged in and given "
        f"{DEPOSIT:,} each through nginx in {time.monotonic() - started:.1f} s")


def login_user(state_dir):
    state = load(state_dir)
    started = time.monotonic()
    client = Client(state["nginx"])
    login = f"login_{uuid.uuid4().hex[:12]}"
    status, _, body = client.call("POST", "/register",
                                  {"login": login, "password": PASSWORD, "email": f"{login}@example.com"})
    if status != 200:
        raise SystemExit(f"register {login}: {status} {body[:200]!r}")
    registered = time.monotonic() - started
    t = time.monotonic()
    status, _, body = client.call("POST", "/login", {"login": login, "password": PASSWORD})
    if status != 200:
        raise SystemExit(f"login {login}: {status} {body[:200]!r}")
    state["login_user"] = {"login": login}
    # the identity headers nginx would pass to billing for the hot user: auth's answer to the
    # sub-request, named as the Ingress's auth-response-headers (the rendered nginx.conf)
    conf = open(os.path.join(state["nginx_dirs"][0], "nginx.conf")).read()
    names = list(dict.fromkeys(re.findall(r"proxy_set_header '([^']+)' \$authHeader\d+;", conf)))
    status, headers, body = Client(state["services"]["auth"]).call(
        "GET", "/auth", headers={"Cookie": state["users"]["hot"]["cookie"],
                                 "X-Original-URL": "http://arch.homework/billing/current"})
    if status != 200:
        raise SystemExit(f"GET /auth for the hot user after auth's restart: {status} {body[:200]!r}")
    state["users"]["hot"]["identity"] = {n: headers[n] for n in names if headers.get(n) is not None}
    save(state_dir, state)
    say(f"login user registered at the deployed bcrypt cost ({registered * 1000:.0f} ms), "
        f"one login {(time.monotonic() - t) * 1000:.0f} ms; the hot user's session survived auth's restart; "
        f"identity headers for get-direct: {', '.join(state['users']['hot']['identity'])}")


# ---- the report --------------------------------------------------------------------------------

def span(values, digits=1, scale=1.0):
    values = [v * scale for v in values if v is not None]
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    if fmt(lo, digits) == fmt(hi, digits):
        return fmt(lo, digits)
    return f"{fmt(lo, digits)}–{fmt(hi, digits)}"


def rows_by_row(runs):
    groups = {}
    for run in runs:
        groups.setdefault((run["scenario"], run["connections"]), []).append(run)
    return groups


def markdown(state, runs, rss_after, finished):
    m, v, g = state["machine"], state["versions"], state["git"]
    out = [f"# scripts/bench, {finished}", ""]
    out.append(f"- command: `{state['command']}`")
    out.append(f"- checkout: {g['commit']} ({g['subject']})" + (", with uncommitted changes" if g["uncommitted_changes"] else ""))
    out.append(f"- binaries: `{state['bin_dir']}`, built {state.get('bin_built', '?')}")
    out.append(f"- machine: {m['nproc']} × {m['cpu']}, {m['ram_gib']} GiB RAM, Linux {m['kernel']}")
    out.append(f"- PostgreSQL {v['postgresql']}, nginx {v['nginx']}, wrk {v['wrk']}; load average when "
               f"the cluster was up: {state.get('loadavg_at_start', '?')}")
    out.append(f"- wrk -t{state['threads']}, connections {', '.join(map(str, state['connections']))}; per row "
               f"{state['warmup']} s warm-up (not counted), then {state['repeats']} × {state['duration']} s "
               f"(a range is min–max over the repeats)")
    out.append("")
    groups = rows_by_row(runs)
    out += ["## Throughput and latency (wrk)", "",
            "| scenario | c | req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx |", "|---|---|---|---|---|---|---|---|"]
    for (name, c), rs in groups.items():
        label = f"{name} (orders/s {span([r['orders_per_s'] for r in rs], 0)})" if name in ORDER_SCENARIOS else name
        out.append(f"| {label} | {c} | {span([r['rps'] for r in rs], 0)} | "
                   f"{span([r['latency_ms']['p50'] for r in rs], 2)} | {span([r['latency_ms']['p90'] for r in rs], 2)} | "
                   f"{span([r['latency_ms']['p99'] for r in rs], 2)} | {span([r['latency_ms']['max'] for r in rs], 1)} | "
                   f"{sum(r['non2xx'] for r in rs)} |")
    order_rows = [(k, rs) for k, rs in groups.items() if k[0] in ORDER_SCENARIOS]
    if order_rows:
        out += ["", "## Orders (create and pay latency from nginx's $request_time, ms)", "",
                "| scenario | c | orders/s | create p50 / p99 | pay p50 / p90 / p99 | Processing / Failed / Pending "
                "| charges | ledger charges | balance drop = charged | notifications | lost | duplicated |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for (name, c), rs in order_rows:
            def route(key, q):
                return span([r["routes"].get(key, {}).get(q) for r in rs], 0)
            fig = [r["integrity"] for r in rs]
            st = {k: sum(f["status"][k] for f in fig) for k in ("Processing", "Failed", "Pending")}
            drop, charged = sum(f["balance_drop"] for f in fig), sum(f["charged"] for f in fig)
            out.append(f"| {name} | {c} | {span([r['orders_per_s'] for r in rs], 0)} | "
                       f"{route('POST /order', 'p50')} / {route('POST /order', 'p99')} | "
                       f"{route('PUT /order/*/pay', 'p50')} / {route('PUT /order/*/pay', 'p90')} / "
                       f"{route('PUT /order/*/pay', 'p99')} | {st['Processing']} / {st['Failed']} / {st['Pending']} | "
                       f"{sum(f['charges'] for f in fig)} | {sum(f['ledger_charges'] for f in fig)} | "
                       f"{'yes' if drop == charged else 'NO'} ({charged / 100:,.2f}) | "
                       f"{sum(f['notifications'] for f in fig)} of {sum(f['notifications_expected'] for f in fig)} | "
                       f"{sum(f['lost'] for f in fig)} | {sum(f['duplicated'] for f in fig)} |")
        out.append("")
        out.append("Orders are counted per check (after each timed run, warm-up orders included in the first), "
                   "once the outbox is empty; Pending orders are the ones wrk left between create and pay when it stopped.")
    out += ["", "## CPU per request (µs; per order in the order rows)", "",
            "| scenario | c | " + " | ".join(GROUPS) + " | total | rest of the machine | machine busy |",
            "|---|---|" + "---|" * (len(GROUPS) + 3)]
    for (name, c), rs in groups.items():
        cells = [span([r["cpu_us_per_unit"].get(gr) for r in rs], 0) for gr in GROUPS + ("total", "other")]
        out.append(f"| {name} | {c} | " + " | ".join(cells) + f" | {span([r['machine_busy_pct'] for r in rs], 0)}% |")
    exact = all(r.get("pg_xacts_exact") for r in runs)
    out += ["", "## PostgreSQL transactions per request (per order in the order rows)", "",
            ("pg_stat_database deltas, read after PostgreSQL's stats flush (" + str(state["pg_stats_wait"]) +
             " s after each window); the first repeat of a row also counts its warm-up, in both the "
             "transactions and the requests." if exact else
             "pg_stat_database deltas read at once at both edges of the window, without waiting for "
             "PostgreSQL's lazy stats flush: approximate (each backend's last second may fall on "
             "either side)."), "",
            "| scenario | c | " + " | ".join(DATABASES) + " | total |", "|---|---|" + "---|" * (len(DATABASES) + 1)]
    for (name, c), rs in groups.items():
        cells = [span([r["pg_xacts_per_unit"][db] for r in rs], 2) for db in DATABASES + ("total",)]
        out.append(f"| {name} | {c} | " + " | ".join(cells) + " |")
    if all("log_bytes_per_unit" in r for r in runs):
        out += ["", "## Log bytes per request (per order in the order rows), at the Deployments' RUST_LOG", "",
                "| scenario | c | " + " | ".join(SERVICES) + " | total |", "|---|---|" + "---|" * (len(SERVICES) + 1)]
        for (name, c), rs in groups.items():
            per = [r["log_bytes_per_unit"] for r in rs]
            cells = [span([p[s] for p in per], 1) for s in SERVICES]
            cells.append(span([sum(p[s] or 0 for s in SERVICES) for p in per], 1))
            out.append(f"| {name} | {c} | " + " | ".join(cells) + " |")
    out += ["", "## Memory (MB): VmRSS (Pss for the groups of processes)", "",
            "For a service, VmRSS = anon (its heap and stacks, its own) + files (mapped pages of "
            "its binary and of the shared libraries: clean, shared with every process mapping "
            "the same file, dropped by the kernel under pressure).", "",
            "| process | idle | after all load |", "|---|---|---|"]
    for gr in ("nginx",) + SERVICES + ("postgres",):
        idle, after = state["rss_idle"].get(gr), rss_after.get(gr)
        def cell(x):
            if not x:
                return "–"
            if x["processes"] > 1:
                return f"{x['rss_mb']} (Pss {x['pss_mb']}, {x['processes']} processes)"
            if "anon_mb" in x:
                return f"{x['rss_mb']} (anon {x['anon_mb']}, files {x['file_mb']}; {x['threads']} threads)"
            return f"{x['rss_mb']}"
        out.append(f"| {gr} | {cell(idle)} | {cell(after)} |")
    out.append("")
    return "\n".join(out)


def report(state_dir, out_dir):
    state = load(state_dir)
    rss_after = memory(state)
    runs = []
    for name in state["scenarios"]:
        path = os.path.join(state_dir, f"runs-{name}.json")
        if os.path.exists(path):
            runs += json.load(open(path))
    finished = datetime.datetime.now(datetime.timezone.utc)
    stamp = finished.strftime("%Y%m%dT%H%M%SZ")
    text = markdown(state, runs, rss_after, finished.strftime("%Y-%m-%d %H:%M UTC"))
    data = {k: state.get(k) for k in ("command", "git", "machine", "versions", "smoke", "threads", "duration",
                                      "warmup", "repeats", "connections", "spread_users", "pg_stats_wait",
                                      "loadavg_at_start", "bin_dir", "bin_built", "started", "scenarios")}
    data.update({"finished": finished.strftime("%Y-%m-%dT%H:%M:%SZ"), "rss_idle": state["rss_idle"],
                 "rss_after": rss_after, "runs": runs})
    os.makedirs(out_dir, exist_ok=True)
    for name in (stamp, "latest"):
        with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
            f.write(text)
        with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
            json.dump(data, f, indent=1)
    say("\n" + text)
    say(f"written: {out_dir}/{stamp}.md, {out_dir}/{stamp}.json (and latest.md, latest.json)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init")
    p.add_argument("state")
    p.add_argument("--cluster", required=True)
    p.add_argument("--default-nginx", required=True)
    p.add_argument("--default-nginx-dir", default="nginx-default")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--duration", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--connections", required=True)
    p.add_argument("--spread-users", type=int, required=True)
    p.add_argument("--pg-stats-wait", type=float, required=True,
                   help="seconds to wait for pg_stat_database after a window (0: read at once, approximate)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--command", dest="command_line", default="")
    for name in ("users", "login-user"):
        sub.add_parser(name).add_argument("state")
    p = sub.add_parser("scenario")
    p.add_argument("state")
    p.add_argument("name")
    p = sub.add_parser("report")
    p.add_argument("state")
    p.add_argument("out_dir")
    args = parser.parse_args()
    if args.command == "init":
        args.command = args.command_line
        init(args)
    elif args.command == "users":
        users(args.state)
    elif args.command == "login-user":
        login_user(args.state)
    elif args.command == "scenario":
        scenario(args.state, args.name)
    elif args.command == "report":
        report(args.state, args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
