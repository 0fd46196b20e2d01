#!/bin/sh
# MariaDB for MicroFlack in a container: on an empty data directory, creates the system tables, the
# root password and one database with its own account per service (as mfup does), then runs
# mariadbd in the foreground (exec: it gets SIGTERM and shuts down cleanly).
#
# Environment: MARIADB_ROOT_PASSWORD, and MF_DB_PASSWORD_<SERVICE> for each service in
# MF_DB_SERVICES (default "users messages"): database <service>, account mf_<service>.
# Passwords are letters and digits (they are also written into DATABASE_URLs).
set -eu

datadir=${MARIADB_DATADIR:-/var/lib/mysql}
rundir=${MARIADB_RUNDIR:-/run/mysqld}
mkdir -p "$datadir" "$rundir"
socket=$rundir/mysqld.sock
# No my.cnf: every setting is here, and a pod's arguments ("$@") come last.
set -- --no-defaults --datadir="$datadir" --socket="$socket" --tmpdir=/tmp --skip-log-bin \
  --bind-address=0.0.0.0 --port=3306 --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci "$@"

if [ ! -d "$datadir/mysql" ]; then
  : "${MARIADB_ROOT_PASSWORD:?MARIADB_ROOT_PASSWORD is required to create the database}"
  case "$MARIADB_ROOT_PASSWORD" in *[!A-Za-z0-9]*) echo "mariadb-entrypoint: MARIADB_ROOT_PASSWORD: letters and digits only"; exit 1 ;; esac
  echo "mariadb-entrypoint: initialising $datadir"
  mariadb-install-db --no-defaults --datadir="$datadir" --tmpdir=/tmp --skip-test-db \
    --auth-root-authentication-method=normal >/tmp/install-db.log 2>&1 || {
    cat /tmp/install-db.log
    exit 1
  }
  mariadbd "$@" --skip-networking &
  pid=$!
  i=0
  until mariadb-admin --no-defaults --socket="$socket" -uroot ping >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt 60 ] || { echo "mariadb-entrypoint: mariadbd did not start"; exit 1; }
    sleep 0.5
  done
  sql="DELETE FROM mysql.user WHERE User = ''; "
  sql="$sql ALTER USER 'root'@'localhost' IDENTIFIED BY '$MARIADB_ROOT_PASSWORD'; "
  for svc in ${MF_DB_SERVICES:-users messages}; do
    var=MF_DB_PASSWORD_$(echo "$svc" | tr '[:lower:]' '[:upper:]')
    password=
    eval "password=\${$var:?$var is required}"
    case "$password" in *[!A-Za-z0-9]*) echo "mariadb-entrypoint: $var: letters and digits only"; exit 1 ;; esac
    sql="$sql CREATE DATABASE IF NOT EXISTS \`$svc\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; "
    sql="$sql CREATE USER IF NOT EXISTS 'mf_$svc'@'%' IDENTIFIED BY '$password'; "
    sql="$sql GRANT ALL PRIVILEGES ON \`$svc\`.* TO 'mf_$svc'@'%'; "
  done
  echo "$sql FLUSH PRIVILEGES;" | mariadb --no-defaults --socket="$socket" -uroot
  mariadb-admin --no-defaults --socket="$socket" -uroot -p"$MARIADB_ROOT_PASSWORD" shutdown
  wait "$pid" || true
  echo "mariadb-entrypoint: databases ready"
fi
exec mariadbd "$@"
