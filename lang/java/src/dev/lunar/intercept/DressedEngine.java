package dev.lunar.intercept;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.function.BiFunction;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLEngineResult.HandshakeStatus;
import javax.net.ssl.SSLEngineResult.Status;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocketFactory;

/**
 * An {@code SSLEngine} of the program's (java.net.http.HttpClient, and any engine user) for a
 * connection to an intercepted port. The JDK's own engine holds every setting; the first
 * {@code beginHandshake}/{@code wrap}/{@code unwrap} decides: a client engine whose ALPN offers
 * http/1.1 (or nothing) is dressed, anything else is the JDK's engine from then on.
 *
 * <p>Dressed: one handshake step, NEED_WRAP, whose wrap produces the marker line; the next wrap
 * produces nothing and reports FINISHED (HttpClient must see a handshake status before
 * FINISHED, or it never completes its ALPN and waits forever); after that wrap and unwrap copy
 * bytes through, at most 16 KiB a call, like TLS records. ALPN: "http/1.1" when offered, else
 * "". After a failed relay handshake the next wrap or unwrap throws the program's own TLS error.
 */
final class DressedEngine extends SSLEngine implements Relay.Dressed {
    private static final int UNDECIDED = 0, DRESSED = 1, REAL = 2;
    /** The largest plaintext a TLS record carries: one wrap or unwrap moves at most this. */
    private static final int RECORD = 16384;

    private final LunarContextSpi context;
    private final SSLEngine real;
    private volatile int mode;
    private volatile boolean clientModeSet;
    /** 1: the marker is to be wrapped; 2: FINISHED is to be reported; 3: done. */
    private int step;
    private byte[] marker;
    private long id;
    private String alpn;
    private volatile DressedSession session;
    private volatile SSLException failure;
    private volatile boolean inboundDone;
    private volatile boolean outboundDone;

    DressedEngine(LunarContextSpi context, SSLEngine real, String host, int port) {
        super(host, port);
        this.context = context;
        this.real = real;
    }

    private synchronized int decide() {
        if (mode != UNDECIDED) {
            return mode;
        }
        if (clientModeSet && real.getUseClientMode() && !Dressing.alpnExcludesHttp11(real.getSSLParameters())
                && Relay.port() > 0) {
            id = Relay.register(this);
            marker = Relay.marker(id);
            SSLParameters p = real.getSSLParameters();
            alpn = Dressing.alpnResult(p);
            session = new DressedSession(getPeerHost(), getPeerPort(), p.getServerNames());
            step = 1;
            mode = DRESSED;
        } else {
            mode = REAL;
        }
        return mode;
    }

    private synchronized HandshakeStatus status() {
        if (step == 1 || step == 2) {
            return HandshakeStatus.NEED_WRAP;
        }
        return HandshakeStatus.NOT_HANDSHAKING;
    }

    @Override
    public void beginHandshake() throws SSLException {
        if (decide() == REAL) {
            real.beginHandshake();
            return;
        }
        if (failure != null) {
            throw failure;
        }
        // Dressed: the one step is already pending; a later call (a renegotiation) does nothing.
    }

    @Override
    public SSLEngineResult wrap(ByteBuffer[] srcs, int offset, int length, ByteBuffer dst) throws SSLException {
        if (decide() == REAL) {
            return real.wrap(srcs, offset, length, dst);
        }
        if (dst.isReadOnly()) {
            throw new java.nio.ReadOnlyBufferException();
        }
        synchronized (this) {
            if (failure != null) {
                throw failure;
            }
            if (outboundDone) {
                return new SSLEngineResult(Status.CLOSED, status(), 0, 0);
            }
            if (step == 1) {
                if (dst.remaining() < marker.length) {
                    return new SSLEngineResult(Status.BUFFER_OVERFLOW, HandshakeStatus.NEED_WRAP, 0, 0);
                }
                dst.put(marker);
                step = 2;
                return new SSLEngineResult(Status.OK, HandshakeStatus.NEED_WRAP, 0, marker.length);
            }
            if (step == 2) {
                step = 3;
                return new SSLEngineResult(Status.OK, HandshakeStatus.FINISHED, 0, 0);
            }
            long available = 0;
            for (int i = offset; i < offset + length; i++) {
                available += srcs[i].remaining();
            }
            if (available == 0) {
                return new SSLEngineResult(Status.OK, HandshakeStatus.NOT_HANDSHAKING, 0, 0);
            }
            int n = (int) Math.min(Math.min(available, RECORD), dst.remaining());
            if (n == 0) {
                return new SSLEngineResult(Status.BUFFER_OVERFLOW, HandshakeStatus.NOT_HANDSHAKING, 0, 0);
            }
            int left = n;
            for (int i = offset; i < offset + length && left > 0; i++) {
                ByteBuffer src = srcs[i];
                int take = Math.min(src.remaining(), left);
                if (take == 0) {
                    continue;
                }
                ByteBuffer slice = src.duplicate();
                slice.limit(slice.position() + take);
                dst.put(slice);
                src.position(src.position() + take);
                left -= take;
            }
            return new SSLEngineResult(Status.OK, HandshakeStatus.NOT_HANDSHAKING, n, n);
        }
    }

    @Override
    public SSLEngineResult unwrap(ByteBuffer src, ByteBuffer[] dsts, int offset, int length) throws SSLException {
        if (decide() == REAL) {
            return real.unwrap(src, dsts, offset, length);
        }
        synchronized (this) {
            if (failure != null) {
                // The relay failed the real handshake and sent one byte so that this is called.
                src.position(src.limit());
                throw failure;
            }
            if (inboundDone) {
                return new SSLEngineResult(Status.CLOSED, status(), 0, 0);
            }
            if (step == 1 || step == 2) {
                return new SSLEngineResult(Status.OK, HandshakeStatus.NEED_WRAP, 0, 0);
            }
            int available = src.remaining();
            if (available == 0) {
                return new SSLEngineResult(Status.BUFFER_UNDERFLOW, HandshakeStatus.NOT_HANDSHAKING, 0, 0);
            }
            long room = 0;
            for (int i = offset; i < offset + length; i++) {
                if (dsts[i].isReadOnly()) {
                    throw new java.nio.ReadOnlyBufferException();
                }
                room += dsts[i].remaining();
            }
            int n = (int) Math.min(Math.min(available, RECORD), room);
            if (n == 0) {
                return new SSLEngineResult(Status.BUFFER_OVERFLOW, HandshakeStatus.NOT_HANDSHAKING, 0, 0);
            }
            int left = n;
            for (int i = offset; i < offset + length && left > 0; i++) {
                ByteBuffer dst = dsts[i];
                int take = Math.min(dst.remaining(), left);
                if (take == 0) {
                    continue;
                }
                ByteBuffer slice = src.duplicate();
                slice.limit(slice.position() + take);
                dst.put(slice);
                src.position(src.position() + take);
                left -= take;
            }
            return new SSLEngineResult(Status.OK, HandshakeStatus.NOT_HANDSHAKING, n, n);
        }
    }

    @Override
    public Runnable getDelegatedTask() {
        return mode == REAL ? real.getDelegatedTask() : null;
    }

    @Override
    public void closeInbound() throws SSLException {
        if (mode != DRESSED) {
            real.closeInbound();
            return;
        }
        // Plaintext has no close_notify to miss: no truncation error.
        inboundDone = true;
        closed();
    }

    @Override
    public boolean isInboundDone() {
        return mode == DRESSED ? inboundDone : real.isInboundDone();
    }

    @Override
    public void closeOutbound() {
        if (mode != DRESSED) {
            real.closeOutbound();
            return;
        }
        outboundDone = true;
        closed();
    }

    @Override
    public boolean isOutboundDone() {
        return mode == DRESSED ? outboundDone : real.isOutboundDone();
    }

    private void closed() {
        long registered;
        synchronized (this) {
            registered = id;
        }
        if (registered != 0 && (inboundDone || outboundDone)) {
            Relay.unregister(registered);
        }
    }

    @Override
    public HandshakeStatus getHandshakeStatus() {
        int m = mode;
        if (m == DRESSED) {
            return status();
        }
        return real.getHandshakeStatus();
    }

    @Override
    public SSLSession getSession() {
        DressedSession s = session;
        return mode == DRESSED && s != null ? s : real.getSession();
    }

    @Override
    public SSLSession getHandshakeSession() {
        if (mode == DRESSED) {
            return status() == HandshakeStatus.NEED_WRAP ? session : null;
        }
        return real.getHandshakeSession();
    }

    @Override
    public String getApplicationProtocol() {
        if (mode == DRESSED) {
            synchronized (this) {
                return step == 3 ? alpn : null;
            }
        }
        return real.getApplicationProtocol();
    }

    @Override
    public String getHandshakeApplicationProtocol() {
        return mode == DRESSED ? null : real.getHandshakeApplicationProtocol();
    }

    @Override
    public void setHandshakeApplicationProtocolSelector(BiFunction<SSLEngine, List<String>, String> selector) {
        real.setHandshakeApplicationProtocolSelector(selector);
    }

    @Override
    public BiFunction<SSLEngine, List<String>, String> getHandshakeApplicationProtocolSelector() {
        return real.getHandshakeApplicationProtocolSelector();
    }

    @Override
    public String[] getSupportedCipherSuites() {
        return real.getSupportedCipherSuites();
    }

    @Override
    public String[] getEnabledCipherSuites() {
        return real.getEnabledCipherSuites();
    }

    @Override
    public void setEnabledCipherSuites(String[] suites) {
        real.setEnabledCipherSuites(suites);
    }

    @Override
    public String[] getSupportedProtocols() {
        return real.getSupportedProtocols();
    }

    @Override
    public String[] getEnabledProtocols() {
        return real.getEnabledProtocols();
    }

    @Override
    public void setEnabledProtocols(String[] protocols) {
        real.setEnabledProtocols(protocols);
    }

    @Override
    public void setUseClientMode(boolean mode) {
        real.setUseClientMode(mode);
        clientModeSet = true;
    }

    @Override
    public boolean getUseClientMode() {
        return real.getUseClientMode();
    }

    @Override
    public void setNeedClientAuth(boolean need) {
        real.setNeedClientAuth(need);
    }

    @Override
    public boolean getNeedClientAuth() {
        return real.getNeedClientAuth();
    }

    @Override
    public void setWantClientAuth(boolean want) {
        real.setWantClientAuth(want);
    }

    @Override
    public boolean getWantClientAuth() {
        return real.getWantClientAuth();
    }

    @Override
    public void setEnableSessionCreation(boolean flag) {
        real.setEnableSessionCreation(flag);
    }

    @Override
    public boolean getEnableSessionCreation() {
        return real.getEnableSessionCreation();
    }

    @Override
    public SSLParameters getSSLParameters() {
        return real.getSSLParameters();
    }

    @Override
    public void setSSLParameters(SSLParameters params) {
        real.setSSLParameters(params);
    }

    @Override
    public String toString() {
        return mode == DRESSED ? "SSLEngine[" + getPeerHost() + ":" + getPeerPort() + "]" : real.toString();
    }

    // ---- Relay.Dressed -------------------------------------------------------------------------

    @Override
    public String host() {
        return getPeerHost();
    }

    @Override
    public int port() {
        return getPeerPort();
    }

    @Override
    public InetAddress address() {
        // An engine never sees its socket: the relay resolves the name.
        return null;
    }

    @Override
    public SSLParameters parameters() {
        return real.getSSLParameters();
    }

    @Override
    public SSLSocketFactory realFactory() {
        return context.real().getSocketFactory();
    }

    @Override
    public javax.net.ssl.HostnameVerifier urlVerifier() {
        return null;
    }

    @Override
    public void fail(IOException e) {
        failure = e instanceof SSLException ? (SSLException) e : new SSLException(e.getMessage(), e);
    }

    @Override
    public void relayed(SSLSession realSession) {
        DressedSession s = session;
        if (s != null) {
            s.relayed(realSession);
        }
    }
}
