
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * The integrity headers of an upload (src/ngx_http_upload_digest.c):
 *
 *   ngx_http_upload_parse_content_md5()  Content-MD5, base64
 *   ngx_http_upload_parse_sha256()       X-Upload-Sha256 and "sha256", hex
 *   ngx_http_upload_hex_decode()         2n hex digits to n bytes
 *
 * The whole input is the header's value.  A digest taken must be the one
 * the value spells: its hex is the value in lowercase; its base64 is the
 * value but for the bits the last character leaves over.
 */


#include "fuzz.h"


static ngx_int_t fuzz_hex_valid(u_char *p, size_t len);
static ngx_int_t fuzz_base64_value(u_char c);
static void fuzz_content_md5(fuzz_env_t *env, u_char *data, size_t size);
static void fuzz_sha256(fuzz_env_t *env, u_char *data, size_t size);
static void fuzz_hex_decode(fuzz_env_t *env, u_char *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *p;
    fuzz_env_t   env;

    if (size > 4096) {
        return -1;
    }

    if (fuzz_env_create(&env) != NGX_OK) {
        return 0;
    }

    p = fuzz_dup(env.pool, data, size);

    if (p) {
        fuzz_content_md5(&env, p, size);
        fuzz_sha256(&env, p, size);
        fuzz_hex_decode(&env, p, size);
    }

    fuzz_env_destroy(&env);

    return 0;
}


static void
fuzz_content_md5(fuzz_env_t *env, u_char *data, size_t size)
{
    size_t     len;
    ngx_int_t  rc;
    ngx_str_t  value, md5, b64;
    u_char     enc[ngx_base64_encoded_length(NGX_HTTP_UPLOAD_MD5_LEN)];

    value.data = data;
    value.len = size;
    ngx_str_null(&md5);

    rc = ngx_http_upload_parse_content_md5(env->pool, &value, &md5);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED,
               "parse_content_md5: NGX_OK or NGX_DECLINED");

    if (rc != NGX_OK) {
        return;
    }

    len = size;

    while (len && (data[len - 1] == ' ' || data[len - 1] == '\t')) {
        len--;
    }

    fuzz_check(md5.len == NGX_HTTP_UPLOAD_MD5_LEN,
               "parse_content_md5: not 16 bytes");
    fuzz_check(len == sizeof(enc), "parse_content_md5: not 24 characters");

    b64.data = enc;
    ngx_encode_base64(&b64, &md5);

    /*
     * 21 characters carry 126 bits; the 22nd the last two, and four that
     * the decoder ignores; then "=" (what follows the first "=" is not
     * looked at: README.md, "Findings")
     */

    fuzz_check(ngx_memcmp(enc, data, 21) == 0
               && fuzz_base64_value(data[21]) >> 4
                  == fuzz_base64_value(enc[21]) >> 4
               && data[22] == '=',
               "parse_content_md5: the MD5 is not the one the value spells");
}


static void
fuzz_sha256(fuzz_env_t *env, u_char *data, size_t size)
{
    u_char     hex[2 * NGX_HTTP_UPLOAD_SHA256_LEN];
    size_t     i;
    ngx_int_t  rc;
    ngx_str_t  value, sha256;

    value.data = data;
    value.len = size;
    ngx_str_null(&sha256);

    rc = ngx_http_upload_parse_sha256(env->pool, &value, &sha256);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED,
               "parse_sha256: NGX_OK or NGX_DECLINED");
    fuzz_check((rc == NGX_OK)
               == (size == sizeof(hex) && fuzz_hex_valid(data, size) == NGX_OK),
               "parse_sha256 disagrees with \"64 hex digits\"");

    if (rc != NGX_OK) {
        return;
    }

    fuzz_check(sha256.len == NGX_HTTP_UPLOAD_SHA256_LEN,
               "parse_sha256: not 32 bytes");

    ngx_hex_dump(hex, sha256.data, sha256.len);

    for (i = 0; i < sizeof(hex); i++) {
        fuzz_check(hex[i] == ngx_tolower(data[i]),
                   "parse_sha256: the digest is not the one the value spells");
    }
}


static void
fuzz_hex_decode(fuzz_env_t *env, u_char *data, size_t size)
{
    u_char     *dst, *hex;
    size_t      n, i;
    ngx_int_t   rc;

    n = size / 2;

    dst = ngx_pnalloc(env->pool, n ? n : 1);
    hex = ngx_pnalloc(env->pool, 2 * n + 1);

    if (dst == NULL || hex == NULL) {
        return;
    }

    rc = ngx_http_upload_hex_decode(dst, data, n);

    fuzz_check((rc == NGX_OK) == (fuzz_hex_valid(data, 2 * n) == NGX_OK),
               "hex_decode disagrees with \"hex digits\"");

    if (rc != NGX_OK) {
        return;
    }

    ngx_hex_dump(hex, dst, n);

    for (i = 0; i < 2 * n; i++) {
        fuzz_check(hex[i] == ngx_tolower(data[i]),
                   "hex_decode: the bytes are not the ones the digits spell");
    }
}


static ngx_int_t
fuzz_hex_valid(u_char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')
              || (p[i] >= 'A' && p[i] <= 'F')))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
fuzz_base64_value(u_char c)
{
    u_char      *p;
    static char  alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "abcdefghijklmnopqrstuvwxyz0123456789+/";

    p = (u_char *) ngx_strchr(alphabet, c);

    return (p && c) ? p - (u_char *) alphabet : -1;
}
