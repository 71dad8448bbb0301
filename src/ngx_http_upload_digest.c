
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Digests of the uploaded bytes (OpenSSL EVP) and the integrity headers a
 * client may send to have them checked: Content-MD5 and X-Upload-Sha256.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upload.h"


static void ngx_http_upload_digest_cleanup(void *data);


ngx_http_upload_hash_t  ngx_http_upload_hashes[] = {
    { NGX_HTTP_UPLOAD_MD5, "md5", sizeof("md5") - 1 },
    { NGX_HTTP_UPLOAD_SHA1, "sha1", sizeof("sha1") - 1 },
    { NGX_HTTP_UPLOAD_SHA256, "sha256", sizeof("sha256") - 1 },
    { 0, NULL, 0 }
};


const EVP_MD *
ngx_http_upload_digest_md(ngx_uint_t hash)
{
    switch (hash) {

    case NGX_HTTP_UPLOAD_MD5:
        return EVP_md5();

    case NGX_HTTP_UPLOAD_SHA1:
        return EVP_sha1();

    default: /* NGX_HTTP_UPLOAD_SHA256 */
        return EVP_sha256();
    }
}


u_char *
ngx_http_upload_digest_out(ngx_http_upload_ctx_t *ctx, ngx_uint_t hash)
{
    switch (hash) {

    case NGX_HTTP_UPLOAD_MD5:
        return ctx->md5;

    case NGX_HTTP_UPLOAD_SHA1:
        return ctx->sha1;

    default: /* NGX_HTTP_UPLOAD_SHA256 */
        return ctx->sha256;
    }
}


/* one lane per digest; the EVP contexts live outside the pool */

ngx_int_t
ngx_http_upload_digest_init(ngx_http_upload_ctx_t *ctx)
{
    ngx_uint_t               i;
    ngx_pool_cleanup_t      *cln;
    ngx_http_upload_lane_t  *lane;
    ngx_http_upload_hash_t  *h;

    cln = ngx_pool_cleanup_add(ctx->request->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_upload_digest_cleanup;
    cln->data = ctx;

    for (h = ngx_http_upload_hashes; h->name; h++) {

        if (!(ctx->hashes & h->type)) {
            continue;
        }

        i = ctx->nlanes++;
        lane = &ctx->lanes[i];

        lane->ctx = ctx;
        lane->hash = h->type;

        lane->md = EVP_MD_CTX_new();
        if (lane->md == NULL) {
            return NGX_ERROR;
        }

        if (EVP_DigestInit_ex(lane->md, ngx_http_upload_digest_md(h->type),
                              NULL)
            != 1)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_upload_digest_final(ngx_http_upload_ctx_t *ctx)
{
    ngx_uint_t               i;
    ngx_http_upload_lane_t  *lane;

    for (i = 0; i < ctx->nlanes; i++) {
        lane = &ctx->lanes[i];

        if (lane->md == NULL) {
            continue;
        }

        if (EVP_DigestFinal_ex(lane->md,
                               ngx_http_upload_digest_out(ctx, lane->hash),
                               NULL)
            != 1)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_upload_digest_cleanup(void *data)
{
    ngx_http_upload_ctx_t *ctx = data;

    ngx_uint_t  i;

    for (i = 0; i < ctx->nlanes; i++) {
        if (ctx->lanes[i].md) {
            EVP_MD_CTX_free(ctx->lanes[i].md);
            ctx->lanes[i].md = NULL;
        }
    }
}


/* Content-MD5 is the base64 of the 16 binary bytes (RFC 1864, as in S3) */

ngx_int_t
ngx_http_upload_parse_content_md5(ngx_pool_t *pool, ngx_str_t *value,
    ngx_str_t *md5)
{
    ngx_str_t  src;

    src = *value;

    while (src.len && (src.data[src.len - 1] == ' '
                       || src.data[src.len - 1] == '\t'))
    {
        src.len--;
    }

    if (src.len != ngx_base64_encoded_length(NGX_HTTP_UPLOAD_MD5_LEN)) {
        return NGX_DECLINED;
    }

    md5->data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len));
    if (md5->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64(md5, &src) != NGX_OK
        || md5->len != NGX_HTTP_UPLOAD_MD5_LEN)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_upload_parse_sha256(ngx_pool_t *pool, ngx_str_t *value,
    ngx_str_t *sha256)
{
    if (value->len != 2 * NGX_HTTP_UPLOAD_SHA256_LEN) {
        return NGX_DECLINED;
    }

    sha256->data = ngx_pnalloc(pool, NGX_HTTP_UPLOAD_SHA256_LEN);
    if (sha256->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_upload_hex_decode(sha256->data, value->data,
                                   NGX_HTTP_UPLOAD_SHA256_LEN)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    sha256->len = NGX_HTTP_UPLOAD_SHA256_LEN;

    return NGX_OK;
}


/* "len" bytes from 2 * len hex digits, either case */

ngx_int_t
ngx_http_upload_hex_decode(u_char *dst, u_char *src, size_t len)
{
    ngx_int_t   n;
    ngx_uint_t  i;

    for (i = 0; i < len; i++) {
        n = ngx_hextoi(&src[2 * i], 2);
        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        dst[i] = (u_char) n;
    }

    return NGX_OK;
}


/* NGX_OK when every digest the client announced matches what arrived */

ngx_int_t
ngx_http_upload_digest_verify(ngx_http_upload_ctx_t *ctx)
{
    if (ctx->expect_md5.len
        && ngx_memcmp(ctx->expect_md5.data, ctx->md5,
                      NGX_HTTP_UPLOAD_MD5_LEN) != 0)
    {
        return NGX_DECLINED;
    }

    if (ctx->expect_sha256.len
        && ngx_memcmp(ctx->expect_sha256.data, ctx->sha256,
                      NGX_HTTP_UPLOAD_SHA256_LEN) != 0)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the digests of an upload in hex, as answered and recorded */

ngx_int_t
ngx_http_upload_digest_hex(ngx_pool_t *pool, ngx_http_upload_ctx_t *ctx,
    ngx_http_upload_object_t *obj)
{
    u_char  *p;

    ngx_str_null(&obj->md5);
    ngx_str_null(&obj->sha1);
    obj->etag = ctx->etag;

    p = ngx_pnalloc(pool, 2 * (NGX_HTTP_UPLOAD_MD5_LEN
                               + NGX_HTTP_UPLOAD_SHA1_LEN
                               + NGX_HTTP_UPLOAD_SHA256_LEN));
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ctx->hashes & NGX_HTTP_UPLOAD_MD5) {
        obj->md5.data = p;
        obj->md5.len = 2 * NGX_HTTP_UPLOAD_MD5_LEN;
        p = ngx_hex_dump(p, ctx->md5, NGX_HTTP_UPLOAD_MD5_LEN);
    }

    if (ctx->hashes & NGX_HTTP_UPLOAD_SHA1) {
        obj->sha1.data = p;
        obj->sha1.len = 2 * NGX_HTTP_UPLOAD_SHA1_LEN;
        p = ngx_hex_dump(p, ctx->sha1, NGX_HTTP_UPLOAD_SHA1_LEN);
    }

    obj->sha256.data = p;
    obj->sha256.len = 2 * NGX_HTTP_UPLOAD_SHA256_LEN;
    (void) ngx_hex_dump(p, ctx->sha256, NGX_HTTP_UPLOAD_SHA256_LEN);

    return NGX_OK;
}
