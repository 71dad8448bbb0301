
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * App registrations: the body of POST <registration location>, JSON or a
 * form (src/ngx_http_upload_app.c, included to reach its static parsers).
 * The whole input is the body.
 *
 *   ngx_http_upload_app_parse()          NGX_OK: a registration the rest
 *                                        of the module can store as is;
 *                                        NGX_DECLINED: a code, a message,
 *                                        and a 400 that is JSON
 *   ngx_http_upload_app_form()           each field: a C string, no NUL
 *   ngx_http_upload_callback_url_valid() the input as a URL, against a
 *                                        plain restatement of its rules
 */


#include "../src/ngx_http_upload_app.c"

#include "fuzz.h"


static const char  *fuzz_fields[] = {
    "appid", "callback_url_pre", "callback_url_post", "secret", NULL
};


static ngx_int_t fuzz_url_valid(u_char *p, size_t len);
static void fuzz_cstring(ngx_str_t *s, const char *what);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                 *p;
    ngx_int_t               rc;
    ngx_str_t               value, url;
    ngx_uint_t              i;
    fuzz_env_t              env;
    const char             *code, *message, *reason;
    ngx_http_upload_app_t   app;

    if (size > NGX_HTTP_UPLOAD_APP_BODY_MAX) {
        return -1;
    }

    if (fuzz_env_create(&env) != NGX_OK) {
        return 0;
    }

    p = fuzz_dup(env.pool, data, size);
    if (p == NULL) {
        goto done;
    }

    code = NULL;
    message = NULL;

    rc = ngx_http_upload_app_parse(env.request, p, size, &app, &code,
                                   &message);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED,
               "app_parse: NGX_OK or NGX_DECLINED");

    if (rc == NGX_OK) {
        fuzz_check(ngx_http_upload_validate_app(&app.appid, &reason)
                   == NGX_OK,
                   "app_parse: an invalid appid taken");
        fuzz_check(!(app.appid.len == 5
                     && ngx_strncmp(app.appid.data, "links", 5) == 0),
                   "app_parse: the appid \"links\" taken");
        fuzz_check(app.pre.len == 0
                   || fuzz_url_valid(app.pre.data, app.pre.len) == NGX_OK,
                   "app_parse: an invalid callback_url_pre taken");
        fuzz_check(app.post.len == 0
                   || fuzz_url_valid(app.post.data, app.post.len) == NGX_OK,
                   "app_parse: an invalid callback_url_post taken");
        fuzz_check(app.secret.len <= NGX_HTTP_UPLOAD_SECRET_MAX,
                   "app_parse: a secret longer than 256 bytes taken");

        /* they go to Redis and into callbacks as C strings */

        fuzz_cstring(&app.appid, "appid");
        fuzz_cstring(&app.pre, "callback_url_pre");
        fuzz_cstring(&app.post, "callback_url_post");
        fuzz_cstring(&app.secret, "secret");

    } else {
        fuzz_check_declined(env.request, "app_parse", code, message);
    }

    /* the form parser on its own, whatever the body looks like */

    for (i = 0; fuzz_fields[i]; i++) {
        rc = ngx_http_upload_app_form(env.request, p, size, fuzz_fields[i],
                                      &value);

        fuzz_check(rc == NGX_OK || rc == NGX_DECLINED || rc == NGX_ERROR,
                   "app_form: an unexpected return code");

        if (rc == NGX_OK) {
            fuzz_cstring(&value, fuzz_fields[i]);
        }
    }

    /* the body as a callback URL */

    url.data = p;
    url.len = size;

    fuzz_check((ngx_http_upload_callback_url_valid(&url) == NGX_OK)
               == (fuzz_url_valid(p, size) == NGX_OK),
               "callback_url_valid disagrees with the URL rules");

done:

    fuzz_env_destroy(&env);

    return 0;
}


static void
fuzz_cstring(ngx_str_t *s, const char *what)
{
    if (s->len == 0) {
        return;
    }

    if (s->data[s->len] != '\0' || ngx_strlen(s->data) != s->len) {
        fuzz_fail("\"%s\": not a C string of its length", what);
    }
}


/*
 * The callback URL rules, restated: at most 2048 bytes; "http://" or
 * "https://" (any case), then a host: not empty, not starting with ":",
 * no "@" before the path or the query; no byte <= 0x20, no 0x7f, "#" or
 * "\" anywhere.
 */

static ngx_int_t
fuzz_url_valid(u_char *p, size_t len)
{
    size_t  i, skip;

    if (len > 2048) {
        return NGX_DECLINED;
    }

    for (i = 0; i < len; i++) {
        if (p[i] <= 0x20 || p[i] == 0x7f || p[i] == '#' || p[i] == '\\') {
            return NGX_DECLINED;
        }
    }

    if (len > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        skip = 7;

    } else if (len > 8 && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0) {
        skip = 8;

    } else {
        return NGX_DECLINED;
    }

    if (p[skip] == ':' || p[skip] == '/' || p[skip] == '?') {
        return NGX_DECLINED;
    }

    for (i = skip; i < len && p[i] != '/' && p[i] != '?'; i++) {
        if (p[i] == '@') {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}
