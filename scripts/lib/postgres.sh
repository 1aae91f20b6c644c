# Throwaway PostgreSQL for tests: sourced by scripts that need one.
#
#   start_postgres        # sets PG_URL=postgres://postgres@127.0.0.1:PORT/postgres, PG_PORT, and
#                         # PG_BIN, PG_DIR, PG_OPTIONS (what pg_ctl needs to restart it)
#   start_standby         # after start_postgres: a streaming replica of it, made by
#                         # pg_basebackup, on another free port, in PG_DIR/standby; the
#                         # primary then commits only once the standby has the commit
#                         # (synchronous_standby_names '*'); sets PG_STANDBY_PORT
#   stop_postgres         # stops it (and the standby) and deletes its data directory
#
# The server listens on loopback only, on a free port, with fsync off (test data only).
# initdb refuses to run as root, so as root it runs as the `postgres` user.

PG_DIR=""
PG_URL=""
PG_PORT=""
PG_BIN=""
PG_OPTIONS=""
PG_STANDBY_PORT=""

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

# wait_listening PORT: until something accepts connections on 127.0.0.1:PORT (at most 5 s);
# status 1 if nothing does.
wait_listening() {
  local i
  for i in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
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
  PG_PORT=$port
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $PG_DIR)"
}

start_standby() {
  local port primary=$PG_PORT
  port=$(free_port)
  # initdb's pg_hba (--auth=trust) lets loopback replicate; a fast checkpoint to start from,
  # or the copy waits for a spread one (up to 90 % of checkpoint_timeout, 4.5 min); run from
  # / as the postgres user cannot enter the caller's directory
  (cd / && as_pg_owner "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres -D "$PG_DIR/standby" -R -X stream \
    --checkpoint=fast) \
    >"$PG_DIR/basebackup.log" 2>&1 || { cat "$PG_DIR/basebackup.log" >&2; return 1; }
  PG_STANDBY_PORT=$port
  as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/standby" -l "$PG_DIR/standby.log" -w -t 30 \
    -o "${PG_OPTIONS/-p $primary/-p $port}" start >/dev/null || { cat "$PG_DIR/standby.log" >&2; return 1; }
  # the standby is connected: from now on a commit waits for it (after the base backup, so
  # the standby does not inherit the setting and wait for a standby of its own once promoted)
  psql "$PG_URL" -qc "ALTER SYSTEM SET synchronous_standby_names = '*'" -c "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 1 100); do
    [ "$(psql "$PG_URL" -Atc "select count(*) from pg_stat_replication where sync_state = 'sync'")" = 1 ] && break
    sleep 0.1
  done
  echo "standby on 127.0.0.1:$port, streaming from the primary, synchronous" \
    "($(psql "$PG_URL" -Atc "select state || ', ' || sync_state from pg_stat_replication"))"
}

stop_postgres() {
  local bin
  # only ever delete the directory start_postgres made
  case "$PG_DIR" in
    "${TMPDIR:-/tmp}"/shop-pg.??????) ;;
    *) return 0 ;;
  esac
  # either may be down already (a fault test crashed the primary): stop what runs
  bin=$(pg_bindir) || return 1
  as_pg_owner "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  if [ -d "$PG_DIR/standby" ]; then
    as_pg_owner "$bin/pg_ctl" -D "$PG_DIR/standby" -m fast -w stop >/dev/null 2>&1 || true
  fi
  PG_STANDBY_PORT="" PG_PORT=""
  rm -rf -- "$PG_DIR"
  PG_DIR=""
}
