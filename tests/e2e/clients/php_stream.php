<?php
// PHP's stream wrapper (file_get_contents on an http:// URL: PHP's own socket code, not
// libcurl): it polls its blocking socket, then reads it with MSG_DONTWAIT, and takes a
// read that finds nothing for the end of its request. Usage: METHOD URL [--data-file F]
// [--header H]... [--ca-file PEM] (https: PHP's OpenSSL, verified with it); prints the
// body; exit 1 on a failed request or a status >= 300.
$argv = $_SERVER['argv'];
$method = $argv[1];
$url = $argv[2];
$opts = ['method' => $method, 'timeout' => 30, 'ignore_errors' => true, 'protocol_version' => 1.1];
$headers = [];
$ssl = [];
for ($i = 3; $i < count($argv); $i++) {
    switch ($argv[$i]) {
        case '--data-file': $opts['content'] = file_get_contents($argv[++$i]); break;
        case '--header': $headers[] = $argv[++$i]; break;
        case '--ca-file': $ssl['cafile'] = $argv[++$i]; break;
        default: fwrite(STDERR, "php_stream.php: unknown option {$argv[$i]}\n"); exit(2);
    }
}
if ($headers) { $opts['header'] = implode("\r\n", $headers) . "\r\n"; }
$body = @file_get_contents($url, false, stream_context_create(['http' => $opts, 'ssl' => $ssl]));
if ($body === false) {
    $e = error_get_last();
    fwrite(STDERR, "php_stream.php: request failed: " . ($e ? $e['message'] : '?') . "\n");
    exit(1);
}
echo $body;
$status = isset($http_response_header[0]) ? (int)explode(' ', $http_response_header[0])[1] : 0;
exit($status >= 200 && $status < 300 ? 0 : 1);
