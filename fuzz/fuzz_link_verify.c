
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Upload link tokens (src/ngx_http_upload_link.c):
 * ngx_http_upload_link_verify(), as a token arrives from a client.
 *
 * The first byte: bit 0 configures a second secret; bit 1 takes the rest
 * as the claims (JSON) and signs them here, so that the checks of the
 * claims are reached too; bit 2 signs with the second secret, bit 3 with
 * one that is not configured.  Without bit 1 the rest is the token as
 * given.  An accepted link must have claims the module can rely on.
 */


#include <openssl/hmac.h>

#include "fuzz.h"


#define FUZZ_LINK_MAX                 4096


static ngx_str_t  fuzz_secrets[] = {
    ngx_string("fuzz-secret-one"),
    ngx_string("fuzz-secret-two, rotated in"),
    ngx_string("a secret of someone else")
};


static ngx_int_t fuzz_sign(ngx_pool_t *pool, ngx_str_t *secret,
    u_char *json, size_t len, ngx_str_t *token);
static void fuzz_link_sane(ngx_http_upload_link_t *link);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                  *p;
    ngx_int_t                rc;
    ngx_str_t                token, *secret;
    ngx_uint_t               flags, signer;
    fuzz_env_t               env;
    ngx_array_t             *secrets;
    const char              *why;
    ngx_http_upload_link_t   link;

    if (size == 0 || size > 8192) {
        return -1;
    }

    if (fuzz_env_create(&env) != NGX_OK) {
        return 0;
    }

    flags = data[0];

    secrets = ngx_array_create(env.pool, 2, sizeof(ngx_str_t));
    if (secrets == NULL) {
        goto done;
    }

    secret = ngx_array_push_n(secrets, (flags & 1) ? 2 : 1);
    if (secret == NULL) {
        goto done;
    }

    secret[0] = fuzz_secrets[0];

    if (flags & 1) {
        secret[1] = fuzz_secrets[1];
    }

    p = fuzz_dup(env.pool, data + 1, size - 1);
    if (p == NULL) {
        goto done;
    }

    signer = (flags & 8) ? 2 : (flags & 4) ? 1 : 0;

    if (flags & 2) {
        if (fuzz_sign(env.pool, &fuzz_secrets[signer], p, size - 1, &token)
            != NGX_OK)
        {
            goto done;
        }

    } else {
        token.data = p;
        token.len = size - 1;
    }

    ngx_memzero(&link, sizeof(ngx_http_upload_link_t));
    why = NULL;

    rc = ngx_http_upload_link_verify(env.pool, secrets, &token, &link, &why);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED,
               "link_verify: NGX_OK or NGX_DECLINED");

    if (rc == NGX_DECLINED) {
        fuzz_check(why != NULL && (ngx_strcmp(why, "invalid") == 0
                                   || ngx_strcmp(why, "expired") == 0),
                   "link_verify: declined, but not \"invalid\"/\"expired\"");
        goto done;
    }

    if (flags & 2) {
        fuzz_check(signer < secrets->nelts,
                   "link_verify: took a token signed with no secret of ours");
        fuzz_check(token.len <= FUZZ_LINK_MAX,
                   "link_verify: took a token longer than 4096 bytes");
    }

    fuzz_check(link.token.data == token.data && link.token.len == token.len,
               "link_verify: link->token is not the token");

    fuzz_link_sane(&link);

done:

    fuzz_env_destroy(&env);

    return 0;
}


/* base64url(claims) "." base64url(HMAC-SHA256(secret, the first part)) */

static ngx_int_t
fuzz_sign(ngx_pool_t *pool, ngx_str_t *secret, u_char *json, size_t len,
    ngx_str_t *token)
{
    u_char        mac[EVP_MAX_MD_SIZE], *p;
    unsigned int  n;
    ngx_str_t     src, dst;

    p = ngx_pnalloc(pool, ngx_base64_encoded_length(len) + 1
                          + ngx_base64_encoded_length(32));
    if (p == NULL) {
        return NGX_ERROR;
    }

    src.data = json;
    src.len = len;
    dst.data = p;
    ngx_encode_base64url(&dst, &src);

    if (HMAC(EVP_sha256(), secret->data, (int) secret->len, dst.data, dst.len,
             mac, &n)
        == NULL)
    {
        return NGX_ERROR;
    }

    token->data = p;
    p += dst.len;
    *p++ = '.';

    src.data = mac;
    src.len = n;
    dst.data = p;
    ngx_encode_base64url(&dst, &src);

    token->len = p + dst.len - token->data;

    return NGX_OK;
}


/* what the rest of the module takes for granted of a verified link */

static void
fuzz_link_sane(ngx_http_upload_link_t *link)
{
    size_t       i;
    const char  *reason;

    fuzz_check(ngx_http_upload_validate_app(&link->app, &reason) == NGX_OK,
               "a verified link names an invalid app");
    fuzz_check(link->prefix.len <= NGX_HTTP_UPLOAD_KEY_MAX,
               "a verified link's prefix is longer than a key");
    fuzz_check(link->nonce.len >= 8 && link->nonce.len <= 64,
               "a verified link's nonce: not 8 to 64 characters");

    for (i = 0; i < link->nonce.len; i++) {
        fuzz_check(ngx_strchr("abcdefghijklmnopqrstuvwxyz"
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
                              link->nonce.data[i])
                   != NULL,
                   "a verified link's nonce: not base64url");
    }

    fuzz_check(link->exp > FUZZ_NOW && link->exp <= 100000000000LL,
               "a verified link: expired, or \"exp\" out of range");
    fuzz_check(link->max_size >= 0 && link->max_size <= 1000000000000000LL,
               "a verified link: max_size out of range (0 to 10^15)");
    fuzz_check(link->max_files >= 1 && link->max_files <= 1000000,
               "a verified link: max_files out of range");
}
