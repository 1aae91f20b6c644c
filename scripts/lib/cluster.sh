# The production topology on this machine, everything configured from k8s/: sourced by
# scripts/e2e-nginx and scripts/faults.
#
#   cluster_up BIN_DIR WORK   # PostgreSQL initialised by k8s/postgres-init.sh; the four
#                             # services as separate processes with the environment their
#                             # Deployments give them, migrated first by `migrate` (the init
#                             # container); nginx configured from the rendered Ingresses
#   cluster_down              # stops all of it
#   nginx_up NAME [OPTIONS]   # after cluster_up: one more nginx in front of the same services,
#                             # in WORK/NAME, on a free port (NGINX_UP_BASE, NGINX_UP_PID);
#                             # OPTIONS go to nginx_from_ingress.py (--controller-use-http2,
#                             # --bench); cluster_down stops it too
#
# CLUSTER_NGINX_OPTIONS (an array, empty unless the caller sets it before cluster_up): renderer
# options for cluster_up's own nginx (scripts/bench sets --bench).
# CLUSTER_PROMETHEUS=1 (before cluster_up): also a real Prometheus (scripts/lib/prometheus.sh)
# scraping the four services every second, with the alert rules of k8s/monitoring loaded, in
# WORK/prometheus; its URL is PROM_URL and cluster.json's "prometheus".
# After cluster_up: NGINX_BASE, SVC_PORT[<service>], and in WORK: <service>.env (the
# environment, one NAME=value per line), <service>.pid, <service>.log, cluster.json (what
# scripts/lib/faults.py needs to stop and restart the parts), nginx/ (its prefix: nginx.conf,
# logs/nginx.pid, logs/access.log). WORK is the caller's (mktemp -d).
# Needs: nginx, PostgreSQL server binaries, kubectl, the venv of check-deploy (PyYAML).

. "$(dirname "${BASH_SOURCE[0]}")/postgres.sh"
. "$(dirname "${BASH_SOURCE[0]}")/prometheus.sh"

CLUSTER_SERVICES=(auth billing order notification)
CLUSTER_PY=target/tools/venv/bin/python
CLUSTER_WORK=""
CLUSTER_BIN=""
NGINX_PID=""
NGINX_BASE=""
NGINX_UP_PID=""
NGINX_UP_BASE=""
CLUSTER_NGINX_PIDS=()   # the nginx processes started by nginx_up, stopped by cluster_down
CLUSTER_PORT_ARGS=()    # service=PORT for the renderers (set by cluster_up)
declare -a CLUSTER_NGINX_OPTIONS
declare -A SVC_PORT

# serve_service NAME: starts (or restarts) one service in the background, logging to WORK.
serve_service() {
  local s=$1 svc_env
  mapfile -t svc_env < "$CLUSTER_WORK/$s.env"
  env "${svc_env[@]}" "$CLUSTER_BIN/$s" serve >>"$CLUSTER_WORK/$s.log" 2>&1 &
  echo $! > "$CLUSTER_WORK/$s.pid"
  # stopped by pid (stop_pid), perhaps killed on purpose by faults.py: no job-control noise
  disown $!
}

cluster_up() {
  local s i pg_port pg_env svc_env port_args
  CLUSTER_BIN=$1 CLUSTER_WORK=$2
  kubectl kustomize k8s > "$CLUSTER_WORK/rendered.yaml"

  echo "== PostgreSQL, initialised like the StatefulSet =="
  start_postgres
  pg_port=${PG_URL##*:}; pg_port=${pg_port%%/*}
  mapfile -t pg_env < <("$CLUSTER_PY" scripts/lib/env_from_manifests.py "$CLUSTER_WORK/rendered.yaml" StatefulSet/postgres postgres)
  env "${pg_env[@]}" PGHOST=127.0.0.1 PGPORT="$pg_port" sh k8s/postgres-init.sh
  echo "roles and databases: $(psql "$PG_URL" -Atc "select string_agg(datname, ' ' order by datname) from pg_database where datname in ('auth','billing','order','notification')")"

  for s in "${CLUSTER_SERVICES[@]}"; do SVC_PORT[$s]=$(free_port); done
  port_args=(postgres="$pg_port")
  for s in "${CLUSTER_SERVICES[@]}"; do port_args+=("$s=${SVC_PORT[$s]}"); done

  echo "== the four services: migrate (init container), then serve =="
  for s in "${CLUSTER_SERVICES[@]}"; do
    { "$CLUSTER_PY" scripts/lib/env_from_manifests.py "$CLUSTER_WORK/rendered.yaml" "Deployment/$s" "$s" "${port_args[@]}"
      echo "HOST=127.0.0.1"; echo "PORT=${SVC_PORT[$s]}"; } > "$CLUSTER_WORK/$s.env"
    mapfile -t svc_env < "$CLUSTER_WORK/$s.env"
    env "${svc_env[@]}" "$CLUSTER_BIN/$s" migrate >"$CLUSTER_WORK/$s-migrate.log" 2>&1 \
      || { cat "$CLUSTER_WORK/$s-migrate.log"; return 1; }
    serve_service "$s"
  done
  for s in "${CLUSTER_SERVICES[@]}"; do
    for i in $(seq 1 100); do curl -sf "http://127.0.0.1:${SVC_PORT[$s]}/ready" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:${SVC_PORT[$s]}/ready" >/dev/null || { echo "$s not ready"; cat "$CLUSTER_WORK/$s.log"; return 1; }
    echo "$s ready on 127.0.0.1:${SVC_PORT[$s]} ($(grep -c 'applied migration' "$CLUSTER_WORK/$s-migrate.log") migration(s) applied by migrate)"
  done

  echo "== nginx, configured from the Ingresses =="
  CLUSTER_PORT_ARGS=("${port_args[@]:1}")
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
      $(for s in "${CLUSTER_SERVICES[@]}"; do printf '%s=127.0.0.1:%s ' "$s" "${SVC_PORT[$s]}"; done) || return 1
    # Prometheus hands new targets to its scrapers every 5 s: wait for the first scrape of all
    for i in $(seq 1 60); do
      [ "$(curl -s "$PROM_URL/api/v1/query" --data-urlencode 'query=count(up == 1)' | sed -n 's/.*"value":\[[0-9.]*,"\([0-9]*\)"\].*/\1/p')" = "${#CLUSTER_SERVICES[@]}" ] && break
      sleep 0.5
    done
    echo "all ${#CLUSTER_SERVICES[@]} targets up after $((i / 2)) s"
  fi

  python3 - "$CLUSTER_WORK/cluster.json" <<EOF
import json, sys
services = {s: {"port": int(p), "url": f"http://127.0.0.1:{p}"} for s, p in
            [$(for s in "${CLUSTER_SERVICES[@]}"; do printf '("%s", "%s"), ' "$s" "${SVC_PORT[$s]}"; done)]}
json.dump({
    "work": "$CLUSTER_WORK", "bin_dir": "$CLUSTER_BIN", "nginx": "$NGINX_BASE", "services": services,
    "prometheus": "$PROM_URL" or None,
    "postgres": {"url": "$PG_URL", "bin": "$PG_BIN", "dir": "$PG_DIR", "options": "$PG_OPTIONS"},
}, open(sys.argv[1], "w"), indent=2)
EOF
}

# _nginx_start NAME [renderer options]: renders WORK/NAME/nginx.conf from the Ingresses and
# starts nginx on it (not daemonised: its pid is $!), on a free loopback port; sets
# NGINX_UP_PID and NGINX_UP_BASE once it answers.
_nginx_start() {
  local name=$1 port i
  shift
  port=$(free_port)
  mkdir -p "$CLUSTER_WORK/$name/logs" "$CLUSTER_WORK/$name/tmp"
  "$CLUSTER_PY" scripts/lib/nginx_from_ingress.py "$@" "$CLUSTER_WORK/rendered.yaml" "$port" "${CLUSTER_PORT_ARGS[@]}" \
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
  local s
  prometheus_down
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  NGINX_PID=""
  for s in ${CLUSTER_NGINX_PIDS[@]+"${CLUSTER_NGINX_PIDS[@]}"}; do
    if kill "$s" 2>/dev/null; then wait "$s" 2>/dev/null || true; fi
  done
  CLUSTER_NGINX_PIDS=()
  if [ -n "$CLUSTER_WORK" ]; then
    for s in "${CLUSTER_SERVICES[@]}"; do
      [ -f "$CLUSTER_WORK/$s.pid" ] && stop_pid "$(cat "$CLUSTER_WORK/$s.pid")"
    done
  fi
  stop_postgres
}
