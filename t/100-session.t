# Sliced uploads, the session part of the protocol: initiate, list parts,
# abort, and the app's list of unfinished sessions.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;

upload_suite();

our $Id = qr/[A-Za-z0-9_-]{24}/;

run_tests();

__DATA__

=== TEST 1: initiate without a body opens a session with S3's defaults
--- config
    location /upload/ { upload on; }
--- request
POST /upload/big/file.bin?uploads
--- error_code: 200
--- response_body_like eval
qr/^\{"upload_id":"$::Id","key":"big\/file.bin","app":"default","size":null,"part_size":5242880,"max_parts":10000,"expires":\d{10},"parts":\[\]\}$/



=== TEST 2: initiate with a JSON body: declared size and part size
--- config
    location /upload/ { upload on; upload_min_part_size 1k; }
--- request
POST /upload/sized?uploads
{"size": 10000, "part_size": 4096, "name": "sized.bin", "content_type": "application/octet-stream", "sha256": "6AA790F126074D06432A98D22749BF23AED7BE4803BE5166B70C425FF2731F13", "metadata": {"owner": "alice", "tags": ["a", "b"]}}
--- more_headers
X-Upload-App: web
--- error_code: 200
--- response_body_like eval
qr/^\{"upload_id":"$::Id","key":"sized","app":"web","size":10000,"part_size":4096,"max_parts":10000,"expires":\d{10},"name":"sized.bin","content_type":"application\/octet-stream","metadata":\{"owner":"alice","tags":\["a","b"\]\},"parts":\[\]\}$/



=== TEST 3: the part size suggested for a large file fits max_parts
--- config
    location /upload/ { upload on; upload_max_parts 10; }
--- request
POST /upload/large?uploads
{"size": 104857600}
--- error_code: 200
--- response_body_like: "part_size":10485760,"max_parts":10,



=== TEST 4: a session is listed with its parts; abort removes it for good
--- init
UploadTest::make_session("flow", "flowing", "flowflowflowflowflowflow");
--- config
    location /upload/ { upload on; }
--- request eval
["GET /upload/flowing?uploadId=flowflowflowflowflowflow",
 "GET /upload/?uploads",
 "DELETE /upload/flowing?uploadId=flowflowflowflowflowflow",
 "GET /upload/flowing?uploadId=flowflowflowflowflowflow",
 "DELETE /upload/flowing?uploadId=flowflowflowflowflowflow",
 "GET /upload/?uploads"]
--- more_headers
X-Upload-App: flow
--- error_code eval
[200, 200, 204, 404, 404, 200]
--- response_body_like eval
[qr/^\{"upload_id":"flowflowflowflowflowflow","key":"flowing","app":"flow","size":null,"part_size":5242880,"max_parts":10000,"expires":\d{10},"parts":\[\],"is_truncated":false\}$/,
 qr/^\{"app":"flow","uploads":\[\{"key":"flowing","upload_id":"flowflowflowflowflowflow","initiated":\d{10}\}\],"is_truncated":false\}$/,
 qr/^$/,
 qr/"code":"NoSuchUpload"/,
 qr/"code":"NoSuchUpload"/,
 qr/^\{"app":"flow","uploads":\[\],"is_truncated":false\}$/]



=== TEST 5: an id is bound to its key and its app
--- init
UploadTest::make_session("default", "bound", "boundboundboundboundboun");
--- config
    location /upload/ { upload on; }
--- request eval
["GET /upload/other?uploadId=boundboundboundboundboun", "DELETE /upload/other?uploadId=boundboundboundboundboun", "GET /upload/bound?uploadId=boundboundboundboundboun"]
--- more_headers eval
["", "", ""]
--- error_code eval
[404, 404, 200]
--- response_body_like eval
[qr/"code":"NoSuchUpload"/, qr/"code":"NoSuchUpload"/, qr/"key":"bound"/]



=== TEST 6: another app does not see the session
--- init
UploadTest::make_session("default", "mine", "minemineminemineminemine");
--- config
    location /upload/ { upload on; }
--- request
GET /upload/mine?uploadId=minemineminemineminemine
--- more_headers
X-Upload-App: intruder
--- error_code: 404
--- response_body_like: "code":"NoSuchUpload"



=== TEST 7: parts are listed in order, with S3's paging
--- init
UploadTest::make_session("default", "paged", "pagedpagedpagedpagedpage", 5);
--- config
    location /upload/ { upload on; }
--- request eval
["GET /upload/paged?uploadId=pagedpagedpagedpagedpage&max-parts=2",
 "GET /upload/paged?uploadId=pagedpagedpagedpagedpage&max-parts=2&part-number-marker=2",
 "GET /upload/paged?uploadId=pagedpagedpagedpagedpage&part-number-marker=4",
 "GET /upload/paged?uploadId=pagedpagedpagedpagedpage&max-parts=0",
 "GET /upload/paged?uploadId=pagedpagedpagedpagedpage&max-parts=1001"]
--- error_code eval
[200, 200, 200, 400, 400]
--- response_body_like eval
[qr/"parts":\[\{"part_number":1,"size":101,"etag":"[0-9a-f]{32}","sha256":"[0-9a-f]{64}"\},\{"part_number":2,[^\]]*\],"is_truncated":true,"next_part_number_marker":2\}$/,
 qr/"parts":\[\{"part_number":3,[^\]]*\{"part_number":4,[^\]]*\],"is_truncated":true,"next_part_number_marker":4\}$/,
 qr/"parts":\[\{"part_number":5,"size":105,[^\]]*\],"is_truncated":false\}$/,
 qr/"code":"InvalidArgument"/,
 qr/"code":"InvalidArgument"/]



=== TEST 8: ids that are not ours are refused without asking Redis
--- config
    location /upload/ { upload on; }
--- request eval
["GET /upload/k?uploadId=../../etc", "GET /upload/k?uploadId=", "DELETE /upload/k?uploadId=AAAAAAAAAAAAAAAAAAAAAAAA", "GET /upload/k?uploadId=AAAAAAAAAAAAAAAAAAAAAAAA&uploadId=BBBBBBBBBBBBBBBBBBBBBBBB"]
--- error_code eval
[404, 404, 404, 400]
--- response_body_like eval
[qr/"code":"NoSuchUpload"/, qr/"code":"NoSuchUpload"/, qr/"code":"NoSuchUpload"/, qr/"code":"InvalidArgument","message":"\\"uploadId\\" is given twice"/]



=== TEST 9: malformed or invalid initiate bodies
--- config
    location /upload/ { upload on; upload_max_size 1m; upload_min_part_size 1k; upload_max_part_size 1m; }
--- request eval
["POST /upload/j?uploads\n{\"size\": ", "POST /upload/j?uploads\n[1, 2]", "POST /upload/j?uploads\n{\"size\": -1}", "POST /upload/j?uploads\n{\"size\": 1.5}", "POST /upload/j?uploads\n{\"size\": 2000000}", "POST /upload/j?uploads\n{\"part_size\": 10}", "POST /upload/j?uploads\n{\"part_size\": 2000000}", "POST /upload/j?uploads\n{\"sha256\": \"abc\"}", "POST /upload/j?uploads\n{\"name\": 5}", "POST /upload/j?uploads\n{\"metadata\": [1]}", "POST /upload/j?uploads\n{\"metadata\": {\"x\": \"" . ("m" x 9000) . "\"}}", "POST /upload/j?uploads\n{\"name\": \"" . ("n" x 70000) . "\"}"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400]
--- response_body_like eval
[qr/"code":"MalformedJSON"/, qr/"code":"MalformedJSON"/, qr/"code":"InvalidArgument","message":"\\"size\\" must be/, qr/"code":"InvalidArgument"/, qr/"code":"EntityTooLarge"/, qr/"code":"InvalidArgument","message":"\\"part_size\\"/, qr/"code":"InvalidArgument","message":"\\"part_size\\"/, qr/"code":"InvalidDigest"/, qr/"code":"InvalidArgument","message":"\\"name\\"/, qr/"code":"InvalidArgument","message":"\\"metadata\\" must be/, qr/"message":"\\"metadata\\" is larger than 8 KiB"/, qr/"code":"MalformedJSON","message":"the JSON body is too large"/]



=== TEST 10: list sessions filters by prefix and needs no key
--- config
    location /upload/ { upload on; }
--- request eval
["POST /upload/photos/a.jpg?uploads", "POST /upload/videos/b.mp4?uploads", "GET /upload/?uploads&prefix=photos%2F", "GET /upload/?uploads&prefix=nothing"]
--- more_headers
X-Upload-App: lister
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/"key":"photos\/a.jpg"/, qr/"key":"videos\/b.mp4"/, qr/^\{"app":"lister","uploads":\[\{"key":"photos\/a.jpg","upload_id":"$::Id","initiated":\d{10}\}\],"is_truncated":false\}$/, qr/^\{"app":"lister","uploads":\[\],"is_truncated":false\}$/]



=== TEST 11: at most 1000 sessions in one answer, and it says so
--- init
open my $cli, '|-', "redis-cli -p $ENV{TEST_NGINX_REDIS_PORT} >/dev/null" or die $!;
for my $i (1 .. 1001) {
    my $id = sprintf "many%020d", $i;
    print $cli "HSET upload:{many}:mpu:$id key k$i state open\n";
    print $cli "ZADD upload:{many}:mpus $i $id\n";
}
close $cli;
--- config
    location /upload/ { upload on; }
--- request
GET /upload/?uploads
--- more_headers
X-Upload-App: many
--- error_code: 200
--- response_body_like: ^\{"app":"many","uploads":\[(\{"key":"k\d+","upload_id":"many\d{20}","initiated":\d+\},){999}\{"key":"k1000","upload_id":"many0+1000","initiated":1000\}\],"is_truncated":true\}$
