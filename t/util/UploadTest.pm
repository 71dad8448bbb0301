# Shared set-up of the module's suites: the http{} configuration every
# block gets unless it has its own, and the expected JSON of an object.
#
# It lives outside t/lib on purpose: t/lib holds the bundled Test::Nginx
# subset, which a user with the real Test::Nginx leaves off @INC.

package UploadTest;

use strict;
use warnings;

use Digest::SHA qw(sha256_hex sha1_hex);
use Digest::MD5 qw(md5_hex);
use Exporter 'import';
use FindBin;
use POSIX ();

our @EXPORT = qw(json_object json_error upload_setup upload_suite clear_persist redis
                 make_session sliced_ready sliced_two_big_parts
                 complete_in_background wait_session_state worker_pids_of
                 $HttpConfig $Files $PersistHttpConfig $PersistFiles);

$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;

# Each file starts from an empty Redis database: records of an earlier run
# must not answer for this one.  Point TEST_NGINX_REDIS_PORT at a Redis
# kept for tests (make test starts its own on 6381).
system("redis-cli -p $ENV{TEST_NGINX_REDIS_PORT} flushdb >/dev/null 2>&1") == 0
    or warn "cannot empty the Redis on port $ENV{TEST_NGINX_REDIS_PORT}\n";

our $HttpConfig = <<"_EOC_";
    upload_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
    upload_store \$TEST_NGINX_HTML_DIR/store;
_EOC_

# serves the store, as an operator's download location does
our $Files = <<'_EOC_';
    location /files/ {
        alias $TEST_NGINX_HTML_DIR/store/;
    }

    location /tmpfiles/ {
        alias $TEST_NGINX_HTML_DIR/store/.upload-tmp/;
        autoindex on;
        autoindex_format json;
    }
_EOC_

# A store that outlives a block (Test::Nginx empties the server root
# between blocks): for checks that what a block did left nothing behind.

our $PersistHttpConfig = <<"_EOC_";
    upload_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
    upload_store \$TEST_NGINX_SERVER_ROOT-persist/store;
_EOC_

our $PersistFiles = <<'_EOC_';
    location /files/ {
        alias $TEST_NGINX_SERVER_ROOT-persist/store/;
    }

    location /tmpfiles/ {
        alias $TEST_NGINX_SERVER_ROOT-persist/store/.upload-tmp/;
        autoindex on;
        autoindex_format json;
    }
_EOC_

sub clear_persist {
    require File::Path;
    File::Path::remove_tree("$ENV{TEST_NGINX_SERVER_ROOT}-persist");
    mkdir "$ENV{TEST_NGINX_SERVER_ROOT}-persist";
}

# $digests: true for the MD5, or { md5 => 1, sha1 => 1 }
sub json_object {
    my ($key, $app, $body, $digests, $url_key) = @_;
    my %d = ref $digests ? %$digests : (md5 => $digests);
    my $sha = sha256_hex($body);
    my $etag = $d{md5} ? md5_hex($body) : $sha;
    my $extra = ($d{md5} ? ',"md5":"' . md5_hex($body) . '"' : '')
                . ($d{sha1} ? ',"sha1":"' . sha1_hex($body) . '"' : '');

    $url_key //= $key;

    return '{"key":"' . $key . '","app":"' . $app . '","size":'
           . length($body) . ',"etag":"' . $etag . '","sha256":"' . $sha
           . '"' . $extra . ',"url":"/files/' . $app . '/' . $url_key
           . "\"}\n";
}

# A sliced-upload session made directly in Redis, as the module lays it
# out (docs/protocol.md), with "nparts" fake part records: for blocks that
# need a known upload id.  "declared": what the initiate declared, as
# { size => N, part_size => N, sha256 => "hex" }.
sub make_session {
    my ($app, $key, $id, $nparts, $declared) = @_;
    my $s = "upload:{$app}:mpu:$id";
    my $now = time;
    my %d = (size => -1, part_size => -1, sha256 => "", %{ $declared || {} });

    redis("del", $s, "$s:parts", "$s:slots", "$s:hashing");
    redis("hset", $s, "key", $key, "initiated", $now,
          "expires", $now + 86400, "size", $d{size},
          "part_size", $d{part_size}, "sha256", $d{sha256}, "name", "",
          "content_type", "", "metadata", "", "state", "open");
    redis("expire", $s, 86400);
    redis("zadd", "upload:{$app}:mpus", $now, $id);

    for my $n (1 .. ($nparts // 0)) {
        redis("hset", "$s:parts", $n, (100 + $n) . " " . md5_hex($n) . " "
              . sha256_hex($n) . " $n.part");
    }
}

# one redis-cli command, its output dropped (it is not TAP)
sub redis {
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        exec "redis-cli", "-p", $ENV{TEST_NGINX_REDIS_PORT}, @_;
        exit 127;
    }

    waitpid $pid, 0;
    die "redis-cli @_: exit $?" if $?;
}

# A sliced upload through nginx, ready to complete: initiate "key" (under
# /upload/), upload each file of @files as a part.  Returns the upload id
# and the complete's body.  curl's output goes through qx, never to the
# TAP stream.
sub sliced_ready {
    my ($key, @files) = @_;
    my $url = "http://127.0.0.1:" . ($ENV{TEST_NGINX_SERVER_PORT} || 1984)
              . "/upload/$key";
    my ($id) = qx{curl -s -X POST '$url?uploads'} =~ /"upload_id":"([^"]+)"/
        or die "sliced_ready: no upload id for $key";
    my @parts;

    for my $n (1 .. @files) {
        my ($etag) = qx{curl -s -T '$files[$n - 1]' '$url?uploadId=$id&partNumber=$n'}
                     =~ /"etag":"([0-9a-f]+)"/
            or die "sliced_ready: part $n of $key not stored";
        push @parts, qq({"part_number":$n,"etag":"$etag"});
    }

    return ($id, '{"parts":[' . join(",", @parts) . ']}');
}

# A sliced upload of two 16 MiB parts (of bytes $c1 and $c2), ready to
# complete: the parts' files are written in $dir, and so is the complete's
# body (complete.json).  Returns the upload id and the object's SHA-256.
sub sliced_two_big_parts {
    my ($dir, $key, $c1, $c2) = @_;
    my $sha = Digest::SHA->new(256);

    for my $n (1, 2) {
        open my $f, '>', "$dir/p$n" or die "$dir/p$n: $!";
        print $f ($n == 1 ? $c1 : $c2) x (16 * 1024 * 1024);
        close $f;
        $sha->addfile("$dir/p$n");
    }

    my ($id, $body) = sliced_ready($key, "$dir/p1", "$dir/p2");
    open my $f, '>', "$dir/complete.json" or die "$dir/complete.json: $!";
    print $f $body;
    close $f;

    return ($id, $sha->hexdigest);
}

# A proxy to the suite's Redis on port TEST_NGINX_MUTE_PORT (default: the
# Redis port + 200) that loses the answer to the first command containing
# each of @markers (t/util/mute-proxy.pl); one at a time, stopped at exit.
$ENV{TEST_NGINX_MUTE_PORT} ||= $ENV{TEST_NGINX_REDIS_PORT} + 200;

my $mute_pid;

my $mute_owner;

sub stop_mute_proxy {
    # not from a child of the test (a fork that did not exec)
    return unless $mute_pid && $mute_owner == $$;
    kill 'TERM', $mute_pid;
    waitpid $mute_pid, 0;
    undef $mute_pid;
}

sub mute_proxy {
    my @markers = @_;
    require IO::Socket::INET;

    stop_mute_proxy();
    $mute_owner = $$;
    $mute_pid = fork // die "fork: $!";

    if ($mute_pid == 0) {
        exec($^X, "$FindBin::Bin/util/mute-proxy.pl",
             $ENV{TEST_NGINX_MUTE_PORT}, $ENV{TEST_NGINX_REDIS_PORT},
             @markers)
            or POSIX::_exit(1);
    }

    for (1 .. 100) {
        return if IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                        PeerPort => $ENV{TEST_NGINX_MUTE_PORT});
        select undef, undef, undef, 0.05;
    }

    die "mute-proxy: not listening on $ENV{TEST_NGINX_MUTE_PORT}";
}

END {
    # the proxy's exit status is not the suite's
    local $?;
    stop_mute_proxy();
}

# POSTs $dir/complete.json (see sliced_two_big_parts) to "url?uploadId=id"
# in a child process whose answer goes to file "out"; returns its pid
sub complete_in_background {
    my ($url, $id, $dir, $out) = @_;
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        exec "curl", "-s", "-o", $out, "-X", "POST", "--data-binary",
             "\@$dir/complete.json", "$url?uploadId=$id";
        exit 127;
    }

    return $pid;
}

# the worker processes of the nginx whose master's pid is in "pidfile";
# waits (up to 10 s) for the first one: a master has written its pid file
# before it starts them
sub worker_pids_of {
    my $pidfile = shift;
    open my $f, '<', $pidfile or die "$pidfile: $!";
    chomp(my $master = <$f>);
    my @w;

    for (1 .. 100) {
        for my $p (glob "/proc/[0-9]*") {
            open my $s, '<', "$p/stat" or next;
            my @f = split ' ', scalar <$s>;
            push @w, $f[0] if $f[3] == $master;
        }

        last if @w;
        select undef, undef, undef, 0.1;
    }

    return @w;
}

# waits (up to 10 s) until field "state" of the session hash of upload "id"
# of "app" is "want", over one Redis connection; true if it came
sub wait_session_state {
    my ($port, $app, $id, $want) = @_;
    require IO::Socket::INET;
    require Time::HiRes;
    my $key = "upload:{$app}:mpu:$id";
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port)
        or die "wait_session_state: redis on $port: $!";
    my $cmd = "*3\r\n\$4\r\nHGET\r\n\$" . length($key) . "\r\n$key\r\n"
              . "\$5\r\nstate\r\n";

    for (1 .. 10000) {
        print $s $cmd;
        my $line = <$s> // return 0;
        my $value = '';
        if ($line =~ /^\$(\d+)/) {
            read $s, $value, $1 + 2;
            $value = substr $value, 0, $1;
        }
        return 1 if $value eq $want;
        Time::HiRes::sleep(0.001);
    }

    return 0;
}

sub json_error {
    my ($code, $message) = @_;

    return '{"error":{"code":"' . $code . '","message":"' . $message
           . "\"}}\n";
}

# what every suite of the module sets up before run_tests()
sub upload_suite {
    Test::Nginx::Socket::repeat_each(1);
    Test::Nginx::Socket::no_shuffle();
    Test::Nginx::Socket::log_level('info');

    $ENV{TEST_NGINX_HTML_DIR} ||= Test::Nginx::Socket::html_dir();

    Test::Nginx::Socket::add_block_preprocessor(\&upload_setup);
}

# every block: the shared http{} part, and no error in the log unless the
# block says what to expect there
sub upload_setup {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", $HttpConfig);
    }

    if (!defined $block->no_error_log && !defined $block->error_log) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n[emerg]\n");
    }
}

1;
