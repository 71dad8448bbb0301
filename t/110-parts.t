# Sliced uploads: parts (PUT <key>?uploadId=<id>&partNumber=<n>) and the
# complete that merges them (POST <key>?uploadId=<id>).

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use Digest::MD5 qw(md5 md5_hex);
use Digest::SHA qw(sha256_hex);
use POSIX ();

upload_suite();

# no space at either end: Test::Nginx trims request bodies
our $P1 = "first-part|";
our $P2 = "second-part|";
our $P3 = "the-last-part";
our $Etag = md5_hex(md5($P1) . md5($P2) . md5($P3)) . "-3";
our $Whole = $P1 . $P2 . $P3;

sub part_json {
    my ($n, $body) = @_;
    return '{"part_number":' . $n . ',"size":' . length($body)
           . ',"etag":"' . md5_hex($body) . '","sha256":"'
           . sha256_hex($body) . "\"}\n";
}

sub complete_body {
    return '{"parts":[' . join(',', map {
        '{"part_number":' . $_->[0] . ',"etag":"' . md5_hex($_->[1]) . '"}'
    } @_) . ']}';
}

our $Complete = complete_body([1, $P1], [2, $P2], [3, $P3]);

our $Config = <<'_EOC_';
    location /upload/ { upload on; upload_min_part_size 1; }
    location /files/ { alias $TEST_NGINX_HTML_DIR/store/; }
_EOC_

run_tests();

__DATA__

=== TEST 1: parts in any order, then complete: the object is the parts in order
--- init
UploadTest::make_session("default", "merged.txt", "mergedmergedmergedmerged");
--- config eval: $::Config
--- request eval
["PUT /upload/merged.txt?uploadId=mergedmergedmergedmerged&partNumber=3\n$::P3",
 "PUT /upload/merged.txt?uploadId=mergedmergedmergedmerged&partNumber=1\n$::P1",
 "PUT /upload/merged.txt?uploadId=mergedmergedmergedmerged&partNumber=2\n$::P2",
 "POST /upload/merged.txt?uploadId=mergedmergedmergedmerged\n$::Complete",
 "GET /files/default/merged.txt",
 "GET /upload/merged.txt?meta",
 "GET /upload/merged.txt?uploadId=mergedmergedmergedmerged"]
--- error_code eval
[200, 200, 200, 200, 200, 200, 404]
--- response_body_like eval
[qr/^\Q${\ main::part_json(3, $::P3)}\E$/,
 qr/^\Q${\ main::part_json(1, $::P1)}\E$/,
 qr/^\Q${\ main::part_json(2, $::P2)}\E$/,
 qr/^\Q{"key":"merged.txt","app":"default","size":${\ length($::Whole)},"etag":"$::Etag","sha256":"${\ Digest::SHA::sha256_hex($::Whole)}","url":"\/files\/default\/merged.txt","parts":3}\E$/,
 qr/^\Q$::Whole\E$/,
 qr/^\{"key":"merged.txt","app":"default","size":${\ length($::Whole)},"etag":"\Q$::Etag\E","sha256":"[0-9a-f]{64}","url":"\/files\/default\/merged.txt","time":\d+\}$/,
 qr/"code":"NoSuchUpload"/]



=== TEST 2: a retried complete gets the same answer; parts after it are refused
--- init
UploadTest::make_session("default", "retry.txt", "retryretryretryretryretr");
--- config eval: $::Config
--- request eval
["PUT /upload/retry.txt?uploadId=retryretryretryretryretr&partNumber=1\n$::P1",
 "PUT /upload/retry.txt?uploadId=retryretryretryretryretr&partNumber=2\n$::P2",
 "PUT /upload/retry.txt?uploadId=retryretryretryretryretr&partNumber=3\n$::P3",
 "POST /upload/retry.txt?uploadId=retryretryretryretryretr\n$::Complete",
 "POST /upload/retry.txt?uploadId=retryretryretryretryretr\n$::Complete",
 "POST /upload/retry.txt?uploadId=retryretryretryretryretr\n" . main::complete_body([1, $::P1]),
 "PUT /upload/retry.txt?uploadId=retryretryretryretryretr&partNumber=4\nlate"]
--- error_code eval
[200, 200, 200, 200, 200, 404, 404]
--- response_body_like eval
[qr/"part_number":1/, qr/"part_number":2/, qr/"part_number":3/,
 qr/^\{"key":"retry.txt","app":"default","size":${\ length($::Whole)},"etag":"\Q$::Etag\E",/,
 qr/^\{"key":"retry.txt","app":"default","size":${\ length($::Whole)},"etag":"\Q$::Etag\E",/,
 qr/"code":"NoSuchUpload"/, qr/"code":"NoSuchUpload"/]



=== TEST 3: a part uploaded again replaces the earlier one
--- init
UploadTest::make_session("default", "again.txt", "againagainagainagainagai");
--- config eval: $::Config
--- request eval
["PUT /upload/again.txt?uploadId=againagainagainagainagai&partNumber=1\nold content",
 "PUT /upload/again.txt?uploadId=againagainagainagainagai&partNumber=1\nnew",
 "GET /upload/again.txt?uploadId=againagainagainagainagai",
 "POST /upload/again.txt?uploadId=againagainagainagainagai\n" . main::complete_body([1, "new"]),
 "GET /files/default/again.txt"]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[qr/"size":11/, qr/"size":3/, qr/"parts":\[\{"part_number":1,"size":3,/, qr/"parts":1\}$/, qr/^new$/]



=== TEST 4: complete's rules: order, existence, etag, at least one part, JSON
--- init
UploadTest::make_session("default", "rules.txt", "rulesrulesrulesrulesrule");
--- config eval: $::Config
--- request eval
["PUT /upload/rules.txt?uploadId=rulesrulesrulesrulesrule&partNumber=1\n$::P1",
 "PUT /upload/rules.txt?uploadId=rulesrulesrulesrulesrule&partNumber=2\n$::P2",
 "POST /upload/rules.txt?uploadId=rulesrulesrulesrulesrule\n" . main::complete_body([2, $::P2], [1, $::P1]),
 "POST /upload/rules.txt?uploadId=rulesrulesrulesrulesrule\n" . main::complete_body([1, $::P1], [1, $::P1]),
 "POST /upload/rules.txt?uploadId=rulesrulesrulesrulesrule\n" . main::complete_body([1, $::P1], [5, "never sent"]),
 "POST /upload/rules.txt?uploadId=rulesrulesrulesrulesrule\n" . main::complete_body([1, "not the etag"]),
 "POST /upload/rules.txt?uploadId=rulesrulesrulesrulesrule\n{\"parts\": []}",
 "POST /upload/rules.txt?uploadId=rulesrulesrulesrulesrule\n{\"parts\": [",
 "POST /upload/rules.txt?uploadId=rulesrulesrulesrulesrule\n{\"parts\": [{\"part_number\": 0, \"etag\": \"x\"}]}",
 "POST /upload/rules.txt?uploadId=rulesrulesrulesrulesrule\n" . main::complete_body([1, $::P1], [2, $::P2])]
--- error_code eval
[200, 200, 400, 400, 400, 400, 400, 400, 400, 200]
--- response_body_like eval
[qr/"part_number":1/, qr/"part_number":2/,
 qr/"code":"InvalidPartOrder"/, qr/"code":"InvalidPartOrder"/,
 qr/"code":"InvalidPart"/, qr/"code":"InvalidPart"/,
 qr/"code":"MalformedJSON","message":"at least one part must be listed"/,
 qr/"code":"MalformedJSON"/, qr/"code":"MalformedJSON"/,
 qr/"parts":2\}$/]



=== TEST 5: every part but the last must reach upload_min_part_size
--- init
UploadTest::make_session("default", "small.txt", "smallsmallsmallsmallsmal");
--- config
    location /upload/ { upload on; upload_min_part_size 12; }
--- request eval
["PUT /upload/small.txt?uploadId=smallsmallsmallsmallsmal&partNumber=1\n$::P1",
 "PUT /upload/small.txt?uploadId=smallsmallsmallsmallsmal&partNumber=2\n$::P2",
 "POST /upload/small.txt?uploadId=smallsmallsmallsmallsmal\n" . main::complete_body([1, $::P1], [2, $::P2]),
 "POST /upload/small.txt?uploadId=smallsmallsmallsmallsmal\n" . main::complete_body([2, $::P2])]
--- error_code eval
[200, 200, 400, 200]
--- response_body_like eval
[qr/"size":11/, qr/"size":12/, qr/"code":"EntityTooSmall"/, qr/"size":12,.*"parts":1\}$/]



=== TEST 6: part numbers and sizes are checked before the body
--- init
UploadTest::make_session("default", "args.txt", "argsargsargsargsargsargs");
--- config
    location /upload/ { upload on; upload_max_parts 100; upload_min_part_size 1; upload_max_part_size 10; }
--- request eval
["PUT /upload/args.txt?uploadId=argsargsargsargsargsargs&partNumber=0\nx",
 "PUT /upload/args.txt?uploadId=argsargsargsargsargsargs&partNumber=101\nx",
 "PUT /upload/args.txt?uploadId=argsargsargsargsargsargs&partNumber=-1\nx",
 "PUT /upload/args.txt?uploadId=argsargsargsargsargsargs&partNumber=01\nx",
 "PUT /upload/args.txt?uploadId=argsargsargsargsargsargs&partNumber=1e3\nx",
 "PUT /upload/args.txt?uploadId=argsargsargsargsargsargs\nx",
 "PUT /upload/args.txt?uploadId=argsargsargsargsargsargs&partNumber=1&partNumber=2\nx",
 "PUT /upload/args.txt?uploadId=argsargsargsargsargsargs&partNumber=100\n0123456789A",
 "PUT /upload/args.txt?uploadId=argsargsargsargsargsargs&partNumber=100\n0123456789"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 400, 200]
--- response_body_like eval
[qr/"code":"InvalidArgument"/, qr/"code":"InvalidArgument"/, qr/"code":"InvalidArgument"/, qr/"code":"InvalidArgument"/, qr/"code":"InvalidArgument"/, qr/"message":"a part needs \\"partNumber\\""/, qr/"partNumber\\" is given twice/, qr/"code":"EntityTooLarge"/, qr/"part_number":100,"size":10,/]



=== TEST 7: a part's digest headers are verified; a bad one is not recorded
--- init
UploadTest::make_session("default", "digest.txt", "digestdigestdigestdigest");
--- config eval: $::Config
--- request eval
["PUT /upload/digest.txt?uploadId=digestdigestdigestdigest&partNumber=1\n$::P1",
 "PUT /upload/digest.txt?uploadId=digestdigestdigestdigest&partNumber=2\n$::P2",
 "GET /upload/digest.txt?uploadId=digestdigestdigestdigest"]
--- more_headers eval
["X-Upload-Sha256: " . Digest::SHA::sha256_hex($::P1), "X-Upload-Sha256: " . Digest::SHA::sha256_hex("not it"), ""]
--- error_code eval
[200, 400, 200]
--- response_body_like eval
[qr/"part_number":1/, qr/"code":"BadDigest"/, qr/"parts":\[\{"part_number":1,[^\]]*\}\],/]



=== TEST 8: the declared size and sha256 must match, and a failed complete can be fixed
--- init
UploadTest::make_session("default", "declared.txt", "declareddeclareddeclared");
UploadTest::redis("hset", "upload:{default}:mpu:declareddeclareddeclared", "size", length($::Whole), "sha256", Digest::SHA::sha256_hex($::Whole));
--- config eval: $::Config
--- request eval
["PUT /upload/declared.txt?uploadId=declareddeclareddeclared&partNumber=1\n$::P1",
 "PUT /upload/declared.txt?uploadId=declareddeclareddeclared&partNumber=2\n$::P2",
 "PUT /upload/declared.txt?uploadId=declareddeclareddeclared&partNumber=3\nthe-LAST-part",
 "POST /upload/declared.txt?uploadId=declareddeclareddeclared\n" . main::complete_body([1, $::P1], [2, $::P2]),
 "POST /upload/declared.txt?uploadId=declareddeclareddeclared\n" . main::complete_body([1, $::P1], [2, $::P2], [3, "the-LAST-part"]),
 "GET /files/default/declared.txt",
 "PUT /upload/declared.txt?uploadId=declareddeclareddeclared&partNumber=3\n$::P3",
 "POST /upload/declared.txt?uploadId=declareddeclareddeclared\n$::Complete",
 "GET /files/default/declared.txt"]
--- error_code eval
[200, 200, 200, 400, 400, 404, 200, 200, 200]
--- response_body_like eval
[qr/./, qr/./, qr/./,
 qr/"code":"BadDigest","message":"the parts do not add up to the size declared at initiate"/,
 qr/"code":"BadDigest","message":"the merged file does not match the sha256 declared at initiate"/,
 qr/404 Not Found/, qr/./, qr/"parts":3\}$/, qr/^\Q$::Whole\E$/]



=== TEST 9: abort removes the session and its part files
--- init
UploadTest::make_session("default", "gone.txt", "gonegonegonegonegonegone");
--- config
    location /upload/ { upload on; upload_min_part_size 1; }
    location /parts/ {
        alias $TEST_NGINX_HTML_DIR/store/.upload-parts/default/;
        autoindex on;
        autoindex_format json;
    }
--- request eval
["PUT /upload/gone.txt?uploadId=gonegonegonegonegonegone&partNumber=1\n$::P1",
 "GET /parts/",
 "DELETE /upload/gone.txt?uploadId=gonegonegonegonegonegone",
 "GET /parts/",
 "PUT /upload/gone.txt?uploadId=gonegonegonegonegonegone&partNumber=2\n$::P2"]
--- error_code eval
[200, 200, 204, 200, 404]
--- response_body_like eval
[qr/"part_number":1/, qr/"name":"gonegonegonegonegonegone"/, qr/^$/, qr/^\[\s*\]\s*$/, qr/"code":"NoSuchUpload"/]



=== TEST 10: a complete that finds another one running waits for its answer
--- init
UploadTest::make_session("default", "twice.txt", "twicetwicetwicetwicetwic");
UploadTest::redis("hset", "upload:{default}:mpu:twicetwicetwicetwicetwic", "state", "completing");
# a complete at work holds the session's lease
UploadTest::redis("set", "upload:{default}:mpu:twicetwicetwicetwicetwic:lease", "another", "PX", 60000);
my $list = Digest::SHA::sha256_hex("1 " . Digest::MD5::md5_hex($::P1) . "\n");
if (fork() == 0) {
    select(undef, undef, undef, 0.8);
    UploadTest::redis("hset", "upload:{default}:mpu:twicetwicetwicetwicetwic:done", "list", $list, "result", "{\"answer\":\"of the first complete\"}\n", "key", "twice.txt");
    UploadTest::redis("del", "upload:{default}:mpu:twicetwicetwicetwicetwic");
    POSIX::_exit(0);
}
--- config eval: $::Config
--- request eval
"POST /upload/twice.txt?uploadId=twicetwicetwicetwicetwic\n" . main::complete_body([1, $::P1])
--- error_code: 200
--- response_body
{"answer":"of the first complete"}
--- timeout: 5



=== TEST 11: a remembered answer is only for its own key; abort waits for no complete
--- init
UploadTest::make_session("default", "bound.txt", "boundboundboundboundbou2");
UploadTest::make_session("default", "busy.txt", "busybusybusybusybusybusy");
UploadTest::redis("hset", "upload:{default}:mpu:busybusybusybusybusybusy", "state", "completing");
UploadTest::redis("set", "upload:{default}:mpu:busybusybusybusybusybusy:lease", "another", "PX", 60000);
--- config eval: $::Config
--- request eval
["PUT /upload/bound.txt?uploadId=boundboundboundboundbou2&partNumber=1\n$::P1",
 "POST /upload/bound.txt?uploadId=boundboundboundboundbou2\n" . main::complete_body([1, $::P1]),
 "POST /upload/other.txt?uploadId=boundboundboundboundbou2\n" . main::complete_body([1, $::P1]),
 "DELETE /upload/busy.txt?uploadId=busybusybusybusybusybusy",
 "GET /upload/busy.txt?uploadId=busybusybusybusybusybusy&max-parts=5&max-parts=6"]
--- error_code eval
[200, 200, 404, 409, 400]
--- response_body_like eval
[qr/"part_number":1/, qr/"key":"bound.txt"/, qr/"code":"NoSuchUpload"/, qr/"code":"OperationAborted"/, qr/"code":"InvalidArgument"/]



=== TEST 12: a chunked part cannot pass upload_max_part_size
--- init
UploadTest::make_session("default", "chunky.txt", "chunkychunkychunkychunky");
--- config
    location /upload/ { upload on; upload_min_part_size 1; upload_max_part_size 10; }
--- raw_request eval
"PUT /upload/chunky.txt?uploadId=chunkychunkychunkychunky&partNumber=1 HTTP/1.1\r
Host: localhost\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
8\r
01234567\r
8\r
89abcdef\r
0\r
\r
"
--- error_code: 400
--- response_body
{"error":{"code":"EntityTooLarge","message":"the part is larger than upload_max_part_size"}}



=== TEST 13: a session left "completing" without a lease (its complete's worker died, or Redis was away when it failed) is taken over by the next complete; an abort may end it too
--- init
UploadTest::make_session("default", "orphan.txt", "orphanorphanorphanorphan");
UploadTest::make_session("default", "orphan2.txt", "orphan2orphan2orphan2orp");
my $url = "http://127.0.0.1:" . ($ENV{TEST_NGINX_SERVER_PORT} || 1984) . "/upload";
# qx: what curl prints must not reach the TAP stream
my $status = sub {
    my $args = join " ", map { "'$_'" } @_;
    qx{curl -s -o /dev/null -w '%{http_code}' $args};
};
$status->("-X", "PUT", "--data-binary", $::P1,
          "$url/orphan.txt?uploadId=orphanorphanorphanorphan&partNumber=1");
# held by completes whose leases lapsed
UploadTest::redis("hset", "upload:{default}:mpu:orphanorphanorphanorphan", "state", "completing", "holder", "dead");
UploadTest::redis("hset", "upload:{default}:mpu:orphan2orphan2orphan2orp", "state", "completing", "holder", "dead");
Test::More::is($status->("-X", "PUT", "--data-binary", "x",
                         "$url/orphan.txt?uploadId=orphanorphanorphanorphan&partNumber=2"),
               404, "TEST 13: no part while completing");
Test::More::is($status->("-X", "DELETE", "$url/orphan2.txt?uploadId=orphan2orphan2orphan2orp"),
               204, "TEST 13: an abort ends a session no complete holds");
--- config eval: $::Config
--- request eval
"POST /upload/orphan.txt?uploadId=orphanorphanorphanorphan\n" . main::complete_body([1, $::P1])
--- error_code: 200
--- response_body_like: "key":"orphan.txt".*"parts":1
--- error_log
takes over from an earlier one whose lease lapsed



=== TEST 14: a session "stored" (its complete recorded the object, then died before closing it) is never merged again: the next complete ends it, 404 NoSuchUpload
--- init
UploadTest::make_session("default", "stored.txt", "storedstoredstoredstored", 1);
UploadTest::redis("hset", "upload:{default}:mpu:storedstoredstoredstored", "state", "stored", "holder", "dead");
--- config eval: $::Config
--- request eval
["POST /upload/stored.txt?uploadId=storedstoredstoredstored\n" . main::complete_body([1, "1"]),
 "GET /upload/stored.txt?uploadId=storedstoredstoredstored",
 "PUT /upload/stored.txt?uploadId=storedstoredstoredstored&partNumber=2\nlate"]
--- error_code eval
[404, 404, 404]
--- response_body_like eval
[qr/"code":"NoSuchUpload"/, qr/"code":"NoSuchUpload"/, qr/"code":"NoSuchUpload"/]



=== TEST 15: a session "recorded" (its complete recorded the object but died before the file was in place) is taken over like one "completing"
--- init
UploadTest::make_session("default", "recorded.txt", "recordedrecordedrecorded");
my $url = "http://127.0.0.1:" . ($ENV{TEST_NGINX_SERVER_PORT} || 1984) . "/upload";
qx{curl -s -o /dev/null -X PUT --data-binary 'first-part|' '$url/recorded.txt?uploadId=recordedrecordedrecorded&partNumber=1'};
UploadTest::redis("hset", "upload:{default}:mpu:recordedrecordedrecorded", "state", "recorded", "holder", "dead");
--- config eval: $::Config
--- request eval
"POST /upload/recorded.txt?uploadId=recordedrecordedrecorded\n" . main::complete_body([1, $::P1])
--- error_code: 200
--- response_body_like: "key":"recorded.txt".*"parts":1
--- error_log
takes over from an earlier one whose lease lapsed
