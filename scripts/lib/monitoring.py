"""The monitoring checks that need a program: the dashboard's shape, and what a real
Prometheus says about the shop after the newman suite.

usage:
  python monitoring.py dashboard-check RENDERED.yaml
      (the venv of check-deploy) the ConfigMap labelled grafana_dashboard holds
      k8s/monitoring/grafana-dashboard.json as it is, and every panel has a query
  python3 monitoring.py after-suite PROM_URL CLUSTER.json REPORT.xml
      (standard library) asks Prometheus, which scraped the e2e topology while newman ran:
      every target up; a request rate for every route template the suite calls; the payment
      counters equal to what the databases hold; no pending outbox message; every query of
      the dashboard evaluates, and returns data where the suite exercised it
Exit status 1 if a check failed. Each check is a test case of REPORT (scripts/lib/report.py).
"""
import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

DASHBOARD = "k8s/monitoring/grafana-dashboard.json"
COLLECTION = "order.postman_collection.json"
OPENAPI = "openapi.json"
JOBS = ["auth", "billing", "order", "notification"]
# Grafana's variable, as a plain Prometheus must be given it
RATE_INTERVAL = "1m"
# Dashboard queries the suite does not exercise, with why they may return nothing.
MAY_BE_EMPTY = {
    "retries": "shop_downstream_retries_total: no call is retried unless a service fails",
}


def dashboard_panels(dashboard):
    return [p for p in dashboard["panels"] if p.get("type") != "row"]


def dashboard_check(rendered):
    import yaml  # the venv's
    with open(DASHBOARD) as f:
        text = f.read()
    dashboard = json.loads(text)
    maps = [d for d in yaml.safe_load_all(open(rendered)) if d and d.get("kind") == "ConfigMap"
            and (d["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"]
    if len(maps) != 1:
        print(f"expected one ConfigMap labelled grafana_dashboard: \"1\", found {len(maps)}")
        return 1
    data = maps[0]["data"]
    if list(data.values()) != [text]:
        print(f"ConfigMap {maps[0]['metadata']['name']} does not hold {DASHBOARD} as it is")
        return 1
    problems, ids = [], set()
    for panel in dashboard_panels(dashboard):
        if panel["id"] in ids:
            problems.append(f"panel id {panel['id']} used twice")
        ids.add(panel["id"])
        exprs = [t.get("expr", "") for t in panel.get("targets", [])]
        if not exprs or not all(exprs):
            problems.append(f"panel {panel['title']!r} has a target without a query")
        if not panel.get("description"):
            problems.append(f"panel {panel['title']!r} has no description")
    for p in problems:
        print(p)
    if not problems:
        print(f"{maps[0]['metadata']['name']}: {dashboard['title']!r}, {len(ids)} panels, "
              f"{sum(len(p['targets']) for p in dashboard_panels(dashboard))} queries")
    return 1 if problems else 0


# ---- after the suite ----------------------------------------------------------------------

class Prometheus:
    def __init__(self, url):
        self.url = url

    def query(self, expr):
        """The instant vector of `expr` now: [(labels, value)]; raises on a query error."""
        q = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10) as res:
            body = json.load(res)
        if body.get("status") != "success":
            raise RuntimeError(f"{expr}: {body.get('error')}")
        result = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [({}, float(result[1]))]
        return [(r["metric"], float(r["value"][1])) for r in result]

    def value(self, expr):
        rows = self.query(expr)
        return rows[0][1] if rows else None

    def wait_for(self, expr, want, limit=20.0):
        """Polls until `expr` is `want` (one scrape interval may lag); the last value."""
        deadline, got = time.monotonic() + limit, None
        while time.monotonic() < deadline:
            got = self.value(expr)
            if got == want:
                return got
            time.sleep(0.5)
        return got


def suite_routes():
    """(method, route template) of every request in the newman suite, and the forward-auth
    check nginx makes for the protected ones."""
    templates = []
    for path in json.load(open(OPENAPI))["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"
        templates.append((re.compile(pattern), path))
    routes = {("GET", "/auth")}

    def walk(items):
        for item in items:
            if "item" in item:
                walk(item["item"])
                continue
            req = item["request"]
            raw = req["url"]["raw"] if isinstance(req["url"], dict) else req["url"]
            path = re.sub(r"\{\{[^}]+\}\}", "1", raw.replace("{{baseUrl}}", "")).split("?")[0]
            matched = [t for rx, t in templates if rx.match(path)]
            if not matched:
                raise RuntimeError(f"{req['method']} {raw}: no route of {OPENAPI} matches")
            routes.add((req["method"], matched[0]))

    walk(json.load(open(COLLECTION))["item"])
    return sorted(routes, key=lambda r: (r[1], r[0]))


def sql(cluster, database, query):
    url = cluster["postgres"]["url"].rsplit("/", 1)[0] + f"/{database}"
    out = subprocess.run(["psql", url, "-At", "-c", query], check=True, capture_output=True,
                         text=True).stdout
    return int(out.strip())


def after_suite(prom_url, cluster_path, report_path):
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from report import Report
    report = Report(report_path, "prometheus")
    prom = Prometheus(prom_url)
    cluster = json.load(open(cluster_path))
    failures = []

    def check(ok, what, detail=""):
        print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if detail else ""), flush=True)
        report.case(what, 0.0, None if ok else (detail or what), classname="prometheus")
        if not ok:
            failures.append(what)

    # two scrape intervals after the suite's last request, so every counter has been read
    time.sleep(2.5)

    # every replica of every service: up == 1 for each of its targets
    up = {m["job"]: v for m, v in prom.query("min by (job) (up)")}
    targets = {m["job"]: v for m, v in prom.query("count by (job) (up)")}
    for job in JOBS:
        want = len(cluster["services"][job].get("replicas", [None]))
        check(up.get(job) == 1.0 and targets.get(job) == want,
              f"up{{job=\"{job}\"}} == 1 for its {want} replica(s)", f"min {up.get(job)}, targets {targets.get(job)}")

    rates = {(m.get("method"), m.get("route")): v for m, v in prom.query(
        "sum by (method, route) (rate(shop_http_requests_total[5m]))")}
    for method, route in suite_routes():
        rate = rates.get((method, route), 0.0)
        check(rate > 0, f"rate(shop_http_requests_total{{method=\"{method}\", route=\"{route}\"}}[5m]) > 0",
              f"{rate:.3f}/s")

    charged_db = sql(cluster, "billing", "select count(*) from payments")
    failed_db = sql(cluster, "order", "select count(*) from orders where status = 'Failed'")
    paid_db = sql(cluster, "order", "select count(*) from orders where status = 'Processing'")
    billing = {m["outcome"]: v for m, v in prom.query("sum by (outcome) (shop_payments_total)")}
    order = {m["outcome"]: v for m, v in prom.query("sum by (outcome) (shop_order_pays_total)")}
    moved = prom.value('sum(shop_order_transitions_total{to="Processing"})')
    for ok, what, detail in [
        (billing.get("charged") == charged_db > 0, 'shop_payments_total{outcome="charged"} == rows of billing\'s payments',
         f"Prometheus {billing.get('charged')}, database {charged_db}"),
        (billing.get("declined") == failed_db > 0, 'shop_payments_total{outcome="declined"} == order\'s Failed orders (the suite declines each once)',
         f"Prometheus {billing.get('declined')}, database {failed_db}"),
        (moved == paid_db > 0, 'shop_order_transitions_total{to="Processing"} == order\'s Processing orders',
         f"Prometheus {moved}, database {paid_db}"),
        (order.get("charged") == billing.get("charged", 0) + billing.get("replayed", 0),
         'order\'s pays{outcome="charged"} == billing\'s charged + replayed',
         f"{order.get('charged')} == {billing.get('charged')} + {billing.get('replayed')}"),
        (order.get("declined") == billing.get("declined"), 'order\'s pays{outcome="declined"} == billing\'s declined',
         f"{order.get('declined')} == {billing.get('declined')}"),
    ]:
        check(ok, what, detail)

    with urllib.request.urlopen(f"{prom_url}/api/v1/rules", timeout=10) as res:
        groups = json.load(res)["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    unhealthy = [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") != "ok"]
    check(len(rules) > 0 and not unhealthy,
          f"the {len(rules)} alert rules of k8s/monitoring evaluate on the shop's series", "; ".join(unhealthy))
    firing = [m.get("alertname") for m, _ in prom.query('ALERTS{alertstate="firing"}')]
    check(not firing, "no alert fires after the suite", ", ".join(firing))

    pending = prom.wait_for("max(shop_outbox_pending_messages)", 0.0)
    check(pending == 0.0, "max(shop_outbox_pending_messages) == 0 at the end", f"got {pending}")

    dashboard = json.load(open(DASHBOARD))
    for panel in dashboard_panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
            what = f"dashboard \"{panel['title']}\" {target['refId']}"
            try:
                rows = prom.query(expr)
            except Exception as e:  # a query Prometheus refuses
                check(False, f"{what} evaluates", str(e))
                continue
            allowed = [why for key, why in MAY_BE_EMPTY.items() if key in expr]
            if rows:
                check(True, f"{what} evaluates and returns data", f"{len(rows)} series")
            elif allowed:
                check(True, f"{what} evaluates (no data expected: {allowed[0]})")
            else:
                check(False, f"{what} returns data", f"no series for {expr}")

    print(f"prometheus checks: {len(failures)} failed")
    return 1 if failures else 0


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "dashboard-check" and len(sys.argv) == 3:
        return dashboard_check(sys.argv[2])
    if command == "after-suite" and len(sys.argv) == 5:
        return after_suite(*sys.argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
