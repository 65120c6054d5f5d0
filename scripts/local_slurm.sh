#!/usr/bin/env bash
# A throw-away single-node SLURM (and munge) on this machine, for the cluster-path tests
# and for users who want to try `--var scheduler slurm` on a workstation.
#
#   sudo bash scripts/local_slurm.sh start     # prints the SLURM_CONF line to export
#   export SLURM_CONF=/tmp/vae3d-slurm/slurm.conf
#   sinfo; sbatch --wrap hostname
#   sudo bash scripts/local_slurm.sh stop      # stops exactly the daemons it started
#   bash scripts/local_slurm.sh status
#
# Needs root and Debian's packages: apt-get install slurm-wlm munge
# State, spool, logs, pid files and slurm.conf live in $LOCAL_SLURM_DIR (default
# /tmp/vae3d-slurm). Accounting is off (no slurmdbd): finished jobs and their exit codes
# are in $LOCAL_SLURM_DIR/jobcomp.log, dependencies in slurmctld.log. Idempotent: start
# on a running instance and stop on a stopped one only say so.
set -euo pipefail
DIR=${LOCAL_SLURM_DIR:-/tmp/vae3d-slurm}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)

die() { echo "local_slurm: $*" >&2; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }
pidf() { if [ "$1" = munged ]; then echo "$DIR/munge/munged.pid"; else echo "$DIR/$1.pid"; fi; }

start() {
  [ "$(id -u)" -eq 0 ] || die "needs root (slurmd and munged run as root/munge); run with sudo"
  for b in munged slurmctld slurmd sinfo; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || die "$b not found: apt-get install slurm-wlm munge"
  done
  mkdir -p "$DIR/state" "$DIR/spool"
  # munge: a key if the machine has none, the daemon as the munge user
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge "$DIR/munge" && chown munge:munge /run/munge "$DIR/munge"
  if alive "$DIR/munge/munged.pid"; then
    echo "munged already running (pid $(cat "$DIR/munge/munged.pid"))"
  else
    runuser -u munge -- /usr/sbin/munged --pid-file="$DIR/munge/munged.pid" \
      --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" --force
    for _ in $(seq 50); do [ -s "$DIR/munge/munged.pid" ] && break; sleep 0.1; done
  fi
  local cpus mem
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
  cat > "$CONF" <<EOF
# written by scripts/local_slurm.sh: one node, no accounting
ClusterName=vae3d
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$CONF
  if alive "$DIR/slurmctld.pid"; then
    echo "slurmctld already running (pid $(cat "$DIR/slurmctld.pid"))"
  else
    /usr/sbin/slurmctld -f "$CONF"
  fi
  if alive "$DIR/slurmd.pid"; then
    echo "slurmd already running (pid $(cat "$DIR/slurmd.pid"))"
  else
    /usr/sbin/slurmd -f "$CONF"
  fi
  for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "local SLURM up: node $HOST, $cpus CPUs, ${mem} MB; now run: export SLURM_CONF=$CONF"
      return 0
    fi
    sleep 0.2
  done
  die "the node did not become idle within 20 s; see $DIR/slurmctld.log and $DIR/slurmd.log"
}

stop() {
  local any=0
  for d in slurmd slurmctld munged; do
    local pf
    pf=$(pidf "$d")
    if alive "$pf"; then
      kill "$(cat "$pf")"
      for _ in $(seq 50); do alive "$pf" || break; sleep 0.1; done
      echo "stopped $d"
      any=1
    fi
    rm -f "$pf"
  done
  [ "$any" -eq 1 ] || echo "local SLURM was not running (no live pid files in $DIR)"
}

status() {
  for d in munged slurmctld slurmd; do
    if alive "$(pidf "$d")"; then echo "$d running (pid $(cat "$(pidf "$d")"))"; else echo "$d stopped"; fi
  done
  if alive "$DIR/slurmctld.pid"; then SLURM_CONF=$CONF sinfo; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: local_slurm.sh start|stop|status" ;;
esac
