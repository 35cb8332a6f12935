#!/usr/bin/env bash
# stop-slurm.sh - stop what start-slurm.sh started: cancel every Slurm job, then stop slurmd,
# slurmctld, slurmdbd, mariadbd and munged, each by the PID in its pid file (checked against
# /proc/PID/comm, so a stale or reused PID is never signaled). Idempotent; state, config,
# accounting database and packages stay.
set -uo pipefail
say() { echo "[stop-slurm $(date +%T)] $*" >&2; }
[ "$(id -u)" = 0 ] || { say "must run as root"; exit 1; }

running() { local pid; pid=$(cat "$2" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; }
halt() { running "$1" "$2" || { rm -f "$2"; return 0; }
  local pid; pid=$(cat "$2"); say "stopping $1 ($pid)"; kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then say "$1 ignored SIGTERM; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$2"; }   # slurm-owned daemons cannot remove their root-owned /run pid files

# Cancel jobs through Slurm first: stopping slurmd alone would leave job processes behind.
if running slurmctld /run/slurmctld.pid && running slurmd /run/slurmd.pid; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    say "cancelling $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 100); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi
halt slurmd /run/slurmd.pid
halt slurmctld /run/slurmctld.pid
halt slurmdbd /run/slurmdbd.pid
halt mariadbd /run/mysqld/mysqld.pid
halt munged /run/munge/munged.pid
exit 0
