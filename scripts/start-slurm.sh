#!/usr/bin/env bash
# start-slurm.sh - start a real single-node Slurm (Debian 12 slurm-wlm 22.05) on this machine,
# without systemd, as root: munged, mariadbd + slurmdbd (for sacct), slurmctld, slurmd.
#
# Idempotent: installs only missing packages, rewrites a config only when its content changes,
# restarts only the Slurm daemons whose config changed, starts only daemons that are not running,
# and finishes with a one-job probe so that "ready" means a job has just run.
# Stop everything with scripts/stop-slurm.sh (by PID).
#
# Environment:
#   SLURM_CPUS=N          advertise N CPUs on the node (config_overrides) so more 1-CPU jobs run
#                         at once than the machine has cores (default: the real count)
#   SLURM_WIPE_STATE=1    forget all jobs and the accounting database
#   SLURM_PROBE=0         skip the probe job
#   SLURM_CLUSTER (localci), SLURM_PARTITION (debug), SLURM_DB_PASS (local-only MariaDB user)
set -euo pipefail

CLUSTER=${SLURM_CLUSTER:-localci}
PARTITION=${SLURM_PARTITION:-debug}
DB_PASS=${SLURM_DB_PASS:-slurmci}
ETC=/etc/slurm
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm

say() { echo "[start-slurm $(date +%T)] $*" >&2; }
fail() { say "ERROR: $*"; for f in "$LOGS"/slurmctld.log "$LOGS"/slurmd.log "$LOGS"/slurmdbd.log; do
  [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }; done; exit 1; }
[ "$(id -u)" = 0 ] || fail "must run as root"

# running NAME PIDFILE: the pid in PIDFILE is alive and is NAME (a stale or reused pid is not)
running() { local pid; pid=$(cat "$2" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; }
# halt NAME PIDFILE: SIGTERM by pid, SIGKILL after 30 s
halt() { running "$1" "$2" || { rm -f "$2"; return 0; }
  local pid; pid=$(cat "$2"); say "stopping $1 ($pid)"; kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$2"; }
# until_ok SECONDS WHAT CMD...: retry CMD every 0.2 s
until_ok() { local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for $what"; sleep 0.2; done; }
# put PATH MODE OWNER < content: install the content; returns 0 only if the file changed
put() { local tmp; tmp=$(mktemp); cat >"$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  install -m "$2" -o "$3" -g "$3" "$tmp" "$1"; rm -f "$tmp"; }

# 1. packages
want="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
missing=$(for p in $want; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || echo "$p"; done | tr '\n' ' ')
if [ -n "${missing// /}" ]; then
  say "installing $missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# 2. munge
install -d -o munge -g munge -m 0755 /run/munge
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
running munged /run/munge/munged.pid || { say "starting munged"; runuser -u munge -- /usr/sbin/munged; }
until_ok 15 munged sh -c 'munge -n | unmunge'

# 3. configuration
HOST=$(hostname -s)
HW=$(slurmd -C | head -n1)
HW_MEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
MEM=$(( HW_MEM - 1024 )); [ "$MEM" -ge 1024 ] || MEM=$(( HW_MEM * 9 / 10 ))
if [ -n "${SLURM_CPUS:-}" ]; then
  NODE="NodeName=$HOST CPUs=$SLURM_CPUS RealMemory=$MEM NodeAddr=127.0.0.1 State=UNKNOWN"
  OVERRIDES="SlurmdParameters=config_overrides"
else
  NODE="$(sed "s/RealMemory=[0-9]*/RealMemory=$MEM/" <<<"$HW") NodeAddr=127.0.0.1 State=UNKNOWN"
  OVERRIDES=""
fi
install -d -m 0755 "$ETC"
install -d -o slurm -g slurm -m 0755 "$STATE" "$LOGS"
install -d -m 0755 "$SPOOL"
WIPE_DB=0
if [ "${SLURM_WIPE_STATE:-0}" = 1 ]; then
  halt slurmd /run/slurmd.pid; halt slurmctld /run/slurmctld.pid
  say "wiping Slurm state"; rm -rf "${STATE:?}"/* "${SPOOL:?}"/*; WIPE_DB=1
fi

CONF_CHANGED=0
put "$ETC/slurm.conf" 0644 root <<EOF && CONF_CHANGED=1
# written by torc_graph scripts/start-slurm.sh
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
EnforcePartLimits=ALL
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
$OVERRIDES
$NODE
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
DBD_CHANGED=0
put "$ETC/slurmdbd.conf" 0600 slurm <<EOF && DBD_CHANGED=1
# written by torc_graph scripts/start-slurm.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
LogFile=$LOGS/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF

# 4. MariaDB + slurmdbd (sacct)
install -d -o mysql -g root -m 0755 /run/mysqld
if ! running mariadbd /run/mysqld/mysqld.pid; then
  say "starting mariadbd"
  setsid /usr/sbin/mariadbd --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid \
    --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 </dev/null >>"$LOGS/mariadb.log" 2>&1 &
fi
until_ok 60 mariadbd mariadb -e 'SELECT 1'
if [ "$WIPE_DB" = 1 ]; then halt slurmdbd /run/slurmdbd.pid; mariadb -e 'DROP DATABASE IF EXISTS slurm_acct_db'; fi
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
            ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
[ "$DBD_CHANGED" = 1 ] && halt slurmdbd /run/slurmdbd.pid
running slurmdbd /run/slurmdbd.pid || { say "starting slurmdbd"; /usr/sbin/slurmdbd; }
until_ok 60 slurmdbd sacctmgr -n list cluster
sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null

# 5. slurmctld + slurmd
if [ "$CONF_CHANGED" = 1 ]; then halt slurmd /run/slurmd.pid; halt slurmctld /run/slurmctld.pid; fi
running slurmctld /run/slurmctld.pid || { say "starting slurmctld"; /usr/sbin/slurmctld; }
until_ok 30 slurmctld scontrol ping
running slurmd /run/slurmd.pid || { say "starting slurmd"; /usr/sbin/slurmd; }
deadline=$(( $(date +%s) + 60 )); resumed=0
while :; do
  st=$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null || true)
  case "$st" in
    idle|mixed|allocated|completing) break ;;
    *drain*|down*) [ "$resumed" = 1 ] || { scontrol update NodeName="$HOST" State=RESUME || true; resumed=1; } ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || fail "node $HOST not usable (state '$st')"
  sleep 0.2
done

# 6. probe: one job runs to completion
if [ "${SLURM_PROBE:-1}" = 1 ]; then
  probe=$(sbatch --parsable -J start-slurm-probe -o /dev/null --wrap true) || fail "sbatch failed"
  until_ok 120 "probe job $probe" bash -c "[ -z \"\$(squeue -h -j $probe 2>/dev/null)\" ]"
  scontrol show job "$probe" | grep -q 'JobState=COMPLETED' || fail "probe job $probe did not complete"
fi
say "ready: $(sinfo -h -N -n "$HOST" -o '%N %T cpus=%c mem=%mMB')"
