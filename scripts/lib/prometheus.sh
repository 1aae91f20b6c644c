# A real Prometheus server (Debian's `prometheus`) on loopback: sourced by scripts/e2e-nginx,
# scripts/faults and scripts/prometheus-local.
#
#   prometheus_up DIR JOB=HOST:PORT[,HOST:PORT…]...
#                                        # DIR/prometheus.yml scraping the targets as job JOB,
#                                        # every PROM_SCRAPE_INTERVAL (default 1s), with the
#                                        # alert rules of PROM_RULES (a plain rules file) if
#                                        # set; storage in DIR/data; on PROM_PORT (default: a
#                                        # free port); sets PROM_URL and PROM_PID once ready
#   prometheus_down                      # stops it
#
# DIR is the caller's (under its mktemp -d). Jobs are named after the services, as the
# ServiceMonitors of k8s/monitoring name them in a cluster, so dashboards and alerts read
# the same labels here and there.

PROM_PID=""
PROM_URL=""

prometheus_up() {
  local dir=$1 target port i
  shift
  command -v prometheus >/dev/null || { echo "prometheus is not installed (apt-get install prometheus)" >&2; return 1; }
  mkdir -p "$dir/data"
  {
    echo "global:"
    echo "  scrape_interval: ${PROM_SCRAPE_INTERVAL:-1s}"
    echo "  evaluation_interval: ${PROM_SCRAPE_INTERVAL:-1s}"
    if [ -n "${PROM_RULES:-}" ]; then
      echo "rule_files:"
      echo "  - $PROM_RULES"
    fi
    echo "scrape_configs:"
    for target in "$@"; do
      echo "  - job_name: ${target%%=*}"
      echo "    static_configs:"
      echo "      - targets: ['$(sed "s/,/', '/g" <<< "${target#*=}")']"
    done
  } > "$dir/prometheus.yml"
  port=${PROM_PORT:-$(free_port)}
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn >"$dir/prometheus.log" 2>&1 &
  PROM_PID=$!
  PROM_URL="http://127.0.0.1:$port"
  for i in $(seq 1 100); do
    curl -sf -o /dev/null "$PROM_URL/-/ready" && { echo "prometheus $(prometheus --version 2>&1 | head -1 | cut -d' ' -f3) on $PROM_URL, scraping $*"; return 0; }
    kill -0 "$PROM_PID" 2>/dev/null || break
    sleep 0.2
  done
  echo "prometheus did not start:" >&2
  cat "$dir/prometheus.log" >&2
  return 1
}

prometheus_down() {
  if [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null; then
    wait "$PROM_PID" 2>/dev/null || true
  fi
  PROM_PID=""
}

# prometheus_rules_from FILE: the Prometheus rules file inside a PrometheusRule manifest
# (everything below its `spec:`, one level less indented), on stdout.
prometheus_rules_from() {
  sed -n '/^spec:$/,$p' "$1" | tail -n +2 | sed 's/^  //'
}
