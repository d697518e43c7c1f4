<?php
// Common client interface, PHP's curl extension (libcurl, OpenSSL): one handle for
// all --repeat requests (keep-alive); CA file from SSL_CERT_FILE (libcurl reads no
// variable itself); HTTP/1.1; --chunked sends the body through a read callback.
$argv = $_SERVER['argv'];
$method = $argv[1];
$url = $argv[2];
$body = null;
$repeat = 1;
$chunked = false;
$headers = [];
for ($i = 3; $i < count($argv); $i++) {
    switch ($argv[$i]) {
        case '--data-file': $body = file_get_contents($argv[++$i]); break;
        case '--header': $headers[] = $argv[++$i]; break;
        case '--repeat': $repeat = (int)$argv[++$i]; break;
        case '--chunked': $chunked = true; break;
        case '--verbose': break;
        default: fwrite(STDERR, "php_curl.php: unknown option {$argv[$i]}\n"); exit(2);
    }
}
$h = curl_init();
$ca = getenv('SSL_CERT_FILE');
curl_setopt_array($h, [
    CURLOPT_URL => $url,
    CURLOPT_CUSTOMREQUEST => $method,
    CURLOPT_RETURNTRANSFER => true,
    CURLOPT_HTTP_VERSION => CURL_HTTP_VERSION_1_1,
    CURLOPT_PROXY => '',
    CURLOPT_TIMEOUT => 30,
    CURLOPT_SSL_VERIFYPEER => true,
    CURLOPT_SSL_VERIFYHOST => 2,
]);
if ($ca) {
    curl_setopt($h, CURLOPT_CAINFO, $ca);
}
$rc = 0;
for ($n = 0; $n < $repeat; $n++) {
    $hdrs = $headers;
    if ($body !== null && $chunked) {
        $off = 0;
        $hdrs[] = 'Transfer-Encoding: chunked';
        curl_setopt($h, CURLOPT_UPLOAD, true);
        curl_setopt($h, CURLOPT_READFUNCTION, function ($ch, $fd, $len) use ($body, &$off) {
            $c = (string)substr($body, $off, min($len, 65536));
            $off += strlen($c);
            return $c;
        });
    } elseif ($body !== null) {
        curl_setopt($h, CURLOPT_POSTFIELDS, $body);
    }
    curl_setopt($h, CURLOPT_HTTPHEADER, $hdrs);
    $out = curl_exec($h);
    if ($out === false) {
        fwrite(STDERR, "php_curl.php: curl error " . curl_errno($h) . ": " . curl_error($h) . "\n");
        exit(1);
    }
    fwrite(STDOUT, $out);
    $status = curl_getinfo($h, CURLINFO_RESPONSE_CODE);
    if ($status < 200 || $status > 299) {
        fwrite(STDERR, "status $status\n");
        $rc = 1;
    }
}
curl_close($h);
exit($rc);
