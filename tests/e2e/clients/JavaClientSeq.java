// Requests one after the other with java.net.http.HttpClient (HTTP/1.1; with
// -Dseq.h2c=true its default version, HTTP/2, which over plain http offers h2c with
// `Upgrade: h2c` and goes on in HTTP/1.1 when the server declines): one client for all
// requests, whose pool keeps the connection alive between them.
// usage: JavaClientSeq BASE_URL INTERVAL STEP...   STEP: PATH or PATH|Name: value|...
// "[client] request I" on stderr before each request; INTERVAL seconds after each
// response. stdout: one JSON line per request {"i", "ts", "status", "len", "sha256"}
// or {"i", "error"}.
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.security.MessageDigest;
import java.time.Duration;

public class JavaClientSeq {
    public static void main(String[] args) throws Exception {
        String base = args[0];
        long intervalMs = (long) (Double.parseDouble(args[1]) * 1000);
        HttpClient.Builder builder = HttpClient.newBuilder()
                .proxy(HttpClient.Builder.NO_PROXY)
                .connectTimeout(Duration.ofSeconds(30));
        if (!Boolean.getBoolean("seq.h2c")) builder.version(HttpClient.Version.HTTP_1_1);
        HttpClient client = builder.build();
        int rc = 0;
        for (int i = 2; i < args.length; i++) {
            int n = i - 2;
            String[] parts = args[i].split("\\|");
            System.err.println("[client] request " + n);
            System.err.flush();
            double ts = System.currentTimeMillis() / 1000.0;
            String rec;
            try {
                HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(base + parts[0]))
                        .timeout(Duration.ofSeconds(30));
                for (int j = 1; j < parts.length; j++) {
                    int k = parts[j].indexOf(':');
                    request.header(parts[j].substring(0, k).trim(), parts[j].substring(k + 1).trim());
                }
                HttpResponse<byte[]> response = client.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
                byte[] body = response.body();
                StringBuilder hex = new StringBuilder();
                for (byte b : MessageDigest.getInstance("SHA-256").digest(body)) hex.append(String.format("%02x", b));
                rec = String.format(java.util.Locale.ROOT, "{\"i\": %d, \"ts\": %.3f, \"status\": %d, \"len\": %d, \"sha256\": \"%s\"}",
                                    n, ts, response.statusCode(), body.length, hex);
                if (response.statusCode() < 200 || response.statusCode() >= 300) rc = 1;
            } catch (Exception e) {
                rec = String.format(java.util.Locale.ROOT, "{\"i\": %d, \"ts\": %.3f, \"error\": \"%s\"}", n, ts,
                                    e.toString().replace("\\", "/").replace("\"", "'"));
                rc = 1;
            }
            System.out.println(rec);
            System.out.flush();
            if (i + 1 < args.length) Thread.sleep(intervalMs);
        }
        System.exit(rc);
    }
}
