
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Query strings: the whole input is r->args.
 *
 *   ngx_http_upload_arg()          "name=value": once, twice or absent
 *   ngx_http_upload_arg_present()  "name" or "name=..."
 *   ngx_http_upload_part_number()  "partNumber" (static, multipart.c)
 *   ngx_http_upload_session_valid_id()  the "uploadId" given
 *
 * Each is checked against a plain split of the string on "&".
 */


#include "../src/ngx_http_upload_multipart.c"

#include "fuzz.h"


static ngx_uint_t fuzz_count(ngx_str_t *args, const char *name,
    ngx_uint_t bare, ngx_str_t *value);
static ngx_uint_t fuzz_all_of(ngx_str_t *s, const char *chars);


static const char  *fuzz_valued[] = {
    "uploadId", "partNumber", "token", "prefix", "sha256", "max-parts",
    "part-number-marker", "upload", NULL
};

static const char  *fuzz_bare[] = {
    "uploads", "uploadId", "meta", "sha256", "upload", NULL
};


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char              *p;
    ngx_int_t            rc, n;
    ngx_str_t            value, expect;
    ngx_uint_t           i, count, number;
    fuzz_env_t           env;
    const char          *reason;
    ngx_http_request_t  *r;

    if (size > 8192) {
        return -1;
    }

    if (fuzz_env_create(&env) != NGX_OK) {
        return 0;
    }

    r = env.request;

    p = fuzz_dup(env.pool, data, size);
    if (p == NULL) {
        goto done;
    }

    r->args.data = p;
    r->args.len = size;

    for (i = 0; fuzz_valued[i]; i++) {
        ngx_str_null(&value);

        rc = ngx_http_upload_arg(r, fuzz_valued[i], &value);
        count = fuzz_count(&r->args, fuzz_valued[i], 0, &expect);

        fuzz_check(rc == (count == 0 ? NGX_DECLINED
                          : count == 1 ? NGX_OK : NGX_BUSY),
                   "arg: found, absent or twice, unlike the split");

        if (rc == NGX_OK) {
            fuzz_check(value.data == expect.data && value.len == expect.len,
                       "arg: another value than the split's");
        }

        if (rc == NGX_OK && i == 0) {
            fuzz_check((ngx_http_upload_session_valid_id(&value) == NGX_OK)
                       == (value.len == NGX_HTTP_UPLOAD_ID_LEN
                           && fuzz_all_of(&value,
                                          "abcdefghijklmnopqrstuvwxyz"
                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789-_")),
                       "session_valid_id: not 24 base64url characters");
        }
    }

    for (i = 0; fuzz_bare[i]; i++) {
        fuzz_check(ngx_http_upload_arg_present(r, fuzz_bare[i])
                   == (fuzz_count(&r->args, fuzz_bare[i], 1, &expect) > 0),
                   "arg_present disagrees with the split");
    }

    /* digits only, no sign, no leading zero, 1 to max_parts, once */

    reason = NULL;
    number = 0;

    rc = ngx_http_upload_part_number(r, &number, &reason);

    count = fuzz_count(&r->args, "partNumber", 0, &expect);
    n = NGX_ERROR;

    if (count == 1 && expect.len && expect.len <= 6
        && expect.data[0] != '0'
        && fuzz_all_of(&expect, "0123456789"))
    {
        n = ngx_atoi(expect.data, expect.len);
    }

    if (n != NGX_ERROR && (n < 1 || n > (ngx_int_t) env.ulcf->max_parts)) {
        n = NGX_ERROR;
    }

    fuzz_check((rc == NGX_OK) == (n != NGX_ERROR),
               "part_number disagrees with the rules");
    fuzz_check(rc == NGX_OK ? (ngx_int_t) number == n : reason != NULL,
               "part_number: another number, or no reason");

done:

    fuzz_env_destroy(&env);

    return 0;
}


/* how many of the "&"-separated arguments are "name=..." (or "name") */

static ngx_uint_t
fuzz_count(ngx_str_t *args, const char *name, ngx_uint_t bare,
    ngx_str_t *value)
{
    u_char      *p, *end, *arg;
    size_t       len;
    ngx_uint_t   n;

    len = ngx_strlen(name);
    end = args->data + args->len;
    n = 0;

    for (arg = args->data; arg <= end; arg = p + 1) {

        p = ngx_strlchr(arg, end, '&');
        if (p == NULL) {
            p = end;
        }

        if ((size_t) (p - arg) < len || ngx_memcmp(arg, name, len) != 0) {
            continue;
        }

        if ((size_t) (p - arg) == len) {
            n += bare;
            continue;
        }

        if (arg[len] == '=') {
            if (n++ == 0) {
                value->data = arg + len + 1;
                value->len = p - value->data;
            }
        }
    }

    return n;
}


static ngx_uint_t
fuzz_all_of(ngx_str_t *s, const char *chars)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] == '\0' || ngx_strchr(chars, s->data[i]) == NULL) {
            return 0;
        }
    }

    return 1;
}
