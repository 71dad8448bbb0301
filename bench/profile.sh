#!/usr/bin/env bash
# Where an upload's time goes: the tools behind the analysis in
# docs/performance.md.  Not part of the benchmark (bench/put.sh).
#
#   bench/profile.sh [CASE...]        cases of bench/lib.sh (default: a b c)
#
# For each case, after a warm-up upload, one upload per tool:
#   cpu     CPU seconds per GiB of nginx's event loop thread, of its thread
#           pool threads and of curl, and how busy each was (in cores)
#   perf    `perf record -a -g` during the upload: the CPU of the whole
#           machine, by command and by function (needs perf: linux-perf)
#   strace  `strace -c -f` on the worker: its system calls (needs strace)
# PROFILE="cpu perf strace" picks the tools; the environment of bench/lib.sh
# applies (BENCH_BUFFER, ...).  Nothing is installed: a missing tool is
# skipped.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

PROFILE=${PROFILE:-cpu perf strace}
CASES=${*:-a b c}

for c in $CASES; do
    [ -n "${CASE_DESC[$c]:-}" ] || bench_die "unknown case \"$c\""
done

TCK=$(getconf CLK_TCK)
PERF_PID=
STRACE_PID=

stop_tracers() {
    local p

    for p in $PERF_PID $STRACE_PID; do
        kill -INT "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PERF_PID=
    STRACE_PID=
}

trap 'stop_tracers; bench_stop' EXIT
trap 'exit 130' INT TERM

# utime+stime (clock ticks) of a thread: /proc/PID/task/TID/stat
thread_ticks() {
    local stat

    stat=$(cat "$1" 2>/dev/null) || { echo 0; return; }
    set -- ${stat##*) }
    echo $((${12} + ${13}))
}

# "main pool" ticks of worker PID: its event loop thread, its other threads
worker_ticks() {
    local pid=$1 t main=0 pool=0 n

    for t in /proc/"$pid"/task/*; do
        n=$(thread_ticks "$t/stat")
        if [ "${t##*/}" = "$pid" ]; then
            main=$n
        else
            pool=$((pool + n))
        fi
    done
    echo "$main $pool"
}

machine_busy() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# CHILD_TICKS: the CPU of the shell's children so far (curl's among them);
# "times" must run in this shell, not in a $(...) subshell
children_ticks() {
    times > "$BENCH_DIR/times"
    CHILD_TICKS=$(awk -v tck="$TCK" 'NR == 2 {
        split($1, u, /[ms]/); split($2, s, /[ms]/)
        printf "%d", ((u[1] * 60 + u[2]) + (s[1] * 60 + s[2])) * tck }' \
        "$BENCH_DIR/times")
}

profile_cpu() {
    local c=$1 w m0 p0 m1 p1 b0 b1 k0 k1 gib
    w=$(bench_workers | head -1)

    sync
    read -r m0 p0 <<< "$(worker_ticks "$w")"
    b0=$(machine_busy)
    children_ticks
    k0=$CHILD_TICKS
    bench_upload "$c"
    children_ticks
    k1=$CHILD_TICKS
    b1=$(machine_busy)
    read -r m1 p1 <<< "$(worker_ticks "$w")"
    rm -f "$(bench_object "$c")"

    gib=$(awk -v s="$BENCH_SIZE_MIB" 'BEGIN { print s / 1024 }')
    awk -v t="$UP_TIME" -v g="$gib" -v tck="$TCK" -v sp="$UP_SPEED" \
        -v m=$((m1 - m0)) -v p=$((p1 - p0)) -v k=$((k1 - k0)) \
        -v b=$((b1 - b0)) '
        function row(name, ticks) {
            printf "  %-34s %6.2f cpu-s/GiB  %5.2f cores\n",
                   name, ticks / tck / g, ticks / tck / t
        }
        BEGIN {
            printf "  %.1f MiB/s, %.2f s\n", sp / 1048576, t
            row("nginx event loop (main thread)", m)
            row("nginx thread pool (all threads)", p)
            row("curl", k)
            row("rest of the machine", b - m - p - k)
            row("whole machine", b)
        }'
}

profile_perf() {
    local c=$1 data=$BENCH_DIR/perf-$1.data

    command -v perf >/dev/null || { echo "  no perf: skipped"; return; }

    sync
    perf record -q -a -g -e cpu-clock -o "$data" 2>/dev/null &
    PERF_PID=$!
    sleep 0.5
    bench_upload "$c"
    stop_tracers
    rm -f "$(bench_object "$c")"
    echo "  $(mib_s) MiB/s under perf; $data"

    echo "  -- by command"
    perf report -i "$data" --no-children --sort comm --stdio 2>/dev/null \
        | grep -v '^#' | grep '%' | head -8 | sed 's/^/  /'
    echo "  -- nginx, by thread kind and function (self time, >= 0.5%)"
    perf report -i "$data" --no-children --comm nginx --sort pid,sym \
        --stdio -g none --percent-limit 0.5 2>/dev/null \
        | grep -v '^#' | grep '%' | head -30 | sed 's/^/  /'
}

profile_strace() {
    local c=$1 w out=$BENCH_DIR/strace-$1.txt

    command -v strace >/dev/null || { echo "  no strace: skipped"; return; }

    w=$(bench_workers | head -1)
    sync
    strace -c -f -p "$w" -o "$out" 2>/dev/null &
    STRACE_PID=$!
    sleep 0.5
    bench_upload "$c"
    stop_tracers
    rm -f "$(bench_object "$c")"
    echo "  $(mib_s) MiB/s under strace; $out"
    sed 's/^/  /' "$out" | head -20
}

mib_s() {
    awk -v b="$UP_SPEED" 'BEGIN { printf "%.1f", b / 1048576 }'
}

bench_data
bench_start

echo "client_body_buffer_size $BENCH_BUFFER, $BENCH_SIZE_MIB MiB, nginx worker $(bench_workers | tr '\n' ' ')"

for c in $CASES; do
    echo
    echo "== ($c) ${CASE_DESC[$c]}"
    bench_upload "$c"
    rm -f "$(bench_object "$c")"

    for tool in $PROFILE; do
        echo "- $tool"
        "profile_$tool" "$c"
    done
done
