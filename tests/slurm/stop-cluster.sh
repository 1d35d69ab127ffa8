#!/usr/bin/env bash
# Stop the daemons tests/slurm/start-cluster.sh started (by the pids it recorded under DIR).
set -uo pipefail
dir="${1:-/tmp/sslbench-slurm}"
for name in slurmd slurmctld munged; do
  if [ -s "$dir/$name.pid" ]; then
    kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
  fi
done
sleep 1
