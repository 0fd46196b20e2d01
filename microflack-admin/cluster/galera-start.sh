#!/usr/bin/env bash
# Starts one Galera node (mariadbd with the arguments given) the way Debian's mysqld_safe and
# galera_new_cluster would, without systemd:
# - while the bootstrap flag file exists (written by `mfcluster up` for the one node that starts a
#   new cluster, and removed by it as soon as that node is primary), the node starts with
#   --wsrep-new-cluster: a start that fails is tried again the same way, and once the cluster
#   exists supervisord restarting this node makes it join the cluster, never found a second one;
# - a state transfer (SST) uses rsync through sst-bin/ (method mfrsync);
# - after a crash (grastate.dat says seqno -1), the last committed position is recovered from
#   InnoDB first (--wsrep-recover) and given as --wsrep-start-position, so that the node asks its
#   donor for the missing write sets only (IST) rather than a whole copy (SST).
set -euo pipefail

usage() { echo "Usage: $(basename "$0") <bootstrap-flag-file> <mariadbd> [<mariadbd arguments>...]"; }
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
[ "$#" -ge 2 ] || { usage >&2; exit 2; }
flag=$1
shift
datadir=""
for arg in "$@"; do
  case "$arg" in --datadir=*) datadir=${arg#--datadir=} ;; esac
done
[ -n "$datadir" ] || { echo "$(basename "$0"): --datadir=<dir> is required" >&2; exit 2; }

# The state transfer method mfrsync (rsync, see sst-bin/) is found on this PATH.
PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/sst-bin:$PATH"
export PATH

# A node that died during a state transfer leaves its rsync daemon behind, and the next transfer
# would wait for it for ever: it is ended first (its pid file is in the data directory).
if [ -f "$datadir/rsync_sst.pid" ]; then
  pid=$(cat "$datadir/rsync_sst.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && grep -q rsync "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    sleep 1
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$datadir/rsync_sst.pid"
fi

extra=()
if [ -e "$flag" ]; then
  echo "galera-start: bootstrapping a new cluster from this node (--wsrep-new-cluster)"
  extra+=(--wsrep-new-cluster)
elif [ -f "$datadir/grastate.dat" ] && grep -q '^seqno: *-1' "$datadir/grastate.dat"; then
  log="$datadir/wsrep-recover.log"
  rm -f "$log"
  if "$@" --wsrep-recover --log-error="$log" >/dev/null 2>&1; then
    position=$(sed -n 's/.*WSREP: Recovered position: *\([0-9a-f-]*:-\{0,1\}[0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ -n "$position" ] && [ "${position##*:}" != -1 ]; then
      echo "galera-start: recovered position $position"
      extra+=(--wsrep-start-position="$position")
    fi
  else
    echo "galera-start: --wsrep-recover failed (see $log); joining with a full state transfer"
  fi
fi
exec "$@" "${extra[@]}"
