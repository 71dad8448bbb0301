
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Upload links signed and verified back (src/ngx_http_upload_link.c): the
 * input is read as one or two secrets and a link's claims (app, prefix,
 * nonce, exp, max_size, max_files), within what link_mint_body() accepts:
 * a prefix of at most 1024 bytes without control characters or
 * backslashes, max_size up to 10^15.
 *
 *   ngx_http_upload_link_sign() then ngx_http_upload_link_verify():
 *   a token of at most 4096 bytes, NGX_OK, and the same claims;
 *   the token with one byte changed: refused.
 */


#include "fuzz.h"


#define FUZZ_LINK_MAX                 4096


static u_char  fuzz_app_chars[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";

static u_char  fuzz_nonce_chars[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";


static ngx_int_t fuzz_string(ngx_pool_t *pool, fuzz_input_t *in,
    ngx_str_t *s, size_t min, size_t max, u_char *chars, size_t nchars);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                  *t, mask;
    size_t                   i, claims, step, offset;
    ngx_int_t                rc;
    ngx_str_t               *secret, token;
    ngx_uint_t               nsecrets, signer;
    fuzz_env_t               env;
    const char              *why;
    ngx_array_t             *secrets;
    fuzz_input_t             in;
    ngx_http_upload_link_t   link, back;

    if (size > 8192) {
        return -1;
    }

    if (fuzz_env_create(&env) != NGX_OK) {
        return 0;
    }

    in.pos = data;
    in.last = data + size;

    nsecrets = 1 + fuzz_uint(&in, 0, 1);
    signer = fuzz_uint(&in, 0, nsecrets - 1);

    secrets = ngx_array_create(env.pool, 2, sizeof(ngx_str_t));
    if (secrets == NULL) {
        goto done;
    }

    secret = ngx_array_push_n(secrets, nsecrets);
    if (secret == NULL) {
        goto done;
    }

    ngx_memzero(&link, sizeof(ngx_http_upload_link_t));

    /* any bytes for a secret; the claims as link_mint_body() takes them */

    for (i = 0; i < nsecrets; i++) {
        if (fuzz_string(env.pool, &in, &secret[i], 1, 64, NULL, 0)
            != NGX_OK)
        {
            goto done;
        }
    }

    if (fuzz_string(env.pool, &in, &link.app, 1, NGX_HTTP_UPLOAD_APP_MAX,
                    fuzz_app_chars, sizeof(fuzz_app_chars) - 1)
        != NGX_OK
        || fuzz_string(env.pool, &in, &link.prefix, 0,
                       NGX_HTTP_UPLOAD_KEY_MAX, NULL, 0)
           != NGX_OK
        || fuzz_string(env.pool, &in, &link.nonce, 8, 64, fuzz_nonce_chars,
                       sizeof(fuzz_nonce_chars) - 1)
           != NGX_OK)
    {
        goto done;
    }

    if (link.app.data[0] == '.') {
        link.app.data[0] = '_';
    }

    for (i = 0; i < link.prefix.len; i++) {
        if (link.prefix.data[i] < 0x20 || link.prefix.data[i] == 0x7f
            || link.prefix.data[i] == '\\')
        {
            link.prefix.data[i] = '/';
        }
    }

    link.exp = fuzz_uint(&in, FUZZ_NOW + 1, 100000000000ULL);
    link.max_size = fuzz_uint(&in, 0, 1000000000000000ULL);
    link.max_files = fuzz_uint(&in, 1, 1000000);

    mask = fuzz_byte(&in);
    mask = mask ? mask : 0x20;

    rc = ngx_http_upload_link_sign(env.pool, &secret[signer], &link);

    fuzz_check(rc == NGX_OK, "link_sign failed");

    /* what link_mint_body() would answer, link_verify() must take */

    fuzz_check(link.token.len <= FUZZ_LINK_MAX,
               "a token signed for a link mint allows is over 4096 bytes");

    ngx_memzero(&back, sizeof(ngx_http_upload_link_t));
    why = NULL;

    rc = ngx_http_upload_link_verify(env.pool, secrets, &link.token, &back,
                                     &why);

    fuzz_check(rc == NGX_OK, "a link just signed is refused");

    fuzz_check(back.app.len == link.app.len
               && ngx_memcmp(back.app.data, link.app.data, link.app.len) == 0
               && back.prefix.len == link.prefix.len
               && ngx_memcmp(back.prefix.data, link.prefix.data,
                             link.prefix.len) == 0
               && back.nonce.len == link.nonce.len
               && ngx_memcmp(back.nonce.data, link.nonce.data,
                             link.nonce.len) == 0
               && back.exp == link.exp && back.max_size == link.max_size
               && back.max_files == link.max_files,
               "a link verified back has other claims than it was signed "
               "with");

    /*
     * Any one byte changed: refused.  Every byte of the signature and the
     * ".", the first and last 8 of the claims, and 32 more spread over
     * them from an offset of the input's (a verify costs an HMAC of the
     * claims: every byte of a 4 KB token would be 4096 of them).
     */

    t = fuzz_dup(env.pool, link.token.data, link.token.len);
    if (t == NULL) {
        goto done;
    }

    token.data = t;
    token.len = link.token.len;

    claims = token.len - 44;
    step = claims / 32 + 1;
    offset = fuzz_uint(&in, 0, step - 1);

    for (i = 0; i < token.len; i++) {

        if (i >= 8 && i + 8 < claims && (i + step - offset) % step != 0) {
            continue;
        }

        t[i] ^= mask;

        rc = ngx_http_upload_link_verify(env.pool, secrets, &token, &back,
                                         &why);

        if (rc != NGX_DECLINED) {
            fuzz_fail("a token with byte %zu of %zu changed (^ 0x%02x) is "
                      "taken", i, token.len, mask);
        }

        t[i] ^= mask;
    }

done:

    fuzz_env_destroy(&env);

    return 0;
}


/* min to max bytes of the input, mapped to "chars" if given, no NUL */

static ngx_int_t
fuzz_string(ngx_pool_t *pool, fuzz_input_t *in, ngx_str_t *s, size_t min,
    size_t max, u_char *chars, size_t nchars)
{
    size_t      i;
    ngx_uint_t  c;

    s->len = fuzz_uint(in, min, max);
    s->data = ngx_pnalloc(pool, s->len + 1);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < s->len; i++) {
        c = fuzz_byte(in);
        s->data[i] = chars ? chars[c % nchars] : (c ? c : '/');
    }

    s->data[s->len] = '\0';

    return NGX_OK;
}
