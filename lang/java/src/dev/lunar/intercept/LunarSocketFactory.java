package dev.lunar.intercept;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.Socket;
import javax.net.ssl.SSLSocketFactory;

/**
 * The socket factory of a {@link LunarContextSpi}: sockets to intercepted ports are dressed
 * (an {@code SSLSocket} over a plain socket, {@link DressedSocket}); an unconnected socket
 * decides when it is connected; a socket layered over one the caller supplies (a proxy tunnel)
 * and every other socket is the JDK's own.
 */
final class LunarSocketFactory extends SSLSocketFactory {
    private final LunarContextSpi context;
    private final SSLSocketFactory real;

    LunarSocketFactory(LunarContextSpi context, SSLSocketFactory real) {
        this.context = context;
        this.real = real;
    }

    @Override
    public String[] getDefaultCipherSuites() {
        return real.getDefaultCipherSuites();
    }

    @Override
    public String[] getSupportedCipherSuites() {
        return real.getSupportedCipherSuites();
    }

    @Override
    public Socket createSocket() throws IOException {
        if (context.mayDress()) {
            return Dressing.unconnected(context, real);
        }
        return real.createSocket();
    }

    @Override
    public Socket createSocket(String host, int port) throws IOException {
        if (context.dresses(port)) {
            return Dressing.connected(context, real, host, null, port, null, 0);
        }
        return real.createSocket(host, port);
    }

    @Override
    public Socket createSocket(String host, int port, InetAddress localAddress, int localPort) throws IOException {
        if (context.dresses(port)) {
            return Dressing.connected(context, real, host, null, port, localAddress, localPort);
        }
        return real.createSocket(host, port, localAddress, localPort);
    }

    @Override
    public Socket createSocket(InetAddress address, int port) throws IOException {
        if (context.dresses(port)) {
            return Dressing.connected(context, real, null, address, port, null, 0);
        }
        return real.createSocket(address, port);
    }

    @Override
    public Socket createSocket(InetAddress address, int port, InetAddress localAddress, int localPort)
            throws IOException {
        if (context.dresses(port)) {
            return Dressing.connected(context, real, null, address, port, localAddress, localPort);
        }
        return real.createSocket(address, port, localAddress, localPort);
    }

    @Override
    public Socket createSocket(Socket socket, String host, int port, boolean autoClose) throws IOException {
        // The caller's own socket (a tunnel through a proxy, most often): real TLS.
        return real.createSocket(socket, host, port, autoClose);
    }

    @Override
    public Socket createSocket(Socket socket, InputStream consumed, boolean autoClose) throws IOException {
        return real.createSocket(socket, consumed, autoClose);
    }
}
