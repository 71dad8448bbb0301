package Test::Nginx::Util;

# Minimal re-implementation of the parts of openresty/test-nginx's
# Test::Nginx::Util that this project needs.  Written from scratch; the
# behaviour (config layout, restart policy, section semantics, test names)
# follows upstream test-nginx 0.33 so that the same .t files run unchanged
# under both.  See t/lib/Test/Nginx/Socket.pm for the request side.

use strict;
use warnings;

our $VERSION = '0.33';    # the upstream version we mimic

use base 'Exporter';

use POSIX qw( SIGQUIT SIGKILL SIGTERM :sys_wait_h );
use File::Spec ();
use File::Path qw( make_path remove_tree );
use List::Util qw( shuffle );
use Time::HiRes qw( sleep time );
use IO::Socket::INET ();
use Scalar::Util qw( looks_like_number );
use Test::More ();
use Test::LongString ();
use Carp qw( croak );
use Config ();

our @EXPORT = qw(
    expand_env_in_text use_http2 use_http3 env_to_nginx is_str
    check_accum_error_log is_running $NoLongString no_long_string
    $ServerAddr server_addr $ServerName server_name parse_time $UseStap
    verbose sleep_time stap_out_fh stap_out_fname bail_out
    add_cleanup_handler add_test_cleanup_handler access_log_data
    error_log_data setup_server_root run_customer_init_script
    write_config_file get_canon_version get_nginx_version trim
    show_all_chars parse_headers run_tests get_pid_from_pidfile
    $ServerPortForClient $ServerPort $NginxVersion $PcreVersion $PidFile
    $ServRoot $ConfFile $RunTestHelper $CheckErrorLog
    $CheckShutdownErrorLog $FilterHttpConfig $NoNginxManager $RepeatEach
    $CheckLeak $Benchmark $BenchmarkWarmup add_block_preprocessor timeout
    worker_connections workers master_on master_off config_preamble
    repeat_each master_process_enabled log_level no_shuffle
    no_root_location html_dir server_root server_port
    server_port_for_client no_nginx_manager use_hup is_udp_port_used
    is_tcp_port_used
);

#--------------------------------------------------------------------------
# settings (environment first, then the Perl-level setters)
#--------------------------------------------------------------------------

our $Verbose        = $ENV{TEST_NGINX_VERBOSE};
our $UseHttp2       = $ENV{TEST_NGINX_USE_HTTP2};
our $UseHttp3       = undef;    # HTTP/3 is not supported by this runner
our $UseHup         = $ENV{TEST_NGINX_USE_HUP};    # accepted, ignored
our $UseValgrind    = $ENV{TEST_NGINX_USE_VALGRIND};
our $ValgrindExitOnFirstErr = $ENV{TEST_NGINX_VALGRIND_EXIT_ON_FIRST_ERR};
our $UseStap        = undef;
our $CheckLeak      = 0;
our $Benchmark      = 0;
our $BenchmarkWarmup = 0;
our $Profiling      = 0;
our $NoNginxManager = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $NoShuffle      = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $LoadModules    = $ENV{TEST_NGINX_LOAD_MODULES};
our $EventType      = $ENV{TEST_NGINX_EVENT_TYPE};
our $PostponeOutput = $ENV{TEST_NGINX_POSTPONE_OUTPUT};
our $ReusePort      = $ENV{TEST_NGINX_REUSE_PORT};
our $Timeout        = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $WorkerUser     = $ENV{TEST_NGINX_WORKER_USER};

our $NoLongString   = undef;
our $RepeatEach     = 1;
our $ServerAddr     = '127.0.0.1';
our $ServerName     = 'localhost';
our $NginxBinary    = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $Workers        = 1;
our $WorkerConnections = 64;
our $LogLevel       = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $DaemonEnabled  = 'on';
our $ServerPort     = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                      || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort
                           || 1984;
our $NoRootLocation = 0;
our $TestNginxSleep = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $ForceRestartOnTest = defined $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST}
                          ? $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} : 1;
our $ConfigPreamble = '';
our $FilterHttpConfig;

if (defined $WorkerUser && $WorkerUser !~ /^\w[-\w]+(?:\s+\w[-\w]+)?$/) {
    die "Bad value in the env TEST_NGINX_WORKER_USER: $WorkerUser\n";
}

if ($UseValgrind) {
    # like upstream: nginx runs in the foreground under valgrind; the
    # master_process setting is left alone (default: off)
    $DaemonEnabled = 'off';
}

our $RunTestHelper;
our $CheckErrorLog;
our $CheckShutdownErrorLog;

our ($NginxVersion, $NginxRawVersion, $PcreVersion, $OpenSSLVersion);

our @CleanupHandlers;
our @TestCleanupHandlers;
our @BlockPreprocessors;
our @EnvToNginx;

our $ChildPid;          # nginx started in the foreground (valgrind mode)
our $InSubprocess;
our $PrevConfig;
our $PrevBlock;
our $FirstTime = 1;
our $ErrLogFilePos = 0;
our $RandPorts = {};
our $StapOutFileHandle;
our $StapOutFile;

our $ServRoot = $ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot');
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = File::Spec->catfile($ServRoot, 'logs');
our $ErrLogFile = File::Spec->catfile($LogDir, 'error.log');
our $AccLogFile = File::Spec->catfile($LogDir, 'access.log');
our $HtmlDir    = File::Spec->catfile($ServRoot, 'html');
our $ConfDir    = File::Spec->catfile($ServRoot, 'conf');
our $ConfFile   = File::Spec->catfile($ConfDir, 'nginx.conf');
our $PidFile    = File::Spec->catfile($LogDir, 'nginx.pid');
our $CacheDir   = File::Spec->catfile($ServRoot, 'cache');

#--------------------------------------------------------------------------
# small exported setters / getters
#--------------------------------------------------------------------------

sub no_long_string () { $NoLongString = 1 }
sub no_shuffle () { $NoShuffle = 1 }
sub no_nginx_manager () { $NoNginxManager = 1 }
sub use_hup () { $UseHup = 1 }    # accepted; every block restarts nginx
sub no_root_location () { $NoRootLocation = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub master_on () { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }
sub config_preamble ($) { $ConfigPreamble = shift }
sub verbose { $Verbose }
sub sleep_time { $TestNginxSleep }
sub stap_out_fh { $StapOutFileHandle }
sub stap_out_fname { $StapOutFile }
sub html_dir () { $HtmlDir }
sub server_root () { $ServRoot }

sub _getset {
    my ($ref, @args) = @_;
    $$ref = $args[0] if @args;
    return $$ref;
}

sub server_addr (@) { _getset(\$ServerAddr, @_) }
sub server_name (@) { _getset(\$ServerName, @_) }
sub timeout (@) { _getset(\$Timeout, @_) }
sub server_port (@) { _getset(\$ServerPort, @_) }
sub server_port_for_client (@) { _getset(\$ServerPortForClient, @_) }
sub worker_connections (@) { _getset(\$WorkerConnections, @_) }
sub workers (@) { _getset(\$Workers, @_) }
sub log_level (@) { _getset(\$LogLevel, @_) }
sub repeat_each (@) { _getset(\$RepeatEach, @_) }

sub master_process_enabled (@) {
    if (@_) {
        $MasterProcessEnabled = $_[0] ? 'on' : 'off';
        return;
    }
    return $MasterProcessEnabled;
}

sub env_to_nginx (@) {
    croak "env_to_nginx: no arguments specified" unless @_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($) { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler ($) { unshift @TestCleanupHandlers, shift }

sub use_http3 ($) { return undef }

sub is_running ($) {
    my $pid = shift;
    return 0 unless $pid;
    return 0 unless kill 0, $pid;
    # a zombie has already exited (and released its sockets); init may be
    # slow to reap it
    if (open my $in, '<', "/proc/$pid/stat") {
        my $stat = <$in>;
        close $in;
        return 0 if defined $stat && $stat =~ /^\d+ \(.*\) Z/s;
    }
    return 1;
}

sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    if ($NoLongString) {
        return Test::More::is($got, $expected, $desc);
    }
    return Test::LongString::is_string($got, $expected, $desc);
}

sub parse_time ($) {
    my $tm = shift;
    return $tm unless defined $tm;
    if ($tm =~ s/([^_a-zA-Z])ms$/$1/) {
        $tm = $tm / 1000;
    } else {
        $tm =~ s/([^_a-zA-Z])s$/$1/;
    }
    return $tm;
}

sub trim ($) {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /g;
    $s =~ s/\s{2,}/ /g;
    return $s;
}

sub show_all_chars ($) {
    my $s = shift;
    $s =~ s/\n/\\n/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\t/\\t/g;
    return $s;
}

# "Name: value" per line; "!Name" means the header must be absent (undef)
sub parse_headers ($) {
    my $text = shift;
    my %h;
    for my $line (split /\n/, defined $text ? $text : '') {
        $line =~ s/^\s+|\s+$//g;
        if ($line =~ s/^!\s*//) {
            $h{$line} = undef;
            next;
        }
        my ($k, $v) = split /\s*:\s*/, $line, 2;
        $h{$k} = $v;
    }
    return \%h;
}

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

#--------------------------------------------------------------------------
# ports
#--------------------------------------------------------------------------

sub _port_in_proc ($$) {
    my ($file, $port) = @_;
    open my $in, '<', $file or return 0;
    while (<$in>) {
        if (/^\s*\d+: [0-9A-F]+:([0-9A-F]+) / && hex($1) == $port) {
            return 1;
        }
    }
    return 0;
}

sub is_tcp_port_used ($) {
    my $port = shift;
    return _port_in_proc('/proc/net/tcp', $port)
        || _port_in_proc('/proc/net/tcp6', $port);
}

sub is_udp_port_used ($) { _port_in_proc('/proc/net/udp', shift) }

sub gen_rand_port (;$$) {
    my ($tries, $used) = @_;
    $tries ||= 1000;
    $used ||= {};
    for (1 .. $tries) {
        my $port = int(rand 63547) + 1988;
        next if $used->{$port};
        my $sock = IO::Socket::INET->new(
            LocalAddr => $ServerAddr, LocalPort => $port, Proto => 'tcp',
            Listen => 5, Reuse => 1,
        );
        if ($sock) {
            close $sock;
            return $port;
        }
    }
    return undef;
}

#--------------------------------------------------------------------------
# $TEST_NGINX_* expansion
#--------------------------------------------------------------------------

sub expand_env_in_text ($$$) {
    my ($text, $name, $rand_ports) = @_;
    return undef unless defined $text;
    $rand_ports ||= $RandPorts;

    my %used = ($ServerPort => 1, map { $_ => 1 } values %$rand_ports);

    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $val;
        if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
            if (!defined $rand_ports->{$var}) {
                my $p = gen_rand_port(1000, \%used);
                bail_out("$name - Cannot find an available listening port "
                         . "number for $var.\n") unless defined $p;
                $rand_ports->{$var} = $p;
                $used{$p} = 1;
            }
            $val = $rand_ports->{$var};
        } else {
            if (!defined $ENV{$var}) {
                my $hint = '';
                if ($var eq 'TEST_NGINX_HTML_DIR') {
                    $hint = " (like upstream Test::Nginx, this runner does "
                          . "not set it: add \$ENV{TEST_NGINX_HTML_DIR} ||= "
                          . "html_dir(); before run_tests())";
                }
                bail_out("$name - No environment $var defined.$hint\n");
            }
            $val = $ENV{$var};
        }
        $val;
    }ge;

    return $text;
}

#--------------------------------------------------------------------------
# nginx version
#--------------------------------------------------------------------------

sub get_canon_version (@) {
    sprintf "%d.%03d%03d", $_[0], $_[1], $_[2];
}

sub _nginx_V () {
    my $out = `$NginxBinary -V 2>&1`;
    if (!defined $out || $? != 0) {
        bail_out("Failed to get the version of the Nginx in PATH: "
                 . (defined $out ? $out : ''));
    }
    return $out;
}

sub get_nginx_version () {
    my $out = _nginx_V();
    if ($out =~ m{built with OpenSSL (\d+)\.(\d+)\.(\d+)([a-z])?}s) {
        $OpenSSLVersion = get_canon_version($1, $2, $3);
        $OpenSSLVersion .= sprintf "%03d", ord($4) - ord('a') if defined $4;
    }
    if ($out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}s
        || $out =~ m{\w+/(\d+)\.(\d+)\.(\d+)}s)
    {
        $NginxRawVersion = "$1.$2.$3";
        return get_canon_version($1, $2, $3);
    }
    bail_out("Failed to parse the output of \"nginx -V\": $out\n");
}

sub get_pcre_version () {
    my $out = _nginx_V();
    return $out =~ /pcre/ ? 1 : 0;
}

sub can_run ($) {
    my $cmd = shift;
    if ($cmd =~ m{/}) {
        return (-f $cmd && -x _) ? $cmd : undef;
    }
    for my $dir (split /\Q$Config::Config{path_sep}\E/, $ENV{PATH} || '') {
        next if $dir eq '';
        my $abs = File::Spec->catfile($dir, $cmd);
        return $abs if -f $abs && -x _;
    }
    return undef;
}

sub _resolve_binary () {
    return if can_run($NginxBinary);
    if (!$ENV{TEST_NGINX_BINARY} && -x '/usr/sbin/nginx') {
        $NginxBinary = '/usr/sbin/nginx';
        return;
    }
    bail_out("Cannot find the nginx executable \"$NginxBinary\" "
             . "(set TEST_NGINX_BINARY or PATH)");
}

#--------------------------------------------------------------------------
# server root, user files, nginx.conf
#--------------------------------------------------------------------------

sub setup_server_root ($) {
    my $first_time = shift;

    if (-d $ServRoot) {
        # same policy as upstream: wipe the generated bits and insist that
        # nothing else lives in the server root
        remove_tree($ConfDir, glob("$ServRoot/*_cache"),
                    glob("$ServRoot/*_temp"));
        remove_tree($CacheDir, $HtmlDir, $LogDir);
        rmdir $ServRoot
            or bail_out("Can't remove $ServRoot (not empty?): $!");
    }

    for my $d ($ServRoot, $LogDir, $HtmlDir) {
        next if -d $d;
        mkdir $d or bail_out("Failed to do mkdir $d\n");
    }

    my $index = "$HtmlDir/index.html";
    open my $out, '>', $index
        or bail_out("Can't open $index for writing: $!\n");
    print $out '<html><head><title>It works!</title></head>'
             . '<body>It works!</body></html>';
    close $out;

    mkdir $ConfDir or bail_out("Failed to do mkdir $ConfDir\n");
}

sub run_customer_init_script ($) {
    my $block = shift;
    my $code = $block->post_setup_server_root;
    return unless $code;
    eval $code;
    bail_out($block->name . " - post_setup_server_root failed: $@") if $@;
}

sub write_user_files ($$) {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;
    my $files = $block->user_files;
    return unless $files;

    if (!ref $files) {
        my @list;
        my $cur;
        for my $line (split /^/m, $files) {
            if ($line =~ />>> (\S+)(?:\s+(.+))?/) {
                push @list, $cur if $cur;
                $cur = [$1, undef, $2];
                next;
            }
            $cur->[1] .= $line if $cur;
        }
        push @list, $cur if $cur;
        $files = \@list;

    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - wrong value type: ", ref $files,
                 ", only scalar or ARRAY are accepted");
    }

    for my $f (@$files) {
        my ($fname, $body, $date) = @$f;
        $body = '' unless defined $body;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{(.*)/}) {
            my $dir = $1;
            if (!-d $dir) {
                make_path($dir)
                    or bail_out("$name - Cannot create directory ", $dir);
            }
        }
        $body = expand_env_in_text($body, $name, $rand_ports);
        open my $out, '>', $path
            or bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print $out $body;
        close $out;
        if ($date) {
            my $cmd = "TZ=GMT touch -t '$date' '$path'";
            system($cmd) == 0
                or bail_out("Failed to run shell command: $cmd\n");
        }
    }
}

sub write_config_file ($$$) {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;

    my $http_config = $block->http_config;
    my $main_config = $block->main_config;
    my $post_main_config = $block->post_main_config;
    my $err_log_file = $block->error_log_file;
    my $server_name = $block->server_name;

    $config = '' unless defined $config;
    $http_config = expand_env_in_text($http_config, $name, $rand_ports);
    $http_config = '' unless defined $http_config;
    $http_config = $FilterHttpConfig->($http_config) if $FilterHttpConfig;

    my $postpone = $PostponeOutput;
    undef $postpone if $http_config =~ /\bpostpone_output\b/;
    if (defined $postpone && $postpone !~ /^\d+$/) {
        bail_out("Bad TEST_NGINX_POSTPONE_OUTPUT value: $postpone\n");
    }

    $main_config = '' unless defined $main_config;
    if ($LoadModules) {
        my @m = map { "load_module $_;" } grep { length } split /\s+/,
                $LoadModules;
        $main_config = join ' ', @m, $main_config if @m;
    }
    $main_config = expand_env_in_text($main_config, $name, $rand_ports);
    $post_main_config = expand_env_in_text(
        defined $post_main_config ? $post_main_config : '', $name,
        $rand_ports);

    $err_log_file = $ErrLogFile unless $err_log_file;
    $err_log_file = expand_env_in_text($err_log_file, $name, $rand_ports);
    $server_name = $ServerName unless defined $server_name;

    my ($listen_opts, $http2_directive) = ('', '');
    if (use_http2($block)) {
        # "http2 on;" only exists since nginx 1.25.1
        if ($NginxVersion >= 1.025001) {
            $http2_directive = ' http2 on;';
        } else {
            $listen_opts .= ' http2';
        }
    }
    $listen_opts .= ' reuseport' if $ReusePort;

    my $nginx_V = _nginx_V();
    my @temp;
    push @temp, "client_body_temp_path $ServRoot/client_body_temp;"
        unless $http_config =~ /\bclient_body_temp_path\b/;
    push @temp, "proxy_temp_path $ServRoot/proxy_temp;"
        unless $http_config =~ /\bproxy_temp_path\b/;
    for my $m (qw(fastcgi scgi uwsgi)) {
        push @temp, "${m}_temp_path $ServRoot/${m}_temp;"
            unless $nginx_V =~ /--without-http_${m}_module/;
    }
    my $temp = join ' ', @temp;

    my $env = '';
    for my $v (qw(MOCKEAGAIN_VERBOSE MOCKEAGAIN MOCKEAGAIN_WRITE_TIMEOUT_PATTERN
                  LD_PRELOAD LD_LIBRARY_PATH))
    {
        $env .= "env $v;\n";
    }
    for my $v (@EnvToNginx) {
        my $q = $v =~ /\s/ ? "'$v'" : $v;
        $env .= "env $q;\n";
    }

    my $extra_http = defined $postpone ? "    postpone_output $postpone;\n" : '';

    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    my $events_use = $EventType ? "    use $EventType;\n" : '';

    my $user = '';
    if (defined $WorkerUser) {
        $user = "user $WorkerUser;\n";
    } elsif ($> == 0) {
        $user = "user root;\n";
    }

    open my $out, '>', $ConfFile
        or bail_out("Can't open $ConfFile for writing: $!\n");
    print $out <<"_EOC_";
worker_processes  $Workers;
daemon $DaemonEnabled;
master_process $MasterProcessEnabled;
error_log $err_log_file $LogLevel;
pid       $PidFile;
$env
$main_config

http {
    access_log $AccLogFile; $temp

    default_type text/plain;
    keepalive_timeout  68000ms;
$extra_http
$http_config
    server {
        listen          $ServerPort$listen_opts;$http2_directive
        server_name     '$server_name';
        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }
}

$post_main_config

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
$events_use}

env ASAN_OPTIONS;
$user
_EOC_
    close $out;
}

#--------------------------------------------------------------------------
# log files
#--------------------------------------------------------------------------

sub error_log_data () {
    # give nginx a chance to log in the log phase (after the response)
    sleep $TestNginxSleep * 3;
    open my $in, '<', $ErrLogFile or return undef;
    seek $in, $ErrLogFilePos, 0 if !$CheckAccumErrLog && $ErrLogFilePos > 0;
    my @lines = <$in>;
    $ErrLogFilePos = tell($in) unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub access_log_data () {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $AccLogFile or do {
        die "open $AccLogFile failed: $!" if $AccLogFile ne 'off';
        return undef;
    };
    my @lines = <$in>;
    close $in;
    return \@lines;
}

sub get_pid_from_pidfile ($) {
    my $name = shift;
    open my $in, '<', $PidFile
        or bail_out("$name - Failed to open the pid file $PidFile for "
                    . "reading: $!");
    my $pid = do { local $/; <$in> };
    close $in;
    $pid = '' unless defined $pid;
    $pid =~ s/\s+//g;
    return $pid;
}

#--------------------------------------------------------------------------
# process control
#--------------------------------------------------------------------------

sub _reap ($) {
    my $pid = shift;
    waitpid($pid, WNOHANG) if $pid;
}

sub kill_process ($$$) {
    my ($pid, $wait, $name) = @_;
    return unless $pid;

    if ($wait) {
        kill($ENV{TEST_NGINX_FAST_SHUTDOWN} ? SIGTERM : SIGQUIT, $pid);
        my $left = timeout();
        while ($left > 0 && is_running($pid)) {
            _reap($pid);
            sleep 0.05;
            $left -= 0.05;
        }
    }

    my $step = $TestNginxSleep;
    for (1 .. 20) {
        _reap($pid);
        return unless is_running($pid);
        warn "WARNING: killing the child process $pid.\n" if $Verbose;
        kill SIGTERM, $pid;
        $step *= 1.2;
        $step = 0.5 if $step > 0.5;
        sleep $step;
    }

    _reap($pid);
    return unless is_running($pid);
    warn "$name - WARNING: killing the child process $pid with force...";
    kill SIGKILL, $pid;
    sleep 0.05;
    _reap($pid);
}

sub cleanup_test ($) {
    my $block = shift;
    $_->($block) for @TestCleanupHandlers;
}

sub cleanup () {
    $_->() for @CleanupHandlers;
    if (defined $ChildPid) {
        kill_process($ChildPid, 1, 'cleanup');
        undef $ChildPid;
    }
}

sub check_prev_block_shutdown_error_log () {
    my $block = $PrevBlock;
    return unless defined $block;
    if (defined $block->shutdown_error_log
        || defined $block->no_shutdown_error_log)
    {
        $CheckShutdownErrorLog->($block, $ENV{TEST_NGINX_NO_CLEAN} ? 1 : 0);
    }
}

#--------------------------------------------------------------------------
# valgrind: upstream lets valgrind write to the terminal; we additionally
# collect its output per block, print it, and fail the block when an error
# is attributed to code of this project (module .so / project sources).
#--------------------------------------------------------------------------

our $ValgrindLogPrefix;

sub _valgrind_cmd ($) {
    my $cmd = shift;
    my $opts;
    if ($UseValgrind =~ /^\d+$/) {
        $opts = "--tool=memcheck --leak-check=full --keep-debuginfo=yes "
              . "--show-possibly-lost=no";
        if ($ValgrindExitOnFirstErr) {
            $opts .= " --exit-on-first-error=yes --error-exitcode=1";
        }
        $opts = "--num-callers=100 -q $opts --gen-suppressions=all";
        $opts .= " --suppressions=valgrind.suppress" if -f 'valgrind.suppress';
    } else {
        $opts = "-q $UseValgrind";
    }
    $ValgrindLogPrefix = "$LogDir/valgrind";
    return "valgrind $opts --fullpath-after= "
         . "--log-file=$ValgrindLogPrefix.%p.log $cmd";
}

sub _valgrind_fail_re () {
    if (defined $ENV{TEST_NGINX_VALGRIND_FAIL_PATTERN}
        && length $ENV{TEST_NGINX_VALGRIND_FAIL_PATTERN})
    {
        return qr/$ENV{TEST_NGINX_VALGRIND_FAIL_PATTERN}/;
    }
    require Cwd;
    my @alts = (quotemeta(Cwd::cwd() . '/'));
    my $conf = '';
    if (open my $in, '<', $ConfFile) { local $/; $conf = <$in>; }
    while ($conf =~ /^\s*load_module\s+(\S+?);/mg) {
        my $so = $1;
        (my $base = $so) =~ s{.*/}{};
        push @alts, quotemeta($base);
    }
    my $alt = join '|', @alts;
    return qr/$alt/;
}

sub report_valgrind ($) {
    my $name = shift;
    return unless $UseValgrind && defined $ValgrindLogPrefix;
    my @files = glob("$ValgrindLogPrefix.*.log");
    return unless @files;

    my $err_kind = qr/Invalid\ (?:read|write|free)|uninitialised
                      |definitely\ lost|indirectly\ lost|Mismatched\ free
                      |overlap|fishy|Syscall\ param|Conditional\ jump/x;
    my $fail_re = _valgrind_fail_re();
    my @bad;
    my $out = '';

    for my $f (@files) {
        open my $in, '<', $f or next;
        my $text = do { local $/; <$in> };
        close $in;
        unlink $f;
        next unless defined $text && $text =~ /\S/;
        $out .= $text;

        # one record per error: valgrind ends each with an empty
        # "==PID== " line; generated suppressions are dropped
        (my $plain = $text) =~ s/^\{\n.*?^\}\n//msg;
        for my $r (split /^==\d+== *\n/m, $plain) {
            next unless $r =~ $err_kind;
            push @bad, $r if $r =~ $fail_re;
        }
    }

    return unless length $out;
    warn "$name - valgrind output:\n$out";
    if (@bad) {
        my $first = $bad[0];
        $first =~ s/^==\d+== //mg;
        Test::More::fail("$name - valgrind reported "
                         . scalar(@bad) . " error(s) in the module:\n"
                         . $first);
    }
}

#--------------------------------------------------------------------------
# HTTP/2 decision (same rules as upstream)
#--------------------------------------------------------------------------

our $LoadedIPCRun;

sub use_http2 ($) {
    my $block = shift;
    my $cached = $block->test_nginx_enabled_http2;
    return $cached if defined $cached;

    return undef if defined $block->no_http2;

    my $enable = sub {
        $block->set_value('test_nginx_enabled_http2', 1);
        if (!$LoadedIPCRun) { require IPC::Run; $LoadedIPCRun = 1 }
        return 1;
    };
    my $disable = sub {
        my $msg = shift;
        warn "WARNING: ", $block->name, " - $msg\n" if defined $msg;
        $block->set_value('test_nginx_enabled_http2', 0);
        return undef;
    };

    if (defined $block->http2) {
        bail_out("cannot use --- http2 with --- raw_request")
            if $block->raw_request;
        bail_out("cannot use --- http2 with --- pipelined_requests")
            if $block->pipelined_requests;
        return $enable->();
    }

    return $disable->() unless $UseHttp2;

    return $disable->("using raw_request HTTP/2, will not use HTTP/2")
        if $block->raw_request;
    return $disable->("using pipelined_requests, will not use HTTP/2")
        if $block->pipelined_requests;
    return $disable->() unless defined $block->request;
    return $disable->("explicitly rquires HTTP 1.0, so will not use HTTP/2")
        if !ref $block->request && $block->request =~ m{HTTP/1\.0}s;

    my $pat = qr{(proxy_pass .*:\$(server_port|TEST_NGINX_SERVER_PORT)
                | ngx.req.raw_header
                | lua_check_client_abort
                | ngx.req.socket
                | ngx.req.read_body)}x;
    for my $sec (qw(config user_files http_config)) {
        my $v = $block->$sec;
        if (defined $v && !ref $v && $v =~ $pat) {
            return $disable->("$1 does not support in HTTP/2");
        }
    }
    return $enable->();
}

#--------------------------------------------------------------------------
# driver
#--------------------------------------------------------------------------

sub run_tests () {
    srand($$ + time() * 1000000);
    _resolve_binary();
    $NginxVersion = get_nginx_version();
    $PcreVersion = get_pcre_version();

    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort
        unless defined $ENV{TEST_NGINX_SERVER_PORT};

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;

    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', $0 . ' ' . $block->name);
        run_test($block);
        cleanup_test($block);
        $PrevBlock = $block;
    }

    cleanup();
}

sub _parse_skip_spec ($$$) {
    my ($name, $spec, $what) = @_;
    if ($spec =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)([a-z])?
                   (?:\s*:\s*(.*))?\s*$}x)
    {
        return ($1, $2, $3, $4, $5, $6, $7);
    }
    bail_out("$name - Invalid --- $what spec: $spec");
}

sub _start_nginx_process ($$$) {
    my ($block, $name, $must_die) = @_;

    my $cmd = "$NginxBinary -p $ServRoot/ -c $ConfFile > /dev/null";
    if ($NginxVersion >= 1.019005) {
        $cmd = "$NginxBinary -e $ServRoot/logs/error.log -p $ServRoot/ "
             . "-c $ConfFile > /dev/null";
    }
    $cmd .= ' 2> /dev/null' if defined $block->suppress_stderr;

    my $use_valgrind = $UseValgrind && !defined $must_die;
    $cmd = _valgrind_cmd($cmd) if $use_valgrind;

    if (defined $ENV{TEST_NGINX_LD_PRELOAD}) {
        my $p = $ENV{TEST_NGINX_LD_PRELOAD};
        $p .= " $ENV{LD_PRELOAD}" if defined $ENV{LD_PRELOAD};
        $cmd = qq{LD_PRELOAD="$p" $cmd};
    }

    if ($use_valgrind) {
        warn "$name\n";
        my $pid = fork();
        bail_out("$name - fork() failed: $!") unless defined $pid;
        if ($pid == 0) {
            setpgrp;
            $InSubprocess = 1;
            Test::More->builder->no_ending(1);
            warn "command: $cmd\n" if $Verbose;
            { exec "exec $cmd" }
            POSIX::_exit(127);
        }
        $ChildPid = $pid;
        sleep $TestNginxSleep;

        # Wait until *this* nginx has written its pid file (it does so
        # after binding its sockets), so that a stale server left on the
        # port can not answer in its place.  (Upstream just retries
        # connecting.)
        my $deadline = time() + 60;
        while (time() < $deadline) {
            if (waitpid($pid, WNOHANG) == $pid) {
                my $status = $?;
                undef $ChildPid;
                my $tail = `tail -n 20 $ErrLogFile 2>/dev/null`;
                bail_out("$name - nginx under valgrind exited early "
                         . "(status $status):\n$tail");
            }
            if (-s $PidFile) {
                open my $in, '<', $PidFile;
                my $p = $in ? <$in> : '';
                last if defined $p && $p =~ /^\s*\Q$pid\E\s*$/;
            }
            sleep 0.05;
        }
        return (0, undef);
    }

    $ErrLogFilePos = 0;
    my $tries = 0;
    my $waited = 0;
    while (1) {
        warn "command: $cmd\n" if $Verbose;
        system($cmd);
        my $status = $?;

        if (defined $must_die) {
            return (1, $status);
        }

        last if $status == 0;

        if ($ENV{TEST_NGINX_IGNORE_MISSING_DIRECTIVES}
            and my $dir = _check_missing_directive())
        {
            return (0, undef, "the lack of directive $dir");
        }

        # A config error will not go away by retrying: fail fast
        # (upstream keeps retrying for 30s before bailing out).
        my $emerg = _fatal_emerg();
        if (defined $emerg) {
            bail_out("$name - Cannot start nginx using command \"$cmd\" "
                     . "(status code $status): $emerg");
        }

        $tries++;
        my $delay = 0.1 * $tries;
        $delay = 1 if $delay > 1;
        sleep $delay;
        $waited += $delay;
        next if $waited < 30;
        bail_out("$name - Cannot start nginx using command \"$cmd\" "
                 . "(status code $status).");
    }

    sleep $TestNginxSleep;
    return (0, undef);
}

sub _fatal_emerg () {
    open my $in, '<', $ErrLogFile or return undef;
    my $found;
    while (my $l = <$in>) {
        next unless $l =~ /\[emerg\]/;
        next if $l =~ /Address already in use|bind\(\) to .* failed/;
        chomp $l;
        $found = $l;
    }
    close $in;
    return $found;
}

sub _check_missing_directive () {
    open my $in, '<', $ErrLogFile or return 0;
    while (<$in>) {
        return $1 if /\[emerg\] \S+?: unknown directive "([^"]+)"/;
    }
    return 0;
}

# never signal a recycled pid from a stale pid file
sub _looks_like_nginx ($) {
    my $pid = shift;
    open my $in, '<', "/proc/$pid/cmdline" or return 1;
    my $cmd = do { local $/; <$in> };
    close $in;
    return 1 unless defined $cmd;
    return $cmd =~ /nginx|valgrind|memcheck/ ? 1 : 0;
}

sub _stop_running_nginx ($) {
    my $name = shift;
    return unless -f $PidFile;
    my $pid = get_pid_from_pidfile($name);
    if ($pid ne '' && is_running($pid) && _looks_like_nginx($pid)) {
        kill_process($pid, 1, $name);
    } else {
        unlink $PidFile;
    }
    if (defined $ChildPid) {
        kill_process($ChildPid, 1, $name) if is_running($ChildPid);
        _reap($ChildPid);
        undef $ChildPid;
    }
}

sub run_test ($) {
    my $block = shift;
    return if defined $block->SKIP;

    my $name = $block->name;
    my $first_time = $FirstTime;
    undef $FirstTime;

    my $rand_ports = {};
    $RandPorts = $rand_ports;

    my $config = expand_env_in_text($block->config, $name, $rand_ports);

    my $dry_run = 0;
    my ($should_restart, $should_reconfig) = (1, 1);

    local $LogLevel = $LogLevel;
    $LogLevel = $block->log_level if $block->log_level;

    my $must_die = $block->must_die;

    if (!defined $config) {
        if (!$NoNginxManager && !defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and could "
                     . "not get previous one. Use TEST_NGINX_NO_NGINX_MANAGER ?");
        }
        # reuse the running server as is
        ($should_restart, $should_reconfig) = (0, 0);

    } elsif ($NoNginxManager) {
        Test::More::diag("NO_NGINX_MANAGER activated: config for $name ignored");
        ($should_restart, $should_reconfig) = (0, 0);

    } else {
        $should_reconfig = (!defined $PrevConfig || $config ne $PrevConfig)
                           ? 1 : 0;
        $should_restart = ($should_reconfig || $ForceRestartOnTest) ? 1 : 0;
    }

    # ---- skip / todo specs ----
    my ($tests_to_skip, $should_skip, $skip_reason);

    if (defined(my $se = $block->skip_eval)) {
        if ($se =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            $tests_to_skip = $1;
            $skip_reason = 'skip_eval';
            my $code = $2;
            $should_skip = eval $code;
            bail_out("$name - skip_eval - failed to eval the Perl code "
                     . "\"$code\": $@") if $@;
        }
    }

    if (defined(my $sn = $block->skip_nginx)) {
        my ($n, $op, $v1, $v2, $v3, undef, $reason)
            = _parse_skip_spec($name, $sn, 'skip_nginx');
        $tests_to_skip = $n;
        $skip_reason = $reason || "nginx version $op $v1.$v2.$v3";
        my $ver = get_canon_version($v1, $v2, $v3);
        $should_skip = 1 if eval "$NginxVersion $op $ver";

    } elsif (defined(my $sn2 = $block->skip_nginx2)) {
        if ($sn2 =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)\s*
                      (or|and)\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)
                      (?:\s*:\s*(.*))?\s*$}x)
        {
            $tests_to_skip = $1;
            my ($opa, $va) = ($2, get_canon_version($3, $4, $5));
            my $conj = $6;
            my ($opb, $vb) = ($7, get_canon_version($8, $9, $10));
            $skip_reason = $11;
            my $a = eval "$NginxVersion $opa $va";
            my $b = eval "$NginxVersion $opb $vb";
            $should_skip = 1 if $conj eq 'or' ? ($a || $b) : ($a && $b);
        } else {
            bail_out("$name - Invalid --- skip_nginx2 spec: $sn2");
        }
    }

    if (defined(my $so = $block->skip_openssl)) {
        my ($n, $op, $v1, $v2, $v3, $v4, $reason)
            = _parse_skip_spec($name, $so, 'skip_openssl');
        $tests_to_skip = $n;
        $skip_reason = $reason
            || (defined $OpenSSLVersion
                ? "OpenSSL version $op $v1.$v2.$v3" . (defined $v4 ? $v4 : '')
                : "Not built with OpenSSL");
        my $ver = get_canon_version($v1, $v2, $v3);
        $ver .= sprintf "%03d", ord($v4) - ord('a') if defined $v4;
        $should_skip = 1
            if !defined $OpenSSLVersion || eval "$OpenSSLVersion $op $ver";
    }

    $skip_reason = 'various reasons' unless defined $skip_reason;

    my ($should_todo, $todo_reason);
    if (defined(my $tn = $block->todo_nginx)) {
        if ($tn =~ m{^\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$}) {
            $todo_reason = $5;
            my $ver = get_canon_version($2, $3, $4);
            $should_todo = 1 if eval "$NginxVersion $1 $ver";
        } else {
            bail_out("$name - Invalid --- todo_nginx spec: $tn");
        }
    }
    if (defined(my $todo = $block->todo)) {
        if ($todo =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            $should_todo = 1;
            $tests_to_skip = $1;
            $todo_reason = $2;
        } else {
            bail_out("$name - Invalid --- todo spec: $todo");
        }
    }
    $todo_reason = 'various reasons' unless defined $todo_reason;

    # ---- (re)start nginx ----
    if (!$NoNginxManager && !$should_skip && $should_restart) {
        $PrevConfig = $config if $should_reconfig;

        _stop_running_nginx($name);
        check_prev_block_shutdown_error_log();

        setup_server_root($first_time);
        run_customer_init_script($block);
        write_user_files($block, $rand_ports);
        write_config_file($block, $config, $rand_ports);

        if (defined $must_die) {
            # nginx is expected to refuse to start (repeated like upstream)
            for my $i (0 .. $RepeatEach - 1) {
                $ErrLogFilePos = 0;
                my (undef, $status) = _start_nginx_process($block, $name,
                                                           $must_die);
                my $exit_code = $status >> 8;
                if ($status == -1) {
                    Test::More::fail("$name - failed to execute the nginx "
                                     . "command line");
                } elsif ($status & 128) {
                    Test::More::fail("$name - nginx core dumped");
                } elsif (looks_like_number($must_die)) {
                    Test::More::is($must_die, $exit_code,
                                   "$name - die with the expected exit code");
                } else {
                    Test::More::isnt($status, 0, "$name - die as expected");
                }
                $CheckErrorLog->($block, undef, $dry_run, $i, 0);
                if ($status == 0) {
                    warn "WARNING: $name - nginx must die but it does not; "
                       . "killing it (req $i)\n";
                    for (1 .. 15) { last if -f $PidFile; sleep $TestNginxSleep }
                    _stop_running_nginx($name);
                }
            }
            return;
        }

        my (undef, undef, $dry) = _start_nginx_process($block, $name, undef);
        $dry_run = $dry if $dry;
    }

    # ---- requests ----
    if (my $init = $block->init) {
        eval $init;
        bail_out("$name - init failed: $@") if $@;
    }

    $ErrLogFilePos = 0;
    for my $i (1 .. $RepeatEach) {
        warn "Run the test block $name ...\n" if $Verbose;

        write_user_files($block, $rand_ports) if $i > 1;

        if ($should_skip && defined $tests_to_skip) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $tests_to_skip);
            }
        } elsif ($should_todo) {
            TODO: {
                Test::More::todo_skip("$name - $todo_reason",
                                      $tests_to_skip || 1);
            }
        } else {
            $RunTestHelper->($block, $dry_run, $i - 1);
        }
    }

    if (my $total = $ENV{TEST_NGINX_ERROR_LOG}) {
        if (-s $ErrLogFile) {
            if (open my $out, '>>', $total) {
                print $out "\n=== $0 $name\n";
                close $out;
                system("cat $ErrLogFile >> $total");
            }
        }
    }

    if ($UseValgrind && !defined $must_die) {
        # like upstream: stop the foreground nginx after every block so the
        # leak report belongs to this block
        _stop_running_nginx($name);
        report_valgrind($name);
    }
}

END {
    return if $InSubprocess;

    cleanup();

    if ($UseValgrind || !$ENV{TEST_NGINX_NO_CLEAN}) {
        local $?;
        if (defined $PidFile && -f $PidFile) {
            my $pid = get_pid_from_pidfile('END');
            if ($pid ne '' && is_running($pid) && _looks_like_nginx($pid)) {
                kill_process($pid, 1, 'END');
            } else {
                unlink $PidFile;
            }
        }
        if ($UseValgrind && $PrevBlock) {
            report_valgrind($PrevBlock->name);
        }
    }

    local $?;
    check_prev_block_shutdown_error_log();
}

1;
