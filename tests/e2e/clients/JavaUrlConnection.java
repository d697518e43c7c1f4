// Common client interface, Java 17 java.net.HttpURLConnection: the JDK's
// keep-alive cache reuses the connection across --repeat requests when each
// response is read to its end; --chunked uses setChunkedStreamingMode.
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.Proxy;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

public class JavaUrlConnection {
    public static void main(String[] args) throws Exception {
        String method = args[0];
        URL url = new URL(args[1]);
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
                default: System.err.println("JavaUrlConnection: unknown option " + args[i]); System.exit(2);
            }
        }
        int rc = 0;
        for (int n = 0; n < repeat; n++) {
            HttpURLConnection c = (HttpURLConnection) url.openConnection(Proxy.NO_PROXY);
            c.setConnectTimeout(30000);
            c.setReadTimeout(30000);
            c.setRequestMethod(method);
            for (String[] h : headers) c.setRequestProperty(h[0], h[1]);
            if (body != null) {
                c.setDoOutput(true);
                if (chunked) c.setChunkedStreamingMode(65536);
                else c.setFixedLengthStreamingMode(body.length);
                try (OutputStream os = c.getOutputStream()) {
                    os.write(body);
                }
            }
            int status = c.getResponseCode();
            InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            if (in != null) {
                in.transferTo(buf);
                in.close();
            }
            System.out.write(buf.toByteArray());
            System.out.flush();
            if (status < 200 || status >= 300) {
                System.err.println("status " + status);
                rc = 1;
            }
        }
        System.exit(rc);
    }
}
