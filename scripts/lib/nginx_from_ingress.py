"""Generates an nginx.conf equivalent to what ingress-nginx renders for the Ingresses in the
rendered manifests: one location per Ingress path, `auth_request` for Ingresses with
`auth-url`, the auth-response-headers copied onto the upstream request (replacing the
client's), `auth-keepalive` as a keepalive upstream of its own, and 404 for everything no
Ingress routes. Service hosts are mapped to local ports.

docs/reference/ingress-nginx-forward-auth.conf is the controller's own rendering of such an
Ingress; what this reproduces from it is that the auth sub-request is a bodiless GET carrying
every client header, that only a 2xx lets the request through, and that each
auth-response-header replaces (or removes) the client's header of the same name.

Idle connections to the services are kept as ingress-nginx keeps them by default, and the
services' KEEP_ALIVE (75s) is longer, so nginx, not the service, closes an idle connection:
  - upstream to each service (controller ConfigMap): upstream-keepalive-connections 320,
    upstream-keepalive-timeout 60 (s), upstream-keepalive-requests 10000;
  - auth sub-request upstream (Ingress annotations): auth-keepalive N connections,
    auth-keepalive-timeout 60 (s), auth-keepalive-requests 1000 unless annotated.

A service with several replicas (`auth=PORT,PORT`) is an upstream of all of them, and a
request that finds its replica gone is passed to the next one as ingress-nginx does by
default (ConfigMap proxy-next-upstream "error timeout", proxy-next-upstream-tries 3,
retry-non-idempotent false: nginx never repeats a POST or PATCH, it does repeat GET, PUT and
DELETE). The controller balances with Lua over the Service's endpoints; plain round-robin
upstreams stand in for it, without nginx's passive failure marking (max_fails=0), which the
controller does not have either.

Two renderings of the auth sub-request, as the controller's ConfigMap decides
(`--controller-use-http2`):
  - false (the default here; the ConfigMap setting `use-http2: "false"`): the template's
    shouldApplyAuthUpstream is true, so `auth-keepalive` takes effect — the sub-request goes
    through an upstream of its own with `keepalive N` and `Connection ""`, and connections to
    auth are reused (auth answers the sub-request with an empty body, which is what lets
    nginx keep them). This is what the repository documents as the minikube step.
  - true (what a DEFAULT ingress-nginx controller renders: its ConfigMap has `use-http2:
    "true"` unless told otherwise): shouldApplyAuthUpstream is false and the `auth-keepalive`
    annotations are ignored — the sub-request is proxied straight to the auth-url, nginx
    sends `Connection: close`, and every check opens a new TCP connection to auth.
On plain HTTP (k8s/ has no TLS) use-http2 changes nothing else that this renders.

`--bench` adds what scripts/bench needs and nothing a test of the ingress would see on a
routed path: `location = /__bench/static` answering a static 200 (the machine's ceiling
through the same server block), and an access log with `$request_time` per request
(buffered) from which the bench takes per-route latencies. Without it, every path no
Ingress routes stays 404 (scripts/e2e-nginx checks that).

usage: python3 nginx_from_ingress.py [--controller-use-http2 true|false] [--bench]
           RENDERED_MANIFESTS LISTEN_PORT auth=PORT[,PORT…] billing=PORT[,PORT…] ...
"""
import argparse
import base64
import re
import sys

import yaml

PREFIX = "nginx.ingress.kubernetes.io/"

# ingress-nginx's defaults (internal/ingress/controller/config/config.go and
# internal/ingress/annotations/authreq/main.go)
UPSTREAM_KEEPALIVE = "keepalive 320; keepalive_timeout 60s; keepalive_requests 10000;"
AUTH_KEEPALIVE_TIMEOUT = "60"
AUTH_KEEPALIVE_REQUESTS = "1000"
# proxy-next-upstream, proxy-next-upstream-tries, proxy-next-upstream-timeout (0: none)
NEXT_UPSTREAM = ("proxy_next_upstream error timeout; proxy_next_upstream_tries 3; "
                 "proxy_next_upstream_timeout 0;")


def servers(ports):
    """The upstream `server` lines of a service's replicas (PORT or PORT,PORT,…). max_fails=0:
    a replica is never set aside for a while after an error, as the controller's Lua balancer
    never does (it follows the Service's endpoints); a request that finds one dead moves on
    to the next (NEXT_UPSTREAM), and a restarted replica gets traffic at once."""
    return " ".join(f"server 127.0.0.1:{p} max_fails=0;" for p in ports.split(","))


def main(rendered, listen_port, port_args, use_http2=False, bench=False):
    ports = dict(a.split("=", 1) for a in port_args)
    ingresses = [d for d in yaml.safe_load_all(open(rendered)) if d and d.get("kind") == "Ingress"]
    upstreams, locations, hosts = [], [], set()
    for svc, port in sorted(ports.items()):
        upstreams.append(f"    upstream svc_{svc} {{ {servers(port)} {UPSTREAM_KEEPALIVE} }}")
    for ing in ingresses:
        notes = ing["metadata"].get("annotations", {})
        auth_url = notes.get(PREFIX + "auth-url")
        response_headers = [h.strip() for h in notes.get(PREFIX + "auth-response-headers", "").split(",") if h.strip()]
        # a controller with use-http2 (its default) ignores auth-keepalive: shouldApplyAuthUpstream
        keepalive = None if use_http2 else notes.get(PREFIX + "auth-keepalive")
        if auth_url and keepalive:
            # the sub-request's own keepalive upstream, as the controller renders it
            m = re.match(r"http://([a-z0-9-]+)", auth_url)
            timeout = notes.get(PREFIX + "auth-keepalive-timeout", AUTH_KEEPALIVE_TIMEOUT)
            requests = notes.get(PREFIX + "auth-keepalive-requests", AUTH_KEEPALIVE_REQUESTS)
            upstreams.append(f"    upstream auth_{ing['metadata']['name'].replace('-', '_')} {{ "
                             f"{servers(ports[m.group(1)])} keepalive {keepalive}; "
                             f"keepalive_timeout {timeout}s; keepalive_requests {requests}; }}")
        for rule in ing["spec"]["rules"]:
            hosts.add(rule.get("host", "_"))
            for p in rule["http"]["paths"]:
                path, kind = p["path"], p["pathType"]
                backend = p["backend"]["service"]["name"]
                body = []
                if auth_url:
                    m = re.match(r"http://([a-z0-9-]+)[.a-z0-9-]*(?::\d+)?(/.*)", auth_url)
                    auth_svc, auth_path = m.group(1), m.group(2)
                    name = "/_external-auth-" + base64.urlsafe_b64encode(path.encode()).decode().rstrip("=") + "-" + kind
                    auth_upstream = "auth_" + ing["metadata"]["name"].replace("-", "_")
                    if not keepalive and "," in ports[auth_svc]:
                        # no keepalive upstream: the auth Service's replicas, one connection each check
                        auth_upstream += "_direct"
                        if not any(f"upstream {auth_upstream} " in u for u in upstreams):
                            upstreams.append(f"    upstream {auth_upstream} {{ {servers(ports[auth_svc])} }}")
                    target = (f"http://{auth_upstream}{auth_path}" if keepalive or "," in ports[auth_svc]
                              else f"http://127.0.0.1:{ports[auth_svc]}{auth_path}")
                    locations.append(f"""
        location = {name} {{
            internal;
            proxy_pass_request_body     off;
            proxy_set_header            Content-Length          "";
            proxy_set_header            X-Forwarded-Proto       "";
            proxy_set_header            X-Request-ID            $req_id;
            proxy_set_header            Host                    {auth_svc};
            proxy_set_header            X-Original-URL          $scheme://$http_host$request_uri;
            proxy_set_header            X-Original-Method       $request_method;
            proxy_set_header            X-Sent-From             "nginx-ingress-controller";
            proxy_set_header            X-Real-IP               $remote_addr;
            proxy_set_header            X-Forwarded-For         $remote_addr;
            proxy_set_header            X-Auth-Request-Redirect $request_uri;
            proxy_pass_request_headers  on;
            proxy_http_version          1.1;
            {NEXT_UPSTREAM}
            {'proxy_set_header            Connection              "";' if keepalive else ''}
            proxy_pass                  {target};
        }}""")
                    body.append(f"            auth_request {name};")
                    body.append("            auth_request_set $auth_cookie $upstream_http_set_cookie;")
                    body.append("            add_header Set-Cookie $auth_cookie;")
                    for i, header in enumerate(response_headers):
                        var = "$upstream_http_" + header.lower().replace("-", "_")
                        body.append(f"            auth_request_set $authHeader{i} {var};")
                        body.append(f"            proxy_set_header '{header}' $authHeader{i};")
                body += [
                    "            proxy_set_header Host $http_host;",
                    "            proxy_set_header X-Request-ID $req_id;",
                    "            proxy_set_header X-Real-IP $remote_addr;",
                    "            proxy_set_header X-Forwarded-For $remote_addr;",
                    "            proxy_set_header X-Forwarded-Proto $scheme;",
                    "            proxy_set_header Connection \"\";",
                    "            proxy_http_version 1.1;",
                    f"            {NEXT_UPSTREAM}",
                    f"            proxy_pass http://svc_{backend};",
                ]
                # Exact → one exact location; Prefix → the path itself and everything below it
                matchers = [f"= {path}"] if kind == "Exact" else [f"= {path}", f"{path.rstrip('/')}/"]
                for matcher in matchers:
                    locations.append(f"        # Ingress {ing['metadata']['name']}: {path} ({kind}) → {backend}\n"
                                     f"        location {matcher} {{\n" + "\n".join(body) + "\n        }")
    if bench:
        access_log = ("log_format bench '$msec $request_method $uri $status $request_time $upstream_response_time';\n"
                      "    access_log logs/access.log bench buffer=256k flush=1s;")
        bench_location = ('        # scripts/bench only (--bench): the ceiling of this machine through this server\n'
                          '        location = /__bench/static { default_type text/plain; return 200 "ok\\n"; }\n')
    else:
        access_log, bench_location = "access_log logs/access.log;", ""
    mode = "use-http2 true: auth-keepalive ignored" if use_http2 else "use-http2 false: auth-keepalive applied"
    print(f"""# generated by scripts/lib/nginx_from_ingress.py from the Ingresses in k8s/ — do not edit
# controller ConfigMap {mode}{"; bench mode" if bench else ""}
worker_processes 1;
pid logs/nginx.pid;
daemon off;
error_log logs/error.log notice;
events {{ worker_connections 512; }}
http {{
    {access_log}
    client_body_temp_path tmp/client_body;
    proxy_temp_path       tmp/proxy;
    fastcgi_temp_path     tmp/fastcgi;
    uwsgi_temp_path       tmp/uwsgi;
    scgi_temp_path        tmp/scgi;
    client_max_body_size  1m;
    map $http_x_request_id $req_id {{ default $http_x_request_id; "" $request_id; }}
{chr(10).join(upstreams)}
    server {{
        # the Ingress hosts ({", ".join(sorted(hosts))}); default_server so tests need no hosts entry
        listen 127.0.0.1:{listen_port} default_server;
        server_name {" ".join(sorted(hosts))};
{chr(10).join(locations)}
{bench_location}        # no Ingress routes anything else: /internal/*, /metrics, /health, /ready …
        location / {{ return 404; }}
    }}
}}""")


def parse(argv):
    parser = argparse.ArgumentParser(description="nginx.conf from the Ingresses, as ingress-nginx renders them")
    parser.add_argument("--controller-use-http2", choices=["true", "false"], default="false",
                        help="the controller ConfigMap's use-http2: true ignores auth-keepalive (default: false)")
    parser.add_argument("--bench", action="store_true",
                        help="add /__bench/static and a buffered access log with $request_time")
    parser.add_argument("rendered")
    parser.add_argument("listen_port")
    parser.add_argument("ports", nargs="*", metavar="service=PORT")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse(sys.argv[1:])
    main(args.rendered, args.listen_port, args.ports, args.controller_use_http2 == "true", args.bench)
