#!/usr/bin/env bash
# A private Redis for `make run` and `make test`, apart from any system one.
#
#   scripts/redis.sh start PORT DIR   daemonized redis-server on 127.0.0.1:PORT,
#                                     with its pid file, log and data in DIR
#   scripts/redis.sh stop DIR         stop the redis-server started in DIR
#
# start first stops a redis-server left running in DIR, so a run that died
# never gets in the way of the next one.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

usage() {
    echo "usage: $0 start PORT DIR | stop DIR" >&2
    exit 2
}

stop() {
    pidfile_stop "$1/redis.pid" redis-server TERM
}

start() {
    local port=$1 dir=$2 pid i

    stop "$dir" >/dev/null
    rm -f "$dir/redis.log"

    redis-server --bind 127.0.0.1 --port "$port" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
        --save '' --appendonly no

    # Ready when the server on PORT answers with our own pid: another Redis
    # already on that port would answer too.
    for i in $(seq 50); do
        if pid=$(pidfile_pid "$dir/redis.pid" redis-server) \
           && redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null \
              | tr -d '\r' | grep -qx "process_id:$pid"
        then
            echo "redis: 127.0.0.1:$port, pid $pid, files in $dir"
            return 0
        fi
        sleep 0.1
    done

    echo "redis: could not start on 127.0.0.1:$port; $dir/redis.log says:" >&2
    tail -n 20 "$dir/redis.log" >&2 || true
    stop "$dir" >/dev/null || true
    return 1
}

case ${1:-} in
start)
    [ $# -eq 3 ] || usage
    mkdir -p "$3"
    start "$2" "$(cd "$3" && pwd)"
    ;;
stop)
    [ $# -eq 2 ] || usage
    [ -d "$2" ] || exit 0
    stop "$(cd "$2" && pwd)"
    ;;
*)
    usage
    ;;
esac
