// https through the Java hook (lang/java), the e2e clients' interface plus an API choice:
//   JavaHookClient API METHOD URL [--data-file F] [--header 'K: V']... [--repeat N]
//                  [--interval S] [--new-connection] [--app-trust STORE] [--http1]
// API: httpclient (java.net.http.HttpClient, its default version HTTP_2: ALPN h2,http/1.1;
//      --http1 forces HTTP/1.1 without ALPN) or urlconn (HttpsURLConnection).
// --repeat N requests: one client (keep-alive) unless --new-connection (a new HttpClient, or
// http.keepAlive=false for urlconn: a connection per request); --interval S between them,
// with "[client] request I" on stderr before each (the library's lines that follow belong
// to it). --app-trust STORE: an app-made SSLContext.getInstance("TLS") with its own
// TrustManager from STORE (PKCS12, password "changeit"), instead of SSLContext.getDefault().
// stdout: each response body as received; exit 0 only if every status was 2xx; an exception:
// "EXC <class>: <message>" and its causes on stderr, exit 1.
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class JavaHookClient {
    public static void main(String[] args) {
        try {
            System.exit(run(args));
        } catch (Throwable t) {
            System.err.println("EXC " + t.getClass().getName() + ": " + t.getMessage());
            for (Throwable c = t.getCause(); c != null; c = c.getCause()) {
                System.err.println("CAUSE " + c.getClass().getName() + ": " + c.getMessage());
            }
            System.exit(1);
        }
    }

    static int run(String[] args) throws Exception {
        String api = args[0];
        String method = args[1];
        URI uri = URI.create(args[2]);
        byte[] body = null;
        int repeat = 1;
        double interval = 0;
        boolean fresh = false, http1 = false;
        String appTrust = null;
        List<String[]> headers = new ArrayList<>();
        for (int i = 3; i < args.length; i++) {
            switch (args[i]) {
                case "--data-file": body = Files.readAllBytes(Path.of(args[++i])); break;
                case "--header": {
                    String h = args[++i];
                    int j = h.indexOf(':');
                    headers.add(new String[] {h.substring(0, j).trim(), h.substring(j + 1).trim()});
                    break;
                }
                case "--repeat": repeat = Integer.parseInt(args[++i]); break;
                case "--interval": interval = Double.parseDouble(args[++i]); break;
                case "--new-connection": fresh = true; break;
                case "--app-trust": appTrust = args[++i]; break;
                case "--http1": http1 = true; break;
                case "--verbose": break;
                default: throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        SSLContext ctx = appTrust != null ? appContext(appTrust) : SSLContext.getDefault();
        if (fresh && api.equals("urlconn")) {
            System.setProperty("http.keepAlive", "false");
        }
        int rc = 0;
        HttpClient client = null;
        for (int n = 0; n < repeat; n++) {
            if (interval > 0 || repeat > 1) {
                System.err.println("[client] request " + n);
                System.err.flush();
            }
            int status;
            byte[] got;
            if (api.equals("httpclient")) {
                if (client == null || fresh) {
                    HttpClient.Builder b = HttpClient.newBuilder().sslContext(ctx)
                            .proxy(HttpClient.Builder.NO_PROXY).connectTimeout(Duration.ofSeconds(30));
                    if (http1) b.version(HttpClient.Version.HTTP_1_1);
                    client = b.build();
                }
                HttpRequest.BodyPublisher pub = body == null ? HttpRequest.BodyPublishers.noBody()
                        : HttpRequest.BodyPublishers.ofByteArray(body);
                HttpRequest.Builder rb = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(30)).method(method, pub);
                for (String[] h : headers) rb.header(h[0], h[1]);
                HttpResponse<byte[]> r = client.send(rb.build(), HttpResponse.BodyHandlers.ofByteArray());
                status = r.statusCode();
                got = r.body();
            } else if (api.equals("urlconn")) {
                HttpsURLConnection c = (HttpsURLConnection) uri.toURL().openConnection(java.net.Proxy.NO_PROXY);
                if (appTrust != null) c.setSSLSocketFactory(ctx.getSocketFactory());
                c.setConnectTimeout(30000);
                c.setReadTimeout(30000);
                c.setRequestMethod(method);
                for (String[] h : headers) c.setRequestProperty(h[0], h[1]);
                if (body != null) {
                    c.setDoOutput(true);
                    c.setFixedLengthStreamingMode(body.length);
                    try (OutputStream os = c.getOutputStream()) {
                        os.write(body);
                    }
                }
                status = c.getResponseCode();
                InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
                ByteArrayOutputStream buf = new ByteArrayOutputStream();
                if (in != null) {
                    in.transferTo(buf);
                    in.close();
                }
                got = buf.toByteArray();
            } else {
                throw new IllegalArgumentException("unknown API " + api);
            }
            System.out.write(got);
            System.out.flush();
            if (status / 100 != 2) {
                System.err.println("status " + status);
                rc = 1;
            }
            if (interval > 0 && n + 1 < repeat) {
                Thread.sleep((long) (interval * 1000));
            }
        }
        return rc;
    }

    static SSLContext appContext(String store) throws Exception {
        KeyStore ts = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(store)) {
            ts.load(in, "changeit".toCharArray());
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ts);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }
}
