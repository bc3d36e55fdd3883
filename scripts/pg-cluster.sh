#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests: `start` makes one in a new temporary
# directory (initdb, trust auth, 127.0.0.1 on a free port, TLS with its own CA in
# DIR/ca.pem when openssl is there) and prints the shell line that
# exports its URL; `stop DIR` stops it and deletes DIR; `down DIR` stops the server and
# keeps it (a database outage), `up DIR` starts it again on the same port. Uses Debian's PostgreSQL
# (`apt-get install postgresql`; its binaries are under /usr/lib/postgresql/N/bin, not on
# PATH). As root, the server runs as the `postgres` user (initdb and postgres refuse root).
#   eval "$(scripts/pg-cluster.sh start)"   # sets SUNDIAL_TEST_POSTGRES and PG_CLUSTER_DIR
#   scripts/pg-cluster.sh stop "$PG_CLUSTER_DIR"
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [[ -z $bin || ! -x $bin/initdb ]]; then
  echo "pg-cluster.sh: PostgreSQL's initdb is missing: run \`sudo apt-get install -y postgresql\`" >&2
  exit 1
fi
as=()
if [[ $(id -u) -eq 0 ]]; then
  user=postgres
  id -u "$user" >/dev/null 2>&1 || user=nobody
  as=(runuser -u "$user" --)
fi

case ${1:-} in
start)
  # Under /tmp: a clone under /root is not traversable by the postgres user.
  dir=$(mktemp -d /tmp/sundial-pg.XXXXXX)
  [[ ${#as[@]} -gt 0 ]] && chown "$user:" "$dir"
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C -N \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  # TLS, for the tests of `sslmode`: a CA of its own ($dir/ca.pem) and a server certificate
  # for 127.0.0.1 and localhost that it signed, made by the server's user (the key must be
  # its own, mode 0600). Plain connections stay allowed.
  tls=()
  if command -v openssl >/dev/null; then
    (
      cd "$dir"
      "${as[@]}" openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sundial test CA" \
        -keyout ca.key -out ca.pem
      "${as[@]}" openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout server.key -out server.csr
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
      "${as[@]}" openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -days 2 -extfile san.ext -out server.crt
      "${as[@]}" chmod 600 server.key
    ) >"$dir/tls.log" 2>&1 || { cat "$dir/tls.log" >&2; exit 1; }
    tls=(-c ssl=on -c "ssl_cert_file=$dir/server.crt" -c "ssl_key_file=$dir/server.key")
  fi
  started=
  for _ in 1 2 3; do # the free port may be taken meanwhile
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # No test crashes the server itself, so durability is traded for speed.
    echo "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off ${tls[*]}" >"$dir/options"
    if "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(cat "$dir/options")" start >/dev/null; then
      started=1
      break
    fi
  done
  if [[ -z $started ]]; then
    echo "pg-cluster.sh: the server did not start; see $dir/server.log" >&2
    exit 1
  fi
  echo "export SUNDIAL_TEST_POSTGRES=postgres://postgres@127.0.0.1:$port/postgres PG_CLUSTER_DIR=$dir"
  ;;
down)
  dir=${2:?usage: pg-cluster.sh down DIR}
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  ;;
up)
  dir=${2:?usage: pg-cluster.sh up DIR}
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(cat "$dir/options")" start >/dev/null
  ;;
stop)
  dir=${2:?usage: pg-cluster.sh stop DIR}
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
  rm -rf "$dir"
  ;;
*)
  echo "usage: pg-cluster.sh start | stop DIR | down DIR | up DIR" >&2
  exit 2
  ;;
esac
