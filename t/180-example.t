# The example app, examples/app_server.py, through the whole cross-app
# flow: it registers itself, mints a link and prints its token; an upload
# with the token brings the app a signed post callback, which it checks,
# answers, then fetches the file from /files/ and writes an upper-case copy
# and a gzip copy of it.  Forged and stale callbacks are refused (401).

BEGIN {
    # before Test::Nginx, which declares its own plan
    if (system("python3 -c 1 >/dev/null 2>&1") != 0) {
        print "1..0 # SKIP python3 is needed for examples/app_server.py"
              . " (make deps installs it)\n";
        exit 0;
    }
}

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use Digest::SHA qw(hmac_sha256_hex);
use Encode qw(decode_utf8 encode_utf8);
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use POSIX qw(WNOHANG);

upload_suite();
check_accum_error_log();

our $Secret = "example-callback-secret";
our $Text = "Hello from the example test: caf\xc3\xa9, stra\xc3\x9fe.\nline two\n";
our $AppPid;
our $AppOut;          # the pipe from its stdout, kept open (closing it waits)

# the app server is killed whatever happens to the blocks
END {
    local $?;                       # waitpid must not change the exit status
    if ($AppPid) {
        kill 'TERM', $AppPid;
        waitpid $AppPid, 0;
    }
}

# starts the app server; returns its token (read from its stdout)
sub start_app {
    my ($out, $log) = @_;
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
    my @cmd = ("python3", "$FindBin::Bin/../examples/app_server.py",
               "--nginx", "http://127.0.0.1:$port",
               "--listen", "127.0.0.1:" . ($port + 15),
               "--secret", $Secret, "--out", $out, "--once");

    my $pid = open(my $fh, "-|") // die "fork: $!";

    if ($pid == 0) {
        open STDERR, '>', $log or POSIX::_exit(126);
        exec @cmd or POSIX::_exit(127);
    }

    $AppPid = $pid;
    $AppOut = $fh;

    my ($link, $token);
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 10;
        while (my $line = <$fh>) {
            $link = $1 if $line =~ /^LINK (\S+)$/;
            if ($line =~ /^TOKEN (\S+)$/) {
                $token = $1;
                last;
            }
        }
        alarm 0;
    };
    alarm 0;

    Test::More::like($link // "", qr{^http://127\.0\.0\.1:$port/link/\S+$},
                     "app server: LINK line");
    Test::More::ok(defined $token, "app server: TOKEN line")
        or Test::More::diag("app server log:\n" . slurp($log));

    return $token;
}

# waits up to $secs for the app server to exit; its exit status or undef
sub wait_app {
    my $secs = shift;

    for (1 .. $secs * 10) {
        if (waitpid($AppPid, WNOHANG) == $AppPid) {
            undef $AppPid;
            return $? >> 8;
        }
        select undef, undef, undef, 0.1;
    }

    kill 'KILL', $AppPid;
    waitpid $AppPid, 0;
    undef $AppPid;
    return undef;
}

sub slurp {
    my $file = shift;
    open my $in, '<:raw', $file or return "";
    local $/;
    return scalar <$in>;
}

# curl, without a shell; its output
sub curl {
    open my $c, "-|", "curl", "-sS", "--max-time", "15", @_
        or die "curl: $!";
    local $/;
    my $got = <$c> // "";
    close $c;
    return $got;
}

# a callback as nginx sends it, signed with $secret at time $ts
sub forged_callback {
    my ($port, $secret, $ts) = @_;
    my $body = '{"event":"post","appid":"converter","key":"inbox/x.txt","size":1,'
               . '"etag":"x","sha256":"' . ("0" x 64) . '","url":"/files/converter/inbox/x.txt",'
               . '"upload_id":null,"dedup":false,"metadata":null}' . "\n";
    my $sig = hmac_sha256_hex("$ts.$body", $secret);

    return curl("-o", "/dev/null", "-w", "%{http_code}",
                "-H", "Content-Type: application/json",
                "-H", "X-Upload-App: converter",
                "-H", "X-Upload-Timestamp: $ts",
                "-H", "X-Upload-Signature: sha256=$sig",
                "--data-binary", $body, "http://127.0.0.1:$port/callback");
}

our $HttpConfig = $UploadTest::PersistHttpConfig . <<'_EOC_';
    upload_link_secret example-link-secret-0123456789;
_EOC_

our $Config = <<'_EOC_';
    location /apps/ {
        upload_register on;
    }

    location /link/ {
        upload_link on;
    }

    location /upload/ {
        upload on;
        upload_callback /_upload_callback;
    }

    location = /_upload_callback {
        internal;
        proxy_pass $upload_callback_url;
        proxy_method POST;
        proxy_set_body $upload_callback_body;
        proxy_connect_timeout 3s;
        proxy_read_timeout 10s;
    }

    location /files/ {
        alias $TEST_NGINX_SERVER_ROOT-persist/store/;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $::HttpConfig);
    $block->set_value("config", $::Config) unless defined $block->config;
});

run_tests();

__DATA__

=== TEST 1: examples/app_server.py: register, link, signed callback, fetch, convert
--- init
UploadTest::clear_persist();
my $root = "$ENV{TEST_NGINX_SERVER_ROOT}-persist";
my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $app_port = $port + 15;
my $out = "$root/converted";
my $log = "$root/app.log";
my $token = main::start_app($out, $log);
return unless defined $token;       # failed already: the app did not start

# forged or stale callbacks are refused
Test::More::is(main::forged_callback($app_port, "not-the-secret", time), "401",
               "app server: a wrong signature is refused");
Test::More::is(main::forged_callback($app_port, $::Secret, time - 400), "401",
               "app server: a stale timestamp is refused");

# the upload, with the link's token
my $file = "$root/hello.txt";
open my $f, '>:raw', $file or die "$file: $!";
print $f $::Text;
close $f;
my $answer = main::curl("-H", "Authorization: Bearer $token", "-T", $file,
                        "http://127.0.0.1:$port/upload/inbox/hello.txt");
Test::More::like($answer, qr/"key":"inbox\/hello.txt","app":"converter"/,
                 "upload: stored for the link's app");
Test::More::like($answer, qr/"callback":\{"status":200,"body":\{"accepted":true,"key":"inbox\/hello.txt","will_write":\["inbox_hello.txt.upper.txt","inbox_hello.txt.gz"\]/,
                 "upload: the app accepted the callback");

# the app converts in the background, then exits (--once)
my $status = main::wait_app(10);
Test::More::is($status, 0, "app server: exited after converting")
    or Test::More::diag("app server log:\n" . main::slurp($log));

Test::More::is(main::slurp("$out/inbox_hello.txt.upper.txt"),
               Encode::encode_utf8(uc Encode::decode_utf8($::Text)),
               "the upper-case copy");
my $gz = main::slurp("$out/inbox_hello.txt.gz");
my $plain;
IO::Uncompress::Gunzip::gunzip(\$gz => \$plain)
    or Test::More::diag("gunzip: $IO::Uncompress::Gunzip::GunzipError");
Test::More::is($plain, $::Text, "the gzip copy");
my @left = glob("$out/*.tmp");
Test::More::is("@left", "", "no temporary file left");
--- request
GET /files/converter/inbox/hello.txt
--- response_body eval
$::Text
