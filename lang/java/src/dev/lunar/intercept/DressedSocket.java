package dev.lunar.intercept;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketAddress;
import java.net.SocketException;
import java.net.SocketOption;
import java.nio.channels.SocketChannel;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.BiFunction;
import javax.net.ssl.HandshakeCompletedEvent;
import javax.net.ssl.HandshakeCompletedListener;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.SSLSocketFactory;

/**
 * An {@code SSLSocket} of the program's that is, when dressed, a plain TCP socket to the
 * origin's address and intercepted port (lang/PROTOCOL.md sections 3-4): its "handshake" writes
 * the marker line, in one write, before any byte of the program's; its session is plausible;
 * its streams carry the program's plaintext, which the preload diverts to Lunar Proxy (or moves
 * to the relay, which makes the real TLS).
 *
 * <p>Three states. Unconnected (from {@code createSocket()}): socket options go to a plain
 * socket made in advance, TLS settings to a real unconnected {@code SSLSocket} of the JDK's, the
 * holder. {@code connect} decides: dressed (the plain socket connects) or real (the holder,
 * given the options set so far, connects and is the socket from then on). A dressed socket
 * whose program turns it into a server or offers HTTP/2 only before the handshake becomes a real
 * {@code SSLSocket} layered over the plain one. Every TLS setting lives in the holder, so the
 * relay reads the program's latest {@code SSLParameters} there.
 */
final class DressedSocket extends SSLSocket implements Relay.Dressed {
    // Socket options set while unconnected, replayed on the holder if it becomes the socket.
    private static final int O_TIMEOUT = 1, O_NODELAY = 2, O_KEEPALIVE = 4, O_SNDBUF = 8, O_RCVBUF = 16,
            O_LINGER = 32, O_TOS = 64, O_REUSE = 128, O_PERF = 256;

    private final LunarContextSpi context;
    private final SSLSocketFactory realFactory;
    /** The JDK's unconnected SSLSocket holding this socket's TLS settings. */
    private final SSLSocket holder;
    /** The plain socket; dressed once connected while {@link #real} is null. */
    private final Socket plain;
    /** Once set, the real SSLSocket every call goes to (the holder, or layered over plain). */
    private volatile SSLSocket real;
    private volatile boolean dressed;
    private final Object lock = new Object();
    private int optionsSet;
    private int[] performance;
    private SocketAddress bound;
    private final List<Object[]> generic = new java.util.ArrayList<>(0);

    private final List<HandshakeCompletedListener> listeners = new CopyOnWriteArrayList<>();
    /** The HttpsClient of an HttpsURLConnection that checks the host name itself, or null. */
    private volatile Object urlClient;
    private volatile String host;
    private volatile int port;
    private volatile InetAddress address;
    private volatile long id;
    private volatile DressedSession session;
    private volatile IOException failure;
    private volatile boolean handshaken;
    private InputStream in;
    private OutputStream out;

    DressedSocket(LunarContextSpi context, SSLSocketFactory realFactory, SSLSocket holder) {
        this.context = context;
        this.realFactory = realFactory;
        this.holder = holder;
        this.plain = new Socket();
    }

    // ---- what decides -----------------------------------------------------------------------

    /** Connects dressed (the factory decided already). */
    void connectDressed(InetSocketAddress to, InetAddress localAddress, int localPort) throws IOException {
        try {
            if (localAddress != null || localPort != 0) {
                plain.bind(new InetSocketAddress(localAddress, localPort));
            }
            plain.connect(to);
        } catch (IOException e) {
            closeQuietly(plain);
            closeQuietly(holder);
            throw e;
        }
        becomeDressed(to);
    }

    private void becomeDressed(InetSocketAddress to) {
        host = to.getHostString();
        port = to.getPort();
        address = plain.getInetAddress();
        dressed = true;
    }

    /** Whether a connection with the holder's current settings would be dressed. */
    private boolean settingsDress() {
        return holder.getUseClientMode() && !Dressing.alpnExcludesHttp11(holder.getSSLParameters());
    }

    @Override
    public void connect(SocketAddress endpoint) throws IOException {
        connect(endpoint, 0);
    }

    @Override
    public void connect(SocketAddress endpoint, int timeout) throws IOException {
        SSLSocket r = real;
        if (r != null || dressed) {
            (r != null ? r : plain).connect(endpoint, timeout);
            return;
        }
        boolean dress = false;
        if (endpoint instanceof InetSocketAddress) {
            InetSocketAddress to = (InetSocketAddress) endpoint;
            dress = !to.isUnresolved() && context.dresses(to.getPort()) && settingsDress()
                    && Dressing.socketDresses(to) && Relay.port() > 0;
        }
        if (dress) {
            plain.connect(endpoint, timeout);
            becomeDressed((InetSocketAddress) endpoint);
            return;
        }
        becomeReal();
        holder.connect(endpoint, timeout);
    }

    /** An unconnected socket that will not be dressed: the holder is the socket. */
    private void becomeReal() throws IOException {
        synchronized (lock) {
            int set = optionsSet;
            if ((set & O_TIMEOUT) != 0) holder.setSoTimeout(plain.getSoTimeout());
            if ((set & O_NODELAY) != 0) holder.setTcpNoDelay(plain.getTcpNoDelay());
            if ((set & O_KEEPALIVE) != 0) holder.setKeepAlive(plain.getKeepAlive());
            if ((set & O_SNDBUF) != 0) holder.setSendBufferSize(plain.getSendBufferSize());
            if ((set & O_RCVBUF) != 0) holder.setReceiveBufferSize(plain.getReceiveBufferSize());
            if ((set & O_LINGER) != 0) {
                int linger = plain.getSoLinger();
                holder.setSoLinger(linger >= 0, Math.max(linger, 0));
            }
            if ((set & O_TOS) != 0) holder.setTrafficClass(plain.getTrafficClass());
            if ((set & O_REUSE) != 0) holder.setReuseAddress(plain.getReuseAddress());
            if ((set & O_PERF) != 0) holder.setPerformancePreferences(performance[0], performance[1], performance[2]);
            for (Object[] o : generic) {
                replay(holder, o);
            }
            closeQuietly(plain);
            if (bound != null) {
                holder.bind(bound);
            }
            for (HandshakeCompletedListener l : listeners) {
                holder.addHandshakeCompletedListener(l);
            }
            real = holder;
        }
    }

    /** A dressed socket whose settings now want real TLS: a JDK SSLSocket over the plain one. */
    private void becomeLayered() throws IOException {
        SSLSocket layered = (SSLSocket) realFactory.createSocket(plain, host, port, true);
        SSLParameters p = holder.getSSLParameters();
        if (p.getServerNames() != null && p.getServerNames().isEmpty()) {
            p.setServerNames(null);
        }
        layered.setUseClientMode(holder.getUseClientMode());
        layered.setSSLParameters(p);
        layered.setEnableSessionCreation(holder.getEnableSessionCreation());
        BiFunction<SSLSocket, List<String>, String> selector = holder.getHandshakeApplicationProtocolSelector();
        if (selector != null) {
            layered.setHandshakeApplicationProtocolSelector(selector);
        }
        for (HandshakeCompletedListener l : listeners) {
            layered.addHandshakeCompletedListener(l);
        }
        closeQuietly(holder);
        real = layered;
    }

    // ---- the dressed handshake ----------------------------------------------------------------

    private void handshake() throws IOException {
        SSLSocket r;
        DressedSession done = null;
        synchronized (lock) {
            r = real;
            if (r == null && !handshaken) {
                if (!dressed) {
                    throw new SocketException("Socket is not connected");
                }
                if (plain.isClosed()) {
                    throw new SocketException("Socket is closed");
                }
                if (!settingsDress()) {
                    becomeLayered();
                    r = real;
                } else {
                    id = Relay.register(this);
                    // The marker alone, in one write call: the preload takes it out whole.
                    plain.getOutputStream().write(Relay.marker(id));
                    SSLParameters p = holder.getSSLParameters();
                    alpn = Dressing.alpnResult(p);
                    String identification = p.getEndpointIdentificationAlgorithm();
                    if (identification == null || identification.isEmpty()) {
                        for (HandshakeCompletedListener l : listeners) {
                            if (l.getClass().getName().equals("sun.net.www.protocol.https.HttpsClient")) {
                                urlClient = l;
                            }
                        }
                    }
                    session = new DressedSession(host, port, p.getServerNames());
                    handshaken = true;
                    done = session;
                }
            }
        }
        if (done != null) {
            // Outside the lock: a listener may call back into the socket.
            fire(done);
        } else if (r != null) {
            r.startHandshake();
        }
    }

    private volatile String alpn;

    private void fire(SSLSession s) {
        if (listeners.isEmpty()) {
            return;
        }
        HandshakeCompletedEvent event = new HandshakeCompletedEvent(this, s);
        for (HandshakeCompletedListener l : listeners) {
            try {
                l.handshakeCompleted(event);
            } catch (RuntimeException ignored) {
                // The JDK calls listeners in a thread of their own: their failures are not the
                // handshake's.
            }
        }
    }

    private void ensureHandshake() throws IOException {
        if (!handshaken && real == null) {
            handshake();
        }
    }

    private IOException failed(IOException e) {
        IOException f = failure;
        return f != null ? f : e;
    }

    // ---- Relay.Dressed -------------------------------------------------------------------------

    @Override
    public String host() {
        return host;
    }

    @Override
    public int port() {
        return port;
    }

    @Override
    public InetAddress address() {
        return address;
    }

    @Override
    public SSLParameters parameters() {
        return holder.getSSLParameters();
    }

    @Override
    public SSLSocketFactory realFactory() {
        return realFactory;
    }

    @Override
    public javax.net.ssl.HostnameVerifier urlVerifier() {
        Object client = urlClient;
        return client == null ? null : UrlVerifier.of(client);
    }

    @Override
    public void fail(IOException e) {
        failure = e;
    }

    @Override
    public void relayed(SSLSession realSession) {
        DressedSession s = session;
        if (s != null) {
            s.relayed(realSession);
        }
    }

    // ---- streams -------------------------------------------------------------------------------

    @Override
    public InputStream getInputStream() throws IOException {
        SSLSocket r = real;
        if (r != null) {
            return r.getInputStream();
        }
        if (!dressed) {
            throw new SocketException("Socket is not connected");
        }
        final InputStream raw = plain.getInputStream();
        synchronized (lock) {
            if (in == null) {
                in = new In(raw);
            }
            return in;
        }
    }

    @Override
    public OutputStream getOutputStream() throws IOException {
        SSLSocket r = real;
        if (r != null) {
            return r.getOutputStream();
        }
        if (!dressed) {
            throw new SocketException("Socket is not connected");
        }
        final OutputStream raw = plain.getOutputStream();
        synchronized (lock) {
            if (out == null) {
                out = new Out(raw);
            }
            return out;
        }
    }

    /** Reads the plaintext; after a failed relay handshake, the program's own TLS error. */
    private final class In extends InputStream {
        private final InputStream raw;

        In(InputStream raw) {
            this.raw = raw;
        }

        private InputStream target() throws IOException {
            ensureHandshake();
            SSLSocket r = real;
            return r != null ? r.getInputStream() : raw;
        }

        @Override
        public int read() throws IOException {
            byte[] one = new byte[1];
            int n = read(one, 0, 1);
            return n <= 0 ? -1 : one[0] & 0xff;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            InputStream t = target();
            if (failure != null) {
                throw failure;
            }
            int n;
            try {
                n = t.read(b, off, len);
            } catch (IOException e) {
                throw failed(e);
            }
            if (failure != null) {
                throw failure;
            }
            return n;
        }

        @Override
        public int available() throws IOException {
            if (failure != null) {
                throw failure;
            }
            SSLSocket r = real;
            return r != null ? r.getInputStream().available() : raw.available();
        }

        @Override
        public void close() throws IOException {
            DressedSocket.this.close();
        }
    }

    /** Writes the plaintext, after the marker. */
    private final class Out extends OutputStream {
        private final OutputStream raw;

        Out(OutputStream raw) {
            this.raw = raw;
        }

        private OutputStream target() throws IOException {
            ensureHandshake();
            if (failure != null) {
                throw failure;
            }
            SSLSocket r = real;
            return r != null ? r.getOutputStream() : raw;
        }

        @Override
        public void write(int b) throws IOException {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            OutputStream t = target();
            try {
                t.write(b, off, len);
            } catch (IOException e) {
                throw failed(e);
            }
        }

        @Override
        public void flush() throws IOException {
            target().flush();
        }

        @Override
        public void close() throws IOException {
            DressedSocket.this.close();
        }
    }

    // ---- SSLSocket: handshake and session ------------------------------------------------------

    @Override
    public void startHandshake() throws IOException {
        if (failure != null) {
            throw failure;
        }
        handshake();
    }

    @Override
    public SSLSession getSession() {
        SSLSocket r = real;
        if (r != null) {
            return r.getSession();
        }
        try {
            ensureHandshake();
        } catch (IOException e) {
            // As the JDK's: a failed handshake gives an invalid session, not an exception.
            return DressedSession.invalid(host, port);
        }
        r = real;
        if (r != null) {
            return r.getSession();
        }
        DressedSession s = session;
        return s != null ? s : DressedSession.invalid(host, port);
    }

    @Override
    public SSLSession getHandshakeSession() {
        SSLSocket r = real;
        return r != null ? r.getHandshakeSession() : null;
    }

    @Override
    public String getApplicationProtocol() {
        SSLSocket r = real;
        if (r != null) {
            return r.getApplicationProtocol();
        }
        return handshaken ? alpn : null;
    }

    @Override
    public String getHandshakeApplicationProtocol() {
        SSLSocket r = real;
        return r != null ? r.getHandshakeApplicationProtocol() : null;
    }

    @Override
    public void addHandshakeCompletedListener(HandshakeCompletedListener listener) {
        if (listener == null) {
            throw new IllegalArgumentException("listener is null");
        }
        synchronized (lock) {
            SSLSocket r = real;
            if (r != null) {
                r.addHandshakeCompletedListener(listener);
            } else {
                listeners.add(listener);
            }
        }
    }

    @Override
    public void removeHandshakeCompletedListener(HandshakeCompletedListener listener) {
        if (listener == null) {
            throw new IllegalArgumentException("listener is null");
        }
        synchronized (lock) {
            SSLSocket r = real;
            if (r != null) {
                r.removeHandshakeCompletedListener(listener);
            } else if (!listeners.remove(listener)) {
                throw new IllegalArgumentException("listener not registered");
            }
        }
    }

    // ---- SSLSocket: settings (the holder's, or the real socket's) ---------------------------

    private SSLSocket tls() {
        SSLSocket r = real;
        return r != null ? r : holder;
    }

    @Override
    public String[] getSupportedCipherSuites() {
        return tls().getSupportedCipherSuites();
    }

    @Override
    public String[] getEnabledCipherSuites() {
        return tls().getEnabledCipherSuites();
    }

    @Override
    public void setEnabledCipherSuites(String[] suites) {
        tls().setEnabledCipherSuites(suites);
    }

    @Override
    public String[] getSupportedProtocols() {
        return tls().getSupportedProtocols();
    }

    @Override
    public String[] getEnabledProtocols() {
        return tls().getEnabledProtocols();
    }

    @Override
    public void setEnabledProtocols(String[] protocols) {
        tls().setEnabledProtocols(protocols);
    }

    @Override
    public void setUseClientMode(boolean mode) {
        tls().setUseClientMode(mode);
    }

    @Override
    public boolean getUseClientMode() {
        return tls().getUseClientMode();
    }

    @Override
    public void setNeedClientAuth(boolean need) {
        tls().setNeedClientAuth(need);
    }

    @Override
    public boolean getNeedClientAuth() {
        return tls().getNeedClientAuth();
    }

    @Override
    public void setWantClientAuth(boolean want) {
        tls().setWantClientAuth(want);
    }

    @Override
    public boolean getWantClientAuth() {
        return tls().getWantClientAuth();
    }

    @Override
    public void setEnableSessionCreation(boolean flag) {
        tls().setEnableSessionCreation(flag);
    }

    @Override
    public boolean getEnableSessionCreation() {
        return tls().getEnableSessionCreation();
    }

    @Override
    public SSLParameters getSSLParameters() {
        return tls().getSSLParameters();
    }

    @Override
    public void setSSLParameters(SSLParameters params) {
        tls().setSSLParameters(params);
    }

    @Override
    public void setHandshakeApplicationProtocolSelector(BiFunction<SSLSocket, List<String>, String> selector) {
        tls().setHandshakeApplicationProtocolSelector(selector);
    }

    @Override
    public BiFunction<SSLSocket, List<String>, String> getHandshakeApplicationProtocolSelector() {
        return tls().getHandshakeApplicationProtocolSelector();
    }

    // ---- Socket: the plain socket's (or the real socket's) ---------------------------------

    private Socket sock() {
        SSLSocket r = real;
        return r != null ? r : plain;
    }

    private void noteOption(int which) {
        if (real == null && !dressed) {
            synchronized (lock) {
                optionsSet |= which;
            }
        }
    }

    @Override
    public void bind(SocketAddress bindpoint) throws IOException {
        sock().bind(bindpoint);
        if (real == null && !dressed) {
            bound = bindpoint;
        }
    }

    @Override
    public void close() throws IOException {
        long registered = id;
        if (registered != 0) {
            Relay.unregister(registered);
        }
        SSLSocket r = real;
        if (r != null) {
            r.close();
            if (r != holder) {
                closeQuietly(holder);
            }
            return;
        }
        try {
            plain.close();
        } finally {
            closeQuietly(holder);
        }
    }

    @Override
    public void shutdownInput() throws IOException {
        sock().shutdownInput();
    }

    @Override
    public void shutdownOutput() throws IOException {
        sock().shutdownOutput();
    }

    @Override
    public InetAddress getInetAddress() {
        return sock().getInetAddress();
    }

    @Override
    public InetAddress getLocalAddress() {
        return sock().getLocalAddress();
    }

    @Override
    public int getPort() {
        return sock().getPort();
    }

    @Override
    public int getLocalPort() {
        return sock().getLocalPort();
    }

    @Override
    public SocketAddress getRemoteSocketAddress() {
        return sock().getRemoteSocketAddress();
    }

    @Override
    public SocketAddress getLocalSocketAddress() {
        return sock().getLocalSocketAddress();
    }

    @Override
    public SocketChannel getChannel() {
        return null;
    }

    @Override
    public void setTcpNoDelay(boolean on) throws SocketException {
        sock().setTcpNoDelay(on);
        noteOption(O_NODELAY);
    }

    @Override
    public boolean getTcpNoDelay() throws SocketException {
        return sock().getTcpNoDelay();
    }

    @Override
    public void setSoLinger(boolean on, int linger) throws SocketException {
        sock().setSoLinger(on, linger);
        noteOption(O_LINGER);
    }

    @Override
    public int getSoLinger() throws SocketException {
        return sock().getSoLinger();
    }

    @Override
    public void sendUrgentData(int data) throws IOException {
        SSLSocket r = real;
        if (r != null) {
            r.sendUrgentData(data);
            return;
        }
        throw new SocketException("This method is not supported by SSLSockets");
    }

    @Override
    public void setOOBInline(boolean on) throws SocketException {
        SSLSocket r = real;
        if (r != null) {
            r.setOOBInline(on);
            return;
        }
        throw new SocketException("This method is ineffective, since sending urgent data is not supported by SSLSockets");
    }

    @Override
    public boolean getOOBInline() throws SocketException {
        SSLSocket r = real;
        return r != null ? r.getOOBInline() : false;
    }

    @Override
    public void setSoTimeout(int timeout) throws SocketException {
        sock().setSoTimeout(timeout);
        noteOption(O_TIMEOUT);
    }

    @Override
    public int getSoTimeout() throws SocketException {
        return sock().getSoTimeout();
    }

    @Override
    public void setSendBufferSize(int size) throws SocketException {
        sock().setSendBufferSize(size);
        noteOption(O_SNDBUF);
    }

    @Override
    public int getSendBufferSize() throws SocketException {
        return sock().getSendBufferSize();
    }

    @Override
    public void setReceiveBufferSize(int size) throws SocketException {
        sock().setReceiveBufferSize(size);
        noteOption(O_RCVBUF);
    }

    @Override
    public int getReceiveBufferSize() throws SocketException {
        return sock().getReceiveBufferSize();
    }

    @Override
    public void setKeepAlive(boolean on) throws SocketException {
        sock().setKeepAlive(on);
        noteOption(O_KEEPALIVE);
    }

    @Override
    public boolean getKeepAlive() throws SocketException {
        return sock().getKeepAlive();
    }

    @Override
    public void setTrafficClass(int tc) throws SocketException {
        sock().setTrafficClass(tc);
        noteOption(O_TOS);
    }

    @Override
    public int getTrafficClass() throws SocketException {
        return sock().getTrafficClass();
    }

    @Override
    public void setReuseAddress(boolean on) throws SocketException {
        sock().setReuseAddress(on);
        noteOption(O_REUSE);
    }

    @Override
    public boolean getReuseAddress() throws SocketException {
        return sock().getReuseAddress();
    }

    @Override
    public void setPerformancePreferences(int connectionTime, int latency, int bandwidth) {
        sock().setPerformancePreferences(connectionTime, latency, bandwidth);
        if (real == null && !dressed) {
            synchronized (lock) {
                performance = new int[] {connectionTime, latency, bandwidth};
                optionsSet |= O_PERF;
            }
        }
    }

    @Override
    public <T> Socket setOption(SocketOption<T> name, T value) throws IOException {
        sock().setOption(name, value);
        if (real == null && !dressed) {
            synchronized (lock) {
                generic.add(new Object[] {name, value});
            }
        }
        return this;
    }

    @Override
    public <T> T getOption(SocketOption<T> name) throws IOException {
        return sock().getOption(name);
    }

    @Override
    public Set<SocketOption<?>> supportedOptions() {
        return sock().supportedOptions();
    }

    @Override
    public boolean isConnected() {
        return sock().isConnected();
    }

    @Override
    public boolean isBound() {
        return sock().isBound();
    }

    @Override
    public boolean isClosed() {
        return sock().isClosed();
    }

    @Override
    public boolean isInputShutdown() {
        return sock().isInputShutdown();
    }

    @Override
    public boolean isOutputShutdown() {
        return sock().isOutputShutdown();
    }

    @Override
    public String toString() {
        SSLSocket r = real;
        if (r != null) {
            return r.toString();
        }
        return "SSLSocket[" + plain + "]";
    }

    @SuppressWarnings("unchecked")
    private static void replay(Socket s, Object[] option) throws IOException {
        s.setOption((SocketOption<Object>) option[0], option[1]);
    }

    static void closeQuietly(Socket s) {
        try {
            s.close();
        } catch (IOException | RuntimeException ignored) {
            // nothing to do
        }
    }
}
