#!/usr/bin/env bash
# `make run`: a private Redis and the stock nginx with conf/nginx.conf, nginx in
# the foreground; Ctrl-C stops both.
#
#   scripts/run.sh        start (what `make run` does after building)
#   scripts/run.sh stop   stop what a run left running (`make stop`)
#
# Everything lives under run/: it is nginx's prefix (-p), so the relative
# paths in conf/nginx.conf (logs/, temp/, store/, ../build/) resolve there.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

prefix=$top/run
nginx=${NGX_BINARY:-/usr/sbin/nginx}
pidfile=$prefix/logs/nginx.pid
redis_dir=$prefix/redis
redis_port=6380         # upload_redis in conf/nginx.conf

# nginx: QUIT is what `nginx -s quit` sends, without parsing the
# configuration again (it may no longer load, e.g. after `make clean`).
stop_all() {
    local rc=0

    pidfile_stop "$pidfile" nginx QUIT || rc=1
    bash "$top/scripts/redis.sh" stop "$redis_dir" || rc=1
    return $rc
}

start() {
    local pid global

    # Two runs cannot share the ports; but what a run killed without its
    # clean-up (kill -9) left behind is stopped.
    if pid=$(pidfile_pid "$pidfile" nginx) \
       && grep -qs scripts/run.sh "/proc/$(proc_parent "$pid")/cmdline"
    then
        echo "run: already running (nginx pid $pid): \`make stop\` stops it" >&2
        return 1
    fi
    stop_all

    mkdir -p "$prefix"/logs "$prefix"/store \
             "$prefix"/temp/{client_body,proxy,fastcgi,uwsgi,scgi}

    bash "$top/scripts/redis.sh" start "$redis_port" "$redis_dir"

    # The secret that signs upload links: made once, kept private to run/.
    if [ ! -s "$prefix/link-secret.conf" ]; then
        (umask 077
         printf 'upload_link_secret %s;\n' \
             "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
             > "$prefix/link-secret.conf")
    fi

    trap stop_all EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM

    # As root, nginx would run its workers as "nobody", who may not reach the
    # checkout (e.g. under /root): keep them as the user who ran `make run`.
    global='daemon off;'
    if [ "$(id -u)" -eq 0 ]; then
        global="$global user root;"
    fi

    cat <<EOF

nginx on http://127.0.0.1:8080/ (logs in run/logs/, uploads in run/store/).
Try:
    curl -T README.md http://127.0.0.1:8080/upload/hello/README.md
    curl http://127.0.0.1:8080/files/default/hello/README.md
Ctrl-C here (or \`make stop\` elsewhere) stops nginx and Redis.

EOF

    # In the background, so that a signal runs the traps at once.
    "$nginx" -p "$prefix/" -c "$top/conf/nginx.conf" -g "$global" &
    wait $!
}

# All the work is in functions: bash has read the whole file before running
# any of it, so editing this script under a running `make run` is harmless.
case ${1:-} in
"")   start ;;
stop) stop_all ;;
*)    echo "usage: $0 [stop]" >&2; exit 2 ;;
esac
