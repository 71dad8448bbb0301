#!/usr/bin/env bash
# `make test`: the Test::Nginx suite against /usr/sbin/nginx with the module
# built in build/, and a private Redis on 127.0.0.1:6381, emptied before and
# stopped after the run.
#
#   scripts/test.sh [FILE|DIR...]     default: t
#
# Exits with prove's status. TEST_NGINX_USE_VALGRIND=1 runs nginx under
# valgrind (`make test-valgrind`).  Two runs at once need their own
# TEST_REDIS_PORT (and TEST_NGINX_PORT, TEST_NGINX_SERVROOT).
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
redis_port=${TEST_REDIS_PORT:-6381}
redis_dir=$top/build/redis-test${TEST_REDIS_PORT:+-$TEST_REDIS_PORT}

cd "$top"

# A run that died may have left its redis-server and data there.
bash scripts/redis.sh stop "$redis_dir" || exit 1
rm -rf "$redis_dir"
bash scripts/redis.sh start "$redis_port" "$redis_dir" || exit 1
trap 'bash scripts/redis.sh stop "$redis_dir"' EXIT

export TEST_NGINX_REDIS_PORT=$redis_port
export TEST_NGINX_BINARY=${NGX_BINARY:-/usr/sbin/nginx}
# Test::Nginx puts a load_module line for each of these in every nginx.conf.
module=$top/build/ngx_http_upload_module.so
export TEST_NGINX_LOAD_MODULES=${TEST_NGINX_LOAD_MODULES:-$module}
export PERL5LIB=$top/t/lib${PERL5LIB:+:$PERL5LIB}

prove -I t/lib -r "${@:-t}"
