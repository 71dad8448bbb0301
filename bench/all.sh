#!/usr/bin/env bash
# All the benchmarks, one after another, and one table of their targets at
# the end: `make bench` (docs/performance.md, "All the benchmarks").
#
#   make && bench/all.sh
#
# Runs, in turn (BENCHES picks and orders them):
#   put            bench/put.sh: whole PUT against WebDAV PUT
#   sliced         bench/sliced.sh: sliced uploads against a whole PUT
#   instant        bench/instant.sh: instant-upload hits against return 200
#   trickle        bench/trickle.sh: 1000 slow uploads, memory per upload
#   redis-slow     bench/redis-slow.sh: a static location while Redis sleeps
#   callback-slow  bench/callback-slow.sh: the same while 200 uploads wait
#                  for a slow post callback
#   tus            bench/tus.sh: a whole PUT against @tus/server (its
#                  first run needs npm and the registry); skipped, and said
#                  so, without node and npm
# Each script's output goes to build/bench/all/<name>.txt; its target lines
# (the block after its "target" header, or its lines with PASS or FAIL)
# are collected, with its exit status and time, into one table, printed at
# the end and saved to build/bench/summary.txt with the machine.  A script
# that fails is reported as ERROR and the others still run; all.sh then
# exits 1.  All scripts run one at a time, so they may share ports: a
# BENCH_PORT or REDIS_PORT given applies to each of them.
#
# Environment:
#   BENCHES   the scripts to run ("put sliced instant trickle redis-slow
#             callback-slow tus")
#   ROUNDS    the rounds of put, sliced, instant, callback-slow and tus
#             (3: about 10 minutes in all on the 2-vCPU machine of
#             docs/performance.md)
#   and every script's own settings, passed on (BENCH_PORT, REDIS_PORT,
#   SINK_PORT, CALLBACK_PORT, DURATION, UPLOADS, ...).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=$ROOT/build/bench/all
SUMMARY=$ROOT/build/bench/summary.txt

BENCHES=${BENCHES:-put sliced instant trickle redis-slow callback-slow tus}
export ROUNDS=${ROUNDS:-3}

NGX_BINARY=${NGX_BINARY:-/usr/sbin/nginx}
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

for b in $BENCHES; do
    [ -f "$HERE/$b.sh" ] || bench_die "no bench/$b.sh (BENCHES)"
done

mkdir -p "$OUT"

# the lines of output $1 that say how a target went
targets() {
    awk '
        /^target[ \t]/ { n = 0; block = 1; next }
        block && NF { t[++n] = $0 }
        /(^|[^A-Za-z])(PASS|FAIL)([^A-Za-z]|$)/ { pf[++m] = $0 }
        END {
            if (n) { for (i = 1; i <= n; i++) print t[i] }
            else { for (i = 1; i <= m; i++) print pf[i] }
        }' "$1"
}

started=$(date '+%F %T %Z')
t_all=$EPOCHREALTIME
{
    echo "== make bench, $started"
    bench_machine
    echo "benches:    $BENCHES; ROUNDS=$ROUNDS"
} | tee "$OUT/machine.txt"

declare -A STATUS=() ELAPSED=() MODULE=()
first_module=$(bench_module_state)
errors=0
for b in $BENCHES; do
    echo
    echo "######## bench/$b.sh"
    t0=$EPOCHREALTIME
    MODULE[$b]=$(bench_module_state)
    if [ "$b" = tus ] && ! { command -v "${NODE:-node}" && command -v "${NPM:-npm}"; } >/dev/null
    then
        echo "skipped: no node or npm" | tee "$OUT/$b.txt"
        rc=0
    else
        bash "$HERE/$b.sh" 2>&1 | tee "$OUT/$b.txt"
        rc=${PIPESTATUS[0]}
    fi
    ELAPSED[$b]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
    STATUS[$b]=$rc
    [ "$rc" = 0 ] || errors=$((errors + 1))
done

total=$(awk -v a="$t_all" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

{
    cat "$OUT/machine.txt"
    echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (at end)"
    echo "took:       $total s"
    echo
    echo "== targets (each script's own lines; full outputs in build/bench/all/)"
    for b in $BENCHES; do
        echo
        if grep -q '^skipped: ' "$OUT/$b.txt"; then
            echo "-- $b: $(head -n 1 "$OUT/$b.txt")"
        elif [ "${STATUS[$b]}" = 0 ]; then
            echo "-- $b ($((ELAPSED[$b])) s)"
            # someone rebuilt the module meanwhile: say which this one was
            [ "${MODULE[$b]}" = "$first_module" ] \
                || echo "   (module: ${MODULE[$b]})"
        else
            echo "-- $b ($((ELAPSED[$b])) s): ERROR, exit ${STATUS[$b]}: $(grep -m1 '^bench: ' "$OUT/$b.txt" || tail -n 1 "$OUT/$b.txt")"
        fi
        targets "$OUT/$b.txt" | sed 's/^/   /'
    done
    echo
    n_pass=0 n_fail=0
    for b in $BENCHES; do
        n_pass=$((n_pass + $(targets "$OUT/$b.txt" | grep -cE '(^|[^A-Za-z])PASS([^A-Za-z]|$)')))
        n_fail=$((n_fail + $(targets "$OUT/$b.txt" | grep -cE '(^|[^A-Za-z])FAIL([^A-Za-z]|$)')))
    done
    echo "== $n_pass PASS, $n_fail FAIL, $errors ERROR"
} > "$SUMMARY"

echo
echo "################################################################"
cat "$SUMMARY"
echo "(saved to $SUMMARY)"

[ "$errors" = 0 ]
