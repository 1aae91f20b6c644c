# The `cargo run` stack for end-to-end runs: sourced by scripts that need one.
#
#   start_stack BINARY DATA_DIR   # sets STACK_URL (gateway on a free loopback port), STACK_PID
#   stop_stack                    # Ctrl-C equivalent (SIGINT), waits for a graceful exit
#
# Services listen on free ports too; their log goes to DATA_DIR/stack.log.

STACK_PID=""
STACK_URL=""

start_stack() {
  local binary=$1 data_dir=$2 port i
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  # debug logging: the secrets check after the run reads the most talkative log there is
  DATA_DIR="$data_dir" GATEWAY_PORT="$port" AUTH_PORT=0 BILLING_PORT=0 ORDER_PORT=0 NOTIFICATION_PORT=0 \
    RUST_LOG="${RUST_LOG:-debug}" "$binary" >"$data_dir/stack.log" 2>&1 &
  STACK_PID=$!
  STACK_URL="http://127.0.0.1:$port"
  for i in $(seq 1 100); do
    if curl -sf "$STACK_URL/signin" >/dev/null 2>&1; then
      echo "stack up at $STACK_URL (pid $STACK_PID, log $data_dir/stack.log)"
      return 0
    fi
    kill -0 "$STACK_PID" 2>/dev/null || break
    sleep 0.2
  done
  echo "the stack did not start; its log:" >&2
  cat "$data_dir/stack.log" >&2
  return 1
}

stop_stack() {
  [ -n "$STACK_PID" ] || return 0
  kill -INT "$STACK_PID" 2>/dev/null || true
  wait "$STACK_PID" 2>/dev/null || true
  STACK_PID=""
}
