#!/usr/bin/env bash
# Push and pull of a big package over loopback: airlock-hub against Debian's docker-registry
# (Distribution 2.8) on the same machine, with the same client (see bench/README.md, section 4).
# Usage: bench/hub_bench.sh BUILD_DIR
#
# Packs a model file of random bytes (`airlock pack --no-validate`, an OCI layout directory), then
# in each round, for each server in turn (the order alternates from round to round): starts the
# server on an empty data directory, pushes the package, pulls it into a fresh directory, checks
# every pulled blob against its digest and the package's, reads the server's peak RSS, stops it
# and removes its data. Every push therefore really uploads every byte. skopeo is the client the
# target is about; `airlock push/pull` is measured the same way as a second client.
#
# The issue 4 target (the hub at least as fast as docker-registry, push and pull, with skopeo) is
# printed as met or not and fails nothing. Exit 1 when an operation failed or a pulled package was
# not the one pushed, 2 for a usage error or too little disk.
#
# Environment:
#   BENCH_HUB_SIZE_MB  size of the model file in MiB (default 1024)
#   BENCH_HUB_RUNS     rounds per client (default 3)
#   BENCH_HUB_CLIENTS  skopeo,airlock (default both)
#   BENCH_TMPDIR       where to make the scratch directory (default BUILD_DIR: on disk, not tmpfs)
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bench/hub_bench.sh BUILD_DIR" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
airlock="$build_dir/bin/airlock"
hub="$build_dir/bin/airlock-hub"
registry=/usr/bin/docker-registry
size_mb=${BENCH_HUB_SIZE_MB:-1024}
runs=${BENCH_HUB_RUNS:-3}
IFS=, read -r -a clients <<<"${BENCH_HUB_CLIENTS:-skopeo,airlock}"

die() { echo "hub_bench: $*" >&2; exit 2; }
[[ -x $airlock ]] || die "no $airlock (cmake --build --preset release --target airlock)"
[[ -x $hub ]] || die "no $hub (cmake --build --preset release --target airlock-hub)"
[[ -x $registry ]] || die "no $registry (scripts/bootstrap installs docker-registry)"
command -v skopeo >/dev/null || die "no skopeo (scripts/bootstrap installs it)"
[[ $size_mb =~ ^[1-9][0-9]*$ ]] || die "BENCH_HUB_SIZE_MB must be a whole number"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_HUB_RUNS must be a whole number"
for c in "${clients[@]}"; do
  [[ $c == skopeo || $c == airlock ]] || die "BENCH_HUB_CLIENTS is a list of skopeo and airlock"
done

work=$(mktemp -d "${BENCH_TMPDIR:-$build_dir}/bench-hub.XXXXXX")
hub_pid=
registry_pid=
stop_servers() {
  local pid
  for pid in $hub_pid $registry_pid; do
    if kill -TERM "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
    fi
  done
  hub_pid=
  registry_pid=
}
cleanup() { stop_servers; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# At most at once: the model (removed after packing) or a pulled copy, the package, and one
# server's data (the upload is renamed into place, not copied).
free_mb=$(df -Pm "$work" | awk 'NR == 2 { print $4 }')
need_mb=$((size_mb * 3 + 512))
if ((free_mb < need_mb)); then
  die "$work has ${free_mb} MiB free; need about ${need_mb} MiB"
fi

echo "== hub vs docker-registry: push and pull of a ${size_mb} MiB package over loopback"
echo "scratch: $work ($(df -PT "$work" | awk 'NR == 2 { print $2 }')), ${free_mb} MiB free;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(skopeo --version), docker-registry" \
  "$(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null || echo '(version unknown)')"

# The package: one model layer of random bytes, as section 1 packs it.
head -c "$((size_mb * 1024 * 1024))" /dev/urandom >"$work/model.bin"
package="$work/package"
"$airlock" -q pack --no-validate --model "$work/model.bin" --name big --version 1 -o "$package" \
  >/dev/null
rm -f "$work/model.bin"
tag=1

# Every blob of the package by its hex digest, and the total bytes.
hash_hex() {
  if command -v openssl >/dev/null; then
    openssl dgst -sha256 -r "$1" | cut -d' ' -f1
  else
    sha256sum "$1" | cut -d' ' -f1
  fi
}
expected_blobs=$(ls "$package/blobs/sha256" | sort)
package_bytes=$(du -sb --apparent-size "$package/blobs/sha256" | cut -f1)
index_digest=$(jq -r '.manifests[0].digest' "$package/index.json")
model_hex=$(ls -S "$package/blobs/sha256" | head -n 1)  # the biggest blob: the model
echo "package: $(wc -l <<<"$expected_blobs") blobs, ${package_bytes} bytes, index $index_digest"

# A pulled layout must hold exactly the package's blobs, each hashing to its name, and name the
# package's index: otherwise no figure is printed for it.
check_pulled() {
  local dir=$1 f hex
  if [[ $(ls "$dir/blobs/sha256" 2>/dev/null | sort) != "$expected_blobs" ]]; then
    echo "hub_bench: $dir does not hold the package's blobs" >&2
    return 1
  fi
  for f in "$dir"/blobs/sha256/*; do
    hex=$(hash_hex "$f")
    if [[ $hex != "${f##*/}" ]]; then
      echo "hub_bench: $f hashes to sha256:$hex" >&2
      return 1
    fi
  done
  if ! jq -e --arg d "$index_digest" '[.manifests[].digest] | index($d) != null' \
      "$dir/index.json" >/dev/null; then
    echo "hub_bench: $dir/index.json does not name $index_digest" >&2
    return 1
  fi
}

# Servers. Each start is on an empty data directory; the address is left in $address.
address=
wait_listening() {  # PID PORT: 0 once the port accepts, 1 when the process died or 15 s passed
  local pid=$1 port=$2 i
  for ((i = 0; i < 1500; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.01
  done
  return 1
}
start_hub() {
  local i port=
  rm -rf "$work/hub"
  mkdir -p "$work/hub"
  : >"$work/hub/log"
  # Without tokens (allowed on loopback), as docker-registry runs here: the same work for both.
  "$hub" serve --no-auth --data "$work/hub/data" --port 0 --log-level warn >"$work/hub/log" 2>&1 &
  hub_pid=$!
  for ((i = 0; i < 1500; i++)); do
    port=$(sed -n 's|^airlock-hub: serving on http://127.0.0.1:\([0-9]*\)$|\1|p' "$work/hub/log")
    [[ -n $port ]] && break
    kill -0 "$hub_pid" 2>/dev/null || break
    sleep 0.01
  done
  [[ -n $port ]] || { cat "$work/hub/log" >&2; die "airlock-hub did not start"; }
  address=127.0.0.1:$port
}
start_registry() {
  local attempt port
  for ((attempt = 0; attempt < 5; attempt++)); do
    rm -rf "$work/registry"
    mkdir -p "$work/registry"
    port=$((20000 + RANDOM % 40000))
    cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: $work/registry/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$port
  secret: airlock-bench
EOF
    "$registry" serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
    registry_pid=$!
    if wait_listening "$registry_pid" "$port"; then
      address=127.0.0.1:$port
      return
    fi
    if kill -TERM "$registry_pid" 2>/dev/null; then
      wait "$registry_pid" 2>/dev/null || true
    fi
    registry_pid=
  done
  cat "$work/registry/log" >&2
  die "docker-registry did not start"
}
# Where a server keeps the model blob after a push (checked, so that no push skipped it).
stored_model() {
  case $1 in
    hub) echo "$work/hub/data/blobs/sha256/${model_hex:0:2}/$model_hex" ;;
    registry) echo "$work/registry/data/docker/registry/v2/blobs/sha256/${model_hex:0:2}/$model_hex/data" ;;
  esac
}
server_pid() { if [[ $1 == hub ]]; then echo "$hub_pid"; else echo "$registry_pid"; fi; }

clk_tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
now_ns() { date +%s%N; }

skopeo_cmd=(skopeo --insecure-policy --tmpdir "$work/skopeo-tmp")
mkdir -p "$work/skopeo-tmp"
push() {  # CLIENT REPO
  case $1 in
    skopeo) "${skopeo_cmd[@]}" copy -q --all --dest-tls-verify=false "oci:$package:$tag" \
              "docker://$address/$2:$tag" ;;
    airlock) "$airlock" -q push "$package" "$address/$2:$tag" >/dev/null ;;
  esac
}
pull() {  # CLIENT REPO OUT
  case $1 in
    skopeo) "${skopeo_cmd[@]}" copy -q --all --src-tls-verify=false "docker://$address/$2:$tag" \
              "oci:$3:$tag" ;;
    airlock) "$airlock" -q pull "$address/$2:$tag" -o "$3" >/dev/null ;;
  esac
}

# Samples, by "client op server": wall ns and server CPU ticks; peak RSS by "client server".
declare -A wall cpu hwm
status=0
run_one() {  # CLIENT SERVER ROUND
  local client=$1 server=$2 round=$3 pid repo out t0 c0 t_push t_pull c_push c_pull
  "start_$server"
  pid=$(server_pid "$server")
  repo=bench/model-$client-$round
  out="$work/pulled"
  rm -rf "$out"

  c0=$(cpu_ticks "$pid")
  t0=$(now_ns)
  push "$client" "$repo" || { echo "hub_bench: $client push to $server failed" >&2; return 1; }
  t_push=$(($(now_ns) - t0))
  c_push=$(($(cpu_ticks "$pid") - c0))
  if [[ ! -f $(stored_model "$server") ]]; then
    echo "hub_bench: after the push, $server does not hold the model blob" >&2
    return 1
  fi

  c0=$(cpu_ticks "$pid")
  t0=$(now_ns)
  pull "$client" "$repo" "$out" || { echo "hub_bench: $client pull from $server failed" >&2; return 1; }
  t_pull=$(($(now_ns) - t0))
  c_pull=$(($(cpu_ticks "$pid") - c0))
  check_pulled "$out" || return 1

  local peak
  peak=$(hwm_kb "$pid")
  if [[ -z ${hwm[$client $server]:-} ]] || ((peak > ${hwm[$client $server]})); then
    hwm[$client $server]=$peak
  fi
  wall[$client push $server]+="$t_push "
  wall[$client pull $server]+="$t_pull "
  cpu[$client push $server]+="$c_push "
  cpu[$client pull $server]+="$c_pull "
  printf '  %-7s round %d %-8s push %6.2f s, pull %6.2f s (server CPU %.2f s, %.2f s; peak RSS %d MiB)\n' \
    "$client" "$round" "$server" "$(awk -v n="$t_push" 'BEGIN { print n / 1e9 }')" \
    "$(awk -v n="$t_pull" 'BEGIN { print n / 1e9 }')" \
    "$(awk -v t="$c_push" -v h="$clk_tck" 'BEGIN { print t / h }')" \
    "$(awk -v t="$c_pull" -v h="$clk_tck" 'BEGIN { print t / h }')" "$((peak / 1024))"
  rm -rf "$out"
  stop_servers
  rm -rf "$work/$server"
}

# "median min max" of whole numbers.
stats() {
  printf '%s\n' "$@" | sort -n | awk '
    { v[NR] = $1 }
    END {
      median = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      print median, v[1], v[NR]
    }'
}

for client in "${clients[@]}"; do
  echo "-- $client: $runs round(s), each server started empty for each round" \
    "(load average $(cut -d' ' -f1-3 /proc/loadavg))"
  for ((round = 1; round <= runs; round++)); do
    if ((round % 2)); then order=(hub registry); else order=(registry hub); fi
    for server in "${order[@]}"; do
      if ! run_one "$client" "$server" "$round"; then
        stop_servers
        status=1
        continue 3  # the next client: this one's figures would be incomplete
      fi
    done
  done
done

echo
printf '%-8s %-5s %-16s %8s %8s %8s %9s %11s %9s\n' client op server median min max \
  "MB/s" "server CPU" "peak RSS"
declare -A medians
for client in "${clients[@]}"; do
  for op in push pull; do
    for server in hub registry; do
      key="$client $op $server"
      [[ -n ${wall[$key]:-} ]] || continue
      # shellcheck disable=SC2086  # whole numbers separated by spaces
      read -r med min max < <(stats ${wall[$key]})
      # shellcheck disable=SC2086
      read -r cmed _ < <(stats ${cpu[$key]})
      medians[$key]=$med
      name=airlock-hub
      [[ $server == registry ]] && name=docker-registry
      printf '%-8s %-5s %-16s %7.2fs %7.2fs %7.2fs %9.0f %10.2fs %6d MiB\n' "$client" "$op" \
        "$name" "$(awk -v n="$med" 'BEGIN { print n / 1e9 }')" \
        "$(awk -v n="$min" 'BEGIN { print n / 1e9 }')" \
        "$(awk -v n="$max" 'BEGIN { print n / 1e9 }')" \
        "$(awk -v b="$package_bytes" -v n="$med" 'BEGIN { print b / (n / 1e9) / 1e6 }')" \
        "$(awk -v t="$cmed" -v h="$clk_tck" 'BEGIN { print t / h }')" \
        "$((${hwm[$client $server]} / 1024))"
    done
  done
done
echo "(MB/s: package bytes / median wall time, 1 MB = 10^6 bytes; server CPU: median user +" \
  "system time of the server process; peak RSS: the most VmHWM of any round's server;" \
  "load average now: $(cut -d' ' -f1-3 /proc/loadavg))"

for op in push pull; do
  h=${medians[skopeo $op hub]:-}
  r=${medians[skopeo $op registry]:-}
  [[ -n $h && -n $r ]] || continue
  ratio=$(awk -v h="$h" -v r="$r" 'BEGIN { printf "%.2f", h / r }')
  if awk -v h="$h" -v r="$r" 'BEGIN { exit !(h <= r) }'; then
    echo "target met: skopeo $op takes ${ratio}x docker-registry's time on the hub (at most 1x)"
  else
    echo "target NOT met: skopeo $op takes ${ratio}x docker-registry's time on the hub (at most 1x)"
  fi
done
exit "$status"
