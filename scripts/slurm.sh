#!/usr/bin/env bash
# A real one-node Slurm cluster for the tests of `eocube build --executor slurm`.
# Usage: scripts/slurm.sh install|start|stop|status
#   install  Debian's slurm-wlm and munge (as root or through sudo); quick when present.
#   start    munged + slurmctld + slurmd on this host, one partition `debug` of 2 CPUs; writes
#            $EOCUBE_SLURM_DIR/env (EOCUBE_SLURM=1, EOCUBE_SLURM_PARTITION) for the test runner.
#   stop     scontrol shutdown, munged stopped.
# State, spool and logs live in $EOCUBE_SLURM_DIR (default target/eocube-slurm); the cluster's
# configuration must be at /etc/slurm/slurm.conf, where Slurm's commands look for it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${EOCUBE_SLURM_DIR:-$ROOT/target/eocube-slurm}"
CONF=/etc/slurm/slurm.conf
export DEBIAN_FRONTEND=noninteractive

log() { echo "slurm: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi

install() {
    if command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; then
        log "slurm-wlm and munge present"
        return
    fi
    log "installing slurm-wlm and munge"
    $SUDO apt-get update -q </dev/null
    $SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge </dev/null
}

write_conf() {
    local host
    host="$(hostname -s)"
    $SUDO mkdir -p /etc/slurm
    # One node of this machine's CPUs; no accounting (sacct answers nothing: the executor polls
    # squeue and scontrol). ReturnToService=2 brings the node back after a restart.
    $SUDO tee "$CONF" >/dev/null <<EOF
ClusterName=eocube-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MaxArraySize=10001
# Room for the dispatch benchmark (100,000 held tasks); Slurm counts each array task.
MaxJobCount=250000
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=300
KillWait=5
NodeName=$host CPUs=$(nproc) RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if pgrep -x munged >/dev/null 2>&1; then return; fi
    [ -f /etc/munge/munge.key ] || $SUDO mungekey -c
    $SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
    $SUDO chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
    $SUDO chmod 0700 /etc/munge
    $SUDO chmod 0400 /etc/munge/munge.key
    $SUDO -u munge munged --force 2>/dev/null || $SUDO runuser -u munge -- munged --force
}

start() {
    command -v slurmctld >/dev/null 2>&1 || { log "Slurm is not installed (run scripts/slurm.sh install)"; exit 1; }
    stop >/dev/null 2>&1 || true
    mkdir -p "$DIR/state" "$DIR/spool"
    write_conf
    start_munge
    $SUDO slurmctld -i
    $SUDO slurmd
    local host state=""
    host="$(hostname -s)"
    for _ in $(seq 1 60); do
        state="$(sinfo -h -n "$host" -o %T 2>/dev/null || true)"
        case "$state" in
            idle*|mixed*|allocated*) break ;;
            down*|drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    case "$state" in
        idle*|mixed*|allocated*) ;;
        *)
            log "the node did not come up (state: ${state:-none}); logs in $DIR"
            tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
            exit 1
            ;;
    esac
    cat >"$DIR/env" <<EOF
export EOCUBE_SLURM=1
export EOCUBE_SLURM_PARTITION=debug
export EOCUBE_SLURM_DIR=$DIR
EOF
    log "ready: node $host $state, partition debug ($(nproc) CPUs)"
}

stop() {
    rm -f "$DIR/env"
    if command -v scontrol >/dev/null 2>&1 && [ -f "$CONF" ]; then
        scontrol shutdown >/dev/null 2>&1 || true
    fi
    for f in slurmd.pid slurmctld.pid; do
        if [ -f "$DIR/$f" ]; then
            local pid
            pid="$(cat "$DIR/$f")"
            for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$DIR/$f"
        fi
    done
}

status() {
    sinfo && squeue
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
