# Build, run and test ngx_http_upload_module against Debian 12's stock nginx.
#
#   make               build build/ngx_http_upload_module.so
#   make deps          install the Debian packages the build and tests need
#   make run           Redis on 127.0.0.1:6380 + nginx on 127.0.0.1:8080
#   make stop          stop what a `make run` left running
#   make example       examples/app_server.py against a `make run`'s nginx
#   make test          the Test::Nginx suite (T=t/010-whole.t for a subset)
#   make test-valgrind the same under valgrind
#   make fuzz          the libFuzzer harnesses of fuzz/ (FUZZ_SECONDS each)
#   make bench         all the benchmarks (bench/all.sh; docs/performance.md)
#   make clean         stop a `make run`; remove build/, run/ and t/servroot*

# conf_flags is a bash file: NGX_CONF_FLAGS is a bash array.
SHELL := /bin/bash

NGX_SRC    := /usr/share/nginx/src
NGX_BINARY ?= /usr/sbin/nginx

BUILD      := $(CURDIR)/build
NGX_BUILD  := $(BUILD)/nginx
MODULE     := $(BUILD)/ngx_http_upload_module.so

SOURCES    := $(wildcard $(CURDIR)/*.c $(CURDIR)/*.h \
                         $(CURDIR)/src/*.c $(CURDIR)/src/*.h)

T ?= t

export NGX_BINARY

# A configure or compile that fails must not leave a target that looks fresh.
.DELETE_ON_ERROR:

.PHONY: all deps run stop example test test-valgrind bench fuzz clean

all: $(MODULE)

# Configure against the packaged nginx source with the packaged flags, so the
# module's binary signature matches /usr/sbin/nginx; every output goes to
# build/nginx, nothing is written under /usr.
# config also turns the upload page into a C header
$(NGX_BUILD)/Makefile: config src/ngx_http_upload_page.html
	@test -f $(NGX_SRC)/conf_flags \
	    || { echo "no $(NGX_SRC): \`make deps\` installs nginx-dev" >&2; \
	         exit 1; }
	cd $(NGX_SRC) && . ./conf_flags \
	    && ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --add-dynamic-module=$(CURDIR) --builddir=$(NGX_BUILD)

# nginx's Makefile then recompiles what a change touches: a header counts
# only if config lists it in ngx_module_deps.
$(MODULE): $(NGX_BUILD)/Makefile $(SOURCES)
	$(MAKE) -f $(NGX_BUILD)/Makefile -C $(NGX_SRC) modules
	@# a new inode: a running nginx keeps the file it mapped
	cp $(NGX_BUILD)/ngx_http_upload_module.so $@.tmp && mv -f $@.tmp $@

deps:
	@bash scripts/deps.sh

# deps first, then the build: a recursive make keeps that order under -j.
run: deps
	@$(MAKE) --no-print-directory all
	bash scripts/run.sh

stop:
	bash scripts/run.sh stop

# The example app (examples/README.md): registers itself with the nginx of
# `make run` (in another terminal), prints an upload link, converts what is
# uploaded with it into build/example-out/. EXAMPLE_ARGS adds options.
example:
	python3 examples/app_server.py --out $(BUILD)/example-out $(EXAMPLE_ARGS)

test: deps
	@$(MAKE) --no-print-directory all
	bash scripts/test.sh $(T)

test-valgrind: deps
	@$(MAKE) --no-print-directory all
	@# memcheck slows nginx down ten times or more: 20 s per request
	TEST_NGINX_USE_VALGRIND=1 TEST_NGINX_TIMEOUT=$${TEST_NGINX_TIMEOUT:-20} \
	    bash scripts/test.sh $(T)

# Installs what `make deps` does, plus wrk (and node and npm for the tus
# baseline); about 15 minutes on 2 vCPUs.  BENCHES and ROUNDS (3) choose
# what runs: see bench/all.sh.
bench:
	bash scripts/deps.sh bench
	@$(MAKE) --no-print-directory all
	bash bench/all.sh

# clang-14 and its runtimes (installed by scripts/deps.sh fuzz); outputs in
# build/fuzz (fuzz/README.md)
fuzz:
	bash scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory $(NGX_BUILD)/Makefile
	bash fuzz/run.sh

clean: stop
	rm -rf $(BUILD) $(CURDIR)/run $(CURDIR)/t/servroot*
