package dev.lunar.intercept;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.ref.ReferenceQueue;
import java.lang.ref.WeakReference;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.SSLSocketFactory;

/**
 * The relay (lang/PROTOCOL.md section 5): one loopback server per process, started at the first
 * dressed connection, where the preload moves a dressed connection whose bytes must reach the
 * origin. It reads the greeting {@code LUNAR-RELAY/1 <token> <conn-id>\r\n} (at most 256
 * bytes, within 5 s), makes real TLS to the origin with the program's own context and
 * parameters (ALPN http/1.1), and pipes both ways. A failed handshake fails the dressed socket
 * or engine with that very exception.
 */
final class Relay implements Runnable {
    /** What the relay needs of a dressed socket or engine. */
    interface Dressed {
        String host();

        int port();

        /** The address the program connected to, or null (an engine): the relay resolves host(). */
        InetAddress address();

        /** The program's current TLS settings for the connection (a copy). */
        SSLParameters parameters();

        /** The JDK's socket factory of the program's context. */
        SSLSocketFactory realFactory();

        /**
         * The verifier of an HttpsURLConnection that checks the host name after the handshake
         * (endpoint identification off, a HostnameVerifier of its own), or null.
         */
        javax.net.ssl.HostnameVerifier urlVerifier();

        /** The program's next read or write (unwrap or wrap) throws e. */
        void fail(IOException e);

        /** The relay made real TLS for the connection. */
        void relayed(SSLSession real);
    }

    private static final int GREETING_MAX = 256;
    private static final int GREETING_MILLIS = 5000;
    private static final int ORIGIN_CONNECT_MILLIS = 30000;
    private static final int HANDSHAKE_MILLIS = 30000;
    private static final byte[] GREETING = "LUNAR-RELAY/1 ".getBytes(StandardCharsets.US_ASCII);
    /** Sent to a dressed connection whose real handshake failed, so that its next read happens. */
    private static final int FAILED = 0x15;

    private static final AtomicLong IDS = new AtomicLong();
    private static final ConcurrentHashMap<Long, Entry> REGISTRY = new ConcurrentHashMap<>();
    private static final ReferenceQueue<Dressed> GONE = new ReferenceQueue<>();
    private static volatile Relay instance;
    private static boolean failed;

    private final ServerSocket server;
    private final int port;

    private Relay(ServerSocket server) {
        this.server = server;
        this.port = server.getLocalPort();
    }

    /** The relay's port, starting it the first time; -1 if it cannot run (nothing is dressed). */
    static int port() {
        Relay r = instance;
        if (r != null) {
            return r.port;
        }
        synchronized (Relay.class) {
            if (instance == null && !failed) {
                try {
                    ServerSocket server = new ServerSocket(0, 50, InetAddress.getByAddress(new byte[] {127, 0, 0, 1}));
                    Relay relay = new Relay(server);
                    start(relay, "lunar-relay");
                    instance = relay;
                } catch (Throwable t) {
                    failed = true;
                }
            }
            return instance != null ? instance.port : -1;
        }
    }

    /** Names a dressed connection for the relay; its marker carries the number. */
    static long register(Dressed dressed) {
        Object gone;
        while ((gone = GONE.poll()) != null) {
            REGISTRY.remove(((Entry) gone).id, gone);
        }
        long id = IDS.incrementAndGet();
        REGISTRY.put(id, new Entry(dressed, id));
        return id;
    }

    static void unregister(long id) {
        REGISTRY.remove(id);
    }

    /** The marker line of connection id. */
    static byte[] marker(long id) {
        return ("LUNAR-HOOK/1 " + Hook.token + " " + port() + " " + id + "\r\n").getBytes(StandardCharsets.US_ASCII);
    }

    private static final class Entry extends WeakReference<Dressed> {
        final long id;

        Entry(Dressed dressed, long id) {
            super(dressed, GONE);
            this.id = id;
        }
    }

    private static void start(Runnable task, String name) {
        Thread t = new Thread(null, task, name, 0, false);
        t.setDaemon(true);
        t.start();
    }

    @Override
    public void run() {
        while (true) {
            try {
                Socket accepted = server.accept();
                start(new Connection(accepted), "lunar-relay-connection");
            } catch (Throwable t) {
                // Keep accepting (a passing EMFILE); never a word on the program's streams.
                try {
                    Thread.sleep(50);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }
    }

    /** One connection the preload moved here. */
    private static final class Connection implements Runnable {
        private final Socket accepted;

        Connection(Socket accepted) {
            this.accepted = accepted;
        }

        @Override
        public void run() {
            try {
                serve();
            } catch (Throwable t) {
                DressedSocket.closeQuietly(accepted);
            }
        }

        private void serve() throws IOException {
            byte[] buf = new byte[GREETING_MAX];
            int have = 0;
            int end = -1;
            InputStream in = accepted.getInputStream();
            long deadline = System.nanoTime() + GREETING_MILLIS * 1_000_000L;
            try {
                while (end < 0) {
                    long left = (deadline - System.nanoTime()) / 1_000_000L;
                    if (left <= 0 || have == GREETING_MAX) {
                        reset();
                        return;
                    }
                    accepted.setSoTimeout((int) left);
                    int n = in.read(buf, have, GREETING_MAX - have);
                    if (n < 0) {
                        reset();
                        return;
                    }
                    for (int i = Math.max(have - 1, 0); i + 1 < have + n; i++) {
                        if (buf[i] == '\r' && buf[i + 1] == '\n') {
                            end = i;
                            break;
                        }
                    }
                    have += n;
                }
            } catch (SocketTimeoutException e) {
                reset();
                return;
            }
            Dressed dressed = named(buf, end);
            if (dressed == null) {
                reset();
                return;
            }
            accepted.setSoTimeout(0);
            SSLSocket origin;
            try {
                origin = connect(dressed);
            } catch (IOException e) {
                // The program's own error: an untrusted certificate (its SSLHandshakeException), a
                // refused connection. Its next read or write throws it; the byte wakes a reader.
                dressed.fail(e);
                try {
                    accepted.getOutputStream().write(FAILED);
                } catch (IOException ignored) {
                    // it is closed below
                }
                DressedSocket.closeQuietly(accepted);
                return;
            }
            dressed.relayed(origin.getSession());
            dressed = null;
            OutputStream toOrigin = origin.getOutputStream();
            int rest = have - (end + 2);
            if (rest > 0) {
                toOrigin.write(buf, end + 2, rest);
            }
            start(new Pipe(origin, accepted), "lunar-relay-pipe");
            new Pipe(accepted, origin).run();
        }

        /** The dressed connection the greeting names, or null (wrong token, unknown id). */
        private Dressed named(byte[] line, int end) {
            if (end < GREETING.length) {
                return null;
            }
            for (int i = 0; i < GREETING.length; i++) {
                if (line[i] != GREETING[i]) {
                    return null;
                }
            }
            int space = -1;
            for (int i = GREETING.length; i < end; i++) {
                if (line[i] == ' ') {
                    space = i;
                    break;
                }
            }
            if (space < 0) {
                return null;
            }
            byte[] token = Hook.token.getBytes(StandardCharsets.US_ASCII);
            byte[] got = java.util.Arrays.copyOfRange(line, GREETING.length, space);
            if (!MessageDigest.isEqual(got, token)) {
                return null;
            }
            long id = Hook.number(new String(line, space + 1, end - space - 1, StandardCharsets.US_ASCII), 19);
            if (id <= 0) {
                return null;
            }
            Entry e = REGISTRY.get(id);
            return e == null ? null : e.get();
        }

        /**
         * Real TLS to the origin, with the program's context and settings. An HttpsURLConnection
         * with a HostnameVerifier of its own gets its own check: the certificate's names (the
         * JDK's HTTPS identification), else its verifier, else "HTTPS hostname wrong" as the
         * JDK says it.
         */
        private SSLSocket connect(Dressed dressed) throws IOException {
            InetAddress address = dressed.address();
            if (address == null) {
                address = InetAddress.getByName(dressed.host());
            }
            SSLParameters p = dressed.parameters();
            if (p.getServerNames() != null && p.getServerNames().isEmpty()) {
                // None set by the program: the JDK's default, from the host name.
                p.setServerNames(null);
            }
            p.setApplicationProtocols(new String[] {"http/1.1"});
            javax.net.ssl.HostnameVerifier verifier = dressed.urlVerifier();
            if (verifier == null) {
                return handshake(dressed, address, p);
            }
            p.setEndpointIdentificationAlgorithm("HTTPS");
            try {
                return handshake(dressed, address, p);
            } catch (javax.net.ssl.SSLHandshakeException e) {
                // Trusted but not for this name (or not trusted: the same error again below).
            }
            p.setEndpointIdentificationAlgorithm(null);
            SSLSocket tls = handshake(dressed, address, p);
            boolean ok;
            try {
                ok = verifier.verify(dressed.host(), tls.getSession());
            } catch (RuntimeException e) {
                ok = false;
            }
            if (!ok) {
                DressedSocket.closeQuietly(tls);
                // The JDK's own words (HttpsClient.checkURLSpoofing), which 25 changed.
                throw new IOException(Runtime.version().feature() >= 25
                        ? "Wrong HTTPS hostname: should be <" + dressed.host() + ">"
                        : "HTTPS hostname wrong:  should be <" + dressed.host() + ">");
            }
            return tls;
        }

        private SSLSocket handshake(Dressed dressed, InetAddress address, SSLParameters p) throws IOException {
            Socket plain = new Socket();
            SSLSocket tls = null;
            try {
                plain.connect(new InetSocketAddress(address, dressed.port()), ORIGIN_CONNECT_MILLIS);
                tls = (SSLSocket) dressed.realFactory().createSocket(plain, dressed.host(), dressed.port(), true);
                tls.setUseClientMode(true);
                tls.setSSLParameters(p);
                tls.setSoTimeout(HANDSHAKE_MILLIS);
                tls.startHandshake();
                tls.setSoTimeout(0);
                return tls;
            } catch (IOException | RuntimeException e) {
                DressedSocket.closeQuietly(tls != null ? tls : plain);
                if (e instanceof RuntimeException) {
                    throw new SSLException(e.getMessage(), e);
                }
                throw (IOException) e;
            }
        }

        private void reset() {
            try {
                accepted.setSoLinger(true, 0);
            } catch (IOException ignored) {
                // closed below anyway
            }
            DressedSocket.closeQuietly(accepted);
        }
    }

    /** Copies one direction; either end closing closes both. */
    private static final class Pipe implements Runnable {
        private final Socket from;
        private final Socket to;

        Pipe(Socket from, Socket to) {
            this.from = from;
            this.to = to;
        }

        @Override
        public void run() {
            byte[] buf = new byte[16384];
            try {
                InputStream in = from.getInputStream();
                OutputStream out = to.getOutputStream();
                int n;
                while ((n = in.read(buf)) >= 0) {
                    out.write(buf, 0, n);
                }
            } catch (Throwable ignored) {
                // an end closed or reset: close both
            } finally {
                DressedSocket.closeQuietly(from);
                DressedSocket.closeQuietly(to);
            }
        }
    }
}
