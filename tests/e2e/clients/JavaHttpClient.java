// Common client interface, Java 17 java.net.http.HttpClient forced to HTTP/1.1:
// one client for all --repeat requests (keep-alive); --chunked sends the body
// through an InputStream publisher of unknown length (chunked).
import java.io.ByteArrayInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

public class JavaHttpClient {
    public static void main(String[] args) throws Exception {
        String method = args[0];
        URI uri = URI.create(args[1]);
        byte[] body = null;
        int repeat = 1;
        boolean chunked = false;
        List<String[]> headers = new ArrayList<>();
        for (int i = 2; i < args.length; i++) {
            switch (args[i]) {
                case "--data-file": body = Files.readAllBytes(Path.of(args[++i])); break;
                case "--header": {
                    String h = args[++i];
                    int j = h.indexOf(':');
                    headers.add(new String[] {h.substring(0, j).trim(), h.substring(j + 1).trim()});
                    break;
                }
                case "--repeat": repeat = Integer.parseInt(args[++i]); break;
                case "--chunked": chunked = true; break;
                case "--verbose": break;
                default: System.err.println("JavaHttpClient: unknown option " + args[i]); System.exit(2);
            }
        }
        HttpClient client = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .proxy(HttpClient.Builder.NO_PROXY)
                .connectTimeout(Duration.ofSeconds(30))
                .build();
        int rc = 0;
        for (int n = 0; n < repeat; n++) {
            HttpRequest.BodyPublisher pub;
            if (body == null) {
                pub = HttpRequest.BodyPublishers.noBody();
            } else if (chunked) {
                final byte[] b = body;
                pub = HttpRequest.BodyPublishers.ofInputStream(() -> new ByteArrayInputStream(b));
            } else {
                pub = HttpRequest.BodyPublishers.ofByteArray(body);
            }
            HttpRequest.Builder rb = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(30)).method(method, pub);
            for (String[] h : headers) rb.header(h[0], h[1]);
            HttpResponse<byte[]> r = client.send(rb.build(), HttpResponse.BodyHandlers.ofByteArray());
            System.out.write(r.body());
            System.out.flush();
            if (r.statusCode() < 200 || r.statusCode() >= 300) {
                System.err.println("status " + r.statusCode());
                rc = 1;
            }
        }
        System.exit(rc);
    }
}
