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

# Mosquitto and `$1 serve` (an airlock-hub: data in ./hub, trusting ./root.json) on free loopback
# ports. Sets mqtt_port, hub_url, hub_pid and the hub tokens admin, publisher and manager.
start_hub() {
  local hubctl=$1
  bench_bin=$(dirname "$hubctl")
  mqtt_port=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\n' \
    "$mqtt_port" >mosquitto.conf
  /usr/sbin/mosquitto -c mosquitto.conf >mosquitto.out 2>&1 &
  pids+=($!)
  token() { "$hubctl" token create --name "$1" --role "$1" --data hub 2>/dev/null | head -n 1; }
  admin=$(token admin)
  publisher=$(token publisher)
  manager=$(token release-manager)
  serve hub "$hubctl" serve --data hub --root root.json --port 0 --log-level warn \
    --mqtt "tcp://127.0.0.1:$mqtt_port"
  hub_url=$served
  hub_pid=${pids[-1]}
}

# Writes NAME.yaml: a gateway that registers with the hub start_hub started (a fresh token),
# reaches it at HUB-URL (a relay, say), uses its broker and caches into ./NAME; MORE-YAML, lines
# of the `cache:` block first, is appended. $1 of start_hub gave the binaries' directory.
gateway_config() {  # NAME HUB-URL [MORE-YAML]
  cat >"$1.yaml" <<YAML
name: $1
hub:
  url: $2
  register_token: $(AIRLOCK_REGISTRY_TOKEN=$admin AIRLOCK_HUB=$hub_url "$bench_bin/airlock" gateways token --json | jq -r .token)
root: $work/root.json
data: $work/$1
mqtt:
  broker: tcp://127.0.0.1:$mqtt_port
http:
  port: 0
cache:
  reserve_bytes: 0
${3:-}
YAML
}
