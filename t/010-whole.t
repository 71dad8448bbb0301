# Whole uploads: PUT/POST bodies streamed to the store, hashed on the fly.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use Digest::SHA qw(sha256_hex);

upload_suite();

# 64 MiB, every MiB different, so a reordered or lost piece shows
our $Big = join '', map {
    my $i = $_;
    substr(("\x5a" x 64) . ("\xa5\x3c" x 8) x (1024 * 1024 / 16), 0,
           1024 * 1024 - 8) . pack('NN', $i, ~$i & 0xffffffff)
} 0 .. 63;
our $BigSha = sha256_hex($Big);

run_tests();

__DATA__

=== TEST 1: PUT stores the body and answers 201 with the object as JSON
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/docs/hello.txt\nhello, world\n", "GET /files/default/docs/hello.txt"]
--- error_code eval
[201, 200]
--- response_headers eval
["Content-Type: application/json\nETag: \"" . Digest::SHA::sha256_hex("hello, world") . "\"", ""]
--- response_body eval
[UploadTest::json_object("docs/hello.txt", "default", "hello, world"), "hello, world"]



=== TEST 2: POST with a raw body is a whole upload too
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["POST /upload/p.bin\n\x00\x01\x02binary\xff", "GET /files/default/p.bin"]
--- more_headers
Content-Type: application/octet-stream
--- error_code eval
[201, 200]
--- response_body eval
[UploadTest::json_object("p.bin", "default", "\x00\x01\x02binary\xff"), "\x00\x01\x02binary\xff"]



=== TEST 3: a form POST is refused: the module stores raw bodies
--- config
    location /upload/ { upload on; }
--- request
POST /upload/form
a=1&b=2
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 415
--- response_body
{"error":{"code":"UnsupportedMediaType","message":"form uploads are not supported: send the file as the raw body"}}



=== TEST 4: X-Upload-App puts the object under its app
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/k1\nfor my app", "GET /files/my-app.v2/k1"]
--- more_headers
X-Upload-App: my-app.v2
--- error_code eval
[201, 200]
--- response_body eval
[UploadTest::json_object("k1", "my-app.v2", "for my app"), "for my app"]



=== TEST 5: upload_hash md5 sha1 adds both; the MD5 becomes the etag
--- config eval
"location /upload/ { upload on; upload_hash md5 sha1; }\n$::Files"
--- request
PUT /upload/m.txt
md5 please
--- error_code: 201
--- response_headers eval
"ETag: \"" . Digest::MD5::md5_hex("md5 please") . "\""
--- response_body eval
UploadTest::json_object("m.txt", "default", "md5 please", { md5 => 1, sha1 => 1 })



=== TEST 6: a matching Content-MD5 is accepted and makes the MD5 computed
--- config
    location /upload/ { upload on; }
--- request
PUT /upload/cm.txt
checked body
--- more_headers eval
use MIME::Base64;
"Content-MD5: " . MIME::Base64::encode_base64(Digest::MD5::md5("checked body"), "")
--- error_code: 201
--- response_body eval
UploadTest::json_object("cm.txt", "default", "checked body", 1)



=== TEST 7: an empty body makes an empty object
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/empty\n", "GET /files/default/empty"]
--- more_headers
Content-Length: 0
--- error_code eval
[201, 200]
--- response_body eval
[UploadTest::json_object("empty", "default", ""), ""]



=== TEST 8: uploading a key again replaces the object
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/again\nfirst version, longer", "PUT /upload/again\nsecond", "GET /files/default/again", "GET /upload/again?meta"]
--- error_code eval
[201, 201, 200, 200]
--- response_body_like eval
[qr/"size":21,/, qr/"size":6,/, qr/^second$/, qr/^\{"key":"again","app":"default","size":6,"etag":"\Q${\ Digest::SHA::sha256_hex("second")}\E".*"time":\d+\}$/]



=== TEST 9: a 64 MiB body is stored whole and hashed right
--- config eval
"location /upload/ { upload on; client_body_buffer_size 256k; }\n$::Files"
--- request eval
["PUT /upload/big/64m.bin\n$::Big", "GET /files/default/big/64m.bin"]
--- error_code eval
[201, 200]
--- response_body eval
[UploadTest::json_object("big/64m.bin", "default", $::Big), $::Big]
--- timeout: 60



=== TEST 10: the same 64 MiB without the thread pool
--- config eval
"location /upload/ { upload on; upload_thread_pool off; upload_hash md5; }\n$::Files"
--- request eval
["PUT /upload/big/64m-sync.bin\n$::Big", "GET /files/default/big/64m-sync.bin"]
--- error_code eval
[201, 200]
--- response_body eval
[UploadTest::json_object("big/64m-sync.bin", "default", $::Big, 1), $::Big]
--- timeout: 60



=== TEST 11: a chunked body (Transfer-Encoding: chunked)
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- raw_request eval
"PUT /upload/chunked.txt HTTP/1.1\r
Host: localhost\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
5\r
hello\r
7\r
, chunk\r
0\r
\r
"
--- error_code: 201
--- response_body eval
UploadTest::json_object("chunked.txt", "default", "hello, chunk")



=== TEST 12: keys are URL-decoded, and the url in the answer is encoded
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/dir%20name/caf%C3%A9.txt\nutf8", "GET /files/default/dir%20name/caf%C3%A9.txt"]
--- error_code eval
[201, 200]
--- response_body eval
["{\"key\":\"dir name/caf\xc3\xa9.txt\",\"app\":\"default\",\"size\":4,\"etag\":\"" . Digest::SHA::sha256_hex("utf8") . "\",\"sha256\":\"" . Digest::SHA::sha256_hex("utf8") . "\",\"url\":\"/files/default/dir%20name/caf%C3%A9.txt\"}\n", "utf8"]
