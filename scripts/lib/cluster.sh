# The production topology on this machine, everything configured from k8s/: sourced by
# scripts/e2e-nginx and scripts/faults.
#
#   cluster_up BIN_DIR WORK   # PostgreSQL initialised by k8s/postgres-init.sh; the four
#                             # services as separate processes with the environment their
#                             # Deployments give them, migrated first by `migrate` (the init
#                             # container), CLUSTER_REPLICAS of each; nginx configured from
#                             # the rendered Ingresses, each service an upstream of its
#                             # replicas
#   cluster_down              # stops all of it
#   nginx_up NAME [OPTIONS]   # after cluster_up: one more nginx in front of the same services,
#                             # in WORK/NAME, on a free port (NGINX_UP_BASE, NGINX_UP_PID);
#                             # OPTIONS go to nginx_from_ingress.py (--controller-use-http2,
#                             # --bench); cluster_down stops it too
#
# CLUSTER_NGINX_OPTIONS (an array, empty unless the caller sets it before cluster_up): renderer
# options for cluster_up's own nginx (scripts/bench sets --bench).
# CLUSTER_REPLICAS=N (before cluster_up; default 1): N processes of every service, each on its
# own port, as a Deployment's replicas behind their Service. nginx spreads requests over them
# and, as ingress-nginx does by default (proxy-next-upstream "error timeout", 3 tries), sends
# a request that found its replica dead to another, unless it is a POST or PATCH (nginx does
# not repeat a non-idempotent request). Prometheus scrapes every replica. With more than
# one replica the services also call each other through their Services: one more nginx
# (WORK/services/, "the Services") listens on a port per service and spreads the calls over
# its replicas, as kube-proxy does for a ClusterIP, moving on from a dead replica as above.
# CLUSTER_HA=1 (before cluster_up): the services as k8s-ha/ (k8s/ with the component k8s/ha)
# configures them: their environment and the Ingresses rendered from it, DATABASE_URL through
# PgBouncer (scripts/lib/pgbouncer.sh, configured from its CloudNativePG Pooler: transaction
# pooling) and auth's DATABASE_LISTEN_URL straight to PostgreSQL (what shop-pg-rw names
# there). PostgreSQL itself is still one server, initialised as k8s/ does (the same roles and
# passwords the Cluster's managed roles have).
# CLUSTER_PG_STANDBY=1 (before cluster_up): PostgreSQL as a primary and a synchronous
# streaming standby (postgres.sh start_standby), and every DATABASE_URL a libpq multi-host
# URL naming both with target_session_attrs=read-write: after a failover (the standby
# promoted) the services' new connections find the new primary by themselves.
# CLUSTER_PROMETHEUS=1 (before cluster_up): also a real Prometheus (scripts/lib/prometheus.sh)
# scraping the four services every second, with the alert rules of k8s/monitoring loaded, in
# WORK/prometheus; its URL is PROM_URL and cluster.json's "prometheus".
# After cluster_up: NGINX_BASE, SVC_PORT[<service>] (its first replica's port),
# SVC_PORTS[<service>] (every replica's, comma-separated), and in WORK: <service>.env (the
# environment but PORT, one NAME=value per line), <service>-<i>.pid (replica i, from 1),
# <service>.log (all its replicas' lines, as `kubectl logs -l app=<service>` gathers them),
# cluster.json (what scripts/lib/faults.py needs to stop and restart the parts), nginx/ (its
# prefix: nginx.conf, logs/nginx.pid, logs/access.log). WORK is the caller's (mktemp -d).
# Needs: nginx, PostgreSQL server binaries, kubectl, the venv of check-deploy (PyYAML).

. "$(dirname "${BASH_SOURCE[0]}")/postgres.sh"
. "$(dirname "${BASH_SOURCE[0]}")/prometheus.sh"
. "$(dirname "${BASH_SOURCE[0]}")/pgbouncer.sh"

CLUSTER_SERVICES=(auth billing order notification)
CLUSTER_PY=target/tools/venv/bin/python
CLUSTER_WORK=""
CLUSTER_BIN=""
CLUSTER_MANIFESTS=""    # what the services and nginx are configured from: WORK/rendered.yaml (k8s/) or rendered-ha.yaml
NGINX_PID=""
NGINX_BASE=""
NGINX_UP_PID=""
NGINX_UP_BASE=""
CLUSTER_NGINX_PIDS=()   # the nginx processes started by nginx_up, stopped by cluster_down
CLUSTER_PORT_ARGS=()    # service=PORT[,PORT…] for the renderers (set by cluster_up)
declare -a CLUSTER_NGINX_OPTIONS
declare -A SVC_PORT SVC_PORTS SVC_VIP
SERVICES_PROXY_PID=""

# serve_service NAME [I]: starts (or restarts) replica I (default 1) of a service in the
# background, on its port, logging to WORK/NAME.log.
serve_service() {
  local s=$1 i=${2:-1} svc_env port
  mapfile -t svc_env < "$CLUSTER_WORK/$s.env"
  port=$(cut -d, -f"$i" <<< "${SVC_PORTS[$s]}")
  env "${svc_env[@]}" PORT="$port" "$CLUSTER_BIN/$s" serve >>"$CLUSTER_WORK/$s.log" 2>&1 &
  echo $! > "$CLUSTER_WORK/$s-$i.pid"
  # stopped by pid (stop_pid), perhaps killed on purpose by faults.py: no job-control noise
  disown $!
}

# cluster_pids NAME: the pids of a service's replicas, one per line.
cluster_pids() {
  local f
  for f in "$CLUSTER_WORK/$1"-*.pid; do [ -f "$f" ] && echo "$(<"$f")"; done
}

cluster_up() {
  local s i r pg_env svc_env port_args port replicas=${CLUSTER_REPLICAS:-1}
  CLUSTER_BIN=$1 CLUSTER_WORK=$2
  [[ "$replicas" =~ ^[1-9][0-9]?$ ]] || { echo "CLUSTER_REPLICAS must be 1-99, not $replicas" >&2; return 1; }
  kubectl kustomize k8s > "$CLUSTER_WORK/rendered.yaml"
  CLUSTER_MANIFESTS=$CLUSTER_WORK/rendered.yaml

  echo "== PostgreSQL, initialised like the StatefulSet =="
  start_postgres
  mapfile -t pg_env < <("$CLUSTER_PY" scripts/lib/env_from_manifests.py "$CLUSTER_WORK/rendered.yaml" StatefulSet/postgres postgres)
  env "${pg_env[@]}" PGHOST=127.0.0.1 PGPORT="$PG_PORT" sh k8s/postgres-init.sh
  echo "roles and databases: $(psql "$PG_URL" -Atc "select string_agg(datname, ' ' order by datname) from pg_database where datname in ('auth','billing','order','notification')")"
  port_args=(postgres="$PG_PORT")
  if [ "${CLUSTER_PG_STANDBY:-0}" = 1 ]; then
    start_standby || return 1
    port_args=(postgres="$PG_PORT,$PG_STANDBY_PORT")
  fi
  if [ "${CLUSTER_HA:-0}" = 1 ]; then
    echo "== PgBouncer, configured from k8s-ha/'s Pooler =="
    kubectl kustomize k8s-ha > "$CLUSTER_WORK/rendered-ha.yaml"
    CLUSTER_MANIFESTS=$CLUSTER_WORK/rendered-ha.yaml
    pgbouncer_up "$CLUSTER_MANIFESTS" || return 1
    port_args+=(shop-pg-pooler-rw="$PGBOUNCER_PORT" shop-pg-rw="$PG_PORT")
  fi

  for s in "${CLUSTER_SERVICES[@]}"; do
    SVC_PORTS[$s]=$(for r in $(seq 1 "$replicas"); do free_port; done | paste -sd,)
    SVC_PORT[$s]=${SVC_PORTS[$s]%%,*}
  done
  if [ "$replicas" -gt 1 ]; then
    # the services reach each other at their Service, in front of every replica
    for s in "${CLUSTER_SERVICES[@]}"; do SVC_VIP[$s]=$(free_port); port_args+=("$s=${SVC_VIP[$s]}"); done
    _services_proxy_start || return 1
  else
    for s in "${CLUSTER_SERVICES[@]}"; do port_args+=("$s=${SVC_PORT[$s]}"); done
  fi

  echo "== the four services: migrate (each replica's init container, at once), then serve $replicas replica(s) each =="
  for s in "${CLUSTER_SERVICES[@]}"; do
    { "$CLUSTER_PY" scripts/lib/env_from_manifests.py "$CLUSTER_MANIFESTS" "Deployment/$s" "$s" "${port_args[@]}"
      echo "HOST=127.0.0.1"; } > "$CLUSTER_WORK/$s.env"
    mapfile -t svc_env < "$CLUSTER_WORK/$s.env"
    local migrations=()
    for r in $(seq 1 "$replicas"); do
      env "${svc_env[@]}" PORT="${SVC_PORT[$s]}" "$CLUSTER_BIN/$s" migrate >"$CLUSTER_WORK/$s-migrate-$r.log" 2>&1 &
      migrations+=($!)
    done
    for r in $(seq 1 "$replicas"); do
      wait "${migrations[$((r - 1))]}" || { cat "$CLUSTER_WORK/$s-migrate-$r.log"; return 1; }
    done
    cat "$CLUSTER_WORK/$s"-migrate-*.log > "$CLUSTER_WORK/$s-migrate.log"
    for r in $(seq 1 "$replicas"); do serve_service "$s" "$r"; done
  done
  for s in "${CLUSTER_SERVICES[@]}"; do
    for port in ${SVC_PORTS[$s]//,/ }; do
      for i in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
      curl -sf "http://127.0.0.1:$port/ready" >/dev/null || { echo "$s on $port not ready"; cat "$CLUSTER_WORK/$s.log"; return 1; }
    done
    echo "$s ready on 127.0.0.1:${SVC_PORTS[$s]//,/, 127.0.0.1:} ($(grep -c 'applied migration' "$CLUSTER_WORK/$s-migrate.log") migration(s) applied by $replicas migrate run(s))"
  done

  echo "== nginx, configured from the Ingresses =="
  CLUSTER_PORT_ARGS=()
  for s in "${CLUSTER_SERVICES[@]}"; do CLUSTER_PORT_ARGS+=("$s=${SVC_PORTS[$s]}"); done
  _nginx_start nginx ${CLUSTER_NGINX_OPTIONS[@]+"${CLUSTER_NGINX_OPTIONS[@]}"} || return 1
  NGINX_PID=$NGINX_UP_PID
  NGINX_BASE=$NGINX_UP_BASE
  CLUSTER_NGINX_PIDS=()
  echo "nginx $(nginx -v 2>&1 | cut -d/ -f2) on $NGINX_BASE"

  if [ "${CLUSTER_PROMETHEUS:-0}" = 1 ]; then
    echo "== Prometheus, scraping the four services =="
    mkdir -p "$CLUSTER_WORK/prometheus"
    prometheus_rules_from k8s/monitoring/prometheus-rules.yaml > "$CLUSTER_WORK/prometheus/rules.yaml"
    PROM_RULES="$CLUSTER_WORK/prometheus/rules.yaml" prometheus_up "$CLUSTER_WORK/prometheus" \
      $(for s in "${CLUSTER_SERVICES[@]}"; do printf '%s=127.0.0.1:%s ' "$s" "${SVC_PORTS[$s]//,/,127.0.0.1:}"; done) || return 1
    # Prometheus hands new targets to its scrapers every 5 s: wait for the first scrape of all
    local targets
    targets=$(( ${#CLUSTER_SERVICES[@]} * replicas ))
    for i in $(seq 1 60); do
      [ "$(curl -s "$PROM_URL/api/v1/query" --data-urlencode 'query=count(up == 1)' | sed -n 's/.*"value":\[[0-9.]*,"\([0-9]*\)"\].*/\1/p')" = "$targets" ] && break
      sleep 0.5
    done
    echo "all $targets targets up after $((i / 2)) s"
  fi

  python3 - "$CLUSTER_WORK/cluster.json" <<EOF
import json, sys
def replicas(s, ports):
    return [{"name": f"{s}-{i}", "port": int(p), "url": f"http://127.0.0.1:{p}"}
            for i, p in enumerate(ports.split(","), 1)]
services = {s: {"port": int(ports.split(",")[0]), "url": f"http://127.0.0.1:{ports.split(',')[0]}",
                "replicas": replicas(s, ports)} for s, ports in
            [$(for s in "${CLUSTER_SERVICES[@]}"; do printf '("%s", "%s"), ' "$s" "${SVC_PORTS[$s]}"; done)]}
json.dump({
    "work": "$CLUSTER_WORK", "bin_dir": "$CLUSTER_BIN", "nginx": "$NGINX_BASE", "services": services,
    "prometheus": "$PROM_URL" or None,
    "postgres": {"url": "$PG_URL", "bin": "$PG_BIN", "dir": "$PG_DIR", "options": "$PG_OPTIONS",
                 "standby": {"port": int("$PG_STANDBY_PORT"), "data": "$PG_DIR/standby"} if "$PG_STANDBY_PORT" else None},
    "pgbouncer": {"port": int("$PGBOUNCER_PORT"), "dir": "$PGBOUNCER_DIR"} if "$PGBOUNCER_PORT" else None,
    "replicas": $replicas,
}, open(sys.argv[1], "w"), indent=2)
EOF
}

# _services_proxy_start: the Services (see CLUSTER_REPLICAS above) in WORK/services/.
_services_proxy_start() {
  local s port dir=$CLUSTER_WORK/services
  mkdir -p "$dir/logs" "$dir/tmp"
  {
    echo "# generated by scripts/lib/cluster.sh: each Service a port in front of its replicas"
    echo "worker_processes 1;"
    echo "pid logs/nginx.pid;"
    echo "daemon off;"
    echo "error_log logs/error.log notice;"
    echo "events { worker_connections 1024; }"
    echo "http {"
    echo "    access_log off;"
    echo "    client_max_body_size 1m;"
    for s in client_body proxy fastcgi uwsgi scgi; do echo "    ${s}_temp_path tmp/$s;"; done
    for s in "${CLUSTER_SERVICES[@]}"; do
      echo "    upstream $s { $(for port in ${SVC_PORTS[$s]//,/ }; do printf 'server 127.0.0.1:%s max_fails=0; ' "$port"; done)keepalive 64; }"
      echo "    server {"
      echo "        listen 127.0.0.1:${SVC_VIP[$s]};"
      echo "        location / {"
      echo "            proxy_pass http://$s;"
      echo "            proxy_http_version 1.1;"
      echo "            proxy_set_header Connection \"\";"
      echo "            proxy_set_header Host \$http_host;"
      echo "            proxy_next_upstream error timeout; proxy_next_upstream_tries 3;"
      echo "        }"
      echo "    }"
    done
    echo "}"
  } > "$dir/nginx.conf"
  nginx -p "$dir/" -c nginx.conf -e stderr -t 2>&1 | tail -1
  nginx -p "$dir/" -c nginx.conf -e stderr &
  SERVICES_PROXY_PID=$!
  for port in "${SVC_VIP[@]}"; do wait_listening "$port" || { echo "the Services do not listen on $port" >&2; return 1; }; done
  echo "the Services: $(for s in "${CLUSTER_SERVICES[@]}"; do printf '%s 127.0.0.1:%s → %s; ' "$s" "${SVC_VIP[$s]}" "${SVC_PORTS[$s]}"; done)"
}

# _nginx_start NAME [renderer options]: renders WORK/NAME/nginx.conf from the Ingresses and
# starts nginx on it (not daemonised: its pid is $!), on a free loopback port; sets
# NGINX_UP_PID and NGINX_UP_BASE once it answers.
_nginx_start() {
  local name=$1 port i
  shift
  port=$(free_port)
  mkdir -p "$CLUSTER_WORK/$name/logs" "$CLUSTER_WORK/$name/tmp"
  "$CLUSTER_PY" scripts/lib/nginx_from_ingress.py "$@" "$CLUSTER_MANIFESTS" "$port" "${CLUSTER_PORT_ARGS[@]}" \
    >"$CLUSTER_WORK/$name/nginx.conf" || return 1
  nginx -p "$CLUSTER_WORK/$name/" -c nginx.conf -e stderr -t 2>&1 | tail -1
  nginx -p "$CLUSTER_WORK/$name/" -c nginx.conf -e stderr &
  NGINX_UP_PID=$!
  NGINX_UP_BASE="http://127.0.0.1:$port"
  for i in $(seq 1 50); do curl -s -o /dev/null "$NGINX_UP_BASE/signin" && break; sleep 0.1; done
}

# nginx_up NAME [renderer options]: one more nginx after cluster_up (e.g. the rendering of a
# default controller beside the cluster's own); stopped by cluster_down.
nginx_up() {
  _nginx_start "$@" || return 1
  CLUSTER_NGINX_PIDS+=("$NGINX_UP_PID")
  echo "nginx ($*) on $NGINX_UP_BASE"
}

# stop_pid PID: SIGTERM, then SIGKILL if it is still there after 25 s (the services' grace).
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 250); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

cluster_down() {
  local s i
  prometheus_down
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  NGINX_PID=""
  for s in ${CLUSTER_NGINX_PIDS[@]+"${CLUSTER_NGINX_PIDS[@]}"}; do
    if kill "$s" 2>/dev/null; then wait "$s" 2>/dev/null || true; fi
  done
  CLUSTER_NGINX_PIDS=()
  if [ -n "$SERVICES_PROXY_PID" ] && kill "$SERVICES_PROXY_PID" 2>/dev/null; then
    wait "$SERVICES_PROXY_PID" 2>/dev/null || true
  fi
  SERVICES_PROXY_PID=""
  if [ -n "$CLUSTER_WORK" ]; then
    local stoppers=()   # each replica stopped in parallel, each with its own grace
    for s in "${CLUSTER_SERVICES[@]}"; do
      for i in $(cluster_pids "$s"); do stop_pid "$i" & stoppers+=($!); done
    done
    for i in ${stoppers[@]+"${stoppers[@]}"}; do wait "$i" 2>/dev/null || true; done
  fi
  pgbouncer_down
  stop_postgres
}
