# Sliced uploads written in place: when the initiate declared "size" and
# "part_size", every part that is exactly its share goes at its offset into
# the session's one data file, the running SHA-256 follows the parts, and
# the complete renames the data file instead of copying the parts.
#
# The blocks go in pairs: the parts (with a pause after each, for the
# running SHA-256), then the complete in a block of its own, whose log line
# says how the complete went ("in place" or "copied", and how many bytes it
# had to hash itself).  The store outlives the blocks.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use Digest::MD5 qw(md5 md5_hex);
use Digest::SHA qw(sha256_hex);

upload_suite();

# a pattern is looked for in all of a block's log, not only in what its
# last request logged
check_accum_error_log();

# 40 bytes in parts of 16: 16 + 16 + 8
our $P1 = "0123456789abcdef";
our $P2 = "ghijklmnopqrstuv";
our $P3 = "wxyzWXYZ";
our $P2b = "GHIJKLMNOPQRSTUV";
our $Whole = $P1 . $P2 . $P3;
our $Layout = { size => 40, part_size => 16 };

sub complete_body {
    return '{"parts":[' . join(',', map {
        '{"part_number":' . $_->[0] . ',"etag":"' . md5_hex($_->[1]) . '"}'
    } @_) . ']}';
}

sub etag { md5_hex(join '', map { md5($_) } @_) . '-' . scalar(@_) }

# the files of a session's directory, as autoindex lists them
sub listing {
    return '^\[\s*' . join(',\s*', map {
        '\{ "name":"' . $_->[0] . '", "type":"file", "mtime":"[^"]+", '
        . '"size":' . $_->[1] . ' \}'
    } @_) . '\s*\]\s*$';
}

our $Config = <<'_EOC_';
    location /upload/ { upload on; upload_min_part_size 1; }
    location /files/ { alias $TEST_NGINX_SERVER_ROOT-persist/store/; }
    location /parts/ {
        alias $TEST_NGINX_SERVER_ROOT-persist/store/.upload-parts/;
        autoindex on;
        autoindex_format json;
    }
_EOC_

our $NoPool = $Config =~ s/upload_min_part_size 1;/upload_min_part_size 1; upload_thread_pool off;/r;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $UploadTest::PersistHttpConfig);
});

run_tests();

__DATA__

=== TEST 1: parts in order, each exactly its share: one data file, no part files
--- init
UploadTest::clear_persist();
UploadTest::make_session("default", "inplace.txt", "inplaceinplaceinplace001", 0, $::Layout);
--- config eval: $::Config
--- wait: 0.3
--- request eval
["PUT /upload/inplace.txt?uploadId=inplaceinplaceinplace001&partNumber=1\n$::P1",
 "PUT /upload/inplace.txt?uploadId=inplaceinplaceinplace001&partNumber=2\n$::P2",
 "PUT /upload/inplace.txt?uploadId=inplaceinplaceinplace001&partNumber=3\n$::P3",
 "GET /parts/default/inplaceinplaceinplace001/",
 "GET /upload/inplace.txt?uploadId=inplaceinplaceinplace001"]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[qr/"etag":"${\ Digest::MD5::md5_hex($::P1)}","sha256":"${\ Digest::SHA::sha256_hex($::P1)}"/,
 qr/"etag":"${\ Digest::MD5::md5_hex($::P2)}"/,
 qr/"etag":"${\ Digest::MD5::md5_hex($::P3)}"/,
 qr/${\ main::listing(["data", 40])}/,
 qr/"parts":\[\{"part_number":1,"size":16,.*\{"part_number":3,"size":8,/]



=== TEST 2: the complete renames the data file; the running SHA-256 covered it all
--- config eval: $::Config
--- request eval
["POST /upload/inplace.txt?uploadId=inplaceinplaceinplace001\n" . main::complete_body([1, $::P1], [2, $::P2], [3, $::P3]),
 "GET /files/default/inplace.txt",
 "GET /parts/default/inplaceinplaceinplace001/"]
--- error_code eval
[200, 200, 404]
--- response_body_like eval
[qr/^\Q{"key":"inplace.txt","app":"default","size":40,"etag":"${\ main::etag($::P1, $::P2, $::P3)}","sha256":"${\ Digest::SHA::sha256_hex($::Whole)}","url":"\/files\/default\/inplace.txt","parts":3}\E$/,
 qr/^\Q$::Whole\E$/,
 qr/404 Not Found/]
--- error_log
completed, 3 parts, 40 bytes, in place, 0 bytes hashed at complete



=== TEST 3: parts in reverse order land at their offsets too
--- init
UploadTest::make_session("default", "reverse.txt", "reversereversereverse001", 0, $::Layout);
--- config eval: $::Config
--- wait: 0.3
--- request eval
["PUT /upload/reverse.txt?uploadId=reversereversereverse001&partNumber=3\n$::P3",
 "PUT /upload/reverse.txt?uploadId=reversereversereverse001&partNumber=2\n$::P2",
 "PUT /upload/reverse.txt?uploadId=reversereversereverse001&partNumber=1\n$::P1",
 "GET /parts/default/reversereversereverse001/"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/"part_number":3/, qr/"part_number":2/, qr/"part_number":1/,
 qr/${\ main::listing(["data", 40])}/]



=== TEST 4: its complete: in place, and part 1 (the last to come) started the running SHA-256
--- config eval: $::Config
--- request eval
["POST /upload/reverse.txt?uploadId=reversereversereverse001\n" . main::complete_body([1, $::P1], [2, $::P2], [3, $::P3]),
 "GET /files/default/reverse.txt"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"size":40,"etag":"${\ main::etag($::P1, $::P2, $::P3)}","sha256":"${\ Digest::SHA::sha256_hex($::Whole)}"/,
 qr/^\Q$::Whole\E$/]
--- error_log
completed, 3 parts, 40 bytes, in place, 0 bytes hashed at complete



=== TEST 5: a part uploaded again goes to a file of its own; the running SHA-256 starts over
--- init
UploadTest::make_session("default", "again.txt", "againagainagainagain0001", 0, $::Layout);
--- config eval: $::Config
--- wait: 0.3
--- request eval
["PUT /upload/again.txt?uploadId=againagainagainagain0001&partNumber=1\n$::P1",
 "PUT /upload/again.txt?uploadId=againagainagainagain0001&partNumber=2\n$::P2",
 "PUT /upload/again.txt?uploadId=againagainagainagain0001&partNumber=3\n$::P3",
 "PUT /upload/again.txt?uploadId=againagainagainagain0001&partNumber=2\n$::P2b",
 "GET /parts/default/againagainagainagain0001/",
 "GET /upload/again.txt?uploadId=againagainagainagain0001"]
--- error_code eval
[200, 200, 200, 200, 200, 200]
--- response_body_like eval
[qr/"part_number":1/, qr/"part_number":2/, qr/"part_number":3/,
 qr/"etag":"${\ Digest::MD5::md5_hex($::P2b)}"/,
 qr/${\ main::listing(["2\\.[0-9a-f]{16}", 16], ["data", 40])}|${\ main::listing(["data", 40], ["2\\.[0-9a-f]{16}", 16])}/,
 qr/\{"part_number":2,"size":16,"etag":"${\ Digest::MD5::md5_hex($::P2b)}"/]



=== TEST 6: its complete copies (part 2 is not in the data file) and has the new bytes
--- config eval: $::Config
--- request eval
["POST /upload/again.txt?uploadId=againagainagainagain0001\n" . main::complete_body([1, $::P1], [2, $::P2b], [3, $::P3]),
 "GET /files/default/again.txt",
 "GET /parts/default/againagainagainagain0001/"]
--- error_code eval
[200, 200, 404]
--- response_body_like eval
[qr/"size":40,"etag":"${\ main::etag($::P1, $::P2b, $::P3)}","sha256":"${\ Digest::SHA::sha256_hex($::P1 . $::P2b . $::P3)}"/,
 qr/^\Q$::P1$::P2b$::P3\E$/,
 qr/404 Not Found/]
--- error_log
completed, 3 parts, 40 bytes, copied, 0 bytes hashed at complete



=== TEST 7: parts of an upload that declared another SHA-256
--- init
UploadTest::make_session("default", "baddigest.txt", "baddigestbaddigestbaddi1", 0, { %$::Layout, sha256 => "0" x 64 });
--- config eval: $::Config
--- request eval
["PUT /upload/baddigest.txt?uploadId=baddigestbaddigestbaddi1&partNumber=1\n$::P1",
 "PUT /upload/baddigest.txt?uploadId=baddigestbaddigestbaddi1&partNumber=2\n$::P2",
 "PUT /upload/baddigest.txt?uploadId=baddigestbaddigestbaddi1&partNumber=3\n$::P3"]
--- error_code eval
[200, 200, 200]



=== TEST 8: its complete fails before the data file moves; the session stays whole
--- config eval: $::Config
--- request eval
["POST /upload/baddigest.txt?uploadId=baddigestbaddigestbaddi1\n" . main::complete_body([1, $::P1], [2, $::P2], [3, $::P3]),
 "GET /files/default/baddigest.txt",
 "GET /parts/default/baddigestbaddigestbaddi1/",
 "GET /upload/baddigest.txt?uploadId=baddigestbaddigestbaddi1",
 "DELETE /upload/baddigest.txt?uploadId=baddigestbaddigestbaddi1",
 "GET /parts/default/baddigestbaddigestbaddi1/"]
--- error_code eval
[400, 404, 200, 200, 204, 404]
--- response_body_like eval
[qr/"code":"BadDigest"/, qr/404 Not Found/,
 qr/${\ main::listing(["data", 40])}/,
 qr/"parts":\[\{"part_number":1,.*"part_number":3,/,
 qr/^$/, qr/404 Not Found/]



=== TEST 9: parts that do not fit the layout go to files of their own
--- init
UploadTest::make_session("default", "misfit.txt", "misfitmisfitmisfitmisfit", 0, $::Layout);
--- config eval: $::Config
--- request eval
["PUT /upload/misfit.txt?uploadId=misfitmisfitmisfitmisfit&partNumber=1\nshort",
 "PUT /upload/misfit.txt?uploadId=misfitmisfitmisfitmisfit&partNumber=3\n$::P1",
 "PUT /upload/misfit.txt?uploadId=misfitmisfitmisfitmisfit&partNumber=4\n$::P3",
 "GET /parts/default/misfitmisfitmisfitmisfit/"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/"size":5/, qr/"size":16/, qr/"size":8/,
 qr/^\[\s*(\{ "name":"[134]\.[0-9a-f]{16}", "type":"file", "mtime":"[^"]+", "size":(5|8|16) \},?\s*){3}\]\s*$/]



=== TEST 10: a part still being written in place: the complete copies
--- init
UploadTest::make_session("default", "busy.txt", "busybusybusybusybusybusy", 0, $::Layout);
--- config eval: $::Config
--- wait: 0.3
--- request eval
["PUT /upload/busy.txt?uploadId=busybusybusybusybusybusy&partNumber=1\n$::P1",
 "PUT /upload/busy.txt?uploadId=busybusybusybusybusybusy&partNumber=2\n$::P2",
 "PUT /upload/busy.txt?uploadId=busybusybusybusybusybusy&partNumber=3\n$::P3"]
--- error_code eval
[200, 200, 200]



=== TEST 11: (another request claims a place, as a writer in flight does)
--- init
UploadTest::redis("hset", "upload:{default}:mpu:busybusybusybusybusybusy:slots", "7", "0123456789abcdef");
--- config eval: $::Config
--- request eval
["POST /upload/busy.txt?uploadId=busybusybusybusybusybusy\n" . main::complete_body([1, $::P1], [2, $::P2], [3, $::P3]),
 "GET /files/default/busy.txt"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"sha256":"${\ Digest::SHA::sha256_hex($::Whole)}"/, qr/^\Q$::Whole\E$/]
--- error_log
completed, 3 parts, 40 bytes, copied, 0 bytes hashed at complete



=== TEST 12: without a thread pool nothing hashes in the background
--- init
UploadTest::make_session("default", "nopool.txt", "nopoolnopoolnopoolnopool", 0, $::Layout);
--- config eval: $::NoPool
--- wait: 0.3
--- request eval
["PUT /upload/nopool.txt?uploadId=nopoolnopoolnopoolnopool&partNumber=1\n$::P1",
 "PUT /upload/nopool.txt?uploadId=nopoolnopoolnopoolnopool&partNumber=2\n$::P2",
 "PUT /upload/nopool.txt?uploadId=nopoolnopoolnopoolnopool&partNumber=3\n$::P3"]
--- error_code eval
[200, 200, 200]



=== TEST 13: so its complete, in place, hashes all of it
--- config eval: $::NoPool
--- request eval
["POST /upload/nopool.txt?uploadId=nopoolnopoolnopoolnopool\n" . main::complete_body([1, $::P1], [2, $::P2], [3, $::P3]),
 "GET /files/default/nopool.txt"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"sha256":"${\ Digest::SHA::sha256_hex($::Whole)}"/, qr/^\Q$::Whole\E$/]
--- error_log
completed, 3 parts, 40 bytes, in place, 40 bytes hashed at complete
