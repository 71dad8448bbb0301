# Redis down or slow: uploads answer 503 ServiceUnavailable (JSON) before
# any body is stored, other locations keep being served, and the service
# comes back by itself when Redis does, without touching nginx.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use POSIX ();
use IO::Socket::INET;
use Digest::SHA ();
use Digest::MD5 ();

repeat_each(1);
no_shuffle();
log_level('info');
check_accum_error_log();

$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

# this file's own Redis, which the blocks stop and start through ctl-server
$ENV{TEST_NGINX_OWN_REDIS_PORT} ||= ($ENV{TEST_NGINX_REDIS_PORT} || 6379) + 100;
$ENV{TEST_NGINX_CTL_PORT} ||= 1999;

my $ctl_dir = "/tmp/upload-test-redis-$$";
my $ctl_pid = fork();

if ($ctl_pid == 0) {
    exec($^X, "$FindBin::Bin/util/ctl-server.pl", $ENV{TEST_NGINX_CTL_PORT},
         $ENV{TEST_NGINX_OWN_REDIS_PORT}, $ctl_dir) or POSIX::_exit(1);
}

END {
    # the children's exit status is not this file's
    local $?;

    if ($ctl_pid) {
        kill 'TERM', $ctl_pid;
        waitpid $ctl_pid, 0;
        system("rm", "-rf", $ctl_dir);
    }
}

sleep 1;

sub ctl {
    my $what = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_CTL_PORT})
        or die "ctl-server: $!";
    print $s "GET /redis/$what HTTP/1.0\r\n\r\n";
    local $/;
    my $resp = <$s>;
    die "ctl-server: $what failed" unless $resp =~ /^HTTP\/1.1 200/;
}

# nginx frozen while its Redis is killed, so that it sees Redis gone only
# in the middle of what it was doing
sub freeze_and_kill_redis {
    open my $p, '<', "$ENV{TEST_NGINX_SERVER_ROOT}/logs/nginx.pid" or die;
    chomp(my $nginx = <$p>);
    kill 'STOP', $nginx;
    ctl("kill");
    kill 'CONT', $nginx;
}

# A sliced upload of "key" (parts of 16 MiB of c1 and of c2: a merge long
# enough to be caught in the middle) whose complete sees its Redis killed
# once it has taken the session: it answers 503 and stores nothing.
sub complete_meets_dead_redis {
    my ($name, $key, $c1, $c2) = @_;
    my $html = $ENV{TEST_NGINX_HTML_DIR};
    my $url = "http://127.0.0.1:" . ($ENV{TEST_NGINX_SERVER_PORT} || 1984)
              . "/upload/$key";

    ctl("start");
    my ($id, $sha) = UploadTest::sliced_two_big_parts($html, $key, $c1, $c2);
    my $pid = UploadTest::complete_in_background($url, $id, $html,
                                                 "$html/answer1");
    Test::More::ok(UploadTest::wait_session_state(
                       $ENV{TEST_NGINX_OWN_REDIS_PORT}, "default", $id,
                       "completing"),
                   "$name: the complete took the session");
    freeze_and_kill_redis();
    waitpid $pid, 0;
    my $answer = do { local (@ARGV, $/) = "$html/answer1"; <> } // '';
    Test::More::like($answer, qr/"code":"ServiceUnavailable"/,
                     "$name: the complete answered 503");
    Test::More::ok(!-e "$html/store/default/$key", "$name: nothing at the key");

    return ($html, $url, $id, $sha);
}

# a complete of upload "id" retried after a failed one: it stores the
# object once; a third one gets the same answer; no temporary file is left
sub check_retried_complete {
    my ($name, $html, $url, $id, $sha) = @_;
    my ($key) = $url =~ m{/upload/(.*)};
    my $answer = qx{curl -s -X POST --data-binary '\@$html/complete.json' '$url?uploadId=$id'};
    Test::More::like($answer, qr/"key":"\Q$key\E".*"sha256":"$sha"/,
                     "$name: the retried complete stored the object");
    Test::More::is(eval { Digest::SHA->new(256)
                              ->addfile("$html/store/default/$key")
                              ->hexdigest } // "no file",
                   $sha, "$name: the object has the parts' bytes");
    $answer = qx{curl -s -X POST --data-binary '\@$html/complete.json' '$url?uploadId=$id'};
    Test::More::like($answer, qr/"key":"\Q$key\E".*"sha256":"$sha"/,
                     "$name: a third complete gets the same answer");
    my @left;
    for (1 .. 50) {
        @left = grep { !m{/p[12]$} } glob("$html/store/.upload-tmp/*");
        last unless @left;
        select undef, undef, undef, 0.1;
    }
    Test::More::is("@left", "", "$name: no temporary file left");
}

our $RedisDownConfig = <<"_EOC_";
    upload_redis 127.0.0.1:$ENV{TEST_NGINX_OWN_REDIS_PORT};
    upload_redis_timeout 1s;
    upload_store \$TEST_NGINX_HTML_DIR/store;
_EOC_

our $Locations = <<'_EOC_';
    location /upload/ { upload on; }
    location /static { return 200 "static ok\n"; }
    location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CTL_PORT/; }
    location /tmpfiles/ {
        alias $TEST_NGINX_HTML_DIR/store/.upload-tmp/;
        autoindex on;
        autoindex_format json;
    }
_EOC_

# a short lease: a complete cut off from Redis is taken over soon
our $LeaseConfig = $RedisDownConfig . "    upload_complete_lease 2s;\n";

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $RedisDownConfig)
        unless defined $block->http_config;
    $block->set_value("config", $Locations) unless defined $block->config;
});

run_tests();

__DATA__

=== TEST 1: Redis stops, uploads get 503 and nothing is stored, Redis returns, uploads work again
--- request eval
["PUT /upload/before\nbefore",
 "GET /ctl/redis/stop",
 "PUT /upload/during\nduring",
 "GET /upload/before?meta",
 "DELETE /upload/before",
 "GET /static",
 "GET /tmpfiles/",
 "GET /ctl/redis/start?settle=2.5",
 "PUT /upload/after\nafter",
 "GET /upload/after?meta"]
--- error_code eval
[201, 200, 503, 503, 503, 200, 200, 200, 201, 200]
--- response_body_like eval
[qr/"key":"before"/,
 qr/^ok$/,
 qr/^\{"error":\{"code":"ServiceUnavailable","message":"the metadata store \(Redis\) is not available, try again later"\}\}$/,
 qr/"code":"ServiceUnavailable"/,
 qr/"code":"ServiceUnavailable"/,
 qr/^static ok$/,
 qr/^\[\s*\]\s*$/,
 qr/^ok$/,
 qr/"key":"after"/,
 qr/"key":"after"/]
--- timeout: 15
--- no_error_log
[alert]
[crit]



=== TEST 2: the operator is told why in the error log
--- init
main::ctl("stop");
--- request
PUT /upload/x
x
--- error_code: 503
--- error_log eval
qr/\[error\] .*upload: redis 127\.0\.0\.1:\d+ connect failed: Connection refused/
--- no_error_log
[alert]
[crit]



=== TEST 3: with Redis back, a fresh nginx connects at once
--- init
main::ctl("start");
--- request
PUT /upload/back
back
--- error_code: 201
--- response_body_like: "key":"back"



=== TEST 4: Redis killed in the middle of a complete: 503 and nothing at the key; once Redis is back, the failed complete gives the session back, and the retried complete stores the object once
--- http_config eval: $::LeaseConfig
--- init
my ($html, $url, $id, $sha) = main::complete_meets_dead_redis("TEST 4", "mid.bin", "A", "B");
main::ctl("start");
# the give-back is sent again until Redis takes it
Test::More::ok(UploadTest::wait_session_state($ENV{TEST_NGINX_OWN_REDIS_PORT},
                   "default", $id, "open"),
               "TEST 4: the session is given back once Redis is back");
main::check_retried_complete("TEST 4", $html, $url, $id, $sha);
--- request
GET /upload/mid.bin?meta
--- error_code: 200
--- response_body_like: "size":33554432,
--- no_error_log
could not be reopened
takes over from an earlier one
--- timeout: 20



=== TEST 5: Redis runs a complete's begin but its answer never comes: 503, and the complete gives the session back at once instead of leaving it taken until its lease lapses
--- http_config eval
"upload_redis 127.0.0.1:$ENV{TEST_NGINX_MUTE_PORT};
upload_redis_timeout 1s;
upload_store \$TEST_NGINX_HTML_DIR/store;"
--- init
UploadTest::mute_proxy("'state', 'completing', 'holder'");
my $html = $ENV{TEST_NGINX_HTML_DIR};
my $url = "http://127.0.0.1:" . ($ENV{TEST_NGINX_SERVER_PORT} || 1984) . "/upload/mute.bin";
my $redis = "redis-cli -p $ENV{TEST_NGINX_REDIS_PORT}";
my ($id, $sha) = UploadTest::sliced_two_big_parts($html, "mute.bin", "C", "D");
my $answer = qx{curl -s -X POST --data-binary '\@$html/complete.json' '$url?uploadId=$id'};
Test::More::like($answer, qr/"code":"ServiceUnavailable"/, "TEST 5: the complete answered 503");
# the begin ran: the session was taken, then given back
Test::More::ok(UploadTest::wait_session_state($ENV{TEST_NGINX_REDIS_PORT},
                   "default", $id, "open"),
               "TEST 5: the session is open again");
Test::More::is(scalar qx{$redis hexists upload:{default}:mpu:$id holder}
               . qx{$redis exists upload:{default}:mpu:$id:lease},
               "0\n0\n", "TEST 5: no holder, no lease");
$answer = qx{curl -s -X POST --data-binary '\@$html/complete.json' '$url?uploadId=$id'};
Test::More::like($answer, qr/"key":"mute.bin".*"sha256":"$sha"/, "TEST 5: the retried complete stored the object");
--- request
GET /upload/mute.bin?meta
--- error_code: 200
--- response_body_like: "size":33554432,
--- error_log
command timed out
--- no_error_log
takes over from an earlier one
could not be reopened
[alert]
--- timeout: 20



=== TEST 6: Redis away for longer than the give-back is sent again: that is logged, and the retried complete takes the session over, its lease lapsed
--- http_config eval: $::LeaseConfig
--- init
my ($html, $url, $id, $sha) = main::complete_meets_dead_redis("TEST 6", "long.bin", "E", "F");
# about 16 s of attempts (ngx_http_upload_redis_detached.c)
my $log = "$ENV{TEST_NGINX_SERVER_ROOT}/logs/error.log";
my $given_up;
for (1 .. 300) {
    $given_up = grep { /could not be reopened/ } do { open my $l, '<', $log; <$l> };
    last if $given_up;
    select undef, undef, undef, 0.1;
}
Test::More::ok($given_up, "TEST 6: the give-back is given up on, and logged");
# past nginx's reconnect backoff (2 s at most)
main::ctl("start?settle=2.5");
Test::More::is(scalar qx{redis-cli -p $ENV{TEST_NGINX_OWN_REDIS_PORT} hget upload:{default}:mpu:$id state},
               "completing\n", "TEST 6: the session is still taken after the restart");
main::check_retried_complete("TEST 6", $html, $url, $id, $sha);
--- request
GET /upload/long.bin?meta
--- error_code: 200
--- response_body_like: "size":33554432,
--- error_log
takes over from an earlier one whose lease lapsed
--- timeout: 40



=== TEST 7: Redis runs a part's check but its answer never comes: 503, and the part gives back the place it may have claimed, so that it can be sent again in place
--- http_config eval
"upload_redis 127.0.0.1:$ENV{TEST_NGINX_MUTE_PORT};
upload_redis_timeout 1s;
upload_store \$TEST_NGINX_HTML_DIR/store;"
--- config
    location /upload/ { upload on; upload_min_part_size 1; }
--- init
UploadTest::mute_proxy("'HSETNX', KEYS[5]");
my $id = "mutedcheckmutedcheck0001";
my $url = "http://127.0.0.1:" . ($ENV{TEST_NGINX_SERVER_PORT} || 1984) . "/upload/part.txt?uploadId=$id&partNumber=1";
my $dir = "$ENV{TEST_NGINX_HTML_DIR}/store/.upload-parts/default/$id";
UploadTest::make_session("default", "part.txt", $id, 0, { size => 40, part_size => 16 });
my $answer = qx{curl -s -X PUT --data-binary 0123456789abcdef '$url'};
Test::More::like($answer, qr/"code":"ServiceUnavailable"/, "TEST 7: the part answered 503");
my $claimed;
for (1 .. 50) {
    $claimed = qx{redis-cli -p $ENV{TEST_NGINX_REDIS_PORT} hexists upload:{default}:mpu:$id:slots 1};
    last if $claimed eq "0\n";
    select undef, undef, undef, 0.1;
}
Test::More::is($claimed, "0\n", "TEST 7: the place is not claimed any more");
$answer = qx{curl -s -X PUT --data-binary 0123456789abcdef '$url'};
Test::More::like($answer, qr/"part_number":1,"size":16,"etag":"${\ Digest::MD5::md5_hex("0123456789abcdef")}"/, "TEST 7: the part sent again is stored");
Test::More::is(join(" ", map { s{.*/}{}r } glob("$dir/*")), "data", "TEST 7: in place: the session's data file, no file of its own");
--- request
GET /upload/part.txt?uploadId=mutedcheckmutedcheck0001
--- error_code: 200
--- response_body_like: "part_number":1,"size":16,
--- error_log
command timed out
--- no_error_log
could not be given back
[alert]
