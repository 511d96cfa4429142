#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine, entirely inside DIR, for the tests of
# `reprolm sweep --executor slurm` (and for trying the executor without a real cluster).
#
#   tests/slurm/start-cluster.sh DIR [CTLD_PORT SLURMD_PORT]
#   export SLURM_CONF=DIR/slurm.conf      # then sbatch, squeue, sinfo, scancel talk to it
#   tests/slurm/stop-cluster.sh DIR
#
# Needs root and the Debian packages slurm-wlm and munge (`apt-get install -y slurm-wlm munge`).
# Nothing outside DIR is written: munged gets its own key and socket, slurmctld and slurmd their own
# state, spool, logs and ports, so a system Slurm or munge on the machine is left alone. The daemons
# run in the background with their pids in DIR/pids; stop-cluster.sh (or killing those pids) ends them.
# The node has 2 CPUs and no GPUs; process tracking is plain /proc walking and no cgroups are used,
# so it runs in containers too.
set -euo pipefail

dir=${1:?usage: start-cluster.sh DIR [CTLD_PORT SLURMD_PORT]}
ctld_port=${2:-6917}
slurmd_port=${3:-6918}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir"
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
chmod 700 "$dir/munge"
: > "$dir/pids"

# munge: a fresh random key, a private socket.
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
munged --force \
  --socket="$dir/munge/munge.socket" \
  --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/log/munged.log" \
  --seed-file="$dir/munge/munged.seed"
for _ in $(seq 50); do [ -s "$dir/munge/munged.pid" ] && break; sleep 0.1; done
cat "$dir/munge/munged.pid" >> "$dir/pids"

cat > "$dir/slurm.conf" <<CONF
ClusterName=reprolmtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
PlugStackConfig=$dir/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
: > "$dir/plugstack.conf"
export SLURM_CONF="$dir/slurm.conf"

# -D keeps each daemon in the foreground of its own background process, so its pid is known at
# once and nothing is left behind when that pid is killed.
slurmctld -D -i -f "$SLURM_CONF" </dev/null >"$dir/log/slurmctld.out" 2>&1 &
echo $! >> "$dir/pids"
slurmd -D -N localhost -f "$SLURM_CONF" </dev/null >"$dir/log/slurmd.out" 2>&1 &
echo $! >> "$dir/pids"

# Ready when the node takes jobs.
for _ in $(seq 150); do
  state=$(sinfo --noheader --format=%T 2>/dev/null || true)
  case "$state" in
    idle*|mixed*|allocated*) echo "slurm cluster up in $dir (SLURM_CONF=$SLURM_CONF)"; exit 0 ;;
  esac
  sleep 0.2
done
echo "slurm cluster in $dir did not come up within 30 s; node state: '${state:-none}'" >&2
tail -n 20 "$dir"/log/*.log "$dir"/log/*.out >&2 || true
exit 1
