# Throwaway PostgreSQL for tests: sourced by scripts that need one.
#
#   start_postgres        # sets PG_URL=postgres://postgres@127.0.0.1:PORT/postgres, and
#                         # PG_BIN, PG_DIR, PG_OPTIONS (what pg_ctl needs to restart it)
#   stop_postgres         # stops it and deletes its data directory
#
# The server listens on loopback only, on a free port, with fsync off (test data only).
# initdb refuses to run as root, so as root it runs as the `postgres` user.

PG_DIR=""
PG_URL=""
PG_BIN=""
PG_OPTIONS=""

pg_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_pg_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local bin port
  bin=$(pg_bindir) || { echo "PostgreSQL server binaries not found" >&2; return 1; }
  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/shop-pg.XXXXXX")
  chmod 755 "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
  port=$(free_port)
  as_pg_owner "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  PG_BIN=$bin
  PG_OPTIONS="-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400"
  as_pg_owner "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 -o "$PG_OPTIONS" \
    start >/dev/null || { cat "$PG_DIR/server.log" >&2; return 1; }
  PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $PG_DIR)"
}

stop_postgres() {
  local bin
  # only ever delete the directory start_postgres made
  case "$PG_DIR" in
    "${TMPDIR:-/tmp}"/shop-pg.??????) ;;
    *) return 0 ;;
  esac
  bin=$(pg_bindir) && as_pg_owner "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1
  rm -rf -- "$PG_DIR"
  PG_DIR=""
}
