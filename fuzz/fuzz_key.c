
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Object keys and app names (src/ngx_http_upload_key.c), checked against
 * a plain restatement of their rules:
 *
 *   ngx_http_upload_validate_key()  the input as a decoded key
 *   ngx_http_upload_validate_app()  the input as an app name
 *   ngx_http_upload_parse_key()     the input as the raw request target
 *                                   (percent-decoding, the location)
 *   ngx_http_upload_escape_key()    escaped then parsed back: the same key
 *
 * The first byte picks the location ("/upload/", "/upload", "/" or "/a/b")
 * and whether the target starts with it; the rest is the key, the name or
 * the target.
 */


#include "fuzz.h"


static ngx_int_t fuzz_utf8_valid(u_char *p, size_t len);
static ngx_int_t fuzz_key_valid(u_char *p, size_t len);
static ngx_int_t fuzz_app_valid(u_char *p, size_t len);
static ngx_int_t fuzz_unescape(u_char *src, size_t len, u_char *dst,
    size_t *out);
static void fuzz_parse_key(fuzz_env_t *env, u_char *data, size_t len,
    ngx_uint_t flags);
static void fuzz_escape_key(fuzz_env_t *env, ngx_str_t *key);


static ngx_str_t  fuzz_locations[] = {
    ngx_string("/upload/"),
    ngx_string("/upload"),
    ngx_string("/"),
    ngx_string("/a/b")
};


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *p;
    ngx_int_t    rc;
    ngx_str_t    s;
    fuzz_env_t   env;
    const char  *reason;

    if (size == 0 || size > 8192) {
        return -1;
    }

    if (fuzz_env_create(&env) != NGX_OK) {
        return 0;
    }

    p = fuzz_dup(env.pool, data + 1, size - 1);
    if (p == NULL) {
        goto done;
    }

    /* a decoded key */

    s.data = p;
    s.len = size - 1;
    reason = NULL;

    rc = ngx_http_upload_validate_key(&s, &reason);

    fuzz_check(rc == NGX_OK || (rc == NGX_DECLINED && reason != NULL),
               "validate_key: NGX_OK, or NGX_DECLINED with a reason");
    fuzz_check((rc == NGX_OK) == (fuzz_key_valid(p, size - 1) == NGX_OK),
               "validate_key disagrees with the key rules");

    if (rc == NGX_OK) {
        fuzz_escape_key(&env, &s);
    }

    /* an app name */

    reason = NULL;

    rc = ngx_http_upload_validate_app(&s, &reason);

    fuzz_check(rc == NGX_OK || (rc == NGX_DECLINED && reason != NULL),
               "validate_app: NGX_OK, or NGX_DECLINED with a reason");
    fuzz_check((rc == NGX_OK) == (fuzz_app_valid(p, size - 1) == NGX_OK),
               "validate_app disagrees with the app name rules");

    /* the raw request target */

    fuzz_parse_key(&env, p, size - 1, data[0]);

done:

    fuzz_env_destroy(&env);

    return 0;
}


/*
 * r->unparsed_uri: the location, then the input (flags & 4: the input
 * alone); the result must be what decoding and the rules give.
 */

static void
fuzz_parse_key(fuzz_env_t *env, u_char *data, size_t len, ngx_uint_t flags)
{
    u_char              *uri, *q, *end, *dec, *k;
    size_t               n, klen;
    ngx_int_t            rc, expect;
    ngx_str_t            key, *loc;
    const char          *reason;
    ngx_http_request_t  *r;

    r = env->request;
    loc = &fuzz_locations[flags & 3];
    env->clcf->name = *loc;

    n = (flags & 4) ? len : loc->len + len;

    uri = ngx_pnalloc(env->pool, n ? n : 1);
    if (uri == NULL) {
        return;
    }

    q = uri;

    if (!(flags & 4)) {
        q = ngx_cpymem(q, loc->data, loc->len);
    }

    ngx_memcpy(q, data, len);

    r->unparsed_uri.data = uri;
    r->unparsed_uri.len = n;

    /* what it should be */

    end = ngx_strlchr(uri, uri + n, '?');
    if (end == NULL) {
        end = uri + n;
    }

    dec = ngx_pnalloc(env->pool, (end - uri) ? (end - uri) : 1);
    if (dec == NULL) {
        return;
    }

    expect = NGX_DECLINED;
    k = NULL;
    klen = 0;

    if (fuzz_unescape(uri, end - uri, dec, &n) == NGX_OK
        && n >= loc->len && ngx_memcmp(dec, loc->data, loc->len) == 0)
    {
        k = dec + loc->len;
        klen = n - loc->len;

        if (loc->data[loc->len - 1] != '/' && klen) {
            if (k[0] == '/') {
                k++;
                klen--;

            } else {
                k = NULL;
            }
        }

        if (k && fuzz_key_valid(k, klen) == NGX_OK) {
            expect = NGX_OK;
        }
    }

    reason = NULL;

    rc = ngx_http_upload_parse_key(r, &key, &reason);

    fuzz_check(rc == expect, "parse_key disagrees with decoding and rules");

    if (rc != NGX_OK) {
        fuzz_check(reason != NULL, "parse_key declined without a reason");
        return;
    }

    fuzz_check(key.len == klen && ngx_memcmp(key.data, k, klen) == 0,
               "parse_key gave another key than the decoded one");

    fuzz_escape_key(env, &key);
}


/* escaped for a URL, then parsed from a request target: the same key */

static void
fuzz_escape_key(fuzz_env_t *env, ngx_str_t *key)
{
    u_char              *esc, *uri, *p;
    size_t               len, i;
    ngx_int_t            rc;
    ngx_str_t            back, saved_uri, saved_name;
    const char          *reason;
    ngx_http_request_t  *r;

    r = env->request;

    esc = ngx_http_upload_escape_key(env->pool, key, &len);
    if (esc == NULL) {
        return;
    }

    fuzz_check(len <= 3 * key->len, "escape_key: longer than 3 bytes a byte");

    for (i = 0; i < len; i++) {
        if (esc[i] == '%') {
            fuzz_check(i + 2 < len, "escape_key: a truncated %XX");
            i += 2;
            continue;
        }

        fuzz_check(ngx_strchr("-_.~/", esc[i]) != NULL
                   || (esc[i] >= 'a' && esc[i] <= 'z')
                   || (esc[i] >= 'A' && esc[i] <= 'Z')
                   || (esc[i] >= '0' && esc[i] <= '9'),
                   "escape_key: a reserved byte left as is");
    }

    saved_uri = r->unparsed_uri;
    saved_name = env->clcf->name;
    ngx_str_set(&env->clcf->name, "/upload/");

    uri = ngx_pnalloc(env->pool, sizeof("/upload/") - 1 + len
                                 + sizeof("?uploads") - 1);
    if (uri == NULL) {
        return;
    }

    p = ngx_cpymem(uri, "/upload/", sizeof("/upload/") - 1);
    p = ngx_cpymem(p, esc, len);
    p = ngx_cpymem(p, "?uploads", sizeof("?uploads") - 1);

    r->unparsed_uri.data = uri;
    r->unparsed_uri.len = p - uri;

    rc = ngx_http_upload_parse_key(r, &back, &reason);

    fuzz_check(rc == NGX_OK, "an escaped valid key is refused");
    fuzz_check(back.len == key->len
               && ngx_memcmp(back.data, key->data, key->len) == 0,
               "an escaped key parses back to another key");

    r->unparsed_uri = saved_uri;
    env->clcf->name = saved_name;
}


/*
 * The key rules, restated: 1 to 1024 bytes of UTF-8, "/"-separated
 * segments of 1 to 255 bytes, none "." or "..", no control character
 * (U+0000-U+001F, U+007F) and no backslash.
 */

static ngx_int_t
fuzz_key_valid(u_char *p, size_t len)
{
    size_t      i, seg;
    ngx_uint_t  dots;

    if (len == 0 || len > 1024 || fuzz_utf8_valid(p, len) != NGX_OK) {
        return NGX_DECLINED;
    }

    seg = 0;
    dots = 0;

    for (i = 0; i <= len; i++) {

        if (i == len || p[i] == '/') {
            if (seg == 0 || seg > 255 || (seg <= 2 && dots == seg)) {
                return NGX_DECLINED;
            }

            seg = 0;
            dots = 0;
            continue;
        }

        if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\') {
            return NGX_DECLINED;
        }

        seg++;
        dots += (p[i] == '.');
    }

    return NGX_OK;
}


/* UTF-8 by the table of well-formed sequences (Unicode, table 3-7) */

static ngx_int_t
fuzz_utf8_valid(u_char *p, size_t len)
{
    u_char      lo, hi;
    size_t      i;
    ngx_uint_t  n, k;

    i = 0;

    while (i < len) {

        if (p[i] <= 0x7f) {
            i++;
            continue;
        }

        lo = 0x80;
        hi = 0xbf;

        if (p[i] >= 0xc2 && p[i] <= 0xdf) {
            n = 1;

        } else if (p[i] == 0xe0) {
            n = 2;
            lo = 0xa0;

        } else if (p[i] >= 0xe1 && p[i] <= 0xec) {
            n = 2;

        } else if (p[i] == 0xed) {
            n = 2;
            hi = 0x9f;

        } else if (p[i] == 0xee || p[i] == 0xef) {
            n = 2;

        } else if (p[i] == 0xf0) {
            n = 3;
            lo = 0x90;

        } else if (p[i] >= 0xf1 && p[i] <= 0xf3) {
            n = 3;

        } else if (p[i] == 0xf4) {
            n = 3;
            hi = 0x8f;

        } else {
            return NGX_DECLINED;
        }

        if (len - i <= n || p[i + 1] < lo || p[i + 1] > hi) {
            return NGX_DECLINED;
        }

        for (k = 2; k <= n; k++) {
            if (p[i + k] < 0x80 || p[i + k] > 0xbf) {
                return NGX_DECLINED;
            }
        }

        i += n + 1;
    }

    return NGX_OK;
}


/* 1 to 64 of [A-Za-z0-9._-], not starting with "." */

static ngx_int_t
fuzz_app_valid(u_char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > 64 || p[0] == '.') {
        return NGX_DECLINED;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')
              || (p[i] >= '0' && p[i] <= '9')
              || p[i] == '.' || p[i] == '_' || p[i] == '-'))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* strict percent-decoding: every "%" is followed by two hex digits */

static ngx_int_t
fuzz_unescape(u_char *src, size_t len, u_char *dst, size_t *out)
{
    size_t     i, n;
    ngx_int_t  hex;

    n = 0;

    for (i = 0; i < len; i++) {

        if (src[i] != '%') {
            dst[n++] = src[i];
            continue;
        }

        if (len - i < 3) {
            return NGX_DECLINED;
        }

        hex = ngx_hextoi(&src[i + 1], 2);
        if (hex == NGX_ERROR) {
            return NGX_DECLINED;
        }

        dst[n++] = (u_char) hex;
        i += 2;
    }

    *out = n;

    return NGX_OK;
}
