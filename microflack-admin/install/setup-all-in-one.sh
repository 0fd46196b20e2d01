#!/usr/bin/env bash
# Runs the whole platform on this host, as the user who will operate it (after setup-host.sh):
# npm dependencies, build, then mfup; adds the mf* scripts and mfvars to the user's shell.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename "$0")
Builds this checkout and starts MicroFlack with mfup (MICROFLACK_HOME, MICROFLACK_IP and
MICROFLACK_PORT are honoured), then puts microflack-admin/bin on the PATH of new shells.
USAGE
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) echo "$(basename "$0"): unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

admin=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$admin/install/install-deps.sh"
"$admin/bin/mfup"

# Operators' shells get the scripts and the platform's environment (no secrets: those stay in
# MICROFLACK_HOME/secrets.env).
marker="# microflack-admin"
if [ -f "$HOME/.bashrc" ] && ! grep -qF "$marker" "$HOME/.bashrc"; then
  {
    echo "$marker"
    [ -z "${MICROFLACK_IP:-}" ] || echo "export MICROFLACK_IP=$MICROFLACK_IP"
    echo "export PATH=\"$admin/bin:\$PATH\""
    echo ". \"$admin/bin/mfvars\""
  } >>"$HOME/.bashrc"
  echo "added microflack-admin/bin and mfvars to ~/.bashrc"
fi
