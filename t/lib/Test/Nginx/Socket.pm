package Test::Nginx::Socket;

# Small, self-written, upstream-compatible subset of openresty/test-nginx's
# Test::Nginx::Socket (see t/lib/Test/Nginx/README.md for the differences).
#
#   use Test::Nginx::Socket 'no_plan';
#   ...
#   run_tests();
#   __DATA__
#   === TEST 1: ...

use v5.10.1;
use Test::Base -base;

our $VERSION = '0.33';

use POSIX qw( EAGAIN EINTR :sys_wait_h );
use Time::HiRes qw( sleep time );
use IO::Socket::INET ();
use IO::Select ();
use HTTP::Response ();
use Test::LongString ();
use List::Util qw( min );
use Digest::MD5 ();
use Digest::SHA ();
use Encode ();
use JSON::PP ();

use Test::Nginx::Util;

our @EXPORT = qw( env_to_nginx is_str plan run_tests
  repeat_each config_preamble worker_connections
  master_process_enabled
  no_long_string workers master_on master_off
  log_level no_shuffle no_root_location use_hup
  server_name
  server_addr server_root html_dir server_port server_port_for_client
  timeout no_nginx_manager check_accum_error_log
  add_block_preprocessor bail_out add_test_cleanup_handler add_cleanup_handler
  add_response_body_check
);

our $UseHttp2 = $Test::Nginx::Util::UseHttp2;
our $TotalConnectingTimeouts = 0;
our @ResponseBodyChecks;
our %WarnedLiteral;

sub run_test_helper ($$$);
sub value_contains ($$);
sub fmt_str ($);
sub check_error_log ($$$$$);
sub check_shutdown_error_log ($$);

$RunTestHelper = \&run_test_helper;
$CheckErrorLog = \&check_error_log;
$CheckShutdownErrorLog = \&check_shutdown_error_log;

sub set_http_config_filter ($) { $FilterHttpConfig = shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

#==========================================================================
# building requests
#==========================================================================

# Splits the request text into "segments": [original length, replacement].
# Applying them in order turns the user's request text into the wire
# request: request line normalised (default URI "/", default protocol
# HTTP/1.1), generated headers inserted after it, body possibly trimmed.
sub _request_segments ($$$$$) {
    my ($name, $text, $more_headers, $is_chunked, $conn) = @_;

    my ($first, $content) = $text =~ /\A([^\n]*\n?)(.*)\z/s;
    if (!defined $first || $first eq '') {
        bail_out("$name - Request line should be non-empty");
    }

    my @m = $first =~ /^(\s*)(\S+)( *)((\S+)( *))?((\S+)( *))?(\s*)$/;
    if (!@m) {
        bail_out("$name - Request line is not valid. Should be 'meth [url "
                 . "[version]]' but got \"$first\".");
    }
    my ($pre, $meth, $after_meth, undef, $url, $after_url, undef, $ver,
        $after_ver, $eol) = @m;

    my ($url_len, $ver_len) = (0, 0);
    if (defined $url) {
        $url_len = length $url;
    } else {
        ($url, $after_url) = ('/', '');
    }
    if (defined $ver) {
        $ver_len = length $ver;
    } else {
        ($ver, $after_ver) = ('HTTP/1.1', '');
    }

    $content = '' unless defined $content;
    my $orig_content_len = length $content;

    my $len_header = '';
    if (!$is_chunked && $content ne ''
        && $more_headers !~ /(?:^|\n)Content-Length:/)
    {
        # upstream trims the body (leading and trailing white space) when
        # it computes the Content-Length header itself
        $content =~ s/^\s+|\s+$//gs;
        $len_header = "Content-Length: " . length($content) . "\r\n";
    }

    $more_headers =~ s/(?<!\r)\n/\r\n/g;
    my $headers = '';
    $headers .= "Host: $ServerName\r\n"
        if $more_headers !~ /(?:^|\n)Host:/msi;
    $headers .= "Connection: $conn\r\n"
        if $more_headers !~ /(?:^|\n)Connection/msi;
    $headers .= "$more_headers$len_header\r\n";

    return (
        [length $pre, ''],
        [length $meth, "$meth "],
        [length $after_meth, ''],
        [$url_len, "$url "],
        [length $after_url, ''],
        [$ver_len, "$ver\r\n"],
        [length($after_ver) + length($eol), ''],
        [0, $headers],
        [$orig_content_len, $content],
    );
}

# Apply the segments to a list of packets, keeping packet boundaries where
# they were in the original text (a replacement that straddles a boundary
# is cut at the same offset).
sub _rewrite_packets ($$) {
    my ($packets, $segments) = @_;
    my @pk = @$packets;
    my @mv = map { [@$_] } @$segments;
    my @out;

    my $cur = shift @pk;
    my $pos = 0;
    my $mv = shift @mv;

    while (defined $cur) {
        if (!defined $mv) {
            push @out, $cur;
            $cur = shift @pk;
            $pos = 0;
            next;
        }

        my ($len, $rep) = @$mv;
        my $avail = length($cur) - $pos;

        if ($len > $avail) {
            my $take = substr($rep, 0, min($avail, length $rep));
            substr($cur, $pos) = $take;
            push @out, $cur if length $cur;
            $mv->[0] -= $avail;
            $mv->[1] = substr($rep, length $take);
            $cur = shift @pk;
            $pos = 0;
            next;
        }

        substr($cur, $pos, $len) = $rep;
        $pos += length $rep;
        $mv = shift @mv;
    }

    # leftover insertions (only possible with an empty packet list)
    while (defined $mv) {
        if (@out) { $out[-1] .= $mv->[1] } else { push @out, $mv->[1] }
        $mv = shift @mv;
    }

    return \@out;
}

sub build_request_from_packets ($$$$$) {
    my ($name, $more_headers, $is_chunked, $conn, $packets) = @_;
    my $text = join '', @$packets;
    my @seg = _request_segments($name, $text, $more_headers, $is_chunked,
                                $conn);
    return _rewrite_packets($packets, \@seg);
}

sub parse_more_headers ($) {
    my $in = shift;
    my ($out, $is_chunked) = ('', undef);
    for my $line (split /\n+/, $in) {
        next if $line =~ /^\s*#/;
        my ($key, $val) = split /:\s*/, $line, 2;
        $val = '' unless defined $val;
        $is_chunked = 1
            if lc($key) eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $is_chunked);
}

sub _headers_for ($$$) {
    my ($name, $more_headers, $i) = @_;
    if (ref $more_headers eq 'ARRAY') {
        my $h = $more_headers->[$i];
        bail_out("--- more_headers lacks data for the ${i}th request")
            unless defined $h;
        return parse_more_headers($h);
    }
    return parse_more_headers($more_headers);
}

# returns a list of requests; each request is a list of
# { value => bytes, delay_before => secs } packets
sub get_req_from_block ($) {
    my $block = shift;
    my $name = $block->name;
    my @reqs;

    if (defined(my $raw = $block->raw_request)) {
        if (ref $raw && ref $raw eq 'ARRAY') {
            push @reqs, [ map { { value => $_ } } @$raw ];
        } else {
            push @reqs, [ { value => $raw } ];
        }
        return \@reqs;
    }

    my $request;
    if (defined $block->request_eval) {
        diag "$name - request_eval DEPRECATED. Use request eval instead.";
        $request = eval $block->request_eval;
        warn $@ if $@;
    } else {
        $request = $block->request;
        if (defined $request && !ref $request) {
            # drop leading comment lines and white space
            1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
        }
    }

    my $more_headers = $block->more_headers || '';

    for my $v ($request, $more_headers) {
        next unless defined $v;
        for my $t (ref $v eq 'ARRAY' ? @$v : ($v)) {
            next if ref $t || !defined $t;
            if ($t =~ /\$(TEST_NGINX_[A-Z0-9_]+)/ && !$WarnedLiteral{$name}++) {
                warn "WARNING: $name - \$$1 in --- request/more_headers is "
                   . "sent literally (Test::Nginx does not expand it there)\n";
            }
        }
    }

    if (my $pipe = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            unless ref $pipe eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$pipe) {
            my $r = expand_env_in_text($pipe->[$i], $name,
                                       $Test::Nginx::Util::RandPorts);
            my ($hdr, $chunked) = _headers_for($name, $more_headers, $i);
            my $conn = $i == $#$pipe ? 'close' : 'keep-alive';
            $all .= build_request_from_packets($name, $hdr, $chunked, $conn,
                                               [$r])->[0];
        }
        push @reqs, [ { value => $all } ];
        return \@reqs;
    }

    if (!defined $request) {
        return \@reqs;
    }

    if (!ref $request) {
        my ($hdr, $chunked) = _headers_for($name, $more_headers, 0);
        my $out = build_request_from_packets($name, $hdr, $chunked, 'close',
                                             [$request]);
        push @reqs, [ { value => join '', @$out } ];
        return \@reqs;
    }

    if (ref $request ne 'ARRAY') {
        bail_out("$name - invalid ---request : MUST be string or array of "
                 . "requests");
    }

    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my ($hdr, $chunked) = _headers_for($name, $more_headers, $i);

        if (!ref $one) {
            my $out = build_request_from_packets($name, $hdr, $chunked,
                                                 'close', [$one]);
            push @reqs, [ { value => join '', @$out } ];
            next;
        }

        if (ref $one ne 'ARRAY') {
            bail_out("$name - Invalid syntax. $one should be a string or an "
                     . "array of packets.");
        }

        my @texts;
        for my $p (@$one) {
            if (!ref $p) {
                push @texts, $p;
            } elsif (ref $p eq 'HASH') {
                push @texts, $p->{value};
            } else {
                bail_out("$name - Invalid syntax. $p should be a string or "
                         . "hash with value.");
            }
        }
        my $out = build_request_from_packets($name, $hdr, $chunked, 'close',
                                             \@texts);
        my @packets;
        for my $j (0 .. $#$out) {
            my $orig = $one->[$j];
            my %p = ref $orig eq 'HASH' ? %$orig : ();
            $p{value} = $out->[$j];
            push @packets, \%p;
        }
        push @reqs, \@packets;
    }

    return \@reqs;
}

#==========================================================================
# sending requests
#==========================================================================

sub _client_timeout_fail ($$) {
    my ($block, $name) = @_;
    if (!defined $block->abort) {
        Test::More->builder->no_ending(1);
        fail("ERROR: client socket timed out - $name\n");
    } else {
        sleep 0.005;
    }
}

sub _connect ($$$) {
    my ($block, $name, $timeout) = @_;
    my $addr = $block->server_addr_for_client;
    $addr = $ServerAddr unless defined $addr;

    my $max = $TotalConnectingTimeouts ? 20 : 50;
    for my $try (1 .. $max + 1) {
        my $sock = IO::Socket::INET->new(
            PeerAddr => $addr,
            PeerPort => $ServerPortForClient,
            Proto    => 'tcp',
            Timeout  => $timeout,
        );
        if ($sock) {
            $sock->blocking(0);
            return $sock;
        }
        my $err = $!;

        last if $try > $max;

        if (defined $Test::Nginx::Util::ChildPid
            && waitpid($Test::Nginx::Util::ChildPid, WNOHANG) != 0)
        {
            warn "WARNING: Child process $Test::Nginx::Util::ChildPid is "
               . "already gone.\n";
            warn `tail -n20 $Test::Nginx::Util::ErrLogFile`;
            undef $Test::Nginx::Util::ChildPid;
            Test::More->builder->no_ending(1);
            fail("$name - Can't connect to $addr:$ServerPortForClient: "
                 . "$err (aborted)\n");
            return undef;
        }

        my $s = sleep_time();
        my $wait = ($s + $s * $try) * $try / 2;
        $wait = 1 if $wait >= 1;
        if ($wait >= 0.6) {
            warn "$name - Can't connect to $addr:$ServerPortForClient: $err\n";
            warn "\tRetry connecting after $wait sec\n" if $try < $max;
        }
        sleep $wait;
    }

    my $msg = "$name - Can't connect to $addr:$ServerPortForClient: $! "
            . "(aborted)\n";
    if (++$TotalConnectingTimeouts < 3) {
        Test::More->builder->no_ending(1);
        fail($msg);
    } else {
        bail_out($msg);
    }
    return undef;
}

# Sends one request (list of packets) over a fresh connection and reads
# until the server closes it.  $timeout applies to every single I/O wait.
sub send_request ($$$$) {
    my ($req, $middle_delay, $timeout, $block) = @_;
    my $name = $block->name;
    my @bits = @$req;

    my $head_req = (join('', map { $_->{value} } @bits) =~ /^\s*HEAD\s+/)
                   ? 1 : 0;

    if (use_http2($block)) {
        return (send_http_req_by_curl($block, \@bits, $timeout), $head_req);
    }

    my $sock = _connect($block, $name, $timeout) or return (undef, $head_req);

    local $SIG{PIPE} = 'IGNORE';

    my $resp = '';
    my $first = shift @bits;
    my $wbuf = $first->{value};
    my $woff = 0;
    my $writing = 1;
    my $sel = IO::Select->new($sock);

    while (1) {
        $! = 0;
        my ($r, $w) = IO::Select->select($sel, $writing ? $sel : undef,
                                         undef, $timeout);
        if (!$r && !$w) {
            next if $! == EINTR;
            close $sock;
            _client_timeout_fail($block, $name);
            last;
        }

        if ($r && @$r) {
            my $eof = 0;
            while (1) {
                my $buf;
                my $n = sysread($sock, $buf, 65536);
                if (!defined $n) {
                    last if $! == EAGAIN || $! == EINTR;
                    warn "WARNING: $name - HTTP response read failure: $!";
                    $eof = 1;
                    last;
                }
                if ($n == 0) {
                    $eof = 1;
                    last;
                }
                $resp .= $buf;
            }
            if ($eof) {
                close $sock;
                last;
            }
        }

        if ($writing && $w && @$w) {
            while (1) {
                my $rest = length($wbuf) - $woff;
                if ($rest > 0) {
                    my $n = syswrite($sock, $wbuf, $rest, $woff);
                    if (!defined $n) {
                        last if $! == EAGAIN || $! == EINTR;
                        # keep reading what the server has to say
                        warn "write failed: $!\n";
                        $resp = "write failed: $!" if $resp eq '';
                        $writing = 0;
                        last;
                    }
                    $woff += $n;
                    next;
                }
                my $next = shift @bits;
                if (!defined $next) {
                    $writing = 0;
                    my $shutdown = $block->shutdown;
                    if (defined $shutdown) {
                        $shutdown = 1 if $shutdown =~ /^$/s;
                        shutdown($sock, $shutdown);
                    }
                    last;
                }
                my $delay = defined $next->{delay_before}
                    ? $next->{delay_before} : $middle_delay;
                sleep $delay if $delay;
                ($wbuf, $woff) = ($next->{value}, 0);
            }
        }
    }

    return ($resp, $head_req);
}

sub _sh_quote (@) {
    return join ' ', map {
        my $a = $_;
        if ($a !~ m{^[-\w.:/=@,+]+$}) {
            $a =~ s/'/'\\''/g;
            $a = "'$a'";
        }
        $a;
    } @_;
}

sub gen_curl_cmd_from_req ($$) {
    my ($block, $req) = @_;
    my $name = $block->name;
    my $text = join '', map { $_->{value} } @$req;

    my ($meth, $uri, $http_ver);
    if ($text =~ m{^\s*(\w+)\s+(\S+)\s+HTTP/(\S+)\r?\n}smig) {
        ($meth, $uri, $http_ver) = ($1, $2, $3);
    } elsif ($text =~ m{^\s*(\w+)\s+(.*\S)\s*\r?\n}smig) {
        ($meth, $uri, $http_ver) = ($1, $2, '0.9');
    } else {
        bail_out("$name - cannot parse the status line in the request: "
                 . $text);
    }

    my @args = ('curl', '-i', '-H', 'User-Agent:', '-H', 'Accept:',
                '-H', 'Host:');
    my $proto = $block->curl_protocol;
    $proto = 'http' unless defined $proto;

    push @args, $Test::Nginx::Util::Verbose ? '-vv' : '-sS';
    push @args, '--http2-prior-knowledge' if use_http2($block);

    if ($meth eq 'HEAD') {
        push @args, '-I';
    } elsif ($meth ne 'GET') {
        push @args, '-X', $meth;
    }
    push @args, '-0' if $http_ver ne '1.1';

    my @headers;
    if ($http_ver ge '1.0') {
        if ($text =~ m{\G(.*?)\r?\n\r?\n}gcs) {
            @headers = grep { !/^Connection\s*:/i } split /\r\n/, $1;
        } else {
            bail_out("cannot parse the header entries in the request: $text");
        }
    }

    my $has_ctype;
    for my $h (@headers) {
        $has_ctype = 1 if $h =~ /^\s*Content-Type\s*:/i;
        push @args, '-H', $h;
    }

    if ($text =~ m{\G(.+)}gcsm) {
        my $body = $1;
        push @args, '-H', 'Content-Type: ' unless $has_ctype;
        my $file = html_dir() . "/curl.data.bin";
        open my $fh, '>', $file or die "Could not open $file: $!";
        binmode $fh;
        print $fh $body;
        close $fh;
        push @args, '--data-binary', "\@$file";
    }

    my $timeout = $block->timeout;
    $timeout = timeout() unless $timeout;
    $timeout = parse_time($timeout);
    push @args, '--connect-timeout', $timeout, '--max-time', $timeout;

    my $addr = $block->server_addr_for_client;
    $addr = $ServerAddr unless defined $addr;

    my $opts = $block->curl_options;
    push @args, $opts if defined $opts;
    push @args, "$proto://$addr:$ServerPortForClient$uri";
    return \@args;
}

sub send_http_req_by_curl ($$$) {
    my ($block, $req, $timeout) = @_;
    my $name = $block->name;
    my $cmd = gen_curl_cmd_from_req($block, $req);

    my $tries = $TotalConnectingTimeouts ? 20 : 50;
    while ($tries-- > 0) {
        last if is_tcp_port_used($ServerPortForClient);
        warn "$name - waiting for nginx to listen on port "
           . "$ServerPortForClient, Retry connecting after 1 sec\n";
        sleep 1;
    }

    my ($in, $out, $err) = ('', '', '');
    my $ok = eval {
        IPC::Run::run($cmd, \$in, \$out, \$err,
                      IPC::Run::timeout($timeout + 1));
        1;
    };
    if (!$ok) {
        if ($@ =~ /timeout/i) {
            _client_timeout_fail($block, $name);
            return undef;
        }
        fail("failed to run curl: $@");
        return undef;
    }

    if (!$out) {
        if ($err) {
            my $expect = $block->curl_error;
            if (defined $expect) {
                return undef if ref $expect ? $err =~ $expect
                                            : $err =~ /\Q$expect\E/;
            }
            fail("$name - command \"@$cmd\" generates stderr output: $err");
            return undef;
        }
        fail("$name - curl command \"@$cmd\" generates no stdout output");
        return undef;
    }

    warn "WARNING: $name - command \"@$cmd\" generates stderr output: $err"
        if $err;

    return $out;
}

#==========================================================================
# responses
#==========================================================================

sub _chunk_fail ($) {
    Test::More->builder->no_ending(1);
    fail(shift);
    return;
}

# returns (HTTP::Response, raw header text, bytes after the message)
sub parse_response ($$$) {
    my ($name, $raw, $head_req) = @_;

    my $raw_headers = '';
    $raw_headers = $1 if $raw =~ /(.*?\r\n)\r\n/s;

    my $res = HTTP::Response->parse($raw);
    my $code = $res->code;
    if ($code && $code !~ /^\d+$/) {
        undef $code;
        $res->code(undef);
    }
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);

    my $left;
    my $te = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my @trailers = $res->header('Trailer');

    if (defined $te && $te eq 'chunked') {
        my $body = $res->content;
        $body = '' unless defined $body;
        my $decoded = '';
        pos($body) = 0;
        while (1) {
            if (!@trailers && $body =~ /\G0[ \t]*\r\n\r\n/gc) {
                $left = $1 if $body =~ /\G(.+)/gcs;
                last;
            }
            if (@trailers && $body =~ /\G0[ \t]*\r\n/gc) {
                for my $t (@trailers) {
                    return _chunk_fail("$name - invalid trailer data received "
                                       . "(expected $t).")
                        unless $body =~ /\G(\Q$t\E: [^\n]*\r\n)/gcs;
                }
                return _chunk_fail("$name - invalid chunked data received "
                                   . "(expected CRLF).")
                    unless $body =~ /\G\r\n/gc;
                $left = $1 if $body =~ /\G(.+)/gcs;
                last;
            }
            if ($body =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
                my $size = hex $1;
                my $start = pos($body);
                if (length($body) - $start < $size) {
                    return _chunk_fail("$name - invalid chunked data received "
                                       . "(not enought octets for the data "
                                       . "section)");
                }
                $decoded .= substr($body, $start, $size);
                pos($body) = $start + $size;
                return _chunk_fail("$name - invalid chunked data received "
                                   . "(expected CRLF).")
                    unless $body =~ /\G\r\n/gc;
                next;
            }
            if ($body =~ /\G(.+)/gcs) {
                return _chunk_fail("$name - invalid chunked body received: $1");
            }
            return _chunk_fail("$name - no last chunk found - $body");
        }
        $res->content($decoded);

    } elsif (defined $len && $len ne '' && $len =~ /^\d+$/) {
        my $body = $res->content;
        $body = '' unless defined $body;
        if (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
               . "but got ", length $body, "\n" unless $head_req;
        } elsif (length $body > $len) {
            $left = substr $body, $len;
            $res->content(substr $body, 0, $len);
        }
    }

    return ($res, $raw_headers, $left);
}

#==========================================================================
# checks
#==========================================================================

sub get_indexed_value ($$$$) {
    my ($name, $value, $idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$idx] if ref $value && ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }
    if (ref $value && ref $value eq 'ARRAY') {
        bail_out("$name - SHOULD NOT HAPPEN: idx != 0 and don't need array.")
            if $idx != 0;
        return $value->[0];
    }
    return $value;
}

sub check_error_code ($$$$$) {
    my ($block, $res, $dry_run, $idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';
    SKIP: {
        skip "$name - tests skipped due to $dry_run", 1 if $dry_run;
        if (defined $block->error_code_like) {
            my $v = get_indexed_value($name, $block->error_code_like, $idx,
                                      $need_array);
            like($got, qr/$v/sm, "$name - status code ok");
        } elsif (defined $block->error_code) {
            is($got, get_indexed_value($name, $block->error_code, $idx,
                                       $need_array),
               "$name - status code ok");
        } else {
            is($got, 200, "$name - status code ok");
        }
    }
}

sub check_raw_response_headers ($$$$$) {
    my ($block, $raw, $dry_run, $idx, $need_array) = @_;
    my $name = $block->name;
    for my $kind (qw(like unlike)) {
        my $sec = "raw_response_headers_$kind";
        my $v = $block->$sec;
        next unless defined $v;
        SKIP: {
            skip "$name - $sec - tests skipped due to $dry_run", 1 if $dry_run;
            my $pat = get_indexed_value($name, $v, $idx, $need_array);
            if ($kind eq 'like') {
                like($raw, qr/$pat/s, "$name - raw resp headers like");
            } else {
                unlike($raw, qr/$pat/s, "$name - raw resp headers unlike");
            }
        }
    }
}

sub check_response_headers ($$$$$$) {
    my ($block, $res, $raw, $dry_run, $idx, $need_array) = @_;
    my $name = $block->name;

    if (defined $block->response_headers) {
        my $h = parse_headers(get_indexed_value($name,
                                  $block->response_headers, $idx,
                                  $need_array));
        while (my ($key, $val) = each %$h) {
            if (!defined $val) {
                SKIP: {
                    skip "$name - response_headers - tests skipped due to "
                         . "$dry_run", 1 if $dry_run;
                    unlike($raw, qr/^\s*\Q$key\E\s*:/ms,
                           "$name - header $key not present in the raw "
                           . "headers");
                }
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            my $got = $res ? $res->header($key) : undef;
            $got = '' unless defined $got;
            SKIP: {
                skip "$name - response_headers - tests skipped due to "
                     . "$dry_run", 1 if $dry_run;
                is($got, $val, "$name - header $key ok");
            }
        }

    } elsif (defined $block->response_headers_like) {
        my $h = parse_headers(get_indexed_value($name,
                                  $block->response_headers_like, $idx,
                                  $need_array));
        while (my ($key, $val) = each %$h) {
            my $got = $res ? $res->header($key) : undef;
            $got = '' unless defined $got;
            SKIP: {
                skip "$name - response_headers_like - tests skipped due to "
                     . "$dry_run", 1 if $dry_run;
                like($got, qr/^$val$/, "$name - header $key like ok");
            }
        }
    }
}

sub run_filter_helper ($$$) {
    my ($block, $filter, $content) = @_;
    my $name = $block->name;
    if (ref $filter eq 'CODE') {
        return $filter->($content);
    }
    if (ref $filter) {
        bail_out("$name - the --- response_body_filters section only "
                 . "supports subroutine reference values and string values");
    }
    my %builtin = (
        md5_hex  => sub { Digest::MD5::md5_hex($_[0]) },
        sha1_hex => sub { Digest::SHA::sha1_hex($_[0]) },
        uc       => sub { uc $_[0] },
        lc       => sub { lc $_[0] },
        ucfirst  => sub { ucfirst $_[0] },
        lcfirst  => sub { lcfirst $_[0] },
        length   => sub { length $_[0] },
    );
    my $f = $builtin{$filter}
        or bail_out("$name - unknown filter, \"$filter\", specified in the "
                    . "--- response_body_filters section");
    return $f->($content);
}

sub transform_response_body ($$$) {
    my ($block, $res, $idx) = @_;
    return unless defined $res;
    my $content = $res->content;
    return unless defined $content;
    my $filters = $block->response_body_filters;
    return unless defined $filters;
    my $name = $block->name;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//gs;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }

    my $f = $filters;
    if (ref $filters->[0] eq 'ARRAY') {
        for (@$filters) {
            bail_out("$name - the --- response_body_filters two-dimensional "
                     . "array only be like [[uc], [lc]] not [[uc], lc]")
                if ref $_ ne 'ARRAY';
        }
        $f = $filters->[$idx];
        bail_out("$name - the ---response_body_filters two-dimensional array "
                 . "unmatch the specified request($idx)") unless defined $f;
    }

    my $new = $content;
    for my $one (ref $f eq 'ARRAY' ? @$f : ($f)) {
        $new = run_filter_helper($block, $one, $new);
    }
    $res->content($new);
}

sub check_response_body ($$$$$$) {
    my ($block, $res, $dry_run, $idx, $rep_idx, $need_array) = @_;
    my $name = $block->name;

    if (defined(my $file = $block->write_resp_body_file) && defined $res) {
        my $body = $res->content;
        open my $out, '>', $file
            or bail_out("$name - failed to write to file '$file': $!");
        print $out defined $body ? $body : '';
        close $out;
    }

    if (defined $block->response_body || defined $block->response_body_eval) {
        my $content = $res ? $res->content : undef;

        if (defined $block->response_body_json_sort && defined $content) {
            my $js = JSON::PP->new->canonical(1);
            my $obj = eval { $js->loose(1)->decode($content) };
            $content = $js->encode($obj) . "\n" unless $@;
        }

        my $expected;
        if ($block->response_body_eval) {
            diag "$name - response_body_eval is DEPRECATED. Use response_body "
               . "eval instead.";
            $expected = eval get_indexed_value($name,
                                               $block->response_body_eval,
                                               $idx, $need_array);
            warn $@ if $@;
        } else {
            $expected = get_indexed_value($name, $block->response_body, $idx,
                                          $need_array);
        }

        if ($block->charset) {
            Encode::from_to($expected, 'UTF-8', $block->charset);
        }

        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $expected = expand_env_in_text($expected, $name,
                                           $Test::Nginx::Util::RandPorts);
        }

        SKIP: {
            skip "$name - response_body - tests skipped due to $dry_run", 1
                if $dry_run;
            my $desc = "(repeated req $rep_idx, req $idx)";
            if (ref $expected) {
                like($content, $expected,
                     "$name - response_body - like $desc");
            } elsif ($NoLongString) {
                is($content, $expected,
                   "$name - response_body - response is expected $desc");
            } else {
                Test::LongString::is_string($content, $expected,
                   "$name - response_body - response is expected $desc");
            }
        }

    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $sec = "response_body_$type";
        my $content = $res ? $res->content : undef;
        my $pat = get_indexed_value($name, $block->$sec, $idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $summary = trim($content);
        $summary = '' unless defined $summary;

        SKIP: {
            skip "$name - response_body_$type - tests skipped due to $dry_run",
                 1 if $dry_run;
            my $desc = "$name - response_body_$type - response is expected "
                     . "($summary)";
            if ($type eq 'like') {
                like($content, qr/$pat/s, $desc);
            } else {
                unlike($content, qr/$pat/s, $desc);
            }
        }
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $res ? $res->content : undef, $idx, $rep_idx,
                 $dry_run);
    }
}

sub fmt_str ($) {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub value_contains ($$) {
    my ($val, $pat) = @_;
    return $val =~ /\Q$pat\E/ if !ref $val || ref $val eq 'Regexp';
    if (ref $val eq 'ARRAY') {
        for (@$val) { return 1 if value_contains($_, $pat) }
    }
    return undef;
}

sub _pattern_list ($) {
    my $pats = shift;
    if (!ref $pats) {
        chomp $pats;
        return [split /\n+/, $pats];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub _line_matches ($$) {
    my ($line, $pat) = @_;
    return (ref $pat && $line =~ /$pat/) || $line =~ /\Q$pat\E/;
}

# --- error_log / --- no_error_log / --- access_log / --- no_access_log
sub _check_log_patterns ($$$$$$) {
    my ($block, $kind, $file, $lines_ref, $dry_run, $suffix) = @_;
    my $name = $block->name;

    if (defined $block->$kind) {
        my $pats = _pattern_list($block->$kind);
        my $lines = $$lines_ref ||= $file eq 'error.log' ? error_log_data()
                                                         : access_log_data();
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next unless defined $pat;
                if (_line_matches($line, $pat)) {
                    SKIP: {
                        skip "$name - $kind - tests skipped due to $dry_run", 1
                            if $dry_run;
                        pass("$name - pattern \"$pat\" matches a line in "
                             . "$file$suffix");
                    }
                    undef $pat;
                }
            }
        }
        for my $pat (@$pats) {
            next unless defined $pat;
            SKIP: {
                skip "$name - $kind - tests skipped due to $dry_run", 1
                    if $dry_run;
                fail("$name - pattern \"$pat\" should match a line in "
                     . "$file$suffix");
            }
        }
    }

    my $neg = "no_$kind";
    if (defined $block->$neg) {
        my $pats = _pattern_list($block->$neg);
        my $lines = $$lines_ref ||= $file eq 'error.log' ? error_log_data()
                                                         : access_log_data();
        my %found;
        for my $i (0 .. $#$lines) {
            my $line = $lines->[$i];
            for my $pat (@$pats) {
                next unless defined $pat;
                next unless _line_matches($line, $pat);
                if ($found{$pat}++) {
                    Test::More->builder->no_ending(1);
                }
                SKIP: {
                    skip "$name - $neg - tests skipped due to $dry_run "
                         . "($line)", 1 if $dry_run;
                    my @more;
                    for (my $j = $i + 1; $j < min($i + 10, @$lines - 1); $j++) {
                        push @more, $lines->[$j];
                    }
                    fail("$name - pattern \"" . fmt_str($pat) . "\" should "
                         . "not match any line in $file but matches line \""
                         . fmt_str($line) . "\"$suffix\n" . join '', @more);
                }
            }
        }
        for my $pat (@$pats) {
            next if !defined $pat || $found{$pat};
            SKIP: {
                skip "$name - $neg - tests skipped due to $dry_run", 1
                    if $dry_run;
                pass("$name - pattern \"" . fmt_str($pat) . "\" does not "
                     . "match a line in $file$suffix");
            }
        }
    }
}

sub check_access_log ($$$) {
    my ($block, $dry_run, $rep_idx) = @_;
    my $lines;
    _check_log_patterns($block, 'access_log', 'access.log', \$lines,
                        $dry_run, " (req $rep_idx)");
}

sub check_error_log ($$$$$) {
    my ($block, $res, $dry_run, $rep_idx, $need_array) = @_;
    my $name = $block->name;
    my $lines;

    # --- grep_error_log / grep_error_log_out
    my $grep = $block->grep_error_log;
    if (defined $grep) {
        $grep = $grep->[$rep_idx] if ref $grep eq 'ARRAY';
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but "
                 . "--- grep_error_log_out is defined");
    }

    if (defined $grep) {
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but "
                 . "--- grep_error_log is defined") unless defined $expected;
        $expected = expand_env_in_text($expected, $name,
                                       $Test::Nginx::Util::RandPorts)
            unless ref $expected;
        $expected = $expected->[$rep_idx] if ref $expected eq 'ARRAY';

        SKIP: {
            skip "$name - error_log - tests skipped due to $dry_run", 1
                if $dry_run;
            $lines ||= error_log_data();
            my $matched = '';
            for my $line (@$lines) {
                if ((ref $grep && $line =~ /$grep/) || $line =~ /\Q$grep\E/) {
                    my $m = $&;
                    $matched .= "$m\n" if $m !~ /\n/;
                }
            }
            my $desc = "$name - grep_error_log_out (req $rep_idx)";
            if (ref $expected eq 'Regexp') {
                like($matched, $expected, $desc);
            } elsif ($NoLongString) {
                is($matched, $expected, $desc);
            } else {
                Test::LongString::is_string($matched, $expected, $desc);
            }
        }
    }

    my %warn_for = (alert => 1, crit => 1, emerg => 1);
    for my $sec (qw(error_log no_error_log)) {
        my $v = $block->$sec;
        next unless defined $v;
        for my $lvl (keys %warn_for) {
            delete $warn_for{$lvl} if value_contains($v, "[$lvl");
        }
    }

    _check_log_patterns($block, 'error_log', 'error.log', \$lines, $dry_run,
                        " (req $rep_idx)");

    if (!$dry_run) {
        for my $lvl (qw(alert crit emerg)) {
            next unless $warn_for{$lvl};
            $lines ||= error_log_data();
            for my $line (@$lines) {
                warn "WARNING: $name - " . fmt_str($line) . "\n"
                    if $line =~ /\[$lvl\]/;
            }
        }
    }

    for my $line (@{ $lines || [] }) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            Test::More->builder->no_ending(1);
            chomp(my $l = $line);
            fail("$name - $l\n");
        }
    }
}

sub check_shutdown_error_log ($$) {
    my ($block, $dry_run) = @_;
    my $name = $block->name;
    my $lines;

    if (defined(my $v = $block->shutdown_error_log)) {
        my $pats = _pattern_list($v);
        $lines ||= error_log_data();
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next unless defined $pat;
                next unless _line_matches($line, $pat);
                SKIP: {
                    skip "$name - shutdown_error_log - tests skipped due to "
                         . "dry_run", 1 if $dry_run;
                    pass("$name - pattern \"$pat\" matches a line in "
                         . "error.log");
                }
                undef $pat;
            }
        }
        for my $pat (@$pats) {
            next unless defined $pat;
            SKIP: {
                skip "$name - shutdown_error_log - tests skipped due to "
                     . "dry_run", 1 if $dry_run;
                fail("$name - pattern \"$pat\" should match a line in "
                     . "error.log");
            }
        }
    }

    if (defined(my $v = $block->no_shutdown_error_log)) {
        my $pats = _pattern_list($v);
        $lines ||= error_log_data();
        my %found;
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next unless defined $pat;
                next unless _line_matches($line, $pat);
                $found{$pat} = 1;
                SKIP: {
                    skip "$name - no_shutdown_error_log - tests skipped due "
                         . "to $dry_run ($line)", 1 if $dry_run;
                    fail("$name - pattern \"" . fmt_str($pat) . "\" should "
                         . "not match any line in error.log but matches line "
                         . "\"" . fmt_str($line) . "\"");
                }
            }
        }
        for my $pat (@$pats) {
            next if !defined $pat || $found{$pat};
            SKIP: {
                skip "$name - no_shutdown_error_log - tests skipped due to "
                     . "$dry_run", 1 if $dry_run;
                pass("$name - pattern \"" . fmt_str($pat) . "\" does not "
                     . "match a line in error.log");
            }
        }
    }
}

#==========================================================================
# one repetition of one block
#==========================================================================

sub run_test_helper ($$$) {
    my ($block, $dry_run, $rep_idx) = @_;
    my $name = $block->name;

    my $reqs = get_req_from_block($block);
    bail_out("$name - request empty") if !@$reqs;

    if (defined $block->curl) {
        my $cmd = gen_curl_cmd_from_req($block, $reqs->[0]);
        warn "# ", _sh_quote(@$cmd), "\n";
    }

    my $timeout = parse_time($block->timeout);
    $timeout = timeout() unless defined $timeout;

    my ($res, $n, $need_array);
    my $idx = 0;

    for my $req (@$reqs) {
        my ($raw, $head_req);
        if ($dry_run) {
            $raw = "200 OK HTTP/1.0\r\nContent-Length: 0\r\n\r\n";
        } else {
            ($raw, $head_req) = send_request($req,
                                             $block->raw_request_middle_delay,
                                             $timeout, $block);
        }

        if ($block->pipelined_requests) {
            $n = @{ $block->pipelined_requests };
            $need_array = 1;
        } else {
            $need_array = @$reqs > 1;
        }

        while (1) {
            $raw = '' unless defined $raw;
            my ($raw_headers, $left);

            if (!defined $block->ignore_response) {
                if (defined $block->http09) {
                    $res = HTTP::Response->new(200, 'OK', [], $raw);
                    $raw_headers = '';
                } else {
                    ($res, $raw_headers, $left) = parse_response($name, $raw,
                                                                 $head_req);
                }
            }

            if (!$n) {
                if (defined $left && length $left) {
                    (my $l = $left) =~ s/([\0-\037\200-\377])/
                                         sprintf('\x{%02x}', ord $1)/ge;
                    warn "WARNING: $name - unexpected extra bytes after last "
                       . "chunk in response: \"$l\"\n";
                }
            } else {
                $raw = $left;
                $n--;
            }

            if (!defined $block->ignore_response) {
                check_error_code($block, $res, $dry_run, $idx, $need_array);
                check_raw_response_headers($block, $raw_headers, $dry_run,
                                           $idx, $need_array);
                check_response_headers($block, $res, $raw_headers, $dry_run,
                                       $idx, $need_array);
                transform_response_body($block, $res, $idx);
                check_response_body($block, $res, $dry_run, $idx, $rep_idx,
                                    $need_array);
            }

            if ($n || $idx < @$reqs - 1) {
                sleep $block->wait if $block->wait;
                check_error_log($block, $res, $dry_run, $rep_idx,
                                $need_array);
                check_access_log($block, $dry_run, $rep_idx)
                    unless defined $block->ignore_response;
            }

            $idx++;
            last unless $n;
        }
    }

    sleep $block->wait if $block->wait;

    check_error_log($block, $res, $dry_run, $rep_idx, $need_array);
    check_access_log($block, $dry_run, $rep_idx)
        unless defined $block->ignore_response;
}

1;
