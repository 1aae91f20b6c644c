# PgBouncer (Debian's `pgbouncer`) in front of the throwaway PostgreSQL of postgres.sh,
# configured from the CloudNativePG Pooler of k8s-ha/ (scripts/lib/pgbouncer_from_pooler.py):
# sourced by scripts/lib/cluster.sh.
#
#   pgbouncer_up RENDERED   # after start_postgres: PgBouncer on a free loopback port, in
#                           # PG_DIR/pgbouncer (deleted with it); sets PGBOUNCER_PORT
#   pgbouncer_for_tests     # after start_postgres: PgBouncer in transaction mode passing
#                           # every database on (`* = …`), no passwords (the server trusts
#                           # loopback); sets PGBOUNCER_URL (its postgres database, as
#                           # PG_URL names the server's), for TEST_PGBOUNCER_URL
#   pgbouncer_down          # stops it
#
# PgBouncer refuses to run as root, so as root it runs as the `postgres` user, like the server.

PGBOUNCER_PORT=""
PGBOUNCER_DIR=""
PGBOUNCER_URL=""

pgbouncer_up() {
  local rendered=$1
  PGBOUNCER_DIR=$PG_DIR/pgbouncer
  mkdir -p "$PGBOUNCER_DIR"
  PGBOUNCER_PORT=$(free_port)
  "$CLUSTER_PY" scripts/lib/pgbouncer_from_pooler.py "$rendered" "$PGBOUNCER_DIR" "$PGBOUNCER_PORT" "$PG_PORT" || return 1
  _pgbouncer_start || return 1
  echo "PgBouncer $(pgbouncer --version | head -1 | cut -d' ' -f2) on 127.0.0.1:$PGBOUNCER_PORT," \
    "$(sed -n 's/^pool_mode = //p' "$PGBOUNCER_DIR/pgbouncer.ini") pooling, in front of PostgreSQL on $PG_PORT"
}

pgbouncer_for_tests() {
  PGBOUNCER_DIR=$PG_DIR/pgbouncer
  mkdir -p "$PGBOUNCER_DIR"
  PGBOUNCER_PORT=$(free_port)
  cat > "$PGBOUNCER_DIR/pgbouncer.ini" <<INI
; PgBouncer for the pooler tests (billing/tests/api/pooler.rs): transaction pooling
[databases]
* = host=127.0.0.1 port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $PGBOUNCER_DIR/userlist.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
logfile = $PGBOUNCER_DIR/pgbouncer.log
pidfile = $PGBOUNCER_DIR/pgbouncer.pid
INI
  # trust still asks that the user be listed
  echo '"postgres" ""' > "$PGBOUNCER_DIR/userlist.txt"
  _pgbouncer_start || return 1
  PGBOUNCER_URL="postgres://postgres@127.0.0.1:$PGBOUNCER_PORT/postgres"
}

# _pgbouncer_start: runs PgBouncer on PGBOUNCER_DIR/pgbouncer.ini, back once it listens.
_pgbouncer_start() {
  command -v pgbouncer >/dev/null || { echo "pgbouncer is not installed (apt-get install pgbouncer)" >&2; return 1; }
  [ "$(id -u)" = 0 ] && chown postgres "$PGBOUNCER_DIR" "$PGBOUNCER_DIR"/*
  as_pg_owner pgbouncer -q -d "$PGBOUNCER_DIR/pgbouncer.ini" || { cat "$PGBOUNCER_DIR/pgbouncer.log" >&2; return 1; }
  wait_listening "$PGBOUNCER_PORT" && return 0
  echo "PgBouncer does not listen on $PGBOUNCER_PORT:" >&2
  cat "$PGBOUNCER_DIR/pgbouncer.log" >&2
  return 1
}

pgbouncer_down() {
  local pid
  [ -n "$PGBOUNCER_DIR" ] && [ -f "$PGBOUNCER_DIR/pgbouncer.pid" ] || return 0
  pid=$(cat "$PGBOUNCER_DIR/pgbouncer.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  PGBOUNCER_DIR=""
}
