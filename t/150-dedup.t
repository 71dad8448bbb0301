# Instant upload and the content index: a client that announces the
# content's SHA-256 (X-Upload-Sha256) gets "exists" without sending the
# body when the store holds that content; stored content is shared through
# hard links; the index holds only what the module hashed itself.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use Digest::SHA qw(sha256_hex);
use Digest::MD5 ();

upload_suite();
check_accum_error_log();

our $X = "the content that is stored once";
our $Y = "other bytes of the same length!";
our $ShaX = Digest::SHA::sha256_hex($X);

sub exists_json {
    my ($key, $app, $body) = @_;
    my $sha = Digest::SHA::sha256_hex($body);
    return '{"exists":true,"dedup":true,"key":"' . $key . '","app":"' . $app
           . '","size":' . length($body) . ',"etag":"' . $sha
           . '","sha256":"' . $sha . '","url":"/files/' . $app . '/' . $key
           . "\"}\n";
}

sub ino { (stat shift)[1] }

our $Config = <<'_EOC_';
    location /upload/ { upload on; upload_min_part_size 1; }
    location /global/ { upload on; upload_dedup global; }
    location /nodedup/ { upload on; upload_dedup off; }
    location /files/ { alias $TEST_NGINX_SERVER_ROOT-persist/store/; }
    location /tmpfiles/ {
        alias $TEST_NGINX_SERVER_ROOT-persist/store/.upload-tmp/;
        autoindex on;
        autoindex_format json;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $UploadTest::PersistHttpConfig);
    $block->set_value("config", $::Config) unless defined $block->config;
});

run_tests();

__DATA__

=== TEST 1: a miss stores the body; the same content announced again is a hit, its body dropped
--- init
UploadTest::clear_persist();
--- request eval
["PUT /upload/first.txt\n$::X",
 "HEAD /upload/?sha256=$::ShaX",
 "PUT /upload/second.txt\n$::X",
 "GET /files/default/second.txt",
 "HEAD /upload/?sha256=" . Digest::SHA::sha256_hex("never stored")]
--- more_headers eval
["", "", "X-Upload-Sha256: $::ShaX", "", ""]
--- error_code eval
[201, 200, 200, 200, 404]
--- response_headers eval
["", "X-Upload-Size: ${\ length($::X)}", "", "", ""]
--- response_body eval
[UploadTest::json_object("first.txt", "default", $::X),
 "", main::exists_json("second.txt", "default", $::X), $::X, ""]



=== TEST 2: with Expect: 100-continue a hit is the final answer: the client sends no body
--- raw_request eval
"PUT /upload/third.txt HTTP/1.1\r
Host: localhost\r
Content-Length: ${\ length($::X)}\r
X-Upload-Sha256: $::ShaX\r
Expect: 100-continue\r
\r
"
--- error_code: 200
--- response_headers
Connection: close
--- response_body eval
main::exists_json("third.txt", "default", $::X)
--- error_log
upload: "default/third.txt" exists already (content index), no body read



=== TEST 3: a hit on a key that holds the content already leaves no temporary link
--- request eval
["PUT /upload/second.txt\n$::X", "GET /tmpfiles/"]
--- more_headers eval
["X-Upload-Sha256: $::ShaX", ""]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/^\{"exists":true,"dedup":true,"key":"second.txt",/, qr/^\[\s*\]\s*$/]



=== TEST 4: the keys share one copy (hard links), and deleting one leaves the others
--- init
my $d = "$ENV{TEST_NGINX_SERVER_ROOT}-persist/store/default";
Test::More::is(main::ino("$d/first.txt"), main::ino("$d/second.txt"), "TEST 4: first and second are one file");
Test::More::is(main::ino("$d/first.txt"), main::ino("$d/third.txt"), "TEST 4: first and third are one file");
--- request eval
["DELETE /upload/first.txt",
 "GET /files/default/second.txt",
 "GET /files/default/third.txt"]
--- error_code eval
[204, 200, 200]
--- response_body eval
["", $::X, $::X]



=== TEST 5: a lying client (announced hash is not the bytes') stores nothing and poisons nothing
--- request eval
["PUT /upload/liar.txt\n$::Y",
 "GET /files/default/liar.txt",
 "HEAD /upload/?sha256=${\ Digest::SHA::sha256_hex('claimed')}",
 "HEAD /upload/?sha256=${\ Digest::SHA::sha256_hex($::Y)}"]
--- more_headers eval
["X-Upload-Sha256: ${\ Digest::SHA::sha256_hex('claimed')}", "", "", ""]
--- error_code eval
[400, 404, 404, 404]
--- response_body_like eval
[qr/"code":"BadDigest"/, qr/404/, qr/^$/, qr/^$/]



=== TEST 6: (both keys that held the content deleted)
--- request eval
["DELETE /upload/second.txt", "DELETE /upload/third.txt"]
--- error_code eval
[204, 204]



=== TEST 7: an entry whose file went is stale: dropped, a miss
--- request eval
["PUT /upload/again.txt\n$::X",
 "HEAD /upload/?sha256=$::ShaX"]
--- more_headers eval
["X-Upload-Sha256: $::ShaX", ""]
--- error_code eval
[201, 200]
--- response_body eval
[UploadTest::json_object("again.txt", "default", $::X), ""]
--- error_log
is stale



=== TEST 8: the index is per app by default; "upload_dedup global" shares it
--- request eval
["PUT /upload/other.txt\n$::X",
 "HEAD /upload/?sha256=$::ShaX",
 "PUT /global/g1.txt\n$::Y",
 "PUT /global/g2.txt\n$::Y"]
--- more_headers eval
["X-Upload-App: other\nX-Upload-Sha256: $::ShaX",
 "X-Upload-App: third",
 "X-Upload-App: one",
 "X-Upload-App: two\nX-Upload-Sha256: ${\ Digest::SHA::sha256_hex($::Y)}"]
--- error_code eval
[201, 404, 201, 200]
--- response_body eval
[UploadTest::json_object("other.txt", "other", $::X), "",
 UploadTest::json_object("g1.txt", "one", $::Y),
 main::exists_json("g2.txt", "two", $::Y)]



=== TEST 9: the same content uploaded without announcing it ends as one copy too
--- request eval
["PUT /upload/copy1.txt\nsame bytes twice",
 "PUT /upload/copy2.txt\nsame bytes twice",
 "PUT /nodedup/copy3.txt\nsame bytes twice"]
--- error_code eval
[201, 201, 201]
--- response_body eval
[UploadTest::json_object("copy1.txt", "default", "same bytes twice"),
 UploadTest::json_object("copy2.txt", "default", "same bytes twice") =~ s/^\{/{"dedup":true,/r,
 UploadTest::json_object("copy3.txt", "default", "same bytes twice")]



=== TEST 10: (checks on the files of TEST 9) and concurrent identical uploads end as one copy
--- init
my $d = "$ENV{TEST_NGINX_SERVER_ROOT}-persist/store/default";
Test::More::is(main::ino("$d/copy1.txt"), main::ino("$d/copy2.txt"), "TEST 10: copy1 and copy2 are one file");
Test::More::isnt(main::ino("$d/copy1.txt"), main::ino("$d/copy3.txt"), "TEST 10: upload_dedup off keeps its own copy");
my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $body = "x" x (4 * 1024 * 1024);
open my $f, '>', "$d/../../race.bin" or die; print $f $body; close $f;
my @pids;
for my $k (1 .. 4) {
    my $pid = fork // die;
    if ($pid == 0) {
        exec "curl", "-s", "-o", "/dev/null", "-T", "$d/../../race.bin",
             "http://127.0.0.1:$port/upload/race$k.bin";
    }
    push @pids, $pid;
}
waitpid $_, 0 for @pids;
my %inos = map { main::ino("$d/race$_.bin") => 1 } 1 .. 4;
Test::More::is(scalar(keys %inos), 1, "TEST 10: four concurrent identical uploads, one file");
--- request eval
["GET /files/default/race1.bin", "GET /files/default/race4.bin"]
--- error_code eval
[200, 200]
--- response_body eval
["x" x (4 * 1024 * 1024), "x" x (4 * 1024 * 1024)]



=== TEST 11: a sliced upload with a file marker of stored content: "exists", no session
--- request eval
["POST /upload/sliced-hit.txt?uploads\n{\"sha256\":\"$::ShaX\",\"size\":${\ length($::X)}}",
 "GET /files/default/sliced-hit.txt",
 "GET /upload/?uploads"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/^\Q${\ main::exists_json("sliced-hit.txt", "default", $::X)}\E$/,
 qr/^\Q$::X\E$/, qr/"uploads":\[\]/]



=== TEST 12: an unfinished session for the same file and key is resumed, with its parts
--- init
my $sha = Digest::SHA::sha256_hex("part one|part two");
UploadTest::make_session("default", "resume.txt", "resumeresumeresumeresume", 0, { sha256 => $sha });
UploadTest::redis("hset", "upload:{default}:resume", "$sha:resume.txt", "resumeresumeresumeresume");
--- request eval
["PUT /upload/resume.txt?uploadId=resumeresumeresumeresume&partNumber=1\npart one|",
 "POST /upload/resume.txt?uploads\n{\"sha256\":\"${\ Digest::SHA::sha256_hex('part one|part two')}\"}",
 "POST /upload/other-key.txt?uploads\n{\"sha256\":\"${\ Digest::SHA::sha256_hex('part one|part two')}\"}"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/"part_number":1/,
 qr/^\{"upload_id":"resumeresumeresumeresume","key":"resume.txt","app":"default","size":null,"part_size":\d+,"max_parts":10000,"expires":\d+,"resumed":true,"parts":\[\{"part_number":1,"size":9,/,
 qr/^\{"upload_id":"(?!resumeresume)[A-Za-z0-9_-]{24}","key":"other-key.txt",.*"parts":\[\]\}$/]



=== TEST 13: its complete checks the declared SHA-256, then the content is in the index
--- request eval
["PUT /upload/resume.txt?uploadId=resumeresumeresumeresume&partNumber=2\npart two",
 "POST /upload/resume.txt?uploadId=resumeresumeresumeresume\n{\"parts\":[{\"part_number\":1,\"etag\":\"${\ Digest::MD5::md5_hex('part one|')}\"},{\"part_number\":2,\"etag\":\"${\ Digest::MD5::md5_hex('part two')}\"}]}",
 "HEAD /upload/?sha256=${\ Digest::SHA::sha256_hex('part one|part two')}",
 "POST /upload/resume2.txt?uploads\n{\"sha256\":\"${\ Digest::SHA::sha256_hex('part one|part two')}\"}"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/"part_number":2/,
 qr/"sha256":"${\ Digest::SHA::sha256_hex('part one|part two')}"/,
 qr/^$/,
 qr/^\{"exists":true,"dedup":true,"key":"resume2.txt",/]



=== TEST 14: a pointer to a session that went is no resume: a new session
--- init
UploadTest::redis("hset", "upload:{default}:resume", Digest::SHA::sha256_hex("gone") . ":gone.txt", "gonegonegonegonegonegone");
--- request eval
"POST /upload/gone.txt?uploads\n{\"sha256\":\"${\ Digest::SHA::sha256_hex('gone')}\"}"
--- error_code: 200
--- response_body_like
^\{"upload_id":"(?!gonegone)[A-Za-z0-9_-]{24}","key":"gone.txt",.*"parts":\[\]\}$
