"""Process-level fault tests against the production topology (scripts/faults): real processes,
real PostgreSQL, real nginx. Each scenario breaks something for real (SIGKILL, SIGTERM, a
database restart), drives traffic through nginx, then checks what users and the databases
say, and prints what it saw. Exit status 1 if any guarantee did not hold. Every check is a
test case of a JUnit report (scripts/lib/report.py), its class named after its scenario.

usage: python3 faults.py WORK/cluster.json REPORT.xml   (cluster.json: scripts/lib/cluster.sh)
Standard library only; the databases are read with psql.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from report import Report

CLUSTER = json.load(open(sys.argv[1]))
REPORT = Report(sys.argv[2], "faults")
WORK = CLUSTER["work"]
NGINX = CLUSTER["nginx"]
PG = CLUSTER["postgres"]
PASSED = []
FAILURES = []
SESSIONS = []   # every session id handed out: none may appear in a log
SCENARIO = {"name": "faults", "since": time.monotonic()}   # what the next check belongs to


def say(text):
    print(text, flush=True)


def check(ok, what, detail=None):
    """One checked guarantee: printed, counted, and a test case of the report, timed since
    the previous check of its scenario."""
    say(("ok   " if ok else "FAIL ") + what)
    (PASSED if ok else FAILURES).append(what)
    now = time.monotonic()
    REPORT.case(what, now - SCENARIO["since"], None if ok else (detail or f"did not hold: {what}"),
                classname=f"faults.{SCENARIO['name']}")
    SCENARIO["since"] = now


# ---- Prometheus (when scripts/faults started one) -----------------------------------------

PROMETHEUS = CLUSTER.get("prometheus")


def prom_value(expr):
    """The first value of `expr` in Prometheus now, or None when it has none."""
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{PROMETHEUS}/api/v1/query?{q}", timeout=10) as res:
        result = json.load(res)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def prom_wait(expr, done, limit):
    """Polls `expr` until `done(value)` (scrapes are 1 s apart), for at most `limit` s."""
    deadline, value = time.monotonic() + limit, None
    while time.monotonic() < deadline:
        value = prom_value(expr)
        if done(value):
            break
        time.sleep(0.5)
    return value


# ---- HTTP -------------------------------------------------------------------------------

class Answer:
    def __init__(self, status, headers, body, seconds):
        self.status, self.headers, self.body, self.seconds = status, headers, body, seconds

    def json(self):
        return json.loads(self.body)


def call(method, url, body=None, cookie=None, timeout=15, headers=None):
    """One request on a new connection; raises OSError/HTTPException if there is no answer."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = {"Connection": "close", **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if cookie:
        headers["Cookie"] = cookie
    started = time.monotonic()
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), data, headers)
        res = conn.getresponse()
        payload = res.read()
        return Answer(res.status, res.headers, payload, time.monotonic() - started)
    finally:
        conn.close()


def user(prefix):
    """Registers and logs in a new user through nginx; the session cookie."""
    login = f"{prefix}_{uuid.uuid4().hex[:10]}"
    body = {"login": login, "password": "fault-password", "email": f"{login}@example.com"}
    assert call("POST", f"{NGINX}/register", body).status == 200
    res = call("POST", f"{NGINX}/login", {"login": login, "password": "fault-password"})
    assert res.status == 200, res.body
    cookie = res.headers["Set-Cookie"].split(";")[0]
    SESSIONS.append(cookie.split("=", 1)[1])
    return cookie


def deposit(cookie, amount):
    res = call("POST", f"{NGINX}/billing/change", {"amount": amount}, cookie)
    assert res.status == 200 and res.json()["status"] == "OK", res.body


def new_order(cookie, amount):
    res = call("POST", f"{NGINX}/order", {"amount": amount}, cookie)
    assert res.status == 200, res.body
    return res.json()["id"]


def user_id(cookie):
    return call("GET", f"{NGINX}/users/me", cookie=cookie).json()["id"]


# ---- processes and databases ----------------------------------------------------------

def replicas(service):
    """The replicas of a service ({"name": "billing-1", "port", "url"}), as cluster.sh ran them."""
    return CLUSTER["services"][service]["replicas"]


def pid_of(replica):
    """The pid of one replica ("billing-1")."""
    return int(open(f"{WORK}/{replica}.pid").read())


def pids_of(service):
    return [pid_of(r["name"]) for r in replicas(service)]


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_gone(pid, limit):
    """Seconds until `pid` is gone (reaps it if it is our child), or None after `limit`."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return time.monotonic() - started
        except ChildProcessError:
            if not alive(pid):
                return time.monotonic() - started
        time.sleep(0.01)
    return None


def kill(service, sig, replica=None):
    """Sends `sig` to every replica of `service` (the service is down), or to the one named;
    the pids signalled."""
    pids = [pid_of(r["name"]) for r in replicas(service) if replica in (None, r["name"])]
    for pid in pids:
        os.kill(pid, sig)
    return pids


def ready(service, replica=None):
    """The status of `/ready` of a replica (default: the first), or None without an answer."""
    url = next(r["url"] for r in replicas(service) if replica in (None, r["name"]))
    try:
        return call("GET", f"{url}/ready", timeout=10).status
    except OSError:
        return None


def wait_ready(service, limit=30, replica=None):
    """Seconds until every replica of `service` (or the one named) answers `/ready` 200."""
    started = time.monotonic()
    for r in replicas(service):
        if replica not in (None, r["name"]):
            continue
        while ready(service, r["name"]) != 200:
            if time.monotonic() - started > limit:
                raise RuntimeError(f"{r['name']} not ready after {limit} s")
            time.sleep(0.05)
    return time.monotonic() - started


def start(service, replica=None):
    """Starts every replica of the service again (or the one named) exactly as cluster.sh did
    (its Deployment's environment, the replica's port); seconds until ready."""
    env = dict(line.rstrip("\n").split("=", 1) for line in open(f"{WORK}/{service}.env") if "=" in line)
    env["PATH"] = os.environ["PATH"]
    for r in replicas(service):
        if replica not in (None, r["name"]):
            continue
        log = open(f"{WORK}/{service}.log", "ab")
        proc = subprocess.Popen([f"{CLUSTER['bin_dir']}/{service}", "serve"], env={**env, "PORT": str(r["port"])},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        open(f"{WORK}/{r['name']}.pid", "w").write(f"{proc.pid}\n")
    return wait_ready(service, replica=replica)


def as_pg_owner(cmd):
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.getuid() == 0 else cmd


def pg_ctl(*args):
    # cwd /: the postgres user may not enter the caller's directory
    subprocess.run(as_pg_owner([f"{PG['bin']}/pg_ctl", "-D", f"{PG['dir']}/data", *args]),
                   check=True, stdout=subprocess.DEVNULL, cwd="/")


def sql(database, query):
    """Rows of `query` in a service's database (on whichever server is the primary, when
    there is a standby), as tuples of strings."""
    url = PG["url"].rsplit("/", 1)[0] + f"/{database}"
    if PG.get("standby"):
        server, _ = PG["url"].rsplit("/", 1)
        url = f"{server},127.0.0.1:{PG['standby']['port']}/{database}?target_session_attrs=read-write"
    out = subprocess.run(["psql", url, "-AtF", "\t", "-c", query], check=True,
                         capture_output=True, text=True).stdout
    return [tuple(line.split("\t")) for line in out.splitlines() if line]


def check_balances():
    """The guarantee behind every money scenario: no account's balance drifted from its ledger."""
    consistent = sql("billing", "select count(*) from accounts a where a.balance <> "
                                "(select coalesce(sum(amount), 0) from ledger l where l.user_id = a.user_id)")
    check(consistent == [("0",)], "every balance equals the sum of its ledger")


def charges_of(uids):
    """order id -> ledger charges of it, for the users `uids` (comma-separated ids)."""
    return {o: int(n) for o, n in sql(
        "billing", f"select order_id, count(*) from ledger where user_id in ({uids}) and order_id is not null "
                   "group by order_id")}


# ---- scenarios ---------------------------------------------------------------------------

def billing_killed_during_pays():
    say("\n== billing SIGKILLed and restarted during a stream of pays ==")
    users, per_user, price, funds = 3, 30, 10, 200   # 20 payable orders per user, 10 declined
    cookies = [user("kill") for _ in range(users)]
    orders = []
    for cookie in cookies:
        deposit(cookie, funds)
        orders += [(cookie, new_order(cookie, price)) for _ in range(per_user)]
    done, retried, answers = [0], [0], {}
    lock = threading.Lock()

    def pay(item):
        cookie, order = item
        attempts = 0
        while True:
            attempts += 1
            try:
                res = call("PUT", f"{NGINX}/order/{order}/pay", cookie=cookie)
                if res.status == 200:
                    break
                assert res.status in (502, 503, 504), (res.status, res.body)
            except OSError:
                pass
            time.sleep(0.1)   # billing down: 503, order unchanged, safe to retry
        with lock:
            done[0] += 1
            retried[0] += attempts > 1
            answers[order] = res.json()
        time.sleep(0.02)

    def killer():
        while done[0] < len(orders) // 5:
            time.sleep(0.005)
        pids = kill("billing", signal.SIGKILL)
        killed_at = done[0]
        for pid in pids:
            wait_gone(pid, 5)
        time.sleep(1.5)
        back = start("billing")
        say(f"billing SIGKILLed after {killed_at} of {len(orders)} pays; down 1.5 s, ready {back:.2f} s after restart")

    with ThreadPoolExecutor(7) as pool:
        k = pool.submit(killer)
        list(pool.map(pay, orders))
        k.result()

    ids = ",".join(str(o) for _, o in orders)
    status = dict(sql("order", f"select id, status from orders where id in ({ids})"))
    charges = {}
    for order_id, n in sql("billing", f"select order_id, count(*) from ledger where order_id in ({ids}) group by order_id"):
        charges[order_id] = int(n)
    paid = [o for o, s in status.items() if s == "Processing"]
    declined = [o for o, s in status.items() if s == "Failed"]
    pending = [o for o, s in status.items() if s == "Pending"]
    lost = [o for o in charges if status.get(o) != "Processing"]
    doubled = [o for o, n in charges.items() if n > 1]
    unpaid_charge = [o for o in paid if charges.get(o, 0) != 1]
    say(f"{len(orders)} orders: {len(paid)} Processing, {len(declined)} Failed, {len(pending)} Pending; "
        f"{sum(charges.values())} charges; {retried[0]} pays saw 5xx and completed on retry")
    check(not pending, "every pay completed (no order left Pending)")
    check(not unpaid_charge, "every Processing order has exactly one ledger charge")
    check(not lost, "no charge without a Processing order (no lost payment)")
    check(not doubled, "no order charged twice")
    check(len(paid) == users * (funds // price), f"exactly the {users * (funds // price)} payable orders were paid")
    check_balances()
    check(all(answers[int(o)]["status"] == status[o] for o in status), "every pay's answer matches the order's final status")
    check(retried[0] > 0, "the kill landed during the stream (some pays had to be retried)")
    with open(f"{WORK}/order.log", errors="replace") as log:
        own = sum("payment of order" in line and "failed; retrying" in line for line in log)
    say(f"order itself retried {own} billing calls that failed fast (HTTP_RETRIES, backoff with jitter)")
    check(own > 0, "order retried failed billing calls itself, with backoff")
    if PROMETHEUS:
        counted = prom_wait('sum(shop_downstream_retries_total{job="order", target="billing", operation="pay"})',
                            lambda v: v is not None and v >= own, 5)
        check(counted == own, f"Prometheus counted the same retries: shop_downstream_retries_total {counted}")


def replica_killed_under_load():
    say("\n== one replica of each service SIGKILLed in turn under load ==")
    if any(len(replicas(s)) < 2 for s in CLUSTER["services"]):
        say("skipped: the cluster runs one replica per service (CLUSTER_REPLICAS=1)")
        return
    users, funds, price = 4, 100_000, 10
    cookies = [user("replica") for _ in range(users)]
    for cookie in cookies:
        deposit(cookie, funds)
    stop = threading.Event()
    lock = threading.Lock()
    orders = {}        # idempotency key -> order id
    tally = {}         # "METHOD route" -> [answered 2xx, failed answers (5xx or no answer)]
    failures = []

    def count(what, ok, detail=None):
        with lock:
            tally.setdefault(what, [0, 0])[0 if ok else 1] += 1
            if not ok and len(failures) < 8:
                failures.append(f"{what}: {detail}")

    def until_ok(what, method, url, body=None, cookie=None, headers=None):
        """The client's own retry: a failed request is sent again (the same Idempotency-Key)."""
        while True:
            try:
                res = call(method, url, body, cookie, headers=headers)
                if res.status == 200:
                    count(what, True)
                    return res
                count(what, False, f"{res.status} {res.body[:80]!r}")
                assert res.status >= 500, (what, res.status, res.body)
            except (OSError, http.client.HTTPException) as e:
                count(what, False, f"{type(e).__name__}: {e}")
            time.sleep(0.05)

    def client(cookie):
        while not stop.is_set():
            key = uuid.uuid4().hex
            created = until_ok("POST /order", "POST", f"{NGINX}/order", {"amount": price}, cookie,
                               {"Idempotency-Key": key}).json()
            with lock:
                orders[key] = created["id"]
            until_ok("PUT /order/{id}/pay", "PUT", f"{NGINX}/order/{created['id']}/pay", cookie=cookie)
            until_ok("GET /billing/current", "GET", f"{NGINX}/billing/current", cookie=cookie)

    threads = [threading.Thread(target=client, args=(c,)) for c in cookies for _ in range(2)]
    for t in threads:
        t.start()
    timeline = []
    try:
        for service in CLUSTER["services"]:
            time.sleep(1.5)
            victim = replicas(service)[0]["name"]
            pid = kill(service, signal.SIGKILL, victim)[0]
            wait_gone(pid, 5)
            time.sleep(1.0)
            back = start(service, victim)
            timeline.append(f"{victim} SIGKILLed, down 1 s, ready {back:.2f} s after its restart")
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    for line in timeline:
        say(line)
    answered = sum(ok for ok, _ in tally.values())
    failed = sum(bad for _, bad in tally.values())
    say(f"{len(threads)} clients, {answered + failed} requests through nginx: {answered} answered 2xx, "
        f"{failed} failed and were sent again by the client")
    for what, (ok, bad) in sorted(tally.items()):
        say(f"     {what}: {ok} ok, {bad} failed")
    for f in failures:
        say(f"     e.g. {f}")

    # everything these users have: no other scenario uses them
    uids = ",".join(str(user_id(c)) for c in cookies)
    status = dict(sql("order", f"select id, status from orders where user_id in ({uids})"))
    keys = sql("order", f"select count(*), count(distinct idempotency_key) from orders where user_id in ({uids})")[0]
    charges = charges_of(uids)

    def notified():
        return {o: int(n) for o, n in sql(
            "notification", f"select order_id, count(*) from notifications where user_id in ({uids}) group by order_id")}

    deadline = time.monotonic() + 30
    while len(notified()) < len(orders) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)   # a few more relay rounds of both order replicas: nothing may arrive twice
    stored = notified()
    paid = [o for o, st in status.items() if st == "Processing"]
    say(f"{len(orders)} orders created: {len(paid)} Processing; {sum(charges.values())} charges; "
        f"{sum(stored.values())} notifications stored")
    check(keys[0] == keys[1] == str(len(orders)) and set(status) == {str(o) for o in orders.values()},
          "one order per Idempotency-Key (no create applied twice, none lost)")
    check(len(paid) == len(orders), "every order was paid (none left Pending or Failed)")
    check(all(charges.get(o) == 1 for o in paid), "every paid order has exactly one ledger charge (none lost)")
    check(all(n == 1 for n in charges.values()), "no order charged twice")
    check_balances()
    check(len(stored) == len(orders) and all(n == 1 for n in stored.values()),
          "every notification delivered exactly once (two order replicas share the outbox)")
    check(all(ready(s, r["name"]) == 200 for s in CLUSTER["services"] for r in replicas(s)),
          "every replica is back and ready")


def primary_failover():
    say("\n== PostgreSQL's primary crashes under load and its standby is promoted ==")
    if not PG.get("standby"):
        say("skipped: no standby (CLUSTER_PG_STANDBY=1)")
        return
    users, funds, price = 4, 60, 10   # 6 payable orders per user; later ones are declined
    cookies = [user("failover") for _ in range(users)]
    for cookie in cookies:
        deposit(cookie, funds)
    pids = {s: pids_of(s) for s in CLUSTER["services"]}
    stop = threading.Event()
    lock = threading.Lock()
    events = []   # (monotonic time, ok) of every write request
    answers = {}  # order id -> the pay's last answer

    def write(method, url, body=None, cookie=None, headers=None):
        """One try; None when it failed (5xx or no answer)."""
        try:
            res = call(method, url, body, cookie, timeout=30, headers=headers)
        except (OSError, http.client.HTTPException):
            res = None
        ok = res is not None and res.status == 200
        with lock:
            events.append((time.monotonic(), ok))
        assert ok or res is None or res.status >= 500, (method, url, res.status, res.body)
        return res if ok else None

    def client(cookie):
        while not stop.is_set():
            key = uuid.uuid4().hex
            created = None
            while created is None and not stop.is_set():
                created = write("POST", f"{NGINX}/order", {"amount": price}, cookie, {"Idempotency-Key": key})
                if created is None:
                    time.sleep(0.1)
            if created is None:
                return
            order = created.json()["id"]
            paid = write("PUT", f"{NGINX}/order/{order}/pay", cookie=cookie)
            with lock:
                answers[order] = paid.json() if paid else None
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(c,)) for c in cookies]
    for t in threads:
        t.start()
    time.sleep(1.5)
    crashed = time.monotonic()
    pg_ctl("-m", "immediate", "-w", "stop")   # a crash: no shutdown checkpoint, no goodbye
    gone = time.monotonic()                    # a write may still have finished while pg_ctl ran
    time.sleep(1.0)                            # the operator's (or CloudNativePG's) detection
    subprocess.run(as_pg_owner([f"{PG['bin']}/pg_ctl", "-D", PG["standby"]["data"], "-w", "promote"]),
                   check=True, stdout=subprocess.DEVNULL, cwd="/")
    promoted = time.monotonic()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join()
    failed = [t for t, ok in events if not ok and t >= crashed]
    back = min((t for t, ok in events if ok and t > gone), default=None)
    last_ok = max((t for t, ok in events if ok and t <= gone), default=crashed)
    say(f"primary crashed at t=0 (gone at t={gone - crashed:.2f} s); standby promoted at t={promoted - crashed:.2f} s; "
        f"first write answered 200 after it at t={back - crashed:.2f} s" if back else
        "no write succeeded after the crash")
    if back:
        say(f"unavailability window (last write answered before the primary was gone to the first after): "
            f"{back - last_ok:.2f} s; {len(failed)} write requests failed meanwhile (5xx or no answer), of {len(events)}")
    check(back is not None and back - promoted < 10, "writes succeed again within 10 s of the promotion, "
          "with no service restarted or reconfigured")
    check(all(pids_of(s) == p and all(map(alive, p)) for s, p in pids.items()), "no service was restarted")

    uids = ",".join(str(user_id(c)) for c in cookies)
    # an order whose pay failed during the outage stays payable: pay it now
    pending = [o for o, in sql("order", f"select id from orders where user_id in ({uids}) and status = 'Pending'")]
    owner = {str(o): c for c in cookies for o in [r["id"] for r in call("GET", f"{NGINX}/order", cookie=c).json()]}
    retried = [call("PUT", f"{NGINX}/order/{o}/pay", cookie=owner[o]) for o in pending]
    say(f"{len(pending)} orders were left Pending by failed pays; paid again now: "
        + ", ".join(sorted({f"{r.status} {r.json().get('status')}" for r in retried})) if pending else
        "no order was left Pending")
    check(all(r.status == 200 and r.json()["status"] in ("Processing", "Failed") for r in retried),
          "every order left Pending was still payable, and paying it again settles it")
    status = dict(sql("order", f"select id, status from orders where user_id in ({uids})"))
    charges = charges_of(uids)
    paid = [o for o, st in status.items() if st == "Processing"]
    say(f"{len(status)} orders: {len(paid)} Processing, {sum(st == 'Failed' for st in status.values())} Failed, "
        f"{sum(st == 'Pending' for st in status.values())} Pending; {sum(charges.values())} charges")
    check(all(st in ("Processing", "Failed") for st in status.values()), "every order ends Processing or Failed")
    check(all(charges.get(o) == 1 for o in paid), "every Processing order has exactly one charge (none lost)")
    check(all(status.get(o) == "Processing" for o in charges), "no charge without a Processing order")
    check(all(n == 1 for n in charges.values()), "no order charged twice")
    check(len(paid) == users * (funds // price), f"exactly the {users * (funds // price)} payable orders were paid")
    check_balances()


def revocation_across_replicas():
    say("\n== a logout on one auth replica reaches the other's session cache (LISTEN/NOTIFY) ==")
    auths = replicas("auth")
    if len(auths) < 2:
        say("skipped: one auth replica")
        return
    with open(f"{WORK}/auth.log", errors="replace") as log:
        listening = sum("listening for revocations" in line for line in log)
    env = dict(line.rstrip("\n").split("=", 1) for line in open(f"{WORK}/auth.env") if "=" in line)
    via = "its own DATABASE_LISTEN_URL" if "DATABASE_LISTEN_URL" in env else "DATABASE_URL"
    say(f"auth's replicas logged 'session cache on: listening for revocations' {listening} times ({via})")
    check(listening >= len(auths), "every auth replica listens for revocations (its session cache is on)")
    cookie = user("revoke")
    checks = [call("GET", f"{r['url']}/auth", cookie=cookie).status for r in auths]
    check(checks == [200] * len(auths), f"the session passes the forward-auth check on every replica: {checks}")
    out = call("POST", f"{auths[0]['url']}/logout", cookie=cookie)
    revoked = time.monotonic()
    refused = None
    while time.monotonic() - revoked < 2:
        if call("GET", f"{auths[1]['url']}/auth", cookie=cookie).status == 401:
            refused = time.monotonic() - revoked
            break
        time.sleep(0.01)
    say(f"logout on {auths[0]['name']}: {out.status}; {auths[1]['name']} refuses the session "
        + (f"{refused * 1000:.0f} ms later" if refused is not None else "not within 2 s"))
    check(out.status == 200 and refused is not None and refused < 0.5,
          "the other replica refuses the revoked session within 0.5 s")


def notification_down_during_pays():
    say("\n== notification down during pays, then back ==")
    cookie = user("notify")
    deposit(cookie, 100)
    orders = [new_order(cookie, 10) for _ in range(10)]
    for pid in kill("notification", signal.SIGKILL):
        wait_gone(pid, 5)
    answers = [call("PUT", f"{NGINX}/order/{o}/pay", cookie=cookie) for o in orders]
    check(all(a.status == 200 and a.json()["status"] == "Processing" for a in answers),
          "all 10 pays succeed while notification is down")
    pending = sum(a.json()["notification"]["status"] == "PENDING" for a in answers)
    check(pending == 10, f"their answers say the message is PENDING ({pending} of 10)")
    if PROMETHEUS:
        # what an operator sees: order's outbox backing up while notification is down
        depth = prom_wait("max(shop_outbox_pending_messages)", lambda v: v is not None and v >= 10, 10)
        check(depth is not None and depth >= 10,
              f"Prometheus: shop_outbox_pending_messages rose to {depth} while notification was down")
        age = prom_value("max(shop_outbox_oldest_pending_age_seconds)")
        check(age is not None and age > 0, f"Prometheus: the oldest pending message is {age} s old")
    time.sleep(2)
    back = time.monotonic()
    start("notification")
    ids = ",".join(map(str, orders))
    delivered, waited = 0, 0.0
    while time.monotonic() - back < 60:
        delivered = int(sql("notification", f"select count(*) from notifications where order_id in ({ids})")[0][0])
        if delivered >= 10:
            waited = time.monotonic() - back
            break
        time.sleep(0.2)
    time.sleep(3)  # a few more relay rounds: nothing may arrive twice
    per_order = sql("notification", f"select order_id, count(*), min(message) from notifications where order_id in ({ids}) group by order_id")
    say(f"notification down 2 s; {delivered} of 10 messages delivered {waited:.1f} s after it returned")
    check(len(per_order) == 10 and all(n == "1" for _, n, _ in per_order), "every message delivered exactly once")
    check(all(m == f"order #{o} Processing" for o, _, m in per_order), "each is the order's Processing message")
    listed = call("GET", f"{NGINX}/notification", cookie=cookie).json()
    check(len(listed) == 10, f"the user lists 10 messages ({len(listed)})")
    if PROMETHEUS:
        depth = prom_wait("max(shop_outbox_pending_messages)", lambda v: v == 0, 10)
        peak = prom_value("max_over_time(max(shop_outbox_pending_messages)[2m:1s])")
        check(depth == 0, f"Prometheus: shop_outbox_pending_messages back to {depth} (peak {peak})")
        relayed = prom_value('sum(shop_downstream_requests_total{job="order", operation="relay_notify", outcome="ok"})')
        check(relayed is not None and relayed >= 10,
              f"Prometheus: the relay's deliveries counted ({relayed} relay_notify ok)")


def postgres_restarted():
    say("\n== PostgreSQL stopped, then started again ==")
    cookie = user("pg")
    pids = {s: pids_of(s) for s in CLUSTER["services"]}
    pg_ctl("-m", "fast", "-w", "stop")
    stopped = time.monotonic()

    def outage_seen(service):
        while time.monotonic() - stopped < 20:
            asked = time.monotonic()
            if ready(service) == 503:
                return time.monotonic() - stopped, time.monotonic() - asked
            time.sleep(0.05)
        return None

    with ThreadPoolExecutor(4) as pool:
        seen = dict(zip(CLUSTER["services"], pool.map(outage_seen, CLUSTER["services"])))
    say("/ready answered 503 (seconds after the stop, answer time): "
        + ", ".join(f"{s} {t[0]:.2f} s, {t[1]:.2f} s" for s, t in seen.items() if t))
    check(all(seen.values()), "every service's /ready reports the outage")
    check(all(t and t[1] < 2 for t in seen.values()), "quickly: each 503 within the probes' 2 s timeout")
    during = call("GET", f"{NGINX}/billing/current", cookie=cookie, timeout=30)
    say(f"a protected request during the outage: {during.status} in {during.seconds:.2f} s")
    check(500 <= during.status < 600 and during.seconds < 7, "requests fail with a 5xx within the pool timeout (5 s)")
    time.sleep(1)
    pg_ctl("-l", f"{PG['dir']}/server.log", "-w", "-t", "30", "-o", PG["options"], "start")
    started = time.monotonic()
    back = {s: wait_ready(s, 30) for s in CLUSTER["services"]}
    say(f"PostgreSQL down {started - stopped:.1f} s; ready again after: "
        + ", ".join(f"{s} {t:.2f} s" for s, t in back.items()))
    check(all(pids_of(s) == p and all(map(alive, p)) for s, p in pids.items()), "no service was restarted")
    deposit(cookie, 50)
    paid = call("PUT", f"{NGINX}/order/{new_order(cookie, 20)}/pay", cookie=cookie).json()
    check(paid["status"] == "Processing" and paid["billing"]["balance"] == 30,
          "the same session deposits, orders and pays afterwards")


def auth_down():
    say("\n== auth down ==")
    cookie = user("authdown")
    for pid in kill("auth", signal.SIGKILL):
        wait_gone(pid, 5)
    answers = [call("GET", f"{NGINX}/order", cookie=cookie, timeout=30) for _ in range(20)]
    statuses = sorted({a.status for a in answers})
    slowest = max(a.seconds for a in answers)
    say(f"20 protected requests with auth down: statuses {statuses}, slowest {slowest * 1000:.0f} ms")
    check(all(a.status >= 500 for a in answers), "protected requests fail with a 5xx, none gets through")
    check(slowest < 1, "and fail fast (under 1 s), nothing hangs")
    login = call("POST", f"{NGINX}/login", {"login": "x", "password": "y"}, timeout=30)
    say(f"POST /login with auth down: {login.status} in {login.seconds * 1000:.0f} ms")
    check(login.status >= 500 and login.seconds < 1, "public auth routes fail fast too")
    start("auth")
    again = call("GET", f"{NGINX}/order", cookie=cookie)
    check(again.status == 200, "after auth restarts, the same session works (sessions are in the database)")


def sigterm_under_load():
    say("\n== SIGTERM under load (auth: POST /login, bcrypt cost 12) ==")
    grace = 20  # SHUTDOWN_TIMEOUT in k8s/auth.yaml
    login = f"load_{uuid.uuid4().hex[:10]}"
    assert call("POST", f"{NGINX}/register",
                {"login": login, "password": "load-password", "email": f"{login}@example.com"}).status == 200
    url = f"{CLUSTER['services']['auth']['url']}/login"
    outcome = {"ok before SIGTERM": 0, "ok after SIGTERM": 0, "failed": 0, "refused after SIGTERM": 0}
    failures = []
    sigterm_at = [None]
    in_flight = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        while not stop.is_set():
            sent = time.monotonic()
            try:
                res = call("POST", url, {"login": login, "password": "load-password"}, timeout=30)
                if res.status != 200:
                    kind = "failed"
                    failures.append(f"{res.status} {res.body[:100]!r}")
                else:
                    kind = "ok after SIGTERM" if sigterm_at[0] else "ok before SIGTERM"
                    if sigterm_at[0] and sent < sigterm_at[0]:
                        in_flight[0] += 1
            except ConnectionRefusedError:
                kind = "refused after SIGTERM" if sigterm_at[0] else "failed"
            except (OSError, http.client.HTTPException) as e:
                # no answer: fine only for a connection the stopped listener never accepted
                if sigterm_at[0] and sent >= sigterm_at[0]:
                    kind = "refused after SIGTERM"
                else:
                    kind = "failed"
                    failures.append(f"{type(e).__name__}: {e} (sent {sent - (sigterm_at[0] or sent):+.3f} s from SIGTERM)")
            with lock:
                outcome[kind] += 1
            if kind == "refused after SIGTERM":
                time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    time.sleep(2)
    pid = pid_of(replicas("auth")[0]["name"])
    sigterm_at[0] = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    exited = wait_gone(pid, grace + 5)
    stop.set()
    for t in threads:
        t.join()
    say("12 clients logging in for 2 s, then SIGTERM: " + ", ".join(f"{k} {v}" for k, v in outcome.items()))
    say(f"{in_flight[0]} requests were in flight at SIGTERM and were answered 200")
    say(f"auth exited {exited:.2f} s after SIGTERM (grace {grace} s)" if exited is not None
        else f"auth had not exited {grace + 5} s after SIGTERM")
    for f in failures[:5]:
        say(f"     {f}")
    check(outcome["failed"] == 0, "zero accepted requests failed")
    check(in_flight[0] > 0, "requests were in flight when SIGTERM came")
    check(exited is not None and exited <= grace, "the process exited within the grace period")
    start("auth", replicas("auth")[0]["name"])


def login_reveals_no_login():
    say("\n== login: an unknown login and a wrong password look the same, then 429 ==")
    known = [user("timing") for _ in range(3)]
    logins = [call("GET", f"{NGINX}/users/me", cookie=c).json()["login"] for c in known]
    unknown, wrong = [], []
    for i in range(12):   # interleaved; 4 failures per known login stays under the limit (5)
        unknown.append(call("POST", f"{NGINX}/login",
                            {"login": f"nobody_{uuid.uuid4().hex[:10]}", "password": "fault-password"}))
        wrong.append(call("POST", f"{NGINX}/login",
                          {"login": logins[i % 3], "password": "not-the-password"}))

    def shape(a):
        return a.status, a.headers.get("Content-Type"), {k: v for k, v in a.json().items() if k != "instance"}

    def ms(answers, q):
        times = sorted(a.seconds * 1000 for a in answers)
        return times[int(q * (len(times) - 1))]

    mu, mw = ms(unknown, 0.5), ms(wrong, 0.5)
    say(f"12 unknown logins: median {mu:.0f} ms, p90 {ms(unknown, 0.9):.0f} ms; "
        f"12 wrong passwords: median {mw:.0f} ms, p90 {ms(wrong, 0.9):.0f} ms; ratio {mu / mw:.2f}")
    check(all(a.status == 401 for a in unknown + wrong), "every failed login is a 401")
    check(len({json.dumps(shape(a)) for a in unknown + wrong}) == 1,
          "unknown login and wrong password get the same status, type and body")
    check(0.8 <= mu / mw <= 1.25, "and similar timing: medians within 20 % (bcrypt against a decoy hash)")

    limited = {}
    for name, login in (("known", logins[0]), ("unknown", f"nobody_{uuid.uuid4().hex[:10]}")):
        answers = [call("POST", f"{NGINX}/login", {"login": login, "password": "not-the-password"})
                   for _ in range(6 if name == "unknown" else 2)]
        limited[name] = answers[-1]
    say(f"after 5 failures: known login {limited['known'].status} "
        f"(Retry-After {limited['known'].headers.get('Retry-After')} s), "
        f"unknown login {limited['unknown'].status} (Retry-After {limited['unknown'].headers.get('Retry-After')} s)")
    check(all(a.status == 429 and a.headers.get("Content-Type") == "application/problem+json"
              and int(a.headers.get("Retry-After", "0")) > 0 for a in limited.values()),
          "repeated failures for one login are a 429 problem+json with Retry-After, known or not")
    right = call("POST", f"{NGINX}/login", {"login": logins[0], "password": "fault-password"})
    check(right.status == 429, "while limited, even the right password is refused (no oracle)")


def no_secret_in_logs():
    say("\n== the logs of all of the above hold no password, session id or token ==")
    secrets = {"fault-password": "a password", "not-the-password": "a password"}
    secrets.update({sid: "a session id" for sid in SESSIONS})
    for service in CLUSTER["services"]:
        for line in open(f"{WORK}/{service}.env"):
            name, _, value = line.rstrip("\n").partition("=")
            if name in ("INTERNAL_TOKEN", "SESSION_KEY") or "PASSWORD" in name:
                secrets[value] = name
            elif name == "DATABASE_URL" and "@" in value:   # its password
                secrets[value.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]] = "a database password"
    logs = [f"{WORK}/{name}" for name in os.listdir(WORK) if name.endswith(".log")]
    logs += [f"{WORK}/nginx/logs/{name}" for name in os.listdir(f"{WORK}/nginx/logs")]
    lines, found = 0, set()
    for path in logs:
        with open(path, errors="replace") as f:
            for line in f:
                lines += 1
                found.update(what for secret, what in secrets.items() if secret and secret in line)
    say(f"{lines} log lines in {len(logs)} files searched for {len(secrets)} secrets "
        f"({len(SESSIONS)} session ids, passwords, the service token, the session key)")
    check(not found, f"none found{'' if not found else ': ' + ', '.join(sorted(found))}")


def main():
    if "--only" in sys.argv:   # faults.py CLUSTER REPORT --only NAME: one scenario
        chosen = sys.argv[sys.argv.index("--only") + 1]
        scenarios = [globals()[chosen]]
    else:
        scenarios = [billing_killed_during_pays, replica_killed_under_load, revocation_across_replicas,
                     notification_down_during_pays,
                     postgres_restarted, auth_down, sigterm_under_load, login_reveals_no_login,
                     no_secret_in_logs]
    for scenario in scenarios:
        SCENARIO.update(name=scenario.__name__, since=time.monotonic())
        try:
            scenario()
        except Exception as e:  # a scenario that cannot finish is a failure, not a crash
            check(False, f"{scenario.__name__} could not finish: {type(e).__name__}: {e}",
                  traceback.format_exc())
    say(f"\nfault checks: {len(PASSED)} passed, {len(FAILURES)} failed")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
