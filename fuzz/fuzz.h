
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * What the libFuzzer harnesses share: a request just real enough for the
 * module's parsers (fuzz_common.c) and what the stubs of nginx's HTTP core
 * were given (stubs.c).
 */


#ifndef _NGX_HTTP_UPLOAD_FUZZ_H_INCLUDED_
#define _NGX_HTTP_UPLOAD_FUZZ_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upload.h"


/* the clock of every run (2023-11-14), so that expiry checks are stable */
#define FUZZ_NOW                      1700000000


typedef struct {
    ngx_pool_t                   *pool;
    ngx_http_request_t           *request;
    ngx_http_upload_loc_conf_t   *ulcf;
    ngx_http_core_loc_conf_t     *clcf;
} fuzz_env_t;


/* the answer the module sent through the stubs, if any */
typedef struct {
    ngx_uint_t                    finalized;  /* calls of finalize_request */
    ngx_int_t                     rc;         /* the last one's */
    ngx_uint_t                    status;     /* of the header sent */
    ngx_str_t                     body;       /* the body sent, in the pool */
} fuzz_sent_t;


extern fuzz_sent_t  fuzz_sent;


/*
 * A pool whose every allocation is its own malloc(), so that AddressSanitizer
 * sees the end of each one, a request with a connection, a log that formats
 * every message, and the upload module's and core's loc confs; the upload
 * conf has the values the brief of the harnesses names (max_parts 10000,
 * part sizes 1 byte to 5 GiB, no max_size).
 */
ngx_int_t fuzz_env_create(fuzz_env_t *env);
void fuzz_env_destroy(fuzz_env_t *env);

/* "size" bytes in an allocation of exactly that size (no NUL after) */
u_char *fuzz_dup(ngx_pool_t *pool, const u_char *data, size_t size);

/*
 * A parser ("what") declined: it named a code and a message, and the
 * module's error answer for them is a 400 with a JSON object.
 */
void fuzz_check_declined(ngx_http_request_t *r, const char *what,
    const char *code, const char *message);

/* a broken invariant: the message, then abort() (libFuzzer keeps the input) */
void fuzz_fail(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

/* a byte reader over the fuzzer's input, for harnesses that build values */
typedef struct {
    const u_char                 *pos;
    const u_char                 *last;
} fuzz_input_t;

ngx_uint_t fuzz_byte(fuzz_input_t *in);
uint64_t fuzz_uint(fuzz_input_t *in, uint64_t min, uint64_t max);


#define fuzz_check(cond, what)                                               \
    if (!(cond)) {                                                           \
        fuzz_fail("%s:%d: %s", __FILE__, __LINE__, what);                    \
    }


#endif /* _NGX_HTTP_UPLOAD_FUZZ_H_INCLUDED_ */
