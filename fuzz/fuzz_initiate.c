
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Initiating a sliced upload: the JSON body of POST <key>?uploads
 * (ngx_http_upload_initiate_parse(), static in
 * src/ngx_http_upload_multipart.c, reached by including that file).  The
 * whole input is the body; it is parsed under the harness's conf, then
 * under a tight one (10 MiB, parts of 64 KiB to 1 MiB, 5 parts) so that
 * the limits are crossed too.
 *
 * NGX_OK: a session whose every field the module can store and answer
 * as is; NGX_DECLINED: a code, a message, and a 400 that is JSON.
 */


#include "../src/ngx_http_upload_multipart.c"

#include "fuzz.h"


static void fuzz_initiate(fuzz_env_t *env, u_char *data, size_t size);
static void fuzz_text(ngx_str_t *s, size_t max, const char *what);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *p;
    fuzz_env_t   env;

    if (size > NGX_HTTP_UPLOAD_INITIATE_MAX) {
        return -1;
    }

    if (fuzz_env_create(&env) != NGX_OK) {
        return 0;
    }

    p = fuzz_dup(env.pool, data, size);

    if (p) {
        fuzz_initiate(&env, p, size);

        env.ulcf->max_size = 10 * 1024 * 1024;
        env.ulcf->min_part_size = 64 * 1024;
        env.ulcf->max_part_size = 1024 * 1024;
        env.ulcf->max_parts = 5;

        fuzz_initiate(&env, p, size);
    }

    fuzz_env_destroy(&env);

    return 0;
}


static void
fuzz_initiate(fuzz_env_t *env, u_char *data, size_t size)
{
    cJSON                       *json;
    size_t                       i;
    ngx_int_t                    rc;
    const char                  *code, *message;
    ngx_http_upload_session_t    session;
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = env->ulcf;

    /* as ngx_http_upload_initiate_body() makes it */

    ngx_memzero(&session, sizeof(ngx_http_upload_session_t));
    session.size = -1;
    session.part_size = -1;

    code = NULL;
    message = NULL;

    rc = ngx_http_upload_initiate_parse(env->request, &session, data, size,
                                        &code, &message);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED,
               "initiate_parse: NGX_OK or NGX_DECLINED");

    if (rc != NGX_OK) {
        fuzz_check_declined(env->request, "initiate_parse", code, message);
        return;
    }

    fuzz_check(session.size == -1
               || (session.size >= 0
                   && (ulcf->max_size == 0 || session.size <= ulcf->max_size)
                   && (session.size == 0
                       || (session.size - 1) / ulcf->max_part_size
                          < (off_t) ulcf->max_parts)),
               "initiate_parse: a size beyond the limits taken");

    fuzz_check(session.part_size == -1
               || (session.part_size >= ulcf->min_part_size
                   && session.part_size <= ulcf->max_part_size),
               "initiate_parse: a part_size beyond the limits taken");

    fuzz_check(session.sha256.len == 0 || session.sha256.len == 64,
               "initiate_parse: a sha256 of another length than 64");

    for (i = 0; i < session.sha256.len; i++) {
        fuzz_check((session.sha256.data[i] >= '0'
                    && session.sha256.data[i] <= '9')
                   || (session.sha256.data[i] >= 'a'
                       && session.sha256.data[i] <= 'f'),
                   "initiate_parse: a sha256 that is not lowercase hex");
    }

    fuzz_text(&session.name, NGX_HTTP_UPLOAD_TEXT_MAX, "name");
    fuzz_text(&session.content_type, NGX_HTTP_UPLOAD_TEXT_MAX,
              "content_type");
    fuzz_text(&session.metadata, NGX_HTTP_UPLOAD_META_MAX, "metadata");

    if (session.metadata.len) {
        json = cJSON_ParseWithLength((char *) session.metadata.data,
                                     session.metadata.len);
        fuzz_check(cJSON_IsObject(json),
                   "initiate_parse: metadata is not a JSON object");
        cJSON_Delete(json);
    }
}


/* at most "max" bytes, and no NUL inside: stored and answered as text */

static void
fuzz_text(ngx_str_t *s, size_t max, const char *what)
{
    if (s->len > max || (s->len && ngx_strlchr(s->data, s->data + s->len,
                                               '\0')))
    {
        fuzz_fail("initiate_parse: \"%s\" is too long or has a NUL", what);
    }
}
