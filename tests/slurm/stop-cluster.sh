#!/usr/bin/env bash
# Stop the cluster tests/slurm/start-cluster.sh started in DIR: cancel its jobs, then end its daemons.
#
#   tests/slurm/stop-cluster.sh DIR
set -uo pipefail

dir=${1:?usage: stop-cluster.sh DIR}
export SLURM_CONF="$dir/slurm.conf"
if [ -f "$SLURM_CONF" ] && scancel --full --quiet --user="$(id -un)" 2>/dev/null; then
  # Let slurmd end the job steps it started before slurmd itself goes.
  for _ in $(seq 50); do
    [ -z "$(squeue --noheader --format=%i 2>/dev/null)" ] && break
    sleep 0.2
  done
fi
[ -f "$dir/pids" ] || exit 0
pids=$(tac "$dir/pids")
for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
for _ in $(seq 50); do
  alive=
  for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ -z "$alive" ] && exit 0
  sleep 0.1
done
for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
