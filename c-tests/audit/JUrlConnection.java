import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URL;

/** One GET with java.net.HttpURLConnection (blocking socket, NioSocketImpl in 17). */
public class JUrlConnection {
    public static void main(String[] args) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL(args[0]).openConnection();
        int code = c.getResponseCode();
        int n = 0;
        try (InputStream in = c.getInputStream()) {
            byte[] b = new byte[8192];
            for (int k; (k = in.read(b)) > 0; ) n += k;
        }
        c.disconnect();
        System.out.println("java-urlconnection " + code + " " + n);
    }
}
