# Sourced by bench/put.sh and bench/profile.sh: one private nginx (the stock
# /usr/sbin/nginx with the module loaded) and one private Redis, both under
# build/bench/, and the upload cases they serve.
#
# A case is a letter (the table below), optionally followed by @SIZE to
# give it its own client_body_buffer_size: "a@64k".  Each case named in
# BENCH_CASES gets a location of its own, /<case>/ ("a@64k": /a-64k/), in the
# one server, so that cases are compared in the same run.
#
# Settings (environment):
#   BENCH_DIR      where everything goes (build/bench); the store, the WebDAV
#                  root, both temp dirs and the data file must share one
#                  filesystem, and they do, all being under it
#   BENCH_PORT     nginx's port on 127.0.0.1 (8795)
#   REDIS_PORT     the private Redis's port (6395)
#   BENCH_BUFFER   client_body_buffer_size of the cases without @SIZE (512k)
#   BENCH_SIZE_MIB the size of the uploaded file in MiB (512)
#   NGX_BINARY     the nginx binary (/usr/sbin/nginx)
#   BENCH_SYNC     0: no `sync` before each upload (1)
#   BENCH_MODULE_SO the module to load (build/ngx_http_upload_module.so):
#                  another build of it, to compare a change
# and, for the scripts that need more of nginx than the cases (each empty,
# or as said, unless a script sets it):
#   BENCH_WORKER_CONNECTIONS  worker_connections (64)
#   BENCH_MAIN_CONF    lines added at the top level (worker_rlimit_nofile)
#   BENCH_HTTP_CONF    lines added in http { } (upload_redis_timeout)
#   BENCH_SERVER_CONF  lines added in server { } (more locations)

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$BENCH_ROOT/build/bench}
BENCH_PORT=${BENCH_PORT:-8795}
REDIS_PORT=${REDIS_PORT:-6395}
BENCH_BUFFER=${BENCH_BUFFER:-512k}
BENCH_SIZE_MIB=${BENCH_SIZE_MIB:-512}
NGX_BINARY=${NGX_BINARY:-/usr/sbin/nginx}
BENCH_MODULE_BUILT=${BENCH_MODULE_SO:-$BENCH_ROOT/build/ngx_http_upload_module.so}
# nginx loads a private copy: `make` rewrites build/*.so in place, which
# crashes (SIGSEGV, SIGILL) a running nginx that has it mapped
BENCH_MODULE=$BENCH_DIR/ngx_http_upload_module.so
BENCH_TCK=$(getconf CLK_TCK)
BENCH_SYNC=${BENCH_SYNC:-1}

. "$BENCH_ROOT/scripts/lib.sh"

# a, b and c are the benchmark proper; the others isolate one factor
declare -A CASE_DESC=(
    [a]="module, sha256, fsync on (default)"
    [b]="module, md5 + sha256, fsync on"
    [c]="stock nginx WebDAV PUT"
    [d]="module, sha256, upload_fsync off"
    [e]="module, sha256, upload_thread_pool off"
    [f]="module, md5 + sha256, upload_fsync off"
    [g]="module, md5 + sha256, upload_thread_pool off"
)

# the body of each case's location
declare -A CASE_CONF=(
    [a]="upload on;"
    [b]="upload on; upload_hash md5 sha256;"
    [c]="dav_methods PUT DELETE; create_full_put_path on;
            client_max_body_size 0;"
    [d]="upload on; upload_fsync off;"
    [e]="upload on; upload_thread_pool off;"
    [f]="upload on; upload_hash md5 sha256; upload_fsync off;"
    [g]="upload on; upload_hash md5 sha256; upload_thread_pool off;"
)

bench_die() {
    echo "bench: $*" >&2
    exit 1
}

# Checks the cases in $@; BENCH_ALL: all of them, for the configuration.
bench_cases() {
    local c size

    BENCH_ALL=()
    for c in "$@"; do
        size=${c#*@}
        [ "$size" = "$c" ] && size=
        case $size in
        ''|[0-9]*[0-9kKmM]) ;;
        *) bench_die "case \"$c\": @SIZE must be like 64k or 4m" ;;
        esac
        [ -n "${CASE_DESC[${c%%@*}]:-}" ] \
            || bench_die "unknown case \"$c\" (a to g, or a@64k ...)"
        case " ${BENCH_ALL[*]} " in
        *" $c "*) ;;
        *) BENCH_ALL+=("$c") ;;
        esac
    done
}

# "a@64k" -> "a-64k": its location and object names
bench_name() {
    echo "${1/@/-}"
}

bench_desc() {
    local size=${1#*@}

    if [ "$size" = "$1" ]; then
        echo "${CASE_DESC[$1]}"
    else
        echo "${CASE_DESC[${1%%@*}]}, buffer $size"
    fi
}

# Whether something listens on 127.0.0.1:PORT.
bench_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Where case CASE's upload ends up on disk.
bench_object() {
    local n

    n=$(bench_name "$1")
    case $1 in
    c|c@*) echo "$BENCH_DIR/dav/$n/obj-$n" ;;
    *)     echo "$BENCH_DIR/store/default/obj-$n" ;;
    esac
}

bench_url() {
    local n

    n=$(bench_name "$1")
    echo "http://127.0.0.1:$BENCH_PORT/$n/obj-$n"
}

# The data file: random bytes, made once and kept (with its SHA-256 and MD5)
# for the next runs.
bench_data() {
    BENCH_FILE=$BENCH_DIR/data-${BENCH_SIZE_MIB}M.bin
    local size=$((BENCH_SIZE_MIB * 1024 * 1024))

    if [ "$(stat -c %s "$BENCH_FILE" 2>/dev/null)" != "$size" ] \
       || [ ! -s "$BENCH_FILE.sha256" ] || [ ! -s "$BENCH_FILE.md5" ]
    then
        echo "bench: making $BENCH_FILE ($BENCH_SIZE_MIB MiB of random data)"
        head -c "$size" /dev/urandom > "$BENCH_FILE.part"
        sha256sum < "$BENCH_FILE.part" | cut -d' ' -f1 > "$BENCH_FILE.sha256"
        md5sum < "$BENCH_FILE.part" | cut -d' ' -f1 > "$BENCH_FILE.md5"
        mv "$BENCH_FILE.part" "$BENCH_FILE"
    fi

    BENCH_SHA256=$(cat "$BENCH_FILE.sha256")
    BENCH_MD5=$(cat "$BENCH_FILE.md5")

    # read it once so that curl reads it from the page cache every time
    cat "$BENCH_FILE" > /dev/null
}

bench_conf() {
    local c n size user=""

    # as root, the worker must be root to write the store (the stock user,
    # nobody, cannot write build/)
    [ "$(id -u)" -eq 0 ] && user="user root;"

    {
    cat <<EOF
# generated by bench/lib.sh: do not edit, every run rewrites it
load_module $BENCH_MODULE;
$user
EOF
    if [ -n "${BENCH_MAIN_CONF:-}" ]; then printf '%s\n' "$BENCH_MAIN_CONF"; fi
    cat <<EOF

# One worker: a benchmark upload is one connection, which one worker serves
# from start to end; a second worker would only idle, and perf or strace
# would have to follow two processes.  The module's thread pool ("default",
# 32 threads) belongs to that worker.
worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;

events {
    worker_connections ${BENCH_WORKER_CONNECTIONS:-64};
}

http {
    access_log off;
    default_type application/octet-stream;

    # all under $BENCH_DIR: one filesystem, so every case ends in rename(2)
    client_body_temp_path temp/client_body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;

    client_body_buffer_size $BENCH_BUFFER;

    upload_redis 127.0.0.1:$REDIS_PORT;
    upload_store $BENCH_DIR/store;
EOF
    if [ -n "${BENCH_HTTP_CONF:-}" ]; then printf '%s\n' "$BENCH_HTTP_CONF"; fi
    cat <<EOF

    server {
        listen 127.0.0.1:$BENCH_PORT;

        location = /ping {
            return 204;
        }
EOF
    if [ -n "${BENCH_SERVER_CONF:-}" ]; then printf '%s\n' "$BENCH_SERVER_CONF"; fi
    for c in "${BENCH_ALL[@]}"; do
        n=$(bench_name "$c")
        size=${c#*@}
        echo
        echo "        # ($c) $(bench_desc "$c")"
        echo "        location /$n/ {"
        echo "            ${CASE_CONF[${c%%@*}]}"
        [ "$size" != "$c" ] && echo "            client_body_buffer_size $size;"
        case $c in
        c|c@*)
            # the body goes to a temp file, renamed into the root at the end
            echo "            root $BENCH_DIR/dav;"
            echo "            client_body_temp_path $BENCH_DIR/dav/.tmp;"
            ;;
        esac
        echo "        }"
    done
    cat <<EOF
    }
}
EOF
    } > "$BENCH_DIR/nginx/nginx.conf"
}

# Starts Redis and nginx serving the cases in $@; bench_stop (from the
# caller's EXIT trap) stops them.
bench_start() {
    local i

    bench_cases "$@"

    [ -x "$NGX_BINARY" ] || bench_die "no $NGX_BINARY: run \`make deps\`"
    [ -f "$BENCH_MODULE_BUILT" ] \
        || bench_die "no $BENCH_MODULE_BUILT: run \`make\`"
    command -v redis-server >/dev/null \
        || bench_die "no redis-server: run \`make deps\`"

    mkdir -p "$BENCH_DIR"/{nginx/logs,nginx/temp,store,dav/.tmp,redis}

    # what a killed run left behind
    bench_stop_nginx
    bash "$BENCH_ROOT/scripts/redis.sh" stop "$BENCH_DIR/redis" >/dev/null

    bench_port_busy "$BENCH_PORT" \
        && bench_die "127.0.0.1:$BENCH_PORT is taken: set BENCH_PORT"
    bench_port_busy "$REDIS_PORT" \
        && bench_die "127.0.0.1:$REDIS_PORT is taken: set REDIS_PORT"

    bash "$BENCH_ROOT/scripts/redis.sh" start "$REDIS_PORT" \
        "$BENCH_DIR/redis" >/dev/null \
        || bench_die "Redis did not start"

    cp "$BENCH_MODULE_BUILT" "$BENCH_MODULE.new"
    mv -f "$BENCH_MODULE.new" "$BENCH_MODULE"

    bench_conf

    : > "$BENCH_DIR/nginx/logs/error.log"
    "$NGX_BINARY" -p "$BENCH_DIR/nginx" -c nginx.conf -t -q \
        || bench_die "nginx -t failed (above)"
    "$NGX_BINARY" -p "$BENCH_DIR/nginx" -c nginx.conf

    for i in $(seq 50); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' \
                    "http://127.0.0.1:$BENCH_PORT/ping")" = 204 ]
        then
            NGX_MASTER=$(pidfile_pid "$BENCH_DIR/nginx/logs/nginx.pid" nginx) \
                || bench_die "nginx is not running"
            NGX_WORKER=$(bench_workers | head -1)
            [ -n "$NGX_WORKER" ] || bench_die "nginx has no worker"
            return 0
        fi
        sleep 0.1
    done

    tail -n 20 "$BENCH_DIR/nginx/logs/error.log" >&2
    bench_die "nginx did not answer on 127.0.0.1:$BENCH_PORT"
}

bench_stop_nginx() {
    pidfile_stop "$BENCH_DIR/nginx/logs/nginx.pid" nginx TERM >/dev/null
}

bench_stop() {
    bench_stop_nginx || true
    bash "$BENCH_ROOT/scripts/redis.sh" stop "$BENCH_DIR/redis" \
        >/dev/null 2>&1 || true
    bench_clean_objects
}

# The worker processes of our nginx (children of its master).
bench_workers() {
    local p

    for p in /proc/[0-9]*; do
        if [ "$(proc_parent "${p#/proc/}" 2>/dev/null)" = "$NGX_MASTER" ]
        then
            echo "${p#/proc/}"
        fi
    done
}

bench_clean_objects() {
    rm -rf "$BENCH_DIR"/store/default "$BENCH_DIR"/store/.upload-tmp
    find "$BENCH_DIR/dav" -mindepth 1 -maxdepth 1 ! -name .tmp \
        -exec rm -rf {} + 2>/dev/null
    rm -f "$BENCH_DIR"/dav/.tmp/* 2>/dev/null
    return 0
}

# CPU accounting, in clock ticks: BENCH_TCK a second.

# utime+stime of a thread or process: its /proc/.../stat
bench_ticks() {
    local stat

    read -r stat < "$1" 2>/dev/null || { echo 0; return; }
    set -- ${stat##*) }
    echo $((${12} + ${13}))
}

# "MAIN POOL": the ticks of the worker's event loop thread and of its other
# (thread pool) threads
bench_worker_ticks() {
    local t main=0 pool=0 n

    for t in /proc/"$NGX_WORKER"/task/*; do
        n=$(bench_ticks "$t/stat")
        if [ "${t##*/}" = "$NGX_WORKER" ]; then
            main=$n
        else
            pool=$((pool + n))
        fi
    done
    echo "$main $pool"
}

# the busy ticks of all CPUs together
bench_machine_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# BENCH_CHILD_TICKS: the CPU of this shell's children so far (curl among
# them); "times" must run in the shell itself, not in a $(...) subshell
bench_child_ticks() {
    times > "$BENCH_DIR/times"
    BENCH_CHILD_TICKS=$(awk -v tck="$BENCH_TCK" 'NR == 2 {
        split($1, u, /[ms]/); split($2, s, /[ms]/)
        printf "%d", ((u[1] * 60 + u[2]) + (s[1] * 60 + s[2])) * tck }' \
        "$BENCH_DIR/times")
}

# Before an upload: no dirty pages left to write back while it runs.
bench_quiet() {
    if [ "$BENCH_SYNC" = 1 ]; then
        sync
    fi
}

# One upload of the data file to case CASE.  Sets UP_CODE, UP_SPEED (bytes/s,
# curl's speed_upload), UP_TIME (s), UP_BODY (the answer) and the CPU it took,
# in clock ticks: UP_MAIN (nginx's event loop), UP_POOL (its thread pool),
# UP_CURL, and UP_REST: all the rest of the machine (kernel threads, other
# users), a measure of how noisy the run was.
bench_upload() {
    local out m0 p0 m1 p1 k0 b0 b1

    read -r m0 p0 <<< "$(bench_worker_ticks)"
    bench_child_ticks
    k0=$BENCH_CHILD_TICKS
    b0=$(bench_machine_ticks)

    out=$(curl -sS --http1.1 -T "$BENCH_FILE" \
               -o "$BENCH_DIR/answer" \
               -w '%{http_code} %{speed_upload} %{time_total}' \
               "$(bench_url "$1")") \
        || bench_die "curl failed on case $1"

    b1=$(bench_machine_ticks)
    bench_child_ticks
    read -r m1 p1 <<< "$(bench_worker_ticks)"

    UP_MAIN=$((m1 - m0))
    UP_POOL=$((p1 - p0))
    UP_CURL=$((BENCH_CHILD_TICKS - k0))
    UP_REST=$((b1 - b0 - UP_MAIN - UP_POOL - UP_CURL))

    read -r UP_CODE UP_SPEED UP_TIME <<< "$out"
    UP_BODY=$(cat "$BENCH_DIR/answer")

    case $UP_CODE in
    201|204) ;;
    *) bench_die "case $1: HTTP $UP_CODE: $UP_BODY" ;;
    esac
}

# --- helpers of bench/trickle.sh, redis-slow.sh, callback-slow.sh, all.sh --

# The module measured: HEAD (+ uncommitted changes to its sources) and the
# time of the .so that bench_start copies.
bench_module_state() {
    local head dirty=""

    head=$(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null) \
        || { echo "?"; return; }
    git -C "$BENCH_ROOT" diff --quiet HEAD -- config ngx_http_upload_module.c \
        src 2>/dev/null || dirty=" + uncommitted changes"
    echo "$head$dirty, .so of $(date -r "$BENCH_MODULE_BUILT" '+%F %T' 2>/dev/null || echo '?')"
}

# The machine, a few lines: what every figure depends on.
bench_machine() {
    echo "cpus:       $(nproc) ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
    echo "kernel:     $(uname -sr)"
    echo "memory:     $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "nginx:      $("$NGX_BINARY" -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1"
    echo "module:     $(bench_module_state)"
    echo "date:       $(date '+%F %T %Z')"
    echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (at start)"
}

# One wrk run: bench_wrk OUT URL WRK-OPTIONS...; writes wrk's output to OUT
# and prints "REQ/S P99-MS NON-2XX ERRORS MAX-MS" (ERRORS: wrk's socket
# errors, connect + read + write + timeout; MAX-MS: the slowest request).
bench_wrk() {
    local out=$1 url=$2

    shift 2
    wrk "$@" --latency "$url" > "$out" 2>&1 || bench_die "wrk failed: $(cat "$out")"
    awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /m$/) { sub(/m$/, "", v); return v * 60000 }
            if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 }
            return v + 0
        }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "Latency" && NF >= 4 && !max { max = ms($4) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        /Socket errors:/ {
            gsub(/,/, "")
            err = $4 + $6 + $8 + $10
        }
        END { printf "%s %.2f %d %d %.2f\n", rps, p99, bad, err, max }' "$out"
}

# Restarts the private Redis (started by bench_start, not yet used by nginx:
# nginx connects on the first request that needs it) with more options,
# such as "--enable-debug-command local"; as scripts/redis.sh starts it
# otherwise, with the same pid file, so that bench_stop stops it.
bench_redis_restart() {
    local dir=$BENCH_DIR/redis pid

    bash "$BENCH_ROOT/scripts/redis.sh" stop "$dir" >/dev/null
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
        --save '' --appendonly no "$@"
    for _ in $(seq 50); do
        if pid=$(pidfile_pid "$dir/redis.pid" redis-server) \
           && redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server 2>/dev/null \
              | tr -d '\r' | grep -qx "process_id:$pid"
        then
            return 0
        fi
        sleep 0.1
    done
    bench_die "Redis did not start again with: $*"
}
