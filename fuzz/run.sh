#!/usr/bin/env bash
#
# Build the libFuzzer harnesses of fuzz/ and run them (fuzz/README.md).
#
#   bash fuzz/run.sh                  every harness, FUZZ_SECONDS each
#   bash fuzz/run.sh key app          those harnesses only
#   FUZZ_SECONDS=600 bash fuzz/run.sh app
#   FUZZ_BUILD_ONLY=1 bash fuzz/run.sh
#
# First the inputs of fuzz/regress/<harness>/ and fuzz/crashes/<harness>/
# are run once each, then the fuzzer runs from a copy of
# fuzz/corpus/<harness>/ in build/fuzz/; any crash, leak, timeout,
# undefined behaviour or broken invariant makes the exit status non-zero
# and names the input that caused it.  Everything made goes to build/fuzz/.
#
# Environment:
#   FUZZ_SECONDS     how long each harness runs (60)
#   FUZZ_CC          the compiler (clang-14, else clang)
#   FUZZ_ARGS        more libFuzzer options, e.g. "-jobs=2 -workers=2"
#   FUZZ_JOBS        compilers at a time (2)
#   FUZZ_BUILD_ONLY  1: build, run nothing
#   FUZZ_STRICT      1: no tolerance for the known issues (README.md)
#   NGX_CORE_SRC     an nginx source tree of the packaged version, instead
#                    of downloading its release tarball (from Debian's
#                    source archive, else from nginx.org)
#   NGX_TARBALL_URL  where that tarball is (a mirror, a file:// URL)

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
FUZZ=$ROOT/fuzz
OUT=$ROOT/build/fuzz
NGX_SRC=/usr/share/nginx/src
NGX_BUILD=$ROOT/build/nginx

FUZZ_SECONDS=${FUZZ_SECONDS:-60}

HARNESSES=(key args digest link_verify link_roundtrip link_mint app initiate
           complete)

# the largest input tried: about the module's own body limits, within reason
declare -A MAX_LEN=(
    [key]=4096 [args]=4096 [digest]=256 [link_verify]=6144
    [link_roundtrip]=4096 [link_mint]=4096 [app]=8192 [initiate]=16384
    [complete]=16384
)

# the nginx core files the module's code calls into (nginx-dev has the
# headers only); fuzz/nginx-core-<version>.sha256 has their checksums
NGX_CORE_FILES=(src/core/ngx_string.c src/core/ngx_palloc.c
                src/core/ngx_array.c src/core/ngx_list.c
                src/os/unix/ngx_alloc.c)


die() {
    echo "fuzz: $*" >&2
    exit 1
}


# --- tools and inputs of the build ------------------------------------------

if [ -n "${FUZZ_CC:-}" ]; then
    CC=$FUZZ_CC
elif command -v clang-14 >/dev/null; then
    CC=clang-14
elif command -v clang >/dev/null; then
    CC=clang
else
    die "no clang: apt-get install clang-14 libfuzzer-14-dev"
fi

test -f $NGX_SRC/src/core/ngx_config.h \
    || die "no nginx headers in $NGX_SRC: \`make deps\` installs nginx-dev"

# ngx_auto_config.h and the upload page's header come from the module's
# configure step
if [ ! -f $NGX_BUILD/ngx_auto_config.h ] \
   || [ ! -f $NGX_BUILD/ngx_http_upload_page.h ]
then
    echo "fuzz: configuring the module first (make $NGX_BUILD/Makefile)"
    make -C "$ROOT" --no-print-directory "$NGX_BUILD/Makefile"
fi

NGX_VERSION=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' \
                  $NGX_SRC/src/core/nginx.h)

mkdir -p "$OUT"


# the nginx core sources: NGX_CORE_SRC, or the release tarball (kept), from
# Debian's source archive (the orig tarball of the packaged nginx is the
# release tarball) or else from nginx.org

# Debian's deb-src entries beside the machine's own deb ones, in a private
# apt state under build/fuzz/apt: the machine's apt configuration is never
# touched, and no root is needed
debian_sources() {      # debian_sources <file>
    local f

    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822 stanzas of Debian's own archives, as deb-src
        awk 'BEGIN { RS = ""; ORS = "\n\n" }
             /URIs:[^\n]*debian/ && /Types:[^\n]*deb/ {
                 sub(/Types:[^\n]*/, "Types: deb-src"); print }' "$f"
    done > "$1"

    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -n 's/^deb \(.*debian.*\)/deb-src \1/p' "$f"
    done > "${1%.sources}.list"
}

# the orig tarball of the packaged nginx, its checksum checked against the
# one in Debian's signed Sources index
ngx_debian_fetch() {    # ngx_debian_fetch <tarball>
    local apt=$OUT/apt version lines line url sha got
    local opts=(-o Dir::Etc::SourceParts="$apt/sources"
                -o Dir::Etc::SourceList="$apt/sources/debian.list"
                -o Dir::State::Lists="$apt/lists"
                -o Dir::Cache="$apt/cache"
                -o APT::Sandbox::User="$(id -un)"
                -o Debug::NoLocking=1)

    command -v apt-get >/dev/null || return 1

    rm -rf "$apt"
    mkdir -p "$apt/sources" "$apt/lists/partial" "$apt/cache/archives/partial" \
             "$apt/dl"
    debian_sources "$apt/sources/debian.sources"

    [ -s "$apt/sources/debian.sources" ] \
        || [ -s "$apt/sources/debian.list" ] || return 1

    echo "fuzz: fetching Debian's nginx source index" >&2
    apt-get "${opts[@]}" -qq update >&2 || return 1

    # the packaged version first, then the newest: every Debian version of
    # the same upstream release has the same orig tarball
    version=$(dpkg-query -W -f='${Version}' nginx-dev 2>/dev/null || true)
    lines=$(cd "$apt/dl" \
            && for v in ${version:+"=$version"} ""; do
                   apt-get "${opts[@]}" -qq --print-uris source "nginx$v" \
                       2>/dev/null || true
               done | grep -F " nginx_$NGX_VERSION.orig.tar.gz ") || return 1

    while IFS= read -r line; do
        url=$(sed "s/^'\([^']*\)'.*/\1/" <<< "$line")
        sha=$(sed -n 's/.* SHA256:\([0-9a-f]\{64\}\).*/\1/p' <<< "$line")
        [ -n "$url" ] && [ -n "$sha" ] || continue

        echo "fuzz: downloading $url" >&2
        curl -fsSL -o "$1.part" "$url" || continue

        got=$(sha256sum "$1.part" | cut -d' ' -f1)
        if [ "$got" = "$sha" ]; then
            mv "$1.part" "$1"
            return 0
        fi

        echo "fuzz: $url: sha256 $got, Debian's index says $sha" >&2
        rm -f "$1.part"
    done <<< "$lines"

    return 1
}

ngx_release_fetch() {   # ngx_release_fetch <tarball>
    local url=https://nginx.org/download/nginx-$NGX_VERSION.tar.gz

    url=${NGX_TARBALL_URL:-$url}
    echo "fuzz: downloading $url" >&2

    if command -v curl >/dev/null; then
        curl -fsSL -o "$1.part" "$url"
    else
        wget -q -O "$1.part" "$url"
    fi || return 1

    mv "$1.part" "$1"
}

ngx_core_fetch() {
    local dir=$OUT/nginx-$NGX_VERSION tgz f sums

    if [ -n "${NGX_CORE_SRC:-}" ]; then
        dir=$NGX_CORE_SRC

    elif [ ! -f "$dir/.complete" ]; then
        tgz=$OUT/nginx-$NGX_VERSION.tar.gz

        if [ ! -s "$tgz" ]; then
            { [ -z "${NGX_TARBALL_URL:-}" ] && ngx_debian_fetch "$tgz"; } \
                || ngx_release_fetch "$tgz" \
                || die "cannot download nginx $NGX_VERSION's source; set" \
                       "NGX_CORE_SRC to an nginx $NGX_VERSION source tree"
        fi

        rm -rf "$dir"
        mkdir -p "$dir"
        tar -xzf "$tgz" -C "$dir" --strip-components=1 \
            "${NGX_CORE_FILES[@]/#/nginx-$NGX_VERSION/}" \
            || die "$tgz lacks the nginx core files"
        touch "$dir/.complete"
    fi

    for f in "${NGX_CORE_FILES[@]}"; do
        test -f "$dir/$f" || die "no $dir/$f"
    done

    # a tree of one's own may carry patches: only the download must match
    sums=$FUZZ/nginx-core-$NGX_VERSION.sha256

    if [ ! -f "$sums" ]; then
        echo "fuzz: warning: no checksums known for nginx $NGX_VERSION" >&2

    elif ! (cd "$dir" && sha256sum --quiet -c "$sums" >&2); then
        [ -n "${NGX_CORE_SRC:-}" ] \
            || die "the nginx core files in $dir are not the released" \
                   "ones (remove $dir* to download again)"
        echo "fuzz: warning: $dir differs from nginx $NGX_VERSION" >&2
    fi

    NGX_CORE=$dir
}


# --- build -----------------------------------------------------------------

SAN=(-fsanitize=address,undefined)
CFLAGS=(-g -O1 -fno-omit-frame-pointer -W -Wall -Wno-unused-parameter
        -Wno-sign-compare "${SAN[@]}")

INCS=(-I $NGX_SRC/src/core -I $NGX_SRC/src/event
      -I $NGX_SRC/src/event/modules -I $NGX_SRC/src/os/unix
      -I "$ROOT/src" -I "$NGX_BUILD"
      -I $NGX_SRC/src/http -I $NGX_SRC/src/http/modules
      -I $NGX_SRC/src/http/v2)

LIBS=(-lcjson -lhiredis -lcrypto -lpthread)

# a change of flags, of nginx source tree or of a header rebuilds everything
STAMP=$OUT/obj/.flags
HEADERS=("$ROOT"/src/*.h "$FUZZ"/fuzz.h "$NGX_BUILD"/ngx_auto_config.h
         "$NGX_BUILD"/ngx_http_upload_page.h)

# up to date: newer than its source, the flags and every header
fresh() {       # fresh <object> <source>
    local obj=$1 src=$2 h

    [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt "$STAMP" ] \
        || return 1

    for h in "${HEADERS[@]}"; do
        [ "$h" -nt "$obj" ] && return 1
    done

    return 0
}

compile() {     # compile <source> <object> [flags]
    fresh "$2" "$1" && return 0

    echo "  CC  ${1#$ROOT/}"
    $CC -c "${CFLAGS[@]}" -fsanitize=fuzzer-no-link "${INCS[@]}" "${@:3}" \
        -o "$2" "$1"
}

# the src/*.c a harness #includes (to reach its static functions)
included() {
    sed -n 's|^#include "\.\./src/\(.*\)\.c"$|\1|p' "$FUZZ/fuzz_$1.c"
}

# at most FUZZ_JOBS (2) compilers at a time: the machine may be shared
spawn() {
    "$@" &
    PIDS+=($!)

    if [ ${#PIDS[@]} -ge "${FUZZ_JOBS:-2}" ]; then
        wait "${PIDS[0]}" || FAILED_BUILD=1
        PIDS=("${PIDS[@]:1}")
    fi
}

build() {
    local h f o objs inc strict

    PIDS=()
    FAILED_BUILD=0

    ngx_core_fetch

    mkdir -p "$OUT/obj/core" "$OUT/obj/src" "$OUT/obj/fuzz" "$OUT/bin"

    f="$CC ${CFLAGS[*]} ${INCS[*]} $NGX_CORE"
    if [ "$(cat "$STAMP" 2>/dev/null)" != "$f" ]; then
        echo "$f" > "$STAMP"
    fi

    echo "fuzz: building with $CC"

    for f in "${NGX_CORE_FILES[@]}"; do
        spawn compile "$NGX_CORE/$f" "$OUT/obj/core/$(basename "$f" .c).o"
    done

    for f in "$ROOT"/src/*.c; do
        spawn compile "$f" "$OUT/obj/src/$(basename "$f" .c).o"
    done

    for f in "$FUZZ"/fuzz_common.c "$FUZZ"/stubs.c; do
        spawn compile "$f" "$OUT/obj/fuzz/$(basename "$f" .c).o"
    done

    # FUZZ_STRICT is the harnesses' own: a change rebuilds them alone
    strict=-DFUZZ_STRICT=${FUZZ_STRICT:-0}
    if [ "$(cat "$OUT/obj/fuzz/.strict" 2>/dev/null)" != "$strict" ]; then
        for h in "${HARNESSES[@]}"; do
            rm -f "$OUT/obj/fuzz/fuzz_$h.o"
        done
        echo "$strict" > "$OUT/obj/fuzz/.strict"
    fi

    for h in "${SELECTED[@]}"; do
        # a harness that includes a src file depends on what that includes
        o=$OUT/obj/fuzz/fuzz_$h.o
        if [ -f "$o" ] && [ -n "$(included "$h")" ]; then
            for f in "$ROOT"/src/*.c; do
                [ "$f" -nt "$o" ] && rm -f "$o" && break
            done
        fi
        spawn compile "$FUZZ/fuzz_$h.c" "$o" "$strict"
    done

    for f in "${PIDS[@]}"; do
        wait "$f" || FAILED_BUILD=1
    done

    [ $FAILED_BUILD = 0 ] || die "the build failed"

    for h in "${SELECTED[@]}"; do
        inc=$(included "$h")
        objs=()
        for f in "$OUT"/obj/src/*.o; do
            [ "$(basename "$f" .o)" = "$inc" ] && continue
            objs+=("$f")
        done

        objs+=("$OUT/obj/fuzz/fuzz_$h.o" "$OUT/obj/fuzz/fuzz_common.o"
               "$OUT/obj/fuzz/stubs.o" "$OUT"/obj/core/*.o)

        for f in "${objs[@]}"; do
            [ "$f" -nt "$OUT/bin/fuzz_$h" ] && break
        done
        [ "$f" -nt "$OUT/bin/fuzz_$h" ] || continue

        echo "  LD  build/fuzz/bin/fuzz_$h${inc:+ (includes src/$inc.c)}"
        $CC "${SAN[@]}" -fsanitize=fuzzer -o "$OUT/bin/fuzz_$h" \
            "${objs[@]}" "${LIBS[@]}"
    done
}


# --- run -------------------------------------------------------------------

FAILED=()
SUMMARY=()

# undefined behaviour is a crash too, but for nginx's idiom memcpy(p, NULL,
# 0) (fuzz/ubsan.supp), unless FUZZ_STRICT=1
UBSAN=print_stacktrace=1:halt_on_error=1
[ "${FUZZ_STRICT:-0}" = 1 ] || UBSAN=$UBSAN:suppressions=$FUZZ/ubsan.supp
export UBSAN_OPTIONS=$UBSAN${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
if [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
    export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi

# the inputs of a directory once each: fuzz/regress/<harness>/ (fixed:
# must pass), fuzz/crashes/<harness>/ (open findings: pass only through
# the harnesses' tolerance of known issues, so fail with FUZZ_STRICT=1)
replay() {      # replay <harness> <regress|crashes>
    local h=$1 kind=$2 bin=$OUT/bin/fuzz_$1 dir=$FUZZ/$2/$1 log f files=()

    if [ -d "$dir" ]; then
        while IFS= read -r -d '' f; do
            files+=("$f")
        done < <(find "$dir" -type f ! -name '.*' -print0 | sort -z)
    fi

    [ ${#files[@]} -gt 0 ] || return 0

    log=$OUT/logs/$h.$kind.log

    if "$bin" "${files[@]}" > "$log" 2>&1; then
        echo "fuzz: $h: the ${#files[@]} inputs of fuzz/$kind/$h pass"
        return 0
    fi

    f=$(sed -n 's/^Running: //p' "$log" | tail -1)
    echo "fuzz: $h: FAILED on ${f#$ROOT/}; log: $log" >&2
    grep -E "invariant broken|ERROR: |runtime error|SUMMARY: " "$log" \
        | head -3 >&2 || true
    FAILED+=("$h (input ${f#$ROOT/}, log $log)")
}

fuzz() {
    local h=$1 bin=$OUT/bin/fuzz_$1 corpus=$OUT/corpus-$1
    local art=$OUT/artifacts/$1 log=$OUT/logs/$1.log dict rc crash
    local opts=()

    mkdir -p "$corpus" "$art"

    # the seeds join what earlier runs found; fuzz/ itself is never written
    if [ -d "$FUZZ/corpus/$h" ]; then
        cp -n "$FUZZ/corpus/$h"/* "$corpus"/ 2>/dev/null || true
    fi

    dict=$FUZZ/dict/$h.dict
    [ -f "$dict" ] && opts+=(-dict="$dict")

    echo "fuzz: $h: ${FUZZ_SECONDS}s from $(ls "$corpus" | wc -l) inputs"

    # in build/fuzz/logs: -jobs writes its fuzz-<n>.log files where it runs
    rc=0
    # shellcheck disable=SC2086
    (cd "$OUT/logs" \
     && "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
            -rss_limit_mb=2048 -max_len="${MAX_LEN[$h]}" \
            -artifact_prefix="$art/" -print_final_stats=1 "${opts[@]}" \
            ${FUZZ_ARGS:-} "$corpus") > "$log" 2>&1 || rc=$?

    SUMMARY+=("$(printf '%-15s %s' "$h" "$(summary "$log")")")

    if [ $rc -ne 0 ]; then
        crash=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
        echo "fuzz: $h: FAILED (exit $rc); input: ${crash:-none saved};" \
             "log: $log" >&2
        grep -E "invariant broken|ERROR: |runtime error|SUMMARY: " "$log" \
            | head -5 >&2 || true
        FAILED+=("$h (input ${crash:-none saved}, log $log)")
    fi
}

# "runs, cov, ft, corpus, exec/s, rss" from libFuzzer's last status line
summary() {
    local log=$1 line field out=""

    line=$(grep -E "^#[0-9]+[[:space:]]+DONE" "$log" | tail -1 || true)
    [ -n "$line" ] \
        || line=$(grep -E "^#[0-9]+[[:space:]]" "$log" | tail -1 || true)

    if [ -z "$line" ]; then
        echo "stopped before its first status line"
        return
    fi

    out="runs ${line%%[[:space:]]*}"
    out="${out/\#/}"

    for field in cov ft corp exec/s rss; do
        out="$out, $field $(sed -n "s|.* $field: \([^ ]*\).*|\1|p" \
                                <<< "$line")"
    done

    echo "$out"
}

SELECTED=("$@")
[ ${#SELECTED[@]} -gt 0 ] || SELECTED=("${HARNESSES[@]}")

for h in "${SELECTED[@]}"; do
    test -f "$FUZZ/fuzz_$h.c" || die "no harness \"$h\" (fuzz/fuzz_$h.c)"
done

build

[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit 0

mkdir -p "$OUT/logs"

for h in "${SELECTED[@]}"; do
    replay "$h" regress
    replay "$h" crashes
done

for h in "${SELECTED[@]}"; do
    fuzz "$h"
done

echo
echo "fuzz: ${FUZZ_SECONDS}s a harness:"
printf '  %s\n' "${SUMMARY[@]}"

if [ ${#FAILED[@]} -gt 0 ]; then
    echo >&2
    echo "fuzz: FAILED:" >&2
    printf '  %s\n' "${FAILED[@]}" >&2
    exit 1
fi

echo "fuzz: no crash"
