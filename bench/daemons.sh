# What the benchmarks that start daemons share; sourced, after `work` (the scratch directory) and
# `bench_name` (for messages) are set. Every daemon started with `serve` is in `pids` and is
# stopped, and the scratch directory removed, when the script exits.
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Starts a daemon (output in NAME.out) and sets served to the URL it says it serves on.
serve() {
  local name=$1 i
  shift
  "$@" >"$name.out" 2>&1 &
  pids+=($!)
  for ((i = 0; i < 1200; i++)); do
    served=$(sed -n 's/.*serving on \(http:[^ ]*\).*/\1/p' "$name.out" | head -n 1)
    [[ -n $served ]] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "$bench_name: $name did not start:" >&2
  cat "$name.out" >&2
  exit 1
}
