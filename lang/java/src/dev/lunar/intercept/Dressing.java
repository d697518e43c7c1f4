package dev.lunar.intercept;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Proxy;
import java.net.ProxySelector;
import java.net.Socket;
import java.net.URI;
import java.util.List;
import java.util.function.Function;
import java.util.stream.Stream;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.SSLSocketFactory;

/**
 * Where dressed sockets and engines are made, and what decides that a connection is dressed.
 * A class of its own so that the factory and the context load none of the dressing classes
 * before the first connection to an intercepted port.
 */
final class Dressing {
    /** HttpClient's TLS connection straight to its destination (not a CONNECT tunnel's). */
    private static final String HTTP_CLIENT_DIRECT = "jdk.internal.net.http.AsyncSSLConnection";

    private Dressing() {}

    static Socket unconnected(LunarContextSpi context, SSLSocketFactory real) throws IOException {
        return new DressedSocket(context, real, (SSLSocket) real.createSocket());
    }

    static Socket connected(LunarContextSpi context, SSLSocketFactory real, String host, InetAddress address, int port,
            InetAddress localAddress, int localPort) throws IOException {
        InetSocketAddress to = host != null ? new InetSocketAddress(host, port) : new InetSocketAddress(address, port);
        if (!to.isUnresolved() && socketDresses(to) && Relay.port() > 0) {
            DressedSocket socket = new DressedSocket(context, real, (SSLSocket) real.createSocket());
            socket.connectDressed(to, localAddress, localPort);
            return socket;
        }
        // Not dressed (a SOCKS proxy, no relay, a name that does not resolve): the JDK's own.
        if (host != null) {
            return localAddress != null || localPort != 0
                    ? real.createSocket(host, port, localAddress, localPort)
                    : real.createSocket(host, port);
        }
        return localAddress != null || localPort != 0
                ? real.createSocket(address, port, localAddress, localPort)
                : real.createSocket(address, port);
    }

    static SSLEngine engine(LunarContextSpi context, SSLEngine real, String host, int port) {
        if (!forHttpClientDirect()) {
            return real;
        }
        return new DressedEngine(context, real, host, port);
    }

    /**
     * A plain socket to this address goes straight there: no SOCKS proxy applies (java.net.Socket
     * follows socksProxyHost and the default ProxySelector, and the marker must never go
     * through a proxy).
     */
    static boolean socketDresses(InetSocketAddress to) {
        try {
            ProxySelector selector = ProxySelector.getDefault();
            if (selector == null) {
                return true;
            }
            String host = to.getHostString();
            if (host.indexOf(':') >= 0 && !host.startsWith("[")) {
                host = "[" + host + "]";
            }
            List<Proxy> proxies = selector.select(new URI("socket://" + host + ":" + to.getPort()));
            if (proxies == null) {
                return true;
            }
            for (Proxy p : proxies) {
                if (p.type() != Proxy.Type.DIRECT) {
                    return false;
                }
            }
            return true;
        } catch (Exception e) {
            return false;
        }
    }

    /** Whether the parameters keep a connection on real TLS: ALPN offering HTTP/2 only. */
    static boolean alpnExcludesHttp11(SSLParameters parameters) {
        String[] alpn = parameters.getApplicationProtocols();
        if (alpn == null || alpn.length == 0) {
            return false;
        }
        for (String p : alpn) {
            if (p.equals("http/1.1")) {
                return false;
            }
        }
        return true;
    }

    /** The ALPN a dressed connection reports: http/1.1 when it was offered, else none. */
    static String alpnResult(SSLParameters parameters) {
        String[] alpn = parameters.getApplicationProtocols();
        return alpn != null && alpn.length > 0 ? "http/1.1" : "";
    }

    /**
     * An engine cannot see its transport: the marker and the plaintext must only ever go on a
     * socket connected straight to the destination, which the preload follows. Of the engines'
     * users, only HttpClient's direct connection is known to be one (a CONNECT tunnel, Netty's
     * or Jetty's proxy handlers would carry them through a proxy): its constructor is on the
     * stack then. Every other engine stays real TLS.
     */
    private static boolean forHttpClientDirect() {
        try {
            return StackWalker.getInstance().walk(new DirectFinder());
        } catch (Throwable t) {
            return false;
        }
    }

    private static final class DirectFinder implements Function<Stream<StackWalker.StackFrame>, Boolean> {
        @Override
        public Boolean apply(Stream<StackWalker.StackFrame> frames) {
            java.util.Iterator<StackWalker.StackFrame> it = frames.iterator();
            for (int depth = 0; it.hasNext() && depth < 64; depth++) {
                if (it.next().getClassName().equals(HTTP_CLIENT_DIRECT)) {
                    return Boolean.TRUE;
                }
            }
            return Boolean.FALSE;
        }
    }
}
