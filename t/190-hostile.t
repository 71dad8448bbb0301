# Hostile input: requests built to break a parser or exhaust a worker.
# Each gets its documented error; the worker neither crashes nor logs an
# [alert] (upload_setup checks that for every block).

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;

upload_suite();

our $Deep = ("[" x 10000) . ("]" x 10000);
our $DeepObj = '{"parts":' . ("[" x 10000) . ("]" x 10000) . '}';

# 10,001 parts listed: within the 2 MiB body, past upload_max_parts
our $Parts10001 = '{"parts":[' . join(",", map { "{\"part_number\":$_,\"etag\":\"x\"}" } 1 .. 10001) . ']}';

# 100,000 parts listed: more than the 2 MiB a complete may send
our $Parts100k = '{"parts":[' . join(",", map { "{\"part_number\":$_,\"etag\":\"x\"}" } 1 .. 100000) . ']}';

our $Config = <<'_EOC_';
    location /upload/ { upload on; upload_min_part_size 1; client_body_timeout 1s; }
    location /static { return 200 "static ok\n"; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("config", $::Config) unless defined $block->config;
});

run_tests();

__DATA__

=== TEST 1: part numbers: 0, 10001, negative, huge, signed, with spaces, given twice
--- init
UploadTest::make_session("default", "p.bin", "hostilehostilehostile001");
--- request eval
["PUT /upload/p.bin?uploadId=hostilehostilehostile001&partNumber=0\nx",
 "PUT /upload/p.bin?uploadId=hostilehostilehostile001&partNumber=10001\nx",
 "PUT /upload/p.bin?uploadId=hostilehostilehostile001&partNumber=-1\nx",
 "PUT /upload/p.bin?uploadId=hostilehostilehostile001&partNumber=99999999999999999999\nx",
 "PUT /upload/p.bin?uploadId=hostilehostilehostile001&partNumber=%2B1\nx",
 "PUT /upload/p.bin?uploadId=hostilehostilehostile001&partNumber=01\nx",
 "PUT /upload/p.bin?uploadId=hostilehostilehostile001&partNumber=1&partNumber=2\nx",
 "PUT /upload/p.bin?uploadId=hostilehostilehostile001&uploadId=hostilehostilehostile001&partNumber=1\nx",
 "GET /static"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 400, 200]
--- response_body_like eval
[qr/"code":"InvalidArgument"/, qr/"code":"InvalidArgument"/,
 qr/"code":"InvalidArgument"/, qr/"code":"InvalidArgument"/,
 qr/"code":"InvalidArgument"/, qr/"code":"InvalidArgument"/,
 qr/"code":"InvalidArgument".*twice/, qr/"code":"InvalidArgument".*twice/,
 qr/static ok/]



=== TEST 2: keys: NUL, overlong UTF-8, traversal, backslash, too long, bad escapes (nginx itself refuses %00, and resolves "..": such requests leave /upload/ and get 405 there)
--- request eval
["PUT /upload/a%00b\nx",
 "PUT /upload/a%C0%AFb\nx",
 "PUT /upload/%C0%AE%C0%AE/etc/passwd\nx",
 "PUT /upload/a/../../etc/passwd\nx",
 "PUT /upload/a/%2e%2e/%2e%2e/etc/passwd\nx",
 "PUT /upload/a%5cb\nx",
 "PUT /upload/" . ("k" x 1100) . "\nx",
 "PUT /upload/a%zz\nx",
 "PUT /upload/a//b\nx",
 "GET /static"]
--- error_code eval
[400, 400, 400, 405, 405, 400, 400, 400, 400, 200]
--- response_body_like eval
[qr/400 Bad Request/, qr/"code":"InvalidKey"/, qr/"code":"InvalidKey"/,
 qr/405 Not Allowed/, qr/405 Not Allowed/,
 qr/"code":"InvalidKey"/, qr/"code":"InvalidKey"/, qr/"code":"InvalidKey"|400 Bad Request/,
 qr/"code":"InvalidKey"/, qr/static ok/]



=== TEST 3: sizes: negative, overflowing and fractional sizes at initiate; bad X-Upload-Size
--- request eval
["POST /upload/s.bin?uploads\n{\"size\":-1}",
 "POST /upload/s.bin?uploads\n{\"size\":1e30}",
 "POST /upload/s.bin?uploads\n{\"size\":1.5}",
 "POST /upload/s.bin?uploads\n{\"part_size\":-5}",
 "POST /upload/s.bin?uploads\n{\"size\":\"12\"}",
 "PUT /upload/s.bin\nabc",
 "PUT /upload/s.bin\nabc"]
--- more_headers eval
["", "", "", "", "",
 "X-Upload-Sha256: " . ("a" x 64) . "\nX-Upload-Size: -3",
 "X-Upload-Sha256: " . ("a" x 64) . "\nX-Upload-Size: 99999999999999999999999"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400]
--- response_body_like eval
[qr/"code":"InvalidArgument"/, qr/"code":"(InvalidArgument|EntityTooLarge)"/,
 qr/"code":"InvalidArgument"/, qr/"code":"InvalidArgument"/,
 qr/"code":"InvalidArgument"/, qr/"code":"InvalidArgument"/,
 qr/"code":"InvalidArgument"/]



=== TEST 4: Content-Length: negative, overflowing (nginx refuses them before the module)
--- raw_request eval
["PUT /upload/cl.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\nConnection: close\r\n\r\n"]
--- error_code: 400



=== TEST 5: (overflowing)
--- raw_request eval
["PUT /upload/cl.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999999999999999999\r\nConnection: close\r\n\r\n"]
--- error_code: 400



=== TEST 6: JSON nested 10,000 deep, at initiate and at complete
--- init
UploadTest::make_session("default", "deep.bin", "deepdeepdeepdeepdeepdeep", 1);
--- request eval
["POST /upload/deep.bin?uploads\n$::Deep",
 "POST /upload/deep.bin?uploadId=deepdeepdeepdeepdeepdeep\n$::DeepObj",
 "GET /upload/deep.bin?uploadId=deepdeepdeepdeepdeepdeep"]
--- error_code eval
[400, 400, 200]
--- response_body_like eval
[qr/"code":"(InvalidArgument|MalformedJSON)"/, qr/"code":"MalformedJSON"/, qr/"upload_id":"deepdeepdeepdeepdeepdeep"/]



=== TEST 7: a complete listing 10,001 parts, and one listing 100,000 (more than 2 MiB)
--- init
UploadTest::make_session("default", "many.bin", "manymanymanymanymanymany", 1);
--- request eval
["POST /upload/many.bin?uploadId=manymanymanymanymanymany\n$::Parts10001",
 "POST /upload/many.bin?uploadId=manymanymanymanymanymany\n$::Parts100k",
 "GET /upload/many.bin?uploadId=manymanymanymanymanymany"]
--- error_code eval
[400, 400, 200]
--- response_body_like eval
[qr/"code":"MalformedJSON","message":"every part needs a \\"part_number\\" from 1 to upload_max_parts/,
 qr/"code":"MalformedJSON","message":"the JSON body is too large"/,
 qr/"upload_id":"manymanymanymanymanymany"/]
--- timeout: 20



=== TEST 8: a huge header
--- request
GET /upload/h.bin?meta
--- more_headers eval
"X-Big: " . ("h" x 70000)
--- error_code: 400
--- response_body_like eval
qr/Request Header Or Cookie Too Large/



=== TEST 9: a slowloris body: 1 byte of 10, then nothing; the connection is closed after client_body_timeout
--- raw_request eval
"PUT /upload/slow.bin HTTP/1.1\r
Host: localhost\r
Content-Length: 10\r
Connection: close\r
\r
x"
--- timeout: 4
--- ignore_response



=== TEST 10: (the server closes such a connection itself; nothing of it is there)
--- init
use IO::Socket::INET;
my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port) or die "$!";
print $s "PUT /upload/slow2.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nx";
my $closed = eval {
    local $SIG{ALRM} = sub { die "still open\n" };
    alarm 15;
    1 while sysread($s, my $buf, 4096);
    alarm 0;
    1;
};
Test::More::ok($closed, "TEST 10: the server closed the stalled upload's connection");
--- request eval
["GET /upload/slow.bin?meta", "GET /upload/slow2.bin?meta", "GET /static"]
--- error_code eval
[404, 404, 200]



=== TEST 11: garbage where a token, a digest or an app goes
--- request eval
["PUT /upload/t.bin\nx", "PUT /upload/t.bin\nx", "PUT /upload/t.bin\nx", "PUT /upload/t.bin\nx"]
--- more_headers eval
["Authorization: Bearer abc.defgarbage", "X-Upload-Sha256: zz", "Content-MD5: !!!", "X-Upload-App: ../etc"]
--- error_code eval
[403, 400, 400, 400]
--- response_body_like eval
[qr/"code":"AccessDenied"/, qr/"code":"InvalidDigest"/, qr/"code":"InvalidDigest"/, qr/"code":"InvalidApp"/]
