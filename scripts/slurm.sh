#!/usr/bin/env bash
# A single-node Slurm cluster on loopback, for the SlurmPool integration tests.
#
#   scripts/slurm.sh up     install slurm-wlm + munge if missing (Debian), write the config under
#                           target/slurm/, start munged, slurmctld and slurmd; wait for the node
#   scripts/slurm.sh down   stop the daemons it started
#   scripts/slurm.sh env    print the environment a client needs (SLURM_CONF)
#
# Slurm 22.05 (Debian bookworm). Two fake GPUs through gres.conf, as Slurm's own test suite does.
# Needs root (slurmd runs jobs as their users). Everything it writes is under target/slurm/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD/target/slurm"
CONF="$ROOT/etc/slurm.conf"

log() { echo "[slurm] $*" >&2; }

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "slurm-wlm and munge are not installed and this is not a root Debian machine"; exit 1
    fi
    log "installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        head -c 1024 /dev/urandom > /etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    su -s /bin/sh munge -c /usr/sbin/munged
    mkdir -p "$ROOT" && touch "$ROOT/started-munge"
    for _ in $(seq 50); do
        if munge -n | unmunge >/dev/null 2>&1; then return; fi
        sleep 0.1
    done
    log "munged did not come up"; exit 1
}

write_conf() {
    local host cpus mem
    host="$(hostname -s)"
    cpus="$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')"
    mem="$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
    mem=$((mem * 9 / 10))
    mkdir -p "$ROOT/etc" "$ROOT/state" "$ROOT/spool" "$ROOT/log"
    cat > "$CONF" <<CONF
ClusterName=aistd
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmUser=root
SlurmdUser=root
MinJobAge=600
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=$ROOT/slurmctld.pid
SlurmdPidFile=$ROOT/slurmd.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd.log
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:fake:2 State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    echo "Name=gpu Type=fake File=/dev/tty[0-1]" > "$ROOT/etc/gres.conf"
    echo "IgnoreSystemd=yes" > "$ROOT/etc/cgroup.conf"
}

up() {
    install
    start_munge
    down quiet
    rm -rf "$ROOT/state" "$ROOT/spool"
    write_conf
    export SLURM_CONF="$CONF"
    slurmctld -f "$CONF"
    for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
    slurmd -f "$CONF"
    for _ in $(seq 300); do
        if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
            log "up: $(sinfo -h -o '%N %c CPUs %m MiB %G %t')"
            return
        fi
        sleep 0.1
    done
    log "the node did not become idle:"; sinfo >&2 || true
    tail -20 "$ROOT/log/slurmctld.log" "$ROOT/log/slurmd.log" >&2 || true
    exit 1
}

down() {
    for d in slurmd slurmctld; do
        local pidfile="$ROOT/$d.pid"
        local pid
        pid="$(cat "$pidfile" 2>/dev/null || true)"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    done
    if [ "${1:-}" != quiet ] && [ -e "$ROOT/started-munge" ]; then
        [ -s /run/munge/munged.pid ] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
        rm -f "$ROOT/started-munge"
    fi
    [ "${1:-}" = quiet ] || log "down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) echo "SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
