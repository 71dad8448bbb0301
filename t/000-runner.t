# Self-test of the bundled Test::Nginx::Socket subset (t/lib), using only
# features of a stock nginx binary (no module of this project).
#
#   prove -It/lib -r t/000-runner.t
#   TEST_NGINX_USE_HTTP2=1 prove -It/lib t/000-runner.t

use FindBin ();
use lib "$FindBin::Bin/lib";    # always test the runner from this tree
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();       # TEST 6 relies on the server started by TEST 5
no_long_string();
log_level('info');

$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();
$ENV{TEST_NGINX_RUNNER_GREETING} = 'howdy';

run_tests();

__DATA__

=== TEST 1: plain return, exact body, header and error log checks
--- config
    location = /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body
hello
--- response_headers
Content-Type: text/plain
--- no_error_log
[error]
[alert]



=== TEST 2: body stored with dav PUT, trimmed by the automatic Content-Length, read back
--- config
    location /store/ {
        root $TEST_NGINX_HTML_DIR;
        dav_methods PUT;
        create_full_put_path on;
    }
--- request eval
["PUT /store/a.txt
  hello world

", "GET /store/a.txt"]
--- error_code eval
[201, 200]
--- response_body eval
["", "hello world"]
--- no_error_log
[error]



=== TEST 3: explicit Content-Length in more_headers: body sent untouched
--- config
    location /store/ {
        root $TEST_NGINX_HTML_DIR;
        dav_methods PUT;
        create_full_put_path on;
    }
--- more_headers eval
["Content-Length: 6", ""]
--- request eval
["PUT /store/b.txt
hello
", "GET /store/b.txt"]
--- error_code eval
[201, 200]
--- response_body eval
["", "hello\n"]



=== TEST 4: chunked request body via request + Transfer-Encoding header
--- config
    location /store/ {
        root $TEST_NGINX_HTML_DIR;
        dav_methods PUT;
        create_full_put_path on;
    }
--- more_headers eval
["Transfer-Encoding: chunked", ""]
--- request eval
["PUT /store/d.txt
5\r
hello\r
6\r
 world\r
0\r
\r
", "GET /store/d.txt"]
--- error_code eval
[201, 200]
--- response_body eval
["", "hello world"]
--- no_http2



=== TEST 5: raw_request with a chunked body
--- config
    location /store/ {
        root $TEST_NGINX_HTML_DIR;
        dav_methods PUT;
        create_full_put_path on;
    }
--- raw_request eval
"PUT /store/c.txt HTTP/1.1\r
Host: localhost\r
Connection: close\r
Transfer-Encoding: chunked\r
\r
3\r
raw\r
0\r
\r
"
--- error_code: 201
--- response_body:



=== TEST 6: a block without --- config reuses the running server (and its files)
--- request
GET /store/c.txt
--- response_body chomp
raw
--- no_http2
--- skip_eval: 2: $ENV{TEST_NGINX_USE_VALGRIND}



=== TEST 7: request split into packets with a delay
--- config
    location /store/ {
        root $TEST_NGINX_HTML_DIR;
        dav_methods PUT;
        create_full_put_path on;
    }
--- request eval
[["PUT /store/e.txt\nhel", {value => "lo", delay_before => 0.1}],
 "GET /store/e.txt"]
--- error_code eval
[201, 200]
--- response_body eval
["", "hello"]



=== TEST 8: request body echoed through proxy_pass + $request_body
--- config
    location = /echo {
        client_body_in_single_buffer on;
        proxy_set_header X-Body $request_body;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo_back;
    }
    location = /echo_back {
        return 200 "got: $http_x_body";
    }
--- request
POST /echo
some body
--- response_body chomp
got: some body
--- no_error_log
[error]



=== TEST 9: generated Host and Connection headers, more_headers, comments in request
--- config
    location = /h {
        return 200 "host=$host conn=$http_connection foo=$http_x_foo args=$args";
    }
--- more_headers
X-Foo: bar
--- request
    # leading comment lines are ignored
    GET /h?a=1&b=2
--- response_body chomp
host=localhost conn=close foo=bar args=a=1&b=2
--- no_http2



=== TEST 10: response_headers: value, absence (!Name) and empty value
--- config
    location = /h {
        add_header X-Foo "bar baz";
        return 200 "ok";
    }
--- request
GET /h
--- response_headers
X-Foo: bar baz
!X-Absent
X-Also-Absent:
--- response_body chomp
ok



=== TEST 11: response_headers_like (anchored) and response_body_like (not anchored)
--- config
    location = /h {
        add_header X-Num 12345;
        return 200 '{"name":"a.txt","size":5}';
    }
--- request
GET /h
--- response_headers_like
X-Num: \d+
Content-Type: text/\w+
--- response_body_like: "size":5



=== TEST 12: error_log via a 404 (string and regex patterns)
--- config
--- request
GET /does-not-exist.txt
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log eval
["No such file or directory",
 qr/\[error\] .*open\(\) ".*does-not-exist\.txt" failed/]



=== TEST 13: error log is per block (previous block's [error] is gone)
--- config
    location = /t {
        return 204;
    }
--- request
GET /t
--- error_code: 204
--- response_body:
--- no_error_log eval
[qr/\[error\]/, "does-not-exist"]



=== TEST 14: init and user_files
--- config
--- init
open my $fh, '>', html_dir() . '/from-init.txt' or die $!;
print $fh "written by init";
close $fh;
--- user_files
>>> sub/dir/file.txt
user file content
>>> second.txt
two
--- request eval
["GET /sub/dir/file.txt", "GET /from-init.txt", "GET /second.txt"]
--- response_body eval
["user file content\n", "written by init", "two\n"]



=== TEST 15: $TEST_NGINX_* expansion in config and response_body
--- main_config
env TEST_NGINX_RUNNER_GREETING;
--- config
    location = /env {
        return 200 "$TEST_NGINX_RUNNER_GREETING port=$TEST_NGINX_SERVER_PORT root=$TEST_NGINX_SERVER_ROOT";
    }
--- request
GET /env
--- response_body eval
"howdy port=$ENV{TEST_NGINX_SERVER_PORT} root=$ENV{TEST_NGINX_SERVER_ROOT}"



=== TEST 16: http_config section
--- http_config
    map $uri $runner_mapped {
        default  "none";
        /mapped  "yes";
    }
--- config
    location = /mapped {
        return 200 "mapped=$runner_mapped";
    }
--- request
GET /mapped
--- response_body chomp
mapped=yes



=== TEST 17: client timeout + abort is not a failure (unfinished request body)
--- config
    location /store/ {
        root $TEST_NGINX_HTML_DIR;
        dav_methods PUT;
    }
--- raw_request eval
"PUT /store/never.txt HTTP/1.1\r
Host: localhost\r
Content-Length: 100\r
\r
only a part"
--- timeout: 300ms
--- abort
--- ignore_response
--- wait: 0.1
--- no_error_log
[error]



=== TEST 18: timeout + abort with a trickling response (limit_rate)
--- config
    location /slow/ {
        alias $TEST_NGINX_HTML_DIR/;
        limit_rate 1;
        limit_rate_after 0;
    }
--- user_files
>>> big.txt
0123456789012345678901234567890123456789
--- request
GET /slow/big.txt
--- timeout: 0.5
--- abort
--- ignore_response
--- no_http2



=== TEST 19: pipelined requests
--- config
    location = /t {
        return 200 "hi $request_uri\n";
    }
--- pipelined_requests eval
["GET /t?1", "GET /t?2"]
--- response_body eval
["hi /t?1\n", "hi /t?2\n"]
--- error_code eval
[200, 200]



=== TEST 20: skip_nginx (not skipped: version is newer)
--- config
    location = /t {
        return 200 "not skipped";
    }
--- request
GET /t
--- response_body chomp
not skipped
--- skip_nginx
2: < 1.0.0



=== TEST 21: skip_nginx (skipped)
--- config
    location = /t {
        return 500;
    }
--- request
GET /t
--- response_body
never
--- skip_nginx
2: > 1.0.0



=== TEST 22: skip_eval
--- config
    location = /t {
        return 500;
    }
--- request
GET /t
--- response_body
never
--- skip_eval: 2: 1



=== TEST 23: SKIP section
--- config
    location = /t {
        return 500;
    }
--- request
GET /t
--- response_body
never
--- SKIP



=== TEST 24: must_die on a bad config
--- config
    location = /t {
        return a b c;
    }
--- request
GET /t
--- must_die
--- suppress_stderr
--- error_log
invalid number of arguments in "return" directive



=== TEST 25: HEAD request, error_code_like, raw_response_headers_like
--- config
    location = /t {
        return 200 "body is not sent for HEAD";
    }
--- request
HEAD /t
--- error_code_like: ^2\d\d$
--- raw_response_headers_like: (?i)content-length: 25\r\n
--- response_body:



=== TEST 26: binary request body through request eval
--- config
    location /store/ {
        root $TEST_NGINX_HTML_DIR;
        dav_methods PUT;
        create_full_put_path on;
    }
--- request eval
["PUT /store/bin.dat\n\x00\x01\x02\xff", "GET /store/bin.dat"]
--- error_code eval
[201, 200]
--- response_body eval
["", "\x00\x01\x02\xff"]
--- response_headers eval
["", "Content-Length: 4"]
