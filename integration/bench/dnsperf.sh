#!/usr/bin/env bash
# dnsperf.sh — queries per second of one built CoreDNS serving N peer names
# from the peername plugin's cache, against the same server serving N names
# with the standard hosts plugin (another zone of the same Corefile), in one
# run, with the same dnsperf settings. Prints a Markdown summary.
#
# Usage: integration/bench/dnsperf.sh [-n NAMES] [-l SECONDS] [-c CLIENTS] [-r ROUNDS] [-L]
# (defaults: 1000 names, 5 s per measurement, 8 clients, 8 rounds)
# -L: the hosts plugin serves names as long as the peer names
# (n<i>.<the publisher's authority>.host.alt. instead of n<i>.hosts.test.),
# so that both zones cost miekg/dns and dnsperf the same to parse and pack.
#
# Besides queries per second (which, on a machine with other load, depend
# as much on the scheduler and on dnsperf itself as on the server), each
# measurement gives the CPU time the server process used per answered query
# (utime + stime from /proc, in microseconds): what a plugin costs, and
# much less sensitive to the machine's load.
# Needs: go, dnsperf (apt-get install dnsperf), ss (iproute2).
#
# Two processes run: a publisher node that publishes the N names on the
# overlay, and the server under test, which joins through it. The server's
# answers for peer names come from its resolver cache after one warm-up
# pass (answer TTL and record lifetime are an hour, longer than the run).
set -euo pipefail

names=1000 seconds=5 clients=8 rounds=8 samelen=0
while getopts "n:l:c:r:L" opt; do
  case $opt in
    n) names=$OPTARG ;;
    l) seconds=$OPTARG ;;
    c) clients=$OPTARG ;;
    r) rounds=$OPTARG ;;
    L) samelen=1 ;;
    *) echo "usage: $0 [-n NAMES] [-l SECONDS] [-c CLIENTS] [-r ROUNDS] [-L]" >&2; exit 2 ;;
  esac
done
command -v dnsperf >/dev/null || { echo "dnsperf not installed (apt-get install dnsperf)" >&2; exit 2; }

root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/peername-dnsperf.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# free_port prints a port no socket on this host is bound to (TCP or UDP).
used=" $(ss -Hlntu | awk '{print $5}' | sed 's/.*://' | sort -u | tr '\n' ' ') "
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    case "$used" in *" $p "*) continue ;; esac
    used="$used$p "
    echo "$p"
    return
  done
}

echo "building into $work ..." >&2
(cd "$root" && go build -o "$work/coredns" ./cmd/coredns && go build -o "$work/peername" ./cmd/peername)

pub_dns=$(free_port) pub_overlay=$(free_port) pub_ready=$(free_port)
srv_dns=$(free_port) srv_overlay=$(free_port) srv_ready=$(free_port)

"$work/peername" keygen "$work/publisher.key" >/dev/null
"$work/peername" keygen "$work/server.key" >/dev/null
auth=$("$work/peername" name -key "$work/publisher.key" x | cut -d. -f2)
hzone=hosts.test hlabel=""
if ((samelen)); then hzone=host.alt hlabel=".$auth"; fi

# Publisher: N secured names n0..n(N-1), each with its own address.
{
  echo ".:$pub_dns {"
  echo "  bind 127.0.0.1"
  echo "  ready 127.0.0.1:$pub_ready"
  echo "  peername peer.alt. {"
  echo "    identity $work/publisher.key"
  echo "    listen 127.0.0.1:$pub_overlay"
  echo "    cloud bench"
  echo "    lifetime 1h"
  for ((i = 0; i < names; i++)); do
    echo "    publish n$i 10.$((i / 65536 % 256)).$((i / 256 % 256)).$((i % 256))"
  done
  echo "  }"
  echo "}"
} >"$work/Corefile.publisher"

# Server under test: the peer zone from the overlay, and the same number of
# names in $hzone. from the hosts plugin, on one port.
{
  echo "peer.alt.:$srv_dns {"
  echo "  bind 127.0.0.1"
  echo "  ready 127.0.0.1:$srv_ready"
  echo "  peername {"
  echo "    identity $work/server.key"
  echo "    listen 127.0.0.1:$srv_overlay"
  echo "    bootstrap 127.0.0.1:$pub_overlay"
  echo "    cloud bench"
  echo "    ttl 3600"
  echo "  }"
  echo "}"
  echo "$hzone.:$srv_dns {"
  echo "  bind 127.0.0.1"
  echo "  hosts {"
  for ((i = 0; i < names; i++)); do
    echo "    10.$((i / 65536 % 256)).$((i / 256 % 256)).$((i % 256)) n$i$hlabel.$hzone"
  done
  echo "    fallthrough"
  echo "  }"
  echo "}"
} >"$work/Corefile.server"

# ready PORT: the ready plugin's endpoint answers 200 (plain bash, no curl).
ready() ( # a subshell: the redirections below stay in it
  exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
  printf 'GET /ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  read -r _ status _ <&3 || exit 1
  [ "$status" = 200 ]
)

wait_ready() { # port pid
  for _ in $(seq 1 600); do
    if ready "$1"; then return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "server exited; log:" >&2; cat "$work"/*.log >&2; exit 1; }
    sleep 0.1
  done
  echo "not ready after 60 s" >&2; exit 1
}

"$work/coredns" -conf "$work/Corefile.publisher" >"$work/publisher.log" 2>&1 &
pids+=($!)
wait_ready "$pub_ready" "${pids[0]}"
"$work/coredns" -conf "$work/Corefile.server" >"$work/server.log" 2>&1 &
pids+=($!)
wait_ready "$srv_ready" "${pids[1]}"

for ((i = 0; i < names; i++)); do echo "n$i.$auth.peer.alt. A"; done >"$work/peer.q"
for ((i = 0; i < names; i++)); do echo "n$i$hlabel.$hzone. A"; done >"$work/hosts.q"

# Warm-up: one pass over the peer names until every one answers NOERROR
# (the publisher may still be storing its names when it reports ready).
for attempt in $(seq 1 60); do
  out=$(dnsperf -s 127.0.0.1 -p "$srv_dns" -d "$work/peer.q" -n 1 -t 5 2>&1)
  if grep -q "NOERROR $names (100.00%)" <<<"$out"; then break; fi
  [ "$attempt" = 60 ] && { echo "warm-up failed:" >&2; echo "$out" >&2; exit 1; }
  sleep 1
done
dnsperf -s 127.0.0.1 -p "$srv_dns" -d "$work/hosts.q" -n 1 2>&1 | grep -q "NOERROR $names (100.00%)" || { echo "hosts zone does not answer every name" >&2; exit 1; }

# cpu_us PID: the CPU time (user + system) the process has used, in µs.
tick_us=$((1000000 / $(getconf CLK_TCK)))
cpu_us() { awk -v t="$tick_us" '{print ($14 + $15) * t}' "/proc/$1/stat"; }

qps() { # queryfile -> QPS, lost, server µs/query
  local s0 s1
  s0=$(cpu_us "${pids[1]}")
  dnsperf -s 127.0.0.1 -p "$srv_dns" -d "$1" -l "$seconds" -c "$clients" -q 200 >"$work/dnsperf.out" 2>&1
  s1=$(cpu_us "${pids[1]}")
  awk -v s="$((s1 - s0))" '/Queries completed:/ {n=$3} /Queries per second:/ {q=$4} /Queries lost:/ {l=$3}
    END {printf "%.0f %s %.2f\n", q, l, s / n}' "$work/dnsperf.out"
}

# Rounds alternate which zone goes first, so that a change in the machine's
# background load between the two halves of a round favours neither; the
# median of the per-round ratios is the figure to quote on a shared machine.
echo "| round | hosts plugin (QPS) | peername cache (QPS) | ratio | server CPU µs/query: hosts | peername | CPU ratio (hosts / peername) |"
echo "|---|---|---|---|---|---|---|"
sum_h=0 sum_p=0 ratios=() cratios=()
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then
    read -r h hl hc < <(qps "$work/hosts.q")
    read -r p pl pc < <(qps "$work/peer.q")
  else
    read -r p pl pc < <(qps "$work/peer.q")
    read -r h hl hc < <(qps "$work/hosts.q")
  fi
  ratio=$(awk -v p="$p" -v h="$h" 'BEGIN {printf "%.3f", p / h}')
  cratio=$(awk -v p="$pc" -v h="$hc" 'BEGIN {printf "%.3f", h / p}')
  ratios+=("$ratio") cratios+=("$cratio")
  echo "| $r | $h (lost $hl) | $p (lost $pl) | $ratio | $hc | $pc | $cratio |"
  sum_h=$((sum_h + h)) sum_p=$((sum_p + p))
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
m=$(median "${ratios[@]}") cm=$(median "${cratios[@]}")
awk -v p="$sum_p" -v h="$sum_h" -v r="$rounds" -v m="$m" -v cm="$cm" 'BEGIN {printf "| mean | %.0f | %.0f | %.3f (median of rounds **%.3f**) | | | median **%.3f** |\n", h / r, p / r, p / h, m, cm}'
echo
echo "names=$names seconds=$seconds clients=$clients rounds=$rounds hosts zone=$hzone.; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $(go version | cut -d' ' -f3); dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')"
