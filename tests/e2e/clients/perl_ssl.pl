#!/usr/bin/perl
# Common client interface, Perl IO::Socket::SSL (Net::SSLeay, SSL_set_fd) with a
# minimal HTTP/1.1 of its own: all --repeat requests on one TLS connection;
# certificate verified against SSL_CERT_FILE (else the system store) and the host
# name. --chunked sends the body in 64 KiB chunks.
use strict;
use warnings;
use IO::Socket::SSL;

my ($method, $url, @rest) = @ARGV;
my ($host, $port, $path) = $url =~ m{^https://([^/:]+)(?::(\d+))?(/.*)?$}
    or die "perl_ssl.pl: not an https URL: $url\n";
$port ||= 443;
$path ||= '/';
my (@headers, $body, $chunked);
my $repeat = 1;
while (@rest) {
    my $a = shift @rest;
    if ($a eq '--data-file') {
        my $f = shift @rest;
        open(my $fh, '<:raw', $f) or die "open $f: $!";
        local $/; $body = <$fh>; close $fh;
    } elsif ($a eq '--header') { push @headers, shift @rest; }
    elsif ($a eq '--repeat') { $repeat = shift @rest; }
    elsif ($a eq '--chunked') { $chunked = 1; }
    elsif ($a eq '--verbose') { }
    else { print STDERR "perl_ssl.pl: unknown option $a\n"; exit 2; }
}

my %ca = $ENV{SSL_CERT_FILE} ? (SSL_ca_file => $ENV{SSL_CERT_FILE}) : ();
my $s = IO::Socket::SSL->new(PeerHost => $host, PeerPort => $port, Timeout => 30,
                             SSL_verify_mode => SSL_VERIFY_PEER, SSL_hostname => $host,
                             SSL_verifycn_name => $host, SSL_verifycn_scheme => 'http', %ca)
    or do { print STDERR "perl_ssl.pl: $SSL_ERROR\n"; exit 1; };
binmode STDOUT;

# a failed read or write names the TLS library's error when there is one
sub fail { die "perl_ssl.pl: $_[0]: " . (IO::Socket::SSL::errstr() || $! || 'connection closed') . "\n" }
sub readline_crlf { my $l = <$s>; defined $l or fail('read'); $l }

my $rc = 0;
my $hosthdr = $port == 443 ? $host : "$host:$port";
for (1 .. $repeat) {
    my $req = "$method $path HTTP/1.1\r\nHost: $hosthdr\r\nUser-Agent: perl_ssl.pl\r\n";
    $req .= "$_\r\n" for @headers;
    if (defined $body && $chunked) {
        $req .= "Transfer-Encoding: chunked\r\n\r\n";
        for (my $o = 0; $o < length $body; $o += 65536) {
            my $c = substr($body, $o, 65536);
            $req .= sprintf("%x\r\n", length $c) . $c . "\r\n";
        }
        $req .= "0\r\n\r\n";
    } elsif (defined $body) {
        $req .= "Content-Length: " . length($body) . "\r\n\r\n" . $body;
    } else {
        $req .= "\r\n";
    }
    print {$s} $req or fail('write');
    my ($status) = readline_crlf() =~ m{^HTTP/1\.\d (\d+)} or die "perl_ssl.pl: bad status line\n";
    my %h;
    while ((my $l = readline_crlf()) !~ /^\r?\n$/) {
        my ($k, $v) = $l =~ /^([^:]+):\s*(.*?)\r?\n$/;
        $h{lc $k} = $v;
    }
    my $data = '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        while ((my $n = hex(readline_crlf())) > 0) {
            read($s, my $c, $n) == $n or fail('short chunk');
            $data .= $c;
            readline_crlf();
        }
        readline_crlf();
    } elsif (my $n = $h{'content-length'}) {
        my $got = 0;
        while ($got < $n) {
            my $r = read($s, $data, $n - $got, $got);
            fail('short body') unless $r;
            $got += $r;
        }
    }
    print $data;
    if ($status < 200 || $status > 299) { print STDERR "status $status\n"; $rc = 1; }
}
$s->close(SSL_no_shutdown => 0);
exit $rc;
