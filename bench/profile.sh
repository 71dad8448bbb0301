#!/usr/bin/env bash
# Where an upload's time goes: the tools behind the analysis in
# docs/performance.md.  Not part of the benchmark (bench/put.sh).
#
#   bench/profile.sh [CASE...]        cases of bench/lib.sh (default: a b c)
#
# For each case, after a warm-up upload, one upload per tool:
#   cpu     CPU seconds per GiB of nginx's event loop thread, of its thread
#           pool threads, of curl and of the rest of the machine, and how
#           busy each was (in cores)
#   perf    `perf record -a -g` during the upload: the CPU of the whole
#           machine by command, and nginx's by thread (event loop or pool)
#           and by what it did (system call, digest, ...); needs perf
#   strace  `strace -c -f` on the worker: its system calls; needs strace
#   trace   system calls of the worker traced with perf, cut into cycles
#           (one per body buffer) by bench/cycles.pl: how long the recv, the
#           lanes and the hand-offs between threads take; needs perf
# PROFILE="cpu perf strace trace" picks the tools (default: cpu perf strace);
# the environment of bench/lib.sh applies (BENCH_BUFFER, BENCH_MODULE_SO,
# ...).  Nothing is installed: a missing tool is skipped.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

PROFILE=${PROFILE:-cpu perf strace}
CASES=${*:-a b c}

# shellcheck disable=SC2086
bench_cases $CASES

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

mib_s() {
    awk -v b="$UP_SPEED" 'BEGIN { printf "%.1f", b / 1048576 }'
}

profile_cpu() {
    local c=$1

    bench_quiet
    bench_upload "$c"
    rm -f "$(bench_object "$c")"

    awk -v t="$UP_TIME" -v s="$BENCH_SIZE_MIB" -v tck="$BENCH_TCK" \
        -v sp="$UP_SPEED" -v m="$UP_MAIN" -v p="$UP_POOL" -v k="$UP_CURL" \
        -v rest="$UP_REST" '
        function row(name, ticks) {
            printf "  %-34s %6.2f cpu-s/GiB  %5.2f cores\n",
                   name, ticks / tck / (s / 1024), ticks / tck / t
        }
        BEGIN {
            printf "  %.1f MiB/s, %.2f s\n", sp / 1048576, t
            row("nginx event loop (main thread)", m)
            row("nginx thread pool (all threads)", p)
            row("curl", k)
            row("rest of the machine", rest)
            row("whole machine", m + p + k + rest)
        }'
}

# perf script (with call chains) -> samples by who (command, or nginx's
# event loop / pool threads) and what (the system call the sample is in,
# a digest in libcrypto, a page fault, user space)
perf_classify() {
    awk -v main="$NGX_WORKER" '
        function flush() {
            if (who == "") return
            if (what == "") what = user ? user : "kernel, other"
            n[who "|" what]++
            tot[who]++
            all++
            who = ""
        }
        /^[^\t]/ {
            flush()
            split($2, id, "/")
            if ($1 == "nginx" && id[1] == main)
                who = (id[2] == main) ? "nginx event loop" : "nginx pool threads"
            else if ($1 == "swapper")
                who = "(idle)"
            else if ($1 == "curl")
                who = "curl"
            else
                who = "(everything else)"
            what = ""; user = ""; first = 1
            next
        }
        /^\t/ {
            sym = $2; dso = $NF
            if (first) {
                first = 0
                if (dso ~ /libcrypto/) what = "digest (libcrypto)"
                else if (dso !~ /kernel/) {
                    user = dso; gsub(/[()]/, "", user)
                    sub(/.*\//, "", user)
                    user = "user: " user
                }
            }
            if (what == "" && sym ~ /^(__x64_sys_|__do_sys_|ksys_)/) {
                sub(/^(__x64_sys_|__do_sys_|ksys_)/, "", sym)
                what = "syscall " sym
            }
            if (what == "" && sym ~ /asm_exc_page_fault/) what = "page fault"
            next
        }
        END {
            flush()
            for (k in n) {
                split(k, a, "|")
                if (n[k] * 100 < tot[a[1]] * 2) continue
                printf "%s|%d|%s\n", a[1], n[k], a[2]
            }
            for (w in tot) printf "%s|%d|*\n", w, tot[w]
            printf "*|%d|*\n", all
        }' | sort -t'|' -k1,1 -k2,2nr | awk -F'|' -v hz=4000 '
        $1 == "*" { next }
        $3 == "*" { printf "  %-20s %6.0f ms of CPU\n", $1, $2 * 1000 / hz; total[$1] = $2; next }
        { printf "  %-20s   %5.1f%%  %s\n", "", 100 * $2 / total[$1], $3 }'
}

profile_perf() {
    local c=$1 data=$BENCH_DIR/perf-$1.data

    command -v perf >/dev/null || { echo "  no perf: skipped"; return; }

    bench_quiet
    perf record -q -a -g -F 4000 -e cpu-clock -o "$data" 2>/dev/null &
    PERF_PID=$!
    sleep 0.5
    bench_upload "$c"
    stop_tracers
    rm -f "$(bench_object "$c")"
    echo "  $(mib_s) MiB/s under perf ($data); the samples of the upload"
    echo "  and 0.5 s before it, by command and thread, what each did (>= 2%;"
    echo "  perf's own overhead slows the upload):"
    perf script -i "$data" -F comm,pid,tid,ip,sym,dso 2>/dev/null \
        | perf_classify
}

profile_strace() {
    local c=$1 out=$BENCH_DIR/strace-$1.txt

    command -v strace >/dev/null || { echo "  no strace: skipped"; return; }

    bench_quiet
    strace -c -f -p "$NGX_WORKER" -o "$out" 2>/dev/null &
    STRACE_PID=$!
    sleep 0.5
    bench_upload "$c"
    stop_tracers
    rm -f "$(bench_object "$c")"
    echo "  $(mib_s) MiB/s under strace ($out; futex and epoll_wait times are"
    echo "  mostly waiting):"
    sed 's/^/  /' "$out" | head -14
}

profile_trace() {
    local c=$1 data=$BENCH_DIR/trace-$1.data

    command -v perf >/dev/null || { echo "  no perf: skipped"; return; }

    bench_quiet
    perf record -q -e raw_syscalls:sys_enter -e raw_syscalls:sys_exit \
        -p "$NGX_WORKER" -o "$data" 2>/dev/null &
    PERF_PID=$!
    sleep 0.5
    bench_upload "$c"
    stop_tracers
    rm -f "$(bench_object "$c")"
    echo "  $(mib_s) MiB/s under perf trace ($data)"
    perf script -i "$data" 2>/dev/null \
        | perl "$BENCH_ROOT/bench/cycles.pl" "$NGX_WORKER"
}

bench_data
# shellcheck disable=SC2086
bench_start $CASES

echo "$BENCH_SIZE_MIB MiB per upload, client_body_buffer_size $BENCH_BUFFER" \
     "unless the case says, nginx worker $NGX_WORKER,"
echo "module $BENCH_MODULE_BUILT"

for c in "${BENCH_ALL[@]}"; do
    echo
    echo "== ($c) $(bench_desc "$c")"
    bench_upload "$c"
    rm -f "$(bench_object "$c")"

    for tool in $PROFILE; do
        echo "- $tool"
        "profile_$tool" "$c"
    done
done
