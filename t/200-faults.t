# Faults: a worker killed (kill -9) in the middle of an upload, of a part
# or of a complete, a full disk.  Nothing partial is ever visible at a key, what a dead worker left
# is swept later, and the next requests are served.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use IO::Socket::INET;
use Time::HiRes qw(sleep);
use Digest::SHA ();

upload_suite();
master_on();
check_accum_error_log();

our $Root = "$ENV{TEST_NGINX_SERVER_ROOT}-persist";

# the worker processes of the running nginx
sub worker_pids {
    UploadTest::worker_pids_of("$ENV{TEST_NGINX_SERVER_ROOT}/logs/nginx.pid");
}

# starts an upload of "size" bytes, sends "sent" of them, keeps the
# connection open; returns the socket
sub partial_upload {
    my ($path, $size, $sent) = @_;
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port) or die "$!";
    print $s "PUT $path HTTP/1.1\r\nHost: localhost\r\nContent-Length: $size\r\n\r\n";
    print $s "z" x $sent;
    return $s;
}

sub temps { my @t = glob("$::Root/store/.upload-tmp/*"); scalar @t }

our $Config = <<'_EOC_';
    location /upload/ {
        upload on;
        upload_min_part_size 1;
        upload_sweep_interval 2s;
        upload_complete_lease 2s;
    }
    location /files/ { alias $TEST_NGINX_SERVER_ROOT-persist/store/; }
    location /static { return 200 "static ok\n"; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $UploadTest::PersistHttpConfig)
        unless defined $block->http_config;
    $block->set_value("config", $::Config) unless defined $block->config;
});

run_tests();

__DATA__

=== TEST 1: kill -9 of the worker in the middle of a whole upload: no object, the temp file is swept, service goes on
--- timeout: 30
--- init
UploadTest::clear_persist();
my $s = main::partial_upload("/upload/killed.bin", 1000000, 300000);
for (1 .. 80) { last if main::temps() == 1; sleep 0.25 }
Test::More::is(main::temps(), 1, "TEST 1: the upload's temp file is there");
# once a worker serves the upload: under valgrind the workers of a fresh
# nginx may not be there yet when its pid file is
my @w = main::worker_pids();
kill 'KILL', @w;
close $s;
sleep 0.5;
Test::More::ok(!-e "$::Root/store/default/killed.bin", "TEST 1: nothing at the key");
for (1 .. 120) { last if main::temps() == 0; sleep 0.25 }
Test::More::is(main::temps(), 0, "TEST 1: a sweep removed the dead worker's temp file");
--- request eval
["GET /upload/killed.bin?meta", "PUT /upload/after.txt\nafter", "GET /files/default/after.txt"]
--- error_code eval
[404, 201, 200]
--- response_body_like eval
[qr/"code":"NoSuchKey"/, qr/"key":"after.txt"/, qr/^after$/]
--- error_log
exited on signal 9
removed 1 stale temporary file(s)
--- no_error_log
[emerg]
[crit]



=== TEST 2: kill -9 in the middle of a part: the session stays resumable, the part is uploaded again
--- timeout: 30
--- init
UploadTest::make_session("default", "parts.bin", "killkillkillkillkillkill");
my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
system("curl", "-s", "-o", "/dev/null", "-T", "/etc/hostname",
       "http://127.0.0.1:$port/upload/parts.bin?uploadId=killkillkillkillkillkill&partNumber=1");
my @w = main::worker_pids();
my $s = main::partial_upload("/upload/parts.bin?uploadId=killkillkillkillkillkill&partNumber=2", 1000000, 200000);
sleep 0.5;
kill 'KILL', @w;
close $s;
sleep 0.5;
--- request eval
["GET /upload/parts.bin?uploadId=killkillkillkillkillkill",
 "PUT /upload/parts.bin?uploadId=killkillkillkillkillkill&partNumber=2\nsecond part",
 "GET /upload/parts.bin?uploadId=killkillkillkillkillkill"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/"parts":\[\{"part_number":1,[^\]]*\]/,
 qr/"part_number":2,"size":11,/,
 qr/"parts":\[\{"part_number":1,.*\{"part_number":2,"size":11,/]
--- error_log
exited on signal 9
--- no_error_log
[emerg]
[crit]



=== TEST 3: a full disk: 507 InsufficientStorage, the temp file removed, the store consistent
--- init
my $dir = "$ENV{TEST_NGINX_SERVER_ROOT}-full";
system("umount $dir 2>/dev/null; mkdir -p $dir");
if (system("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", $dir) != 0) {
    Test::More::diag("TEST 3 needs root to mount a small tmpfs");
}
END { system("umount $ENV{TEST_NGINX_SERVER_ROOT}-full 2>/dev/null") }
--- http_config eval
"upload_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};\nupload_store \$TEST_NGINX_SERVER_ROOT-full/store;\n"
--- config
    location /upload/ { upload on; }
    location /files/ { alias $TEST_NGINX_SERVER_ROOT-full/store/; }
    location /tmpfiles/ {
        alias $TEST_NGINX_SERVER_ROOT-full/store/.upload-tmp/;
        autoindex on;
        autoindex_format json;
    }
--- request eval
["PUT /upload/small.txt\nfits",
 "PUT /upload/big.bin\n" . ("b" x 2000000),
 "GET /tmpfiles/",
 "GET /upload/big.bin?meta",
 "GET /files/default/small.txt",
 "PUT /upload/small2.txt\nstill fits"]
--- error_code eval
[201, 507, 200, 404, 200, 201]
--- response_body_like eval
[qr/"key":"small.txt"/, qr/"code":"InsufficientStorage"/, qr/^\[\s*\]\s*$/,
 qr/"code":"NoSuchKey"/, qr/^fits$/, qr/"key":"small2.txt"/]
--- no_error_log
[emerg]
[alert]
--- timeout: 10



=== TEST 4: kill -9 in the middle of a complete: nothing at the key; the retried complete takes the session over once its lease lapses, its temp file is swept
--- timeout: 40
--- init
UploadTest::clear_persist();
my $url = "http://127.0.0.1:" . ($ENV{TEST_NGINX_SERVER_PORT} || 1984) . "/upload/merged.bin";
my ($id, $sha) = UploadTest::sliced_two_big_parts($::Root, "merged.bin", "a", "b");
my @w = main::worker_pids();
my $pid = UploadTest::complete_in_background($url, $id, $::Root, "/dev/null");
Test::More::ok(UploadTest::wait_session_state($ENV{TEST_NGINX_REDIS_PORT},
                   "default", $id, "completing"),
               "TEST 4: the complete took the session");
kill 'KILL', @w;
waitpid $pid, 0;
Test::More::ok(!-e "$::Root/store/default/merged.bin", "TEST 4: nothing at the key");
my $answer = qx{curl -s -X POST --data-binary '\@$::Root/complete.json' '$url?uploadId=$id'};
Test::More::like($answer, qr/"key":"merged.bin".*"sha256":"$sha"/, "TEST 4: the retried complete stored the object");
Test::More::is(Digest::SHA->new(256)->addfile("$::Root/store/default/merged.bin")->hexdigest,
               $sha, "TEST 4: the object has the parts' bytes");
for (1 .. 120) { last if main::temps() == 0; sleep 0.25 }
Test::More::is(main::temps(), 0, "TEST 4: no temporary file left");
--- request
GET /upload/merged.bin?meta
--- error_code: 200
--- response_body_like: "size":33554432,
--- error_log
exited on signal 9
takes over from an earlier one whose lease lapsed
--- no_error_log
[emerg]
[crit]



=== TEST 5: a complete frozen longer than its lease, with nobody taking over, still stores its object
--- timeout: 30
--- config
    location /upload/ {
        upload on;
        upload_min_part_size 1;
        upload_complete_lease 2s;
        # the sweep takes a temporary file untouched for an interval for a
        # dead worker's: not while this one is frozen
        upload_sweep_interval 1m;
    }
--- init
UploadTest::clear_persist();
my $url = "http://127.0.0.1:" . ($ENV{TEST_NGINX_SERVER_PORT} || 1984) . "/upload/slow.bin";
my ($id, $sha) = UploadTest::sliced_two_big_parts($::Root, "slow.bin", "s", "t");
my @w = main::worker_pids();
my $pid = UploadTest::complete_in_background($url, $id, $::Root, "$::Root/answer");
Test::More::ok(UploadTest::wait_session_state($ENV{TEST_NGINX_REDIS_PORT},
                   "default", $id, "completing"),
               "TEST 5: the complete took the session");
# as a merge that blocks its worker for 3 s: the 2 s lease lapses
kill 'STOP', @w;
sleep 3;
kill 'CONT', @w;
waitpid $pid, 0;
my $answer = do { local (@ARGV, $/) = "$::Root/answer"; <> } // '';
Test::More::like($answer, qr/"key":"slow.bin".*"sha256":"$sha"/, "TEST 5: it stored the object");
--- request
GET /upload/slow.bin?meta
--- error_code: 200
--- response_body_like: "size":33554432,
--- no_error_log
[emerg]
[alert]
[crit]

