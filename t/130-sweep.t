# Abandoned sliced uploads: once a session is gone from Redis (expired),
# the sweep removes its part files; live sessions keep theirs.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;

upload_suite();

run_tests();

__DATA__

=== TEST 1: the sweep removes the parts of an expired session, not of a live one
--- init
UploadTest::make_session("default", "live.bin", "livelivelivelivelivelive");
UploadTest::redis("del", "upload:{default}:mpu:expiredexpiredexpiredexp");
--- user_files
>>> store/.upload-parts/default/expiredexpiredexpiredexp/1.0123456789abcdef
an abandoned part
>>> store/.upload-parts/default/livelivelivelivelivelive/1.0123456789abcdef
a part of a live upload
--- config
    upload_sweep_interval 300ms;

    location /upload/ { upload on; }
    location /parts/ {
        alias $TEST_NGINX_HTML_DIR/store/.upload-parts/;
        autoindex on;
        autoindex_format json;
    }
--- raw_request eval
["GET /parts/default/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", "\r\n"]
--- raw_request_middle_delay: 2
--- timeout: 6
--- error_code: 200
--- response_body_like: ^\[\s*\{\s*"name":"livelivelivelivelivelive",\s*"type":"directory",[^\]]*\}\s*\]\s*$
--- error_log
upload: sweep of
removed the part files of 1 expired sliced upload(s)



=== TEST 2: without an upload location nothing is swept, and nothing breaks
--- user_files
>>> store/.upload-parts/default/expiredexpiredexpiredexp/1.0123456789abcdef
an abandoned part
--- config
    location /parts/ {
        alias $TEST_NGINX_HTML_DIR/store/.upload-parts/;
        autoindex on;
        autoindex_format json;
    }
--- raw_request eval
["GET /parts/default/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", "\r\n"]
--- raw_request_middle_delay: 1
--- timeout: 4
--- error_code: 200
--- response_body_like: "name":"expiredexpiredexpiredexp"
--- no_error_log
upload: sweep of
[alert]
