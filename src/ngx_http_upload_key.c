
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Object keys and app names come from the client: everything here treats
 * them as hostile.  A key that passes these checks can only name a path
 * below "<store>/<app>/".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upload.h"


static ngx_int_t ngx_http_upload_unescape(u_char *dst, u_char *src,
    size_t len, size_t *out);
static ngx_int_t ngx_http_upload_utf8_valid(u_char *p, size_t len);


/*
 * The key is taken from the raw request target, not from r->uri: nginx
 * has already resolved "." and ".." segments and merged slashes there, and
 * a key must be rejected rather than silently rewritten.
 */

ngx_int_t
ngx_http_upload_parse_key(ngx_http_request_t *r, ngx_str_t *key,
    const char **reason)
{
    u_char                    *p, *end;
    size_t                     len;
    ngx_http_core_loc_conf_t  *clcf;

    p = r->unparsed_uri.data;
    end = ngx_strlchr(p, p + r->unparsed_uri.len, '?');

    if (end == NULL) {
        end = p + r->unparsed_uri.len;
    }

    key->data = ngx_pnalloc(r->pool, end - p + 1);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_upload_unescape(key->data, p, end - p, &len) != NGX_OK) {
        *reason = "the key has an invalid percent-encoding";
        return NGX_DECLINED;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (len < clcf->name.len
        || ngx_strncmp(key->data, clcf->name.data, clcf->name.len) != 0)
    {
        *reason = "the decoded path does not start with the location";
        return NGX_DECLINED;
    }

    key->data += clcf->name.len;
    key->len = len - clcf->name.len;

    /*
     * "location /upload" (no trailing slash) leaves the separator, and
     * also matches "/uploads/x", which names no key of this location
     */

    if (clcf->name.len && clcf->name.data[clcf->name.len - 1] != '/') {

        if (key->len && key->data[0] != '/') {
            *reason = "the key must follow the location and a \"/\"";
            return NGX_DECLINED;
        }

        if (key->len) {
            key->data++;
            key->len--;
        }
    }

    return ngx_http_upload_validate_key(key, reason);
}


ngx_int_t
ngx_http_upload_validate_key(ngx_str_t *key, const char **reason)
{
    u_char  *p, *end, *seg;

    if (key->len == 0) {
        *reason = "the key is empty";
        return NGX_DECLINED;
    }

    if (key->len > NGX_HTTP_UPLOAD_KEY_MAX) {
        *reason = "the key is longer than 1024 bytes";
        return NGX_DECLINED;
    }

    if (ngx_http_upload_utf8_valid(key->data, key->len) != NGX_OK) {
        *reason = "the key is not valid UTF-8";
        return NGX_DECLINED;
    }

    end = key->data + key->len;
    seg = key->data;

    for (p = key->data; p <= end; p++) {

        if (p < end && *p != '/') {

            if (*p < 0x20 || *p == 0x7f) {
                *reason = "the key contains a control character";
                return NGX_DECLINED;
            }

            if (*p == '\\') {
                *reason = "the key contains a backslash";
                return NGX_DECLINED;
            }

            continue;
        }

        if (p == seg) {
            *reason = "the key has an empty path segment";
            return NGX_DECLINED;
        }

        if ((p - seg == 1 && seg[0] == '.')
            || (p - seg == 2 && seg[0] == '.' && seg[1] == '.'))
        {
            *reason = "the key has a \".\" or \"..\" path segment";
            return NGX_DECLINED;
        }

        if (p - seg > NGX_HTTP_UPLOAD_SEGMENT_MAX) {
            *reason = "a path segment of the key is longer than 255 bytes";
            return NGX_DECLINED;
        }

        seg = p + 1;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_upload_parse_app(ngx_http_request_t *r, ngx_str_t *app,
    const char **reason)
{
    ngx_table_elt_t  *h;

    h = ngx_http_upload_find_header(r, "X-Upload-App");

    if (h == NULL) {
        ngx_str_set(app, NGX_HTTP_UPLOAD_DEFAULT_APP);
        return NGX_OK;
    }

    *app = h->value;

    return ngx_http_upload_validate_app(app, reason);
}


ngx_table_elt_t *
ngx_http_upload_find_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/*
 * The raw value of "name=value"; NGX_DECLINED when absent, NGX_BUSY when
 * given more than once (which one would count is ambiguous: refused).
 */

ngx_int_t
ngx_http_upload_arg(ngx_http_request_t *r, const char *name, ngx_str_t *value)
{
    u_char      *p, *end, *arg;
    size_t       len;
    ngx_uint_t   found;

    len = ngx_strlen(name);
    p = r->args.data;
    end = p + r->args.len;
    found = 0;

    while (p < end) {
        arg = p;

        while (p < end && *p != '&') {
            p++;
        }

        if ((size_t) (p - arg) > len
            && ngx_strncmp(arg, name, len) == 0
            && arg[len] == '=')
        {
            if (found++) {
                return NGX_BUSY;
            }

            value->data = arg + len + 1;
            value->len = p - value->data;
        }

        p++;
    }

    return found ? NGX_OK : NGX_DECLINED;
}


/* S3 marks requests with bare arguments: "?uploads", "?meta" */

ngx_int_t
ngx_http_upload_arg_present(ngx_http_request_t *r, const char *name)
{
    u_char  *p, *end, *arg;
    size_t   len;

    len = ngx_strlen(name);
    p = r->args.data;
    end = p + r->args.len;

    while (p < end) {
        arg = p;

        while (p < end && *p != '&') {
            p++;
        }

        if ((size_t) (p - arg) >= len
            && ngx_strncmp(arg, name, len) == 0
            && ((size_t) (p - arg) == len || arg[len] == '='))
        {
            return 1;
        }

        p++;
    }

    return 0;
}


ngx_int_t
ngx_http_upload_validate_app(ngx_str_t *app, const char **reason)
{
    u_char  *p, *end;

    if (app->len == 0 || app->len > NGX_HTTP_UPLOAD_APP_MAX) {
        *reason = "the app name must be 1 to 64 characters long";
        return NGX_DECLINED;
    }

    /* a leading dot would make it hidden and could name the temp dir */

    if (app->data[0] == '.') {
        *reason = "the app name must not start with \".\"";
        return NGX_DECLINED;
    }

    end = app->data + app->len;

    for (p = app->data; p < end; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
            || (*p >= '0' && *p <= '9')
            || *p == '-' || *p == '_' || *p == '.')
        {
            continue;
        }

        *reason = "the app name may only contain letters, digits, "
                  "\"-\", \"_\" and \".\"";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* percent-encodes a key for a URL, keeping "/" and RFC 3986 unreserved */

u_char *
ngx_http_upload_escape_key(ngx_pool_t *pool, ngx_str_t *key, size_t *len)
{
    u_char         *dst, *p, c;
    ngx_uint_t      i;
    static u_char   hex[] = "0123456789ABCDEF";

    dst = ngx_pnalloc(pool, key->len * 3 + 1);
    if (dst == NULL) {
        return NULL;
    }

    p = dst;

    for (i = 0; i < key->len; i++) {
        c = key->data[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9')
            || c == '-' || c == '_' || c == '.' || c == '~' || c == '/')
        {
            *p++ = c;
            continue;
        }

        *p++ = '%';
        *p++ = hex[c >> 4];
        *p++ = hex[c & 0x0f];
    }

    *len = p - dst;

    return dst;
}


/* strict: a "%" must be followed by two hex digits */

static ngx_int_t
ngx_http_upload_unescape(u_char *dst, u_char *src, size_t len, size_t *out)
{
    u_char      *d, c, hi, lo;
    ngx_uint_t   i;

    d = dst;

    for (i = 0; i < len; i++) {
        c = src[i];

        if (c != '%') {
            *d++ = c;
            continue;
        }

        if (i + 2 >= len) {
            return NGX_ERROR;
        }

        hi = src[i + 1];
        lo = src[i + 2];

        hi = (hi >= '0' && hi <= '9') ? hi - '0'
             : ((hi | 0x20) >= 'a' && (hi | 0x20) <= 'f')
               ? (hi | 0x20) - 'a' + 10 : 0xff;
        lo = (lo >= '0' && lo <= '9') ? lo - '0'
             : ((lo | 0x20) >= 'a' && (lo | 0x20) <= 'f')
               ? (lo | 0x20) - 'a' + 10 : 0xff;

        if (hi == 0xff || lo == 0xff) {
            return NGX_ERROR;
        }

        *d++ = (u_char) ((hi << 4) | lo);
        i += 2;
    }

    *out = d - dst;

    return NGX_OK;
}


/* RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF */

static ngx_int_t
ngx_http_upload_utf8_valid(u_char *p, size_t len)
{
    u_char      *end;
    uint32_t     u;
    ngx_uint_t   n, i;

    end = p + len;

    while (p < end) {

        if (*p < 0x80) {
            p++;
            continue;
        }

        if (*p >= 0xc2 && *p <= 0xdf) {
            n = 1;
            u = *p & 0x1f;

        } else if (*p >= 0xe0 && *p <= 0xef) {
            n = 2;
            u = *p & 0x0f;

        } else if (*p >= 0xf0 && *p <= 0xf4) {
            n = 3;
            u = *p & 0x07;

        } else {
            return NGX_ERROR;
        }

        if ((size_t) (end - p) <= n) {
            return NGX_ERROR;
        }

        for (i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                return NGX_ERROR;
            }

            u = (u << 6) | (p[i] & 0x3f);
        }

        if ((n == 2 && u < 0x800) || (n == 3 && u < 0x10000)
            || u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff))
        {
            return NGX_ERROR;
        }

        p += n + 1;
    }

    return NGX_OK;
}
