#!/usr/bin/env bash
# Start a real single-node SLURM cluster (munge + slurmctld + slurmd) for the `slurm`-marked tests.
#
#   tests/slurm/start-cluster.sh [DIR]     (as root; DIR defaults to /tmp/sslbench-slurm)
#
# Needs Debian's `slurm-wlm` and `munge` (`apt-get install slurm-wlm munge`). Everything the cluster
# writes (config, state, spool, logs, pid files) lives under DIR; the clients find it through
# SLURM_CONF=DIR/slurm.conf, which the script prints and writes to DIR/env. Stop it with
# tests/slurm/stop-cluster.sh DIR, which kills the daemons this script started, by pid.
set -euo pipefail
dir="${1:-/tmp/sslbench-slurm}"
mkdir -p "$dir"/state "$dir"/spool "$dir"/log "$dir"/munge
dir="$(cd "$dir" && pwd)"
host="$(hostname -s)"
cpus="$(nproc)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))  # a little under the machine's

# munge: the key Debian's package made, or a new one; a munged already running is used (and left running)
key=/etc/munge/munge.key
if [ ! -s "$key" ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of="$key" status=none
  chmod 400 "$key"
fi
chown -R munge:munge "$dir/munge" 2>/dev/null || true
mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true

cat > "$dir/slurm.conf" <<CONF
ClusterName=sslbench-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# requeued jobs wait cred_expire seconds before they may start again (default 120)
AuthInfo=cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
JobRequeue=1
ReturnToService=2
KillWait=5
MinJobAge=300
InactiveLimit=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

rm -f "$dir/munged.pid"
if ! pgrep -x munged >/dev/null; then  # started here only when none runs; then stopped here too
  munged --force --pid-file="$dir/munged.pid" 2>/dev/null  # munged writes its own pid once it runs
fi
slurmctld -c -f "$dir/slurm.conf"
slurmd -c -f "$dir/slurm.conf"
export SLURM_CONF="$dir/slurm.conf"
echo "export SLURM_CONF=$dir/slurm.conf" > "$dir/env"
for _ in $(seq 60); do
  state="$(sinfo -h -N -o '%t' 2>/dev/null | head -1 || true)"
  if [ "$state" = "idle" ]; then
    echo "SLURM cluster up: node $host, $cpus CPUs, ${mem_mb} MB; export SLURM_CONF=$dir/slurm.conf"
    exit 0
  fi
  sleep 0.5
done
echo "SLURM cluster did not come up; see $dir/log" >&2
tail -n 20 "$dir"/log/*.log >&2 || true
exit 1
