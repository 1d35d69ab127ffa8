#!/usr/bin/env bash
# Stop the daemons tests/slurm/start-cluster.sh started (by the pids it recorded under DIR): SIGTERM,
# then SIGKILL for any still alive after a few seconds.
set -uo pipefail
dir="${1:-/tmp/sslbench-slurm}"
pids=()
for name in slurmd slurmctld munged; do
  if [ -s "$dir/$name.pid" ]; then
    pids+=("$(cat "$dir/$name.pid")")
  fi
done
[ ${#pids[@]} -eq 0 ] && exit 0
kill "${pids[@]}" 2>/dev/null || true
for _ in 1 2 3 4 5; do
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && exit 0
  sleep 1
done
kill -9 "${pids[@]}" 2>/dev/null || true
