// make bench: sequential keep-alive GETs from Java's HttpClient (HTTP/1.1), one at a time.
//   java JavaBench URL REQUESTS WARMUP [HEADER VALUE]...
// Prints "us_per_req X" for the REQUESTS after the warm-up (the warm-up pays the connect,
// the hook's and the library's set-up, and the JIT's).
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class JavaBench {
    public static void main(String[] args) throws Exception {
        int requests = Integer.parseInt(args[1]);
        int warmup = Integer.parseInt(args[2]);
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        HttpRequest.Builder builder = HttpRequest.newBuilder(URI.create(args[0]));
        for (int i = 3; i + 1 < args.length; i += 2) {
            builder.header(args[i], args[i + 1]);
        }
        HttpRequest request = builder.build();
        for (int i = 0; i < warmup; i++) {
            once(client, request);
        }
        long start = System.nanoTime();
        for (int i = 0; i < requests; i++) {
            once(client, request);
        }
        System.out.println("us_per_req " + (System.nanoTime() - start) / 1000.0 / requests);
    }

    private static void once(HttpClient client, HttpRequest request) throws Exception {
        HttpResponse<Void> response = client.send(request, HttpResponse.BodyHandlers.discarding());
        if (response.statusCode() != 200) {
            throw new IllegalStateException("status " + response.statusCode());
        }
    }
}
