package io.vhostd.master.rpc;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.NullNode;
import io.netty.channel.socket.nio.NioChannelOption;
import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.internal.net.NetSocketInternal;
import io.vertx.core.net.NetServer;
import io.vertx.core.net.NetServerOptions;
import io.vertx.core.net.NetSocket;
import io.vertx.core.net.SocketAddress;
import io.vhostd.rpc.RpcErrorCode;
import io.vhostd.rpc.RpcSpec;
import java.io.IOException;
import java.net.ConnectException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import jdk.net.ExtendedSocketOptions;
import jdk.net.UnixDomainPrincipal;

/**
 * The master's JSON-RPC 2.0 server on a unix socket (wire format: {@code rpc-spec/spec/rpc-wire.md}).
 *
 * <p>It serves exactly the methods of {@code openrpc.json}: {@link #start()} fails unless a handler is {@link
 * #register registered} for every method the description lists (other than {@value #RPC_GET_METHODS}, which the server
 * answers itself) and for no other. Every request's params are checked against the description before its handler
 * runs. Handlers run on Vert.x worker threads; each connection runs one request at a time and is answered in order.
 *
 * <p>Untrusted input: a request may be at most {@value #MAX_REQUEST_BYTES} bytes (else {@code request_too_large},
 * then the connection closes), nest at most {@value #MAX_NESTING_DEPTH} deep and batch at most {@value
 * #MAX_BATCH_REQUESTS} requests; malformed JSON is answered {@code parse_error} and the connection closes (a stream
 * has no resync point). At most {@value #MAX_CONNECTIONS} connections are served at once.
 *
 * <p>The socket gets its mode ({@code rpc_socket_mode}, 0660 by default, 0600 with the short constructor) and group
 * ({@code rpc_socket_group}) right after listening; a missing parent directory is created 0710 (0700 for mode 0600)
 * with that group. Every accepted connection's peer credentials (SO_PEERCRED) are checked by {@link RpcPeerPolicy}
 * before a byte is read: a refused peer gets one {@code permission_denied} answer (id null), is disconnected and
 * logged. A socket file left by a dead master is removed before listening; if a master answers on it, {@link
 * #start()} fails.
 */
public final class RpcServer {
    /** Largest request in bytes, counting the whitespace before it. */
    public static final int MAX_REQUEST_BYTES = 1 << 20;

    /** Deepest nesting of arrays and objects in a request. */
    public static final int MAX_NESTING_DEPTH = 64;

    /** Most requests in one batch. */
    public static final int MAX_BATCH_REQUESTS = 256;

    /** Most connections served at once; more are closed on accept. */
    public static final int MAX_CONNECTIONS = 64;

    /** The method the server answers itself: the names of the methods it serves. */
    public static final String RPC_GET_METHODS = "rpc_get_methods";

    // a connection stops reading when this many requests wait for their turn (bounds memory per connection)
    private static final int MAX_QUEUED_REQUESTS = 8;

    private static final System.Logger LOG = System.getLogger(RpcServer.class.getName());

    private final Vertx vertx;
    private final Path socketPath;
    private final RpcSpec spec;
    private final ObjectMapper mapper;
    private final Map<String, RpcMethod> methods = new LinkedHashMap<>();
    private final Set<Connection> connections = ConcurrentHashMap.newKeySet();
    private final Set<PosixFilePermission> socketMode;
    private final String socketGroup;
    private final Path etcGroup;
    private NetServer server;
    private boolean started;

    /**
     * @param vertx the Vert.x instance whose event loop and worker pool serve the socket
     * @param socketPath where to listen
     * @param spec the description of the methods to serve
     */
    public RpcServer(Vertx vertx, Path socketPath, RpcSpec spec) {
        this(vertx, socketPath, spec, PosixFilePermissions.fromString("rw-------"), null, RpcPeerPolicy.ETC_GROUP);
    }

    /**
     * @param vertx the Vert.x instance whose event loop and worker pool serve the socket
     * @param socketPath where to listen
     * @param spec the description of the methods to serve
     * @param socketMode the socket file's permissions (owner rw at least)
     * @param socketGroup the socket's group (a name or a numeric gid), or null to keep the creator's
     * @param etcGroup the group file whose member lists {@link RpcPeerPolicy} reads ({@code /etc/group} normally)
     */
    public RpcServer(
            Vertx vertx,
            Path socketPath,
            RpcSpec spec,
            Set<PosixFilePermission> socketMode,
            String socketGroup,
            Path etcGroup) {
        this.socketMode = Set.copyOf(socketMode);
        this.socketGroup = socketGroup;
        this.etcGroup = Objects.requireNonNull(etcGroup, "etcGroup");
        this.vertx = Objects.requireNonNull(vertx, "vertx");
        this.socketPath = Objects.requireNonNull(socketPath, "socketPath");
        this.spec = Objects.requireNonNull(spec, "spec");
        JsonFactory factory = JsonFactory.builder()
                .streamReadConstraints(StreamReadConstraints.builder()
                        .maxNestingDepth(MAX_NESTING_DEPTH)
                        .build())
                .build();
        this.mapper = JsonMapper.builder(factory).build();
        methods.put(RPC_GET_METHODS, params -> {
            ArrayNode names = JsonNodeFactory.instance.arrayNode();
            spec.methodNames().forEach(names::add);
            return names;
        });
    }

    /** The socket path this server listens (or will listen) on. */
    public Path socketPath() {
        return socketPath;
    }

    /**
     * Registers the handler of {@code method}.
     *
     * @throws IllegalArgumentException if a handler is already registered for {@code method}
     * @throws IllegalStateException if the server was started
     */
    public synchronized void register(String method, RpcMethod handler) {
        Objects.requireNonNull(method, "method");
        Objects.requireNonNull(handler, "handler");
        if (started) {
            throw new IllegalStateException("register(" + method + ") after start()");
        }
        if (methods.putIfAbsent(method, handler) != null) {
            throw new IllegalArgumentException("a handler for " + method + " is already registered");
        }
    }

    /**
     * Checks the registered methods against the description, prepares the socket path and listens.
     *
     * <p>Call it once. If it fails after the method check, call {@link #stop()} before dropping the server.
     *
     * @return completes when the socket accepts connections; fails with {@link IllegalStateException} if the methods
     *     differ from the description (naming the missing and the extra ones), if another server answers on the
     *     socket, or if the path exists and is not a socket; with {@link IOException} if the path cannot be prepared
     *     or chmod-ed; with Vert.x's error if listening fails
     */
    public synchronized Future<Void> start() {
        if (started) {
            return Future.failedFuture(new IllegalStateException("RPC server already started"));
        }
        Set<String> missing = new TreeSet<>(spec.methodNames());
        missing.removeAll(methods.keySet());
        Set<String> extra = new TreeSet<>(methods.keySet());
        extra.removeAll(spec.methodNames());
        if (!missing.isEmpty() || !extra.isEmpty()) {
            return Future.failedFuture(new IllegalStateException("registered RPC methods differ from openrpc.json:"
                    + (missing.isEmpty() ? "" : " no handler for " + missing + ";")
                    + (extra.isEmpty() ? "" : " not described: " + extra + ";")));
        }
        try {
            prepareSocketPath();
        } catch (IOException | IllegalStateException e) {
            return Future.failedFuture(e);
        }
        started = true;
        RpcDispatcher dispatcher = new RpcDispatcher(spec, methods, MAX_BATCH_REQUESTS);
        // keep the reference and close it in stop(): Vert.x closes a server that is garbage-collected (JAVA-DEPS.md)
        NetServer created =
                vertx.createNetServer(new NetServerOptions()).connectHandler(socket -> accept(socket, dispatcher));
        server = created;
        return created.listen(SocketAddress.domainSocketAddress(socketPath.toString()))
                .compose(listening -> {
                    try {
                        Files.setPosixFilePermissions(socketPath, socketMode);
                        if (socketGroup != null) {
                            setGroup(socketPath);
                        }
                    } catch (IOException e) {
                        return created.close().transform(ignored -> {
                            deleteSocketFile();
                            return Future.<Void>failedFuture(e);
                        });
                    }
                    LOG.log(System.Logger.Level.INFO, "RPC server listening on " + socketPath);
                    return Future.<Void>succeededFuture();
                })
                .onFailure(e -> {
                    // the path is not ours to remove here: another process may have bound it since the probe
                    synchronized (this) {
                        if (server == created) {
                            server = null;
                        }
                    }
                    created.close();
                });
    }

    /** Closes the listening socket and every connection, then removes the socket file. Idempotent. */
    public synchronized Future<Void> stop() {
        NetServer closing = server;
        server = null;
        if (closing == null) {
            return Future.succeededFuture();
        }
        return closing.close().andThen(ignored -> {
            connections.forEach(c -> c.socket.close());
            deleteSocketFile();
        });
    }

    private void deleteSocketFile() {
        try {
            Files.deleteIfExists(socketPath);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "cannot remove " + socketPath + ": " + e.getMessage());
        }
    }

    /** Gives {@code path} the configured group; the error names the config key. */
    private void setGroup(Path path) throws IOException {
        try {
            GroupPrincipal group =
                    path.getFileSystem().getUserPrincipalLookupService().lookupPrincipalByGroupName(socketGroup);
            Files.getFileAttributeView(path, PosixFileAttributeView.class, LinkOption.NOFOLLOW_LINKS)
                    .setGroup(group);
        } catch (IOException e) {
            throw new IOException(
                    "rpc_socket_group: cannot give " + path + " the group '" + socketGroup + "': " + e, e);
        }
    }

    private void prepareSocketPath() throws IOException {
        Path parent = socketPath.toAbsolutePath().getParent();
        if (parent != null && !Files.isDirectory(parent)) {
            // group members need to traverse (not list) the directory to reach a group-accessible socket
            boolean groupAccess = socketMode.contains(PosixFilePermission.GROUP_WRITE);
            Files.createDirectories(
                    parent,
                    PosixFilePermissions.asFileAttribute(
                            PosixFilePermissions.fromString(groupAccess ? "rwx--x---" : "rwx------")));
            if (groupAccess && socketGroup != null) {
                setGroup(parent);
            }
        }
        if (!Files.exists(socketPath, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        int mode = (Integer) Files.getAttribute(socketPath, "unix:mode", LinkOption.NOFOLLOW_LINKS);
        // S_IFMT / S_IFSOCK from <sys/stat.h>: never remove what is not a socket
        if ((mode & 0170000) != 0140000) {
            throw new IllegalStateException(socketPath + " exists and is not a socket; refusing to replace it");
        }
        try (SocketChannel probe = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            probe.connect(UnixDomainSocketAddress.of(socketPath));
            throw new IllegalStateException("another server (a running master?) answers on " + socketPath);
        } catch (ConnectException e) {
            // ECONNREFUSED: nobody listens, the file is left over from a dead master
            LOG.log(System.Logger.Level.INFO, "removing stale socket " + socketPath);
            Files.delete(socketPath);
        } catch (IOException e) {
            throw new IOException("cannot tell whether a server answers on " + socketPath + ": " + e.getMessage(), e);
        }
    }

    private void accept(NetSocket socket, RpcDispatcher dispatcher) {
        if (connections.size() >= MAX_CONNECTIONS) {
            LOG.log(System.Logger.Level.WARNING, "RPC: " + MAX_CONNECTIONS + " connections open, refusing another");
            socket.close();
            return;
        }
        // nothing is read before the peer is checked
        socket.pause();
        UnixDomainPrincipal peer = peerCredentials(socket);
        Context context = vertx.getOrCreateContext();
        // reads the socket's owner and group and /etc/group: file I/O, off the event loop
        context.executeBlocking(
                        () -> RpcPeerPolicy.forSocket(socketPath, etcGroup).check(peer), false)
                .onComplete(checked -> {
                    RpcPeerPolicy.Decision decision = checked.succeeded()
                            ? checked.result()
                            : new RpcPeerPolicy.Decision(false, "cannot check the peer: " + checked.cause());
                    if (!decision.allowed()) {
                        refuse(socket, decision.reason());
                        return;
                    }
                    LOG.log(
                            System.Logger.Level.DEBUG,
                            "RPC: serving " + (peer == null ? "?" : peer.user().getName()) + " (" + decision.reason()
                                    + ")");
                    Connection connection = new Connection(socket, context, dispatcher);
                    connections.add(connection);
                    socket.closeHandler(ignored -> connections.remove(connection));
                    socket.handler(connection::onData);
                    socket.drainHandler(ignored -> connection.updateFlow());
                    socket.exceptionHandler(e -> LOG.log(System.Logger.Level.DEBUG, "RPC connection: " + e));
                    connection.updateFlow();
                });
    }

    /**
     * The peer's SO_PEERCRED credentials: Vert.x serves unix sockets over JDK NIO here (no native transport), whose
     * channel answers the JDK's {@link ExtendedSocketOptions#SO_PEERCRED}. Null when they cannot be read (the peer
     * is then refused).
     */
    private static UnixDomainPrincipal peerCredentials(NetSocket socket) {
        try {
            io.netty.channel.Channel channel =
                    ((NetSocketInternal) socket).channelHandlerContext().channel();
            return channel.config().getOption(NioChannelOption.of(ExtendedSocketOptions.SO_PEERCRED));
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "RPC: cannot read the peer's credentials: " + e);
            return null;
        }
    }

    /** Answers {@code permission_denied} once and closes; logged (a refused peer is worth knowing about). */
    private void refuse(NetSocket socket, String reason) {
        LOG.log(System.Logger.Level.WARNING, "RPC: refused a connection on " + socketPath + ": " + reason);
        try {
            byte[] json = mapper.writeValueAsBytes(RpcDispatcher.error(
                    NullNode.getInstance(), RpcErrorCode.PERMISSION_DENIED, "permission denied: " + reason));
            byte[] framed = Arrays.copyOf(json, json.length + 1);
            framed[json.length] = '\n';
            socket.write(Buffer.buffer(framed)).onComplete(ignored -> socket.close());
        } catch (JsonProcessingException e) {
            socket.close();
        }
    }

    /** One client connection; all fields are touched only on its event loop. */
    private final class Connection {
        private final NetSocket socket;
        private final Context context;
        private final RpcDispatcher dispatcher;
        private final JsonStreamSplitter splitter = new JsonStreamSplitter(mapper, MAX_REQUEST_BYTES);
        private final ArrayDeque<JsonStreamSplitter.Frame> queue = new ArrayDeque<>();
        private final List<JsonStreamSplitter.Frame> parsed = new ArrayList<>();
        private boolean busy;
        private boolean closing;
        private boolean closeScheduled;
        private Future<Void> lastWrite = Future.succeededFuture();

        Connection(NetSocket socket, Context context, RpcDispatcher dispatcher) {
            this.socket = socket;
            this.context = context;
            this.dispatcher = dispatcher;
        }

        void onData(Buffer data) {
            if (closing) {
                return;
            }
            byte[] bytes = data.getBytes();
            splitter.feed(bytes, 0, bytes.length, parsed);
            queue.addAll(parsed);
            parsed.clear();
            closing = splitter.failed();
            updateFlow();
            pump();
        }

        /** Answers queued requests one at a time, in order; closes after the last answer once the stream broke. */
        private void pump() {
            while (!busy) {
                JsonStreamSplitter.Frame frame = queue.poll();
                if (frame == null) {
                    if (closing && !closeScheduled) {
                        closeScheduled = true;
                        // close only after the final answer has been written
                        lastWrite.onComplete(ignored -> socket.close());
                    }
                    return;
                }
                switch (frame) {
                    case JsonStreamSplitter.Failure failure ->
                        write(serialize(
                                RpcDispatcher.error(NullNode.getInstance(), failure.code(), failure.message())));
                    case JsonStreamSplitter.Value value -> {
                        busy = true;
                        context.<byte[]>executeBlocking(() -> serialize(dispatcher.dispatch(value.json())), false)
                                .onComplete(answered -> {
                                    busy = false;
                                    if (answered.succeeded()) {
                                        if (answered.result() != null) {
                                            write(answered.result());
                                        }
                                    } else {
                                        LOG.log(
                                                System.Logger.Level.ERROR,
                                                "RPC request failed; closing the connection",
                                                answered.cause());
                                        queue.clear();
                                        closing = true;
                                    }
                                    updateFlow();
                                    pump();
                                });
                    }
                }
            }
        }

        private void write(byte[] bytes) {
            lastWrite = socket.write(Buffer.buffer(bytes));
        }

        /** Reads only while few requests wait and the peer keeps reading its answers. */
        void updateFlow() {
            if (!closing && queue.size() < MAX_QUEUED_REQUESTS && !socket.writeQueueFull()) {
                socket.resume();
            } else {
                socket.pause();
            }
        }

        /** The response and its newline, or null when there is nothing to send. */
        private byte[] serialize(JsonNode response) {
            if (response == null) {
                return null;
            }
            try {
                byte[] json = mapper.writeValueAsBytes(response);
                byte[] framed = Arrays.copyOf(json, json.length + 1);
                framed[json.length] = '\n';
                return framed;
            } catch (JsonProcessingException e) {
                throw new IllegalStateException("cannot serialise an RPC response", e);
            }
        }
    }
}
