# Common client interface, Ruby Net::HTTP over OpenSSL: one started session for all
# --repeat requests (keep-alive); verify_mode PEER with the default store (which
# honours SSL_CERT_FILE) and the host name; --chunked streams the body chunked.
require 'net/http'
require 'openssl'
require 'stringio'

method, url, *rest = ARGV
uri = URI(url)
body = nil
repeat = 1
chunked = false
headers = {}
until rest.empty?
  a = rest.shift
  case a
  when '--data-file' then body = File.binread(rest.shift)
  when '--header'
    k, v = rest.shift.split(':', 2)
    headers[k.strip] = v.strip
  when '--repeat' then repeat = Integer(rest.shift)
  when '--chunked' then chunked = true
  when '--verbose' then nil
  else
    warn "ruby_nethttp.rb: unknown option #{a}"
    exit 2
  end
end

rc = 0
$stdout.binmode
begin
  Net::HTTP.start(uri.hostname, uri.port, nil, use_ssl: uri.scheme == 'https',
                  verify_mode: OpenSSL::SSL::VERIFY_PEER, open_timeout: 30, read_timeout: 30,
                  # one attempt per request, as the other clients: a retry would hide
                  # the first attempt's error from the tests
                  max_retries: 0) do |http|
    repeat.times do
      req = Net::HTTPGenericRequest.new(method, !body.nil?, method != 'HEAD', uri.request_uri, headers)
      if body && chunked
        req['Transfer-Encoding'] = 'chunked'
        req.body_stream = StringIO.new(body)
      elsif body
        req.body = body
      end
      res = http.request(req)
      $stdout.write(res.body) if res.body
      $stdout.flush
      unless res.code.to_i.between?(200, 299)
        warn "status #{res.code}"
        rc = 1
      end
    end
  end
rescue StandardError => e # OpenSSL::SSL::SSLError included
  warn "ruby_nethttp.rb: #{e.class}: #{e.message}"
  rc = 1
end
exit rc
