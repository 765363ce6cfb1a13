package io.vhostd.rpc;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.LongNode;
import java.io.IOException;
import java.io.InputStream;
import java.net.ConnectException;
import java.net.SocketTimeoutException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.TimeUnit;

/**
 * A JSON-RPC 2.0 client of the master's unix socket. Framing (see {@code rpc-spec/spec/rpc-wire.md}): each request is
 * one JSON object followed by a newline; responses are read as a stream of JSON values with Jackson's streaming parser,
 * so they may or may not be newline-terminated.
 *
 * <p>One call at a time (calls are serialised); request ids are 1, 2, 3, ... Every call has a deadline of {@code
 * timeout} for sending the request and receiving the whole response. After a timeout, a protocol violation or an I/O
 * error the connection is closed and every later call fails with an {@link IOException}.
 */
public final class RpcClient implements AutoCloseable {
    /** Where the master listens unless configured otherwise. */
    public static final Path DEFAULT_SOCKET = Path.of("/run/vhostd/rpc.sock");

    /** Per-call deadline used by {@link #connect(Path)}. */
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(30);

    private final Path socketPath;
    private final SocketChannel channel;
    private final Selector selector;
    private final SelectionKey key;
    private final long timeoutNs;
    private JsonParser parser;
    private long nextId = 1;
    private long deadlineNs;
    private boolean closed;

    private RpcClient(Path socketPath, SocketChannel channel, Selector selector, SelectionKey key, long timeoutNs) {
        this.socketPath = socketPath;
        this.channel = channel;
        this.selector = selector;
        this.key = key;
        this.timeoutNs = timeoutNs;
    }

    /** Connects with {@link #DEFAULT_TIMEOUT}. */
    public static RpcClient connect(Path socketPath) throws IOException {
        return connect(socketPath, DEFAULT_TIMEOUT);
    }

    /**
     * Connects to the unix socket at {@code socketPath}.
     *
     * @param timeout deadline for the connect and for each later {@link #call}; positive
     * @throws ConnectException if nothing listens there (no such file, connection refused, permission denied), naming
     *     the path
     * @throws SocketTimeoutException if the connect does not complete within {@code timeout}
     */
    public static RpcClient connect(Path socketPath, Duration timeout) throws IOException {
        Objects.requireNonNull(socketPath, "socketPath");
        if (timeout.isNegative() || timeout.isZero()) {
            throw new IllegalArgumentException("timeout must be positive: " + timeout);
        }
        long timeoutNs = timeout.toNanos();
        SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX);
        Selector selector = null;
        try {
            channel.configureBlocking(false);
            selector = Selector.open();
            SelectionKey key = channel.register(selector, 0);
            boolean connected;
            try {
                connected = channel.connect(UnixDomainSocketAddress.of(socketPath));
                long deadlineNs = System.nanoTime() + timeoutNs;
                while (!connected) {
                    key.interestOps(SelectionKey.OP_CONNECT);
                    await(selector, deadlineNs, "connect to " + socketPath);
                    connected = channel.finishConnect();
                }
            } catch (SocketTimeoutException e) {
                throw e;
            } catch (IOException e) {
                ConnectException ce = new ConnectException("cannot connect to " + socketPath + ": " + e.getMessage());
                ce.initCause(e);
                throw ce;
            }
            return new RpcClient(socketPath, channel, selector, key, timeoutNs);
        } catch (IOException | RuntimeException e) {
            if (selector != null) {
                selector.close();
            }
            channel.close();
            throw e;
        }
    }

    /** The socket this client is connected to. */
    public Path socketPath() {
        return socketPath;
    }

    /**
     * Calls {@code method} and waits for its response.
     *
     * @param params the params (an object, or an array), or null to send none
     * @return the {@code result} of the response (JSON null included)
     * @throws RpcException if the server answered with an error response
     * @throws RpcProtocolException if the response is malformed, answers another id, or the connection closed first
     * @throws SocketTimeoutException if the call did not complete within the timeout
     * @throws IOException on any other I/O failure, or if the client is closed
     */
    public synchronized JsonNode call(String method, JsonNode params) throws IOException, RpcException {
        Objects.requireNonNull(method, "method");
        if (closed) {
            throw new IOException("RPC client for " + socketPath + " is closed");
        }
        deadlineNs = System.nanoTime() + timeoutNs;
        JsonNode id = LongNode.valueOf(nextId++);
        RpcResponse response;
        try {
            send(RpcRequest.of(id, method, params));
            response = receive(id);
        } catch (IOException | RuntimeException e) {
            close();
            throw e;
        }
        if (response.isError()) {
            throw new RpcException(response.error());
        }
        return response.result();
    }

    private void send(RpcRequest request) throws IOException {
        byte[] json = Json.MAPPER.writeValueAsBytes(request.toJson());
        ByteBuffer buffer =
                ByteBuffer.allocate(json.length + 1).put(json).put((byte) '\n').flip();
        while (buffer.hasRemaining()) {
            if (channel.write(buffer) == 0) {
                key.interestOps(SelectionKey.OP_WRITE);
                await(selector, deadlineNs, "send the request to " + socketPath);
            }
        }
    }

    private RpcResponse receive(JsonNode id) throws IOException {
        JsonNode node;
        try {
            if (parser == null) {
                // created at the first response, not at connect: Jackson reads ahead to detect the encoding
                parser = Json.MAPPER.getFactory().createParser(new ChannelInputStream());
            }
            JsonToken token = parser.nextToken();
            if (token == null) {
                throw new RpcProtocolException("connection closed by " + socketPath + " before the response");
            }
            node = Json.MAPPER.readTree(parser);
        } catch (JsonProcessingException e) {
            throw new RpcProtocolException("malformed response from " + socketPath + ": " + e.getOriginalMessage(), e);
        }
        RpcResponse response = RpcResponse.fromJson(node);
        // JSON-RPC 2.0 section 5: id is Null when the server could not read the request's id; only errors may do that.
        if (response.id().isNull() ? !response.isError() : !sameId(response.id(), id)) {
            throw new RpcProtocolException("response id " + response.id() + " does not match request id " + id);
        }
        return response;
    }

    /** Ids compare by value: 1 read back as an int node equals the long node 1 we sent. */
    private static boolean sameId(JsonNode received, JsonNode sent) {
        return received.isIntegralNumber() && received.bigIntegerValue().equals(sent.bigIntegerValue());
    }

    private static void await(Selector selector, long deadlineNs, String what) throws IOException {
        long remainingNs = deadlineNs - System.nanoTime();
        if (remainingNs <= 0) {
            throw new SocketTimeoutException("timed out waiting to " + what);
        }
        // select(0) would block forever: round a sub-millisecond remainder up to 1 ms
        selector.select(Math.max(1, TimeUnit.NANOSECONDS.toMillis(remainingNs)));
        selector.selectedKeys().clear();
    }

    /** Closes the connection; idempotent. */
    @Override
    public synchronized void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        try {
            selector.close();
        } finally {
            channel.close();
        }
    }

    /** Blocking reads from the non-blocking channel, bounded by the current call's deadline. */
    private final class ChannelInputStream extends InputStream {
        @Override
        public int read() throws IOException {
            byte[] one = new byte[1];
            int n = read(one, 0, 1);
            return n < 0 ? -1 : one[0] & 0xff;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            Objects.checkFromIndexSize(off, len, b.length);
            if (len == 0) {
                return 0;
            }
            ByteBuffer buffer = ByteBuffer.wrap(b, off, len);
            while (true) {
                int n = channel.read(buffer);
                if (n != 0) {
                    return n;
                }
                key.interestOps(SelectionKey.OP_READ);
                await(selector, deadlineNs, "receive the response from " + socketPath);
            }
        }
    }
}
