#!/usr/bin/env bash
# A single-node Slurm cluster on localhost from Debian's packages, for testing the Slurm profile.
#
#   bash scripts/slurm_local.sh install   # apt-get install munge, slurmctld, slurmd, slurm-client (root)
#   bash scripts/slurm_local.sh start     # write the config, start munged, slurmctld, slurmd; wait for 'idle'
#   bash scripts/slurm_local.sh status    # sinfo + squeue
#   bash scripts/slurm_local.sh stop      # stop the daemons by their PID files
#
# Idempotent: start reuses running daemons; stop ignores stopped ones. No systemd needed: the daemons are
# started directly and daemonise themselves. No accounting database: job status comes from squeue, and
# MinJobAge=600 keeps finished jobs visible to it (and to `scontrol show job`) for 10 minutes.
# Partition: "debug" (all of this machine's CPUs and memory minus 1 GiB).
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/lib/slurm-local
LOGDIR=/var/log/slurm-local
RUNDIR=/run/slurm-local
PARTITION=${SLURM_LOCAL_PARTITION:-debug}

need_root() { [ "$(id -u)" = 0 ] || { echo "slurm_local: must run as root" >&2; exit 2; }; }

write_config() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOGDIR" "$RUNDIR"
    cat > "$CONF_DIR/slurm.conf" <<EOF
# Written by scripts/slurm_local.sh: a one-node test cluster.
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
EnforcePartLimits=ALL
MinJobAge=600
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUNDIR/slurmctld.pid
SlurmdPidFile=$RUNDIR/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    need_root
    command -v slurmctld >/dev/null || { echo "slurm_local: Slurm is not installed (run: $0 install)" >&2; exit 3; }
    local t0=$SECONDS
    write_config
    mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
    if [ ! -f /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    # munged: reuse a working one (someone else's, or ours from an earlier start); stop only ours.
    if ! timeout 2 munge -n >/dev/null 2>&1; then
        if running "$RUNDIR/munged.pid"; then  # ours but not answering: replace it
            kill "$(cat "$RUNDIR/munged.pid")"; sleep 1
        fi
        runuser -u munge -- /usr/sbin/munged --force --pid-file=/run/munge/munged.pid
        cp /run/munge/munged.pid "$RUNDIR/munged.pid"
        until timeout 2 munge -n >/dev/null 2>&1; do
            [ $((SECONDS - t0)) -lt 10 ] || { echo "slurm_local: munged does not answer" >&2; exit 1; }
            sleep 0.2
        done
    fi
    running "$RUNDIR/slurmctld.pid" || slurmctld -c
    running "$RUNDIR/slurmd.pid" || slurmd
    while [ $((SECONDS - t0)) -lt 20 ]; do
        if timeout 3 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "slurm_local: up in $((SECONDS - t0)) s; partition $PARTITION: $(sinfo -h -o '%D node(s), %c CPUs, %m MB, state %T')"
            return 0
        fi
        sleep 0.5
    done
    echo "slurm_local: the node did not become idle within 20 s" >&2
    timeout 3 sinfo -N -l >&2 || true
    timeout 3 scontrol show node >&2 || true
    tail -n 20 "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" >&2 || true
    exit 1
}

stop() {
    # by PID files only: slurmd, slurmctld, then munged if this script started it
    for pid in "$RUNDIR/slurmd.pid" "$RUNDIR/slurmctld.pid" "$RUNDIR/munged.pid"; do
        if running "$pid"; then
            kill "$(cat "$pid")"
            for _ in $(seq 1 40); do running "$pid" || break; sleep 0.25; done
            if running "$pid"; then kill -9 "$(cat "$pid")"; fi
        fi
        rm -f "$pid"
    done
    echo "slurm_local: stopped"
}

case "${1:-}" in
    install)
        need_root
        if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
            && command -v sbatch >/dev/null; then
            echo "slurm_local: already installed"
        else
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                slurmctld slurmd slurm-client munge >/dev/null
            echo "slurm_local: installed $(slurmctld -V)"
        fi
        ;;
    start) start ;;
    stop) stop ;;
    status) sinfo; squeue --states=all ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
