#!/usr/bin/env bash
# Hub → gateway → devices: the time from `airlock deploy` until every device serves the new
# release, for fleets of 1, 10 and 100 real `airlock-agent` processes on one gateway, and the
# bytes the hub sent for it (see bench/README.md, section 6).
# Usage: bench/fleet_bench.sh BUILD_DIR
#
# Once: keys and a root, the visual-inspection example packed and signed, Mosquitto, a hub, the
# package pushed and promoted. Then for each fleet size N, on a fresh gateway (registered, empty
# cache, policies auto so that no operator is waited for) reached through a relay that counts the
# bytes the hub sends: N agents enrolled with the gateway and serving (no model yet), and, timed,
# `airlock deploy --waves 100% --max-in-flight N --health-window 0s` until the hub's
# `airlock status` reports the gateway's rollout complete with N devices done: the offer, the
# gateway's download from the hub (every blob checked), the rollout (a signed directive per
# device), and on every device the pull from the gateway, the verification, the install, the load
# with the package's samples run, and its state report back. Exit 1 when something failed, 2 for a
# usage error.
#
# Environment:
#   BENCH_FLEET_SIZES  fleet sizes (default "1 10 100")
#   BENCH_TMPDIR       where to make the scratch directory (default BUILD_DIR)
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bench/fleet_bench.sh BUILD_DIR" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
bin=$build_dir/bin
sizes=${BENCH_FLEET_SIZES:-1 10 100}
bench_dir=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "$bench_dir/.." && pwd)

die() { echo "fleet_bench: $*" >&2; exit 2; }
for b in airlock airlock-hub airlock-gateway airlock-agent; do
  [[ -x $bin/$b ]] || die "no $bin/$b (cmake --build --preset release)"
done
[[ -x /usr/sbin/mosquitto ]] || die "no /usr/sbin/mosquitto (scripts/bootstrap installs it)"
command -v jq >/dev/null || die "no jq"

work=$(mktemp -d "${BENCH_TMPDIR:-$build_dir}/bench-fleet.XXXXXX")
bench_name=fleet_bench
source "$bench_dir/daemons.sh"
cd "$work"

stop_all_but() {  # KEEP: stops every daemon started after the first KEEP
  local keep=$1 pid
  for pid in "${pids[@]:keep}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]:keep}"; do
    wait "$pid" 2>/dev/null || true
  done
  pids=("${pids[@]:0:keep}")
}

echo "== fleet: deploy → every device serving, 1 gateway, N airlock-agent processes, loopback"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; $(free -g | awk '/Mem:/ { print $2 }') GiB"

for k in root publisher manager; do "$bin/airlock" -q keygen "keys/$k" >/dev/null; done
"$bin/airlock" -q root init --root-key keys/root.key --publisher keys/publisher.pub \
  --release-manager keys/manager.pub -o root.json >/dev/null
"$bin/airlock" -q pack -f "$source_dir/examples/visual-inspection/airlock.yaml" -o vi.tar >/dev/null
"$bin/airlock" -q sign vi.tar -k keys/publisher.key --counter 1 >/dev/null
package_bytes=$(stat -c %s vi.tar)

start_hub "$bin/airlock-hub"
AIRLOCK_REGISTRY_TOKEN=$publisher "$bin/airlock" -q push vi.tar "${hub_url#http://}/models/visual-inspection" >/dev/null
AIRLOCK_REGISTRY_TOKEN=$manager AIRLOCK_HUB=$hub_url "$bin/airlock" promote visual-inspection 1.0.0 \
  --channel production -k keys/manager.key >/dev/null
base=${#pids[@]}
echo "package: visual-inspection 1.0.0, $package_bytes bytes as a tar"
printf '%8s %12s %16s %14s %12s\n' devices "deploy→all" "hub sent (B)" "per device" "agents RSS"

for n in $sizes; do
  name=fleet-$n
  # The relay counts what the hub sends this gateway.
  python3 "$bench_dir/count_relay.py" "${hub_url##*:}" "$name.relay-port" "$name.count" >"$name.relay.out" 2>&1 &
  pids+=($!)
  for ((i = 0; i < 100; i++)); do [[ -s $name.relay-port ]] && break; sleep 0.05; done
  gateway_config "$name" "http://127.0.0.1:$(cat "$name.relay-port")" \
    "policy:
  offers: auto
  rollout_approval: auto"
  serve "$name" "$bin/airlock-gateway" serve --config "$name.yaml"
  gateway=$served
  operator=$("$bin/airlock-gateway" token create --name bench --config "$name.yaml" | head -n 1)
  for ((d = 1; d <= n; d++)); do
    t=$(AIRLOCK_GATEWAY_TOKEN=$operator "$bin/airlock-gateway" devices token --gateway "$gateway" --json | jq -r .token)
    "$bin/airlock-agent" --store "$name/dev-$d" enroll --gateway "$gateway" --token "$t" >/dev/null
    serve "$name-dev-$d" "$bin/airlock-agent" --store "$name/dev-$d" serve --port 0 --log-level warn
  done
  agent_pids=("${pids[@]: -n}")
  # Every device online before the clock starts.
  for ((i = 0; i < 600; i++)); do
    online=$(AIRLOCK_GATEWAY_TOKEN=$operator "$bin/airlock-gateway" devices ls --gateway "$gateway" --json |
      jq '[.devices[] | select(.online == true)] | length')
    [[ $online -eq $n ]] && break
    sleep 0.1
  done
  [[ $online -eq $n ]] || { echo "fleet_bench: only $online of $n devices online" >&2; exit 1; }
  sleep 1
  t0=$(now)
  dep=$(AIRLOCK_REGISTRY_TOKEN=$manager AIRLOCK_HUB=$hub_url "$bin/airlock" deploy visual-inspection \
    --channel production --gateway "$name" --waves 100% --max-in-flight "$n" --health-window 0s --json | jq -r .id)
  done_count=0
  for ((i = 0; i < 6000; i++)); do
    done_count=$(AIRLOCK_REGISTRY_TOKEN=$manager AIRLOCK_HUB=$hub_url "$bin/airlock" status "$dep" --json |
      jq '[.fleet[]? | select(.state == "complete") | .devices.done] | add // 0')
    [[ $done_count -eq $n ]] && break
    sleep 0.05
  done
  t1=$(now)
  [[ $done_count -eq $n ]] || {
    echo "fleet_bench: $dep did not reach $n devices" >&2
    AIRLOCK_REGISTRY_TOKEN=$manager AIRLOCK_HUB=$hub_url "$bin/airlock" status "$dep" >&2
    exit 1
  }
  sent=$(cat "$name.count")
  rss=$(for p in "${agent_pids[@]}"; do awk '/VmRSS/ { print $2 }' "/proc/$p/status"; done |
    awk '{ s += $1 } END { printf "%.0f MiB", s / 1024 }')
  printf '%8d %11.2fs %16d %14d %12s\n' "$n" "$(echo "$t0 $t1" | awk '{ print $2 - $1 }')" \
    "$sent" "$((sent / n))" "$rss"
  stop_all_but "$base"
  rm -rf "$name"
done
echo "(the deploy→all time includes the status polling, every 50 ms plus a CLI start;"
echo " the hub's bytes are everything it sent the gateway: API answers, manifests, blobs)"
