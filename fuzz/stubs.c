
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * What the module's objects need from nginx beyond the few core files the
 * harnesses compile (strings, pools, arrays, lists, allocation).
 *
 * The parsers answer through ngx_http_send_header() and
 * ngx_http_output_filter(): those keep what was sent (fuzz_sent).  The
 * rest (events, timers, threads, Redis connections, configuration) is not
 * on a parser's path: those abort, so a harness that strays there says so.
 */


#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>

#include "fuzz.h"


ngx_pid_t                          ngx_pid;
ngx_uint_t                         ngx_exiting;
sig_atomic_t                       ngx_quit;
sig_atomic_t                       ngx_terminate;
ngx_atomic_t                      *ngx_connection_counter;
ngx_event_actions_t                ngx_event_actions;
ngx_rbtree_t                       ngx_event_timer_rbtree;
ngx_module_t                       ngx_http_module;
ngx_http_request_body_filter_pt    ngx_http_top_request_body_filter;
ngx_http_output_body_filter_pt     ngx_http_top_body_filter;


static void fuzz_stray(const char *name) __attribute__((noreturn));


static void
fuzz_stray(const char *name)
{
    fuzz_fail("a parser called %s(), which the harnesses do not provide",
              name);
}


/*
 * Every message is formatted, as nginx would, and thrown away: a format
 * that does not match its arguments shows under the sanitizers.
 */

void ngx_cdecl
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;
    u_char    errstr[NGX_MAX_ERROR_STR];

    last = errstr + NGX_MAX_ERROR_STR;

    va_start(args, fmt);
    p = ngx_vslprintf(errstr, last, fmt, args);
    va_end(args);

    if (getenv("FUZZ_LOG")) {
        fprintf(stderr, "log[%d]: %.*s\n", (int) level,
                (int) (p - errstr), errstr);
    }
}


void
ngx_http_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    fuzz_sent.finalized++;
    fuzz_sent.rc = rc;
}


ngx_int_t
ngx_http_send_header(ngx_http_request_t *r)
{
    fuzz_sent.status = r->headers_out.status;

    return NGX_OK;
}


ngx_int_t
ngx_http_output_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t  *b;

    /* one buffer: what ngx_http_upload_send_typed() sends */

    b = in->buf;

    fuzz_sent.body.data = b->pos;
    fuzz_sent.body.len = b->last - b->pos;

    return NGX_OK;
}


ngx_int_t
ngx_http_discard_request_body(ngx_http_request_t *r)
{
    return NGX_OK;
}


void
ngx_http_request_empty_handler(ngx_http_request_t *r)
{
    return;
}


/* off the parsers' paths */

void ngx_cdecl
ngx_conf_log_error(ngx_uint_t level, ngx_conf_t *cf, ngx_err_t err,
    const char *fmt, ...)
{
    fuzz_stray("ngx_conf_log_error");
}


ngx_buf_t *
ngx_create_temp_buf(ngx_pool_t *pool, size_t size)
{
    fuzz_stray("ngx_create_temp_buf");
}


ngx_connection_t *
ngx_get_connection(ngx_socket_t s, ngx_log_t *log)
{
    fuzz_stray("ngx_get_connection");
}


void
ngx_free_connection(ngx_connection_t *c)
{
    fuzz_stray("ngx_free_connection");
}


ngx_http_variable_t *
ngx_http_add_variable(ngx_conf_t *cf, ngx_str_t *name, ngx_uint_t flags)
{
    fuzz_stray("ngx_http_add_variable");
}


ngx_int_t
ngx_http_read_client_request_body(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt post_handler)
{
    fuzz_stray("ngx_http_read_client_request_body");
}


void
ngx_http_run_posted_requests(ngx_connection_t *c)
{
    fuzz_stray("ngx_http_run_posted_requests");
}


ngx_int_t
ngx_http_subrequest(ngx_http_request_t *r, ngx_str_t *uri, ngx_str_t *args,
    ngx_http_request_t **psr, ngx_http_post_subrequest_t *ps,
    ngx_uint_t flags)
{
    fuzz_stray("ngx_http_subrequest");
}


in_port_t
ngx_inet_get_port(struct sockaddr *sa)
{
    fuzz_stray("ngx_inet_get_port");
}


ngx_int_t
ngx_parse_url(ngx_pool_t *pool, ngx_url_t *u)
{
    fuzz_stray("ngx_parse_url");
}


size_t
ngx_sock_ntop(struct sockaddr *sa, socklen_t socklen, u_char *text,
    size_t len, ngx_uint_t port)
{
    fuzz_stray("ngx_sock_ntop");
}


void
ngx_rbtree_insert(ngx_rbtree_t *tree, ngx_rbtree_node_t *node)
{
    fuzz_stray("ngx_rbtree_insert");
}


void
ngx_rbtree_delete(ngx_rbtree_t *tree, ngx_rbtree_node_t *node)
{
    fuzz_stray("ngx_rbtree_delete");
}


ngx_thread_pool_t *
ngx_thread_pool_get(ngx_cycle_t *cycle, ngx_str_t *name)
{
    fuzz_stray("ngx_thread_pool_get");
}


ngx_thread_task_t *
ngx_thread_task_alloc(ngx_pool_t *pool, size_t size)
{
    fuzz_stray("ngx_thread_task_alloc");
}


ngx_int_t
ngx_thread_task_post(ngx_thread_pool_t *tp, ngx_thread_task_t *task)
{
    fuzz_stray("ngx_thread_task_post");
}
