#!/usr/bin/perl
# A small app server for the suites: it plays the app's callback endpoints
# and records what it receives.
#
#   callback-server.pl <listen-port> <record-dir>
#
# Any method; the path says how to answer:
#
#   /ok            200 {"ok":true,"seen":<n>}    (n: requests so far)
#   /text          200 "thanks" (text/plain)
#   /refuse        403 {"reason":"not this file"}
#   /fail          500 "broken"
#   /big           200, 20000 bytes of text (more than a subrequest buffer)
#   /slow?ms=N     waits N ms, then as /ok
#   /die?ms=N      waits N ms (default 200) with the request read and
#                  recorded, then the process serving it is killed
#                  (SIGKILL): the connection ends with no answer
#   /allowed/...   as the rest of the path ("/allowed/ok" is /ok)
#
#   GET /last      the last callback received, as JSON:
#                  {"method","path","headers":{lowercase: value},"body"}
#   GET /count     how many callbacks were received
#
# Each connection is served by a child, so a slow answer delays no other.

use strict;
use warnings;

use IO::Socket::INET;
use Time::HiRes qw(sleep);
use POSIX ();

my ($port, $dir) = @ARGV;

mkdir $dir;

my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                   LocalPort => $port, Listen => 64,
                                   ReuseAddr => 1)
    or die "callback-server: cannot listen on $port: $!\n";

$SIG{CHLD} = 'IGNORE';
$SIG{TERM} = sub { exit 0 };

sub json_str {
    my $s = shift;
    $s =~ s/(["\\])/\\$1/g;
    $s =~ s/\n/\\n/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord $1)/ge;
    return "\"$s\"";
}

sub answer {
    my ($c, $status, $type, $body) = @_;
    my %text = (200 => 'OK', 403 => 'Forbidden', 404 => 'Not Found',
                500 => 'Internal Server Error');
    print $c "HTTP/1.1 $status " . ($text{$status} // 'Status') . "\r\n"
             . "Content-Type: $type\r\n"
             . "Content-Length: " . length($body) . "\r\n"
             . "Connection: close\r\n\r\n$body";
}

sub serve {
    my $c = shift;
    my $line = <$c> // return;
    my ($method, $target) = $line =~ m{^(\w+) (\S+)} or return;
    my %h;

    while (my $l = <$c>) {
        last if $l =~ /^\r?\n$/;
        $h{lc $1} = $2 if $l =~ /^([^:]+):\s*(.*?)\r?\n$/;
    }

    my $body = '';
    read($c, $body, $h{'content-length'}) if $h{'content-length'};

    my ($path, $query) = $target =~ m{^([^?]*)\??(.*)$};

    if ($method eq 'GET' && $path eq '/last') {
        my $last = '';
        if (open my $f, '<', "$dir/last.json") {
            local $/;
            $last = <$f>;
        }
        return answer($c, $last ? 200 : 404, 'application/json', $last);
    }

    if ($method eq 'GET' && $path eq '/count') {
        my $n = () = glob("$dir/req-*");
        return answer($c, 200, 'text/plain', "$n\n");
    }

    # record it: last.json is replaced whole (written aside, renamed)
    my $n = () = glob("$dir/req-*");
    my $rec = '{"method":' . json_str($method) . ',"path":' . json_str($path)
              . ',"headers":{'
              . join(',', map { json_str($_) . ':' . json_str($h{$_}) }
                          sort keys %h)
              . '},"body":' . json_str($body) . "}\n";
    my $tmp = "$dir/.last.$$";
    open my $f, '>', $tmp or die;
    print $f $rec;
    close $f;
    rename $tmp, "$dir/last.json";
    open my $g, '>', "$dir/req-" . ($n + 1) . ".$$" or die;
    print $g $rec;
    close $g;

    $path =~ s{^/allowed}{};

    if ($path eq '/die') {
        my ($ms) = $query =~ /ms=(\d+)/;
        sleep(($ms // 200) / 1000);
        kill 'KILL', $$;
    }

    if ($path eq '/slow') {
        my ($ms) = $query =~ /ms=(\d+)/;
        sleep(($ms // 1000) / 1000);
        $path = '/ok';
    }

    if ($path eq '/ok') {
        return answer($c, 200, 'application/json',
                      '{"ok":true,"seen":' . ($n + 1) . '}');
    }

    if ($path eq '/text') {
        return answer($c, 200, 'text/plain', 'thanks');
    }

    if ($path eq '/refuse') {
        return answer($c, 403, 'application/json',
                      '{"reason":"not this file"}');
    }

    if ($path eq '/big') {
        return answer($c, 200, 'text/plain', "b" x 20000);
    }

    if ($path eq '/fail') {
        return answer($c, 500, 'text/plain', 'broken');
    }

    return answer($c, 404, 'text/plain', 'no such endpoint');
}

while (1) {
    my $c = $server->accept or next;
    my $pid = fork;

    if (!defined $pid) {
        close $c;
        next;
    }

    if ($pid == 0) {
        close $server;
        serve($c);
        close $c;
        POSIX::_exit(0);
    }

    close $c;
}
