// Requests one after the other with java.net.HttpURLConnection (the JDK's keep-alive
// cache reuses one connection when each response is read to its end).
// usage: JavaUrlSeq BASE_URL INTERVAL STEP...   STEP: PATH or PATH|Name: value|...
// "[client] request I" on stderr before each request; INTERVAL seconds after each
// response. stdout: one JSON line per request {"i", "ts", "status", "len", "sha256"}
// or {"i", "error"} (the JDK cannot tell whether a connection was reused).
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.Proxy;
import java.net.URL;
import java.security.MessageDigest;

public class JavaUrlSeq {
    public static void main(String[] args) throws Exception {
        String base = args[0];
        long intervalMs = (long) (Double.parseDouble(args[1]) * 1000);
        int rc = 0;
        for (int i = 2; i < args.length; i++) {
            int n = i - 2;
            String[] parts = args[i].split("\\|");
            System.err.println("[client] request " + n);
            System.err.flush();
            double ts = System.currentTimeMillis() / 1000.0;
            String rec;
            try {
                HttpURLConnection c = (HttpURLConnection) new URL(base + parts[0]).openConnection(Proxy.NO_PROXY);
                c.setConnectTimeout(30000);
                c.setReadTimeout(30000);
                for (int j = 1; j < parts.length; j++) {
                    int k = parts[j].indexOf(':');
                    c.setRequestProperty(parts[j].substring(0, k).trim(), parts[j].substring(k + 1).trim());
                }
                int status = c.getResponseCode();
                InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
                ByteArrayOutputStream buf = new ByteArrayOutputStream();
                if (in != null) {
                    in.transferTo(buf);
                    in.close();
                }
                byte[] body = buf.toByteArray();
                StringBuilder hex = new StringBuilder();
                for (byte b : MessageDigest.getInstance("SHA-256").digest(body)) hex.append(String.format("%02x", b));
                rec = String.format(java.util.Locale.ROOT, "{\"i\": %d, \"ts\": %.3f, \"status\": %d, \"len\": %d, \"sha256\": \"%s\"}",
                                    n, ts, status, body.length, hex);
                if (status < 200 || status >= 300) rc = 1;
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
