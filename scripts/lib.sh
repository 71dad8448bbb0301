# Helpers sourced by the other scripts: processes known by their pid files.
# They read /proc directly: a fresh Debian image may have no procps (ps).

# Whether PID is a live process (a zombie is not: it has exited).
proc_alive() {
    local stat

    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# The parent of PID.
proc_parent() {
    local stat

    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    set -- ${stat##*) }
    echo "$2"
}

# The pid in FILE, if that process is alive and its name is NAME: a stale
# pid file may name a pid the system has since given to something else.
pidfile_pid() {
    local file=$1 name=$2 pid

    pid=$(cat "$file" 2>/dev/null) || return 1
    case $pid in
    ''|*[!0-9]*) return 1 ;;
    esac
    proc_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] \
        && echo "$pid"
}

# Sends SIGNAL to the process in pid file FILE if it is a live NAME, waits up
# to 10 s for it to exit, then removes FILE.
pidfile_stop() {
    local file=$1 name=$2 signal=$3 pid i

    if pid=$(pidfile_pid "$file" "$name"); then
        kill "-$signal" "$pid" 2>/dev/null || true
        for i in $(seq 100); do
            proc_alive "$pid" || break
            sleep 0.1
        done
        if proc_alive "$pid"; then
            echo "$name: pid $pid did not exit in 10 s" >&2
            return 1
        fi
        echo "$name: stopped pid $pid"
    fi
    rm -f "$file"
}
