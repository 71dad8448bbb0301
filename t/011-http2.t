# Whole uploads over HTTP/2: the request body filter sees DATA frames the
# same way; flow control must keep working while lanes hold buffers.

BEGIN {
    $ENV{TEST_NGINX_USE_HTTP2} = 1;
}

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use Digest::MD5 ();
use Digest::SHA ();

upload_suite();

# 3 MiB, larger than the stream window, so WINDOW_UPDATEs must follow
our $Body = join("", map { sprintf "%07d\n", $_ } 0 .. (3 * 1024 * 1024 / 8 - 1)) . "end";

run_tests();

__DATA__

=== TEST 1: a small body over HTTP/2
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/h2/small.txt\nhello over h2", "GET /files/default/h2/small.txt"]
--- error_code eval
[201, 200]
--- response_body eval
[UploadTest::json_object("h2/small.txt", "default", "hello over h2"), "hello over h2"]



=== TEST 2: 3 MiB over HTTP/2 with a small body buffer and md5
--- config eval
"location /upload/ { upload on; upload_hash md5; client_body_buffer_size 16k; }\n$::Files"
--- request eval
["PUT /upload/h2/big.txt\n$::Body", "GET /files/default/h2/big.txt"]
--- error_code eval
[201, 200]
--- response_body eval
[UploadTest::json_object("h2/big.txt", "default", $::Body, 1), $::Body]
--- timeout: 30



=== TEST 3: HTTP/2 without the thread pool
--- config eval
"location /upload/ { upload on; upload_thread_pool off; }\n$::Files"
--- request eval
["PUT /upload/h2/sync.txt\n$::Body", "GET /files/default/h2/sync.txt"]
--- error_code eval
[201, 200]
--- response_body eval
[UploadTest::json_object("h2/sync.txt", "default", $::Body), $::Body]
--- timeout: 30



=== TEST 4: a digest mismatch over HTTP/2
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/h2/bad.txt\nsome body", "GET /upload/h2/bad.txt?meta"]
--- more_headers eval
["X-Upload-Sha256: " . ("0" x 64), ""]
--- error_code eval
[400, 404]
--- response_body_like eval
[qr/"code":"BadDigest"/, qr/"code":"NoSuchKey"/]



=== TEST 5: a sliced upload over HTTP/2: parts and complete
--- init
UploadTest::make_session("default", "h2/sliced.txt", "h2slicedh2slicedh2sliced");
--- config eval
"location /upload/ { upload on; upload_min_part_size 1; }\n$::Files"
--- request eval
["PUT /upload/h2/sliced.txt?uploadId=h2slicedh2slicedh2sliced&partNumber=2\n$::Body",
 "PUT /upload/h2/sliced.txt?uploadId=h2slicedh2slicedh2sliced&partNumber=1\nfirst",
 "POST /upload/h2/sliced.txt?uploadId=h2slicedh2slicedh2sliced\n{\"parts\":[{\"part_number\":1,\"etag\":\"" . Digest::MD5::md5_hex("first") . "\"},{\"part_number\":2,\"etag\":\"" . Digest::MD5::md5_hex($::Body) . "\"}]}",
 "GET /files/default/h2/sliced.txt"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/"part_number":2,"size":3145731,/, qr/"part_number":1,"size":5,/, qr/"parts":2\}$/, qr/^first0000000\n/]
--- timeout: 30



=== TEST 6: an instant upload over HTTP/2: the content is stored, announcing it is a hit
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/h2/first.txt\nsmall content", "PUT /upload/h2/second.txt\nsmall content",
 "GET /files/default/h2/second.txt"]
--- more_headers eval
["", "X-Upload-Sha256: ${\ Digest::SHA::sha256_hex('small content')}", ""]
--- error_code eval
[201, 200, 200]
--- response_body_like eval
[qr/"key":"h2\/first.txt"/, qr/^\{"exists":true,"dedup":true,"key":"h2\/second.txt",/,
 qr/^small content$/]



=== TEST 7: a hit over HTTP/2 answers before the client sent more than the first window (nghttp)
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $file = "$ENV{TEST_NGINX_HTML_DIR}/big.bin";
open my $f, '>', $file or die "$file: $!"; print $f $::Body; close $f;
system("curl", "-s", "-o", "/dev/null", "--http2-prior-knowledge", "-T", $file,
       "http://127.0.0.1:$port/upload/h2/big-first.txt") == 0 or die "curl failed";
my $out = `nghttp -v -d $file -H ':method: PUT' -H 'x-upload-sha256: ${\ Digest::SHA::sha256_hex($::Body)}' http://127.0.0.1:$port/upload/h2/big-second.txt 2>&1`;
my $sent = 0;
$sent += $1 while $out =~ /send DATA frame <length=(\d+)/g;
Test::More::like($out, qr/\{"exists":true,"dedup":true,"key":"h2\/big-second.txt",/, "TEST 7: the answer is exists");
Test::More::cmp_ok($sent, '<=', 65536, "TEST 7: the client sent at most 64 KiB of the 3 MiB body ($sent bytes)");
--- request
GET /files/default/h2/big-second.txt
--- response_body eval
$::Body
--- timeout: 20
