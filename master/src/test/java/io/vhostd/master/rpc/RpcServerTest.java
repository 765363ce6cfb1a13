package io.vhostd.master.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vhostd.rpc.RpcClient;
import io.vhostd.rpc.RpcErrorCode;
import io.vhostd.rpc.RpcException;
import io.vhostd.rpc.RpcSpec;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

@Timeout(30)
class RpcServerTest {
    private static final ObjectMapper MAPPER = new ObjectMapper();
    private static final String GOOD =
            "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"name\":\"d\"},\"id\":1}";
    private static final String GOOD_ANSWER = "{\"jsonrpc\":\"2.0\",\"result\":[\"d\"],\"id\":1}";

    @TempDir
    Path dir;

    private Vertx vertx;
    private Path socket;
    private RpcServer server;
    private final AtomicReference<String> handlerThread = new AtomicReference<>();
    private final CountDownLatch blockEntered = new CountDownLatch(1);
    private final CountDownLatch blockRelease = new CountDownLatch(1);

    @BeforeEach
    void startServer() throws Exception {
        vertx = Vertx.vertx();
        socket = dir.resolve("run").resolve("rpc.sock");
        server = newServer(socket);
        await(server.start());
    }

    @AfterEach
    void stopServer() throws Exception {
        blockRelease.countDown();
        await(server.stop());
        await(vertx.close());
    }

    private RpcServer newServer(Path path) {
        RpcServer s = new RpcServer(vertx, path, RpcSpec.load());
        s.register("bdev_get_bdevs", params -> {
            handlerThread.set(Thread.currentThread().getName()
                    + (Context.isOnEventLoopThread() ? " event-loop" : "")
                    + (Context.isOnWorkerThread() ? " worker" : ""));
            String name = params.path("name").asText("");
            if (name.equals("disk9")) {
                throw new RpcException(RpcErrorCode.NO_SUCH_BDEV, "no bdev named 'disk9'");
            }
            if (name.equals("block")) {
                blockEntered.countDown();
                try {
                    blockRelease.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            return MAPPER.createArrayNode().add(name);
        });
        s.register("vhost_get_controllers", params -> MAPPER.createArrayNode());
        // the server starts only with every described method registered: the others answer null here
        for (String method : RpcSpec.load().methodNames()) {
            if (!method.equals("bdev_get_bdevs")
                    && !method.equals("vhost_get_controllers")
                    && !method.equals(RpcServer.RPC_GET_METHODS)) {
                s.register(method, params -> null);
            }
        }
        return s;
    }

    private static <T> T await(Future<T> future) throws Exception {
        try {
            return future.toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            throw (Exception) e.getCause();
        }
    }

    private static String err(Object id, RpcErrorCode code) {
        return "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":" + code.code() + ",\"data\":{\"name\":\"" + code.wireName()
                + "\"}},\"id\":" + id + "}";
    }

    private static JsonNode stripMessages(JsonNode response) {
        JsonNode copy = response.deepCopy();
        for (JsonNode r : copy.isArray() ? copy : MAPPER.createArrayNode().add(copy)) {
            if (r.has("error")) {
                ((ObjectNode) r.get("error")).remove("message");
            }
        }
        return copy;
    }

    /** A protocol case: what the client writes (each string one write), the answers, and whether the server closes. */
    record Case(String name, List<String> writes, List<String> answers, boolean closes) {
        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Arguments> cases() {
        String big = "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"name\":\""
                + "x".repeat(RpcServer.MAX_REQUEST_BYTES) + "\"},\"id\":9}\n";
        return Stream.of(
                        new Case("good", List.of(GOOD + "\n"), List.of(GOOD_ANSWER), false),
                        new Case("good without newline", List.of(GOOD), List.of(GOOD_ANSWER), false),
                        new Case(
                                "split across writes",
                                List.of(GOOD.substring(0, 5), GOOD.substring(5, 40), GOOD.substring(40) + "\n"),
                                List.of(GOOD_ANSWER),
                                false),
                        new Case(
                                "two in one write",
                                List.of(GOOD + "\n" + GOOD.replace("\"id\":1", "\"id\":2") + "\n"),
                                List.of(GOOD_ANSWER, GOOD_ANSWER.replace("\"id\":1", "\"id\":2")),
                                false),
                        new Case("oversized", List.of(big), List.of(err(null, RpcErrorCode.REQUEST_TOO_LARGE)), true),
                        new Case(
                                "garbage",
                                List.of("}{ not json\n"),
                                List.of(err(null, RpcErrorCode.PARSE_ERROR)),
                                true),
                        new Case(
                                "good then garbage in one write",
                                List.of(GOOD + "\n{\"jsonrpc\":\n]"),
                                List.of(GOOD_ANSWER, err(null, RpcErrorCode.PARSE_ERROR)),
                                true),
                        new Case(
                                "too deep",
                                List.of("[".repeat(RpcServer.MAX_NESTING_DEPTH + 1)),
                                List.of(err(null, RpcErrorCode.PARSE_ERROR)),
                                true),
                        new Case(
                                "batch",
                                List.of("[" + GOOD
                                        + ",{\"jsonrpc\":\"2.0\",\"method\":\"vhost_get_controllers\",\"id\":2},"
                                        + "{\"jsonrpc\":\"2.0\",\"method\":\"vhost_get_controllers\"}]\n"),
                                List.of("[" + GOOD_ANSWER + ",{\"jsonrpc\":\"2.0\",\"result\":[],\"id\":2}]"),
                                false),
                        new Case(
                                "empty batch",
                                List.of("[]\n"),
                                List.of(err(null, RpcErrorCode.INVALID_REQUEST)),
                                false),
                        new Case(
                                "notification gets no answer",
                                List.of("{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\"}\n" + GOOD + "\n"),
                                List.of(GOOD_ANSWER),
                                false),
                        new Case(
                                "unknown method",
                                List.of("{\"jsonrpc\":\"2.0\",\"method\":\"bdev_frob\",\"id\":3}\n"),
                                List.of(err(3, RpcErrorCode.METHOD_NOT_FOUND)),
                                false),
                        new Case(
                                "invalid params",
                                List.of(
                                        "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"x\":1},\"id\":4}"),
                                List.of(err(4, RpcErrorCode.INVALID_PARAMS)),
                                false),
                        new Case(
                                "handler error",
                                List.of(GOOD.replace("\"d\"", "\"disk9\"")),
                                List.of(err(1, RpcErrorCode.NO_SUCH_BDEV)),
                                false),
                        new Case(
                                "not a request",
                                List.of("\"hello\"\n"),
                                List.of(err(null, RpcErrorCode.INVALID_REQUEST)),
                                false),
                        new Case(
                                "missing method",
                                List.of("{\"jsonrpc\":\"2.0\",\"id\":5}"),
                                List.of(err(5, RpcErrorCode.INVALID_REQUEST)),
                                false))
                .map(Arguments::of);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void shouldAnswerAndKeepServingWhenClientSends(Case c) throws Exception {
        try (RawConnection conn = new RawConnection(socket)) {
            Thread writer = Thread.ofVirtual().start(() -> {
                try {
                    for (String w : c.writes()) {
                        conn.write(w);
                    }
                } catch (java.io.IOException e) {
                    // the server may close while an oversized request is still being written
                }
            });
            List<JsonNode> answers = new ArrayList<>();
            for (int i = 0; i < c.answers().size(); i++) {
                JsonNode answer = conn.read();
                assertTrue(answer != null, "connection closed after " + answers);
                answers.add(stripMessages(answer));
            }
            List<JsonNode> expected = new ArrayList<>();
            for (String a : c.answers()) {
                expected.add(MAPPER.readTree(a));
            }
            assertEquals(expected, answers);
            writer.join();
            if (c.closes()) {
                assertNull(conn.read(), "server should close the connection");
            } else {
                conn.write(GOOD.replace("\"id\":1", "\"id\":77"));
                assertEquals(MAPPER.readTree(GOOD_ANSWER.replace("\"id\":1", "\"id\":77")), conn.read());
            }
        }
        try (RawConnection fresh = new RawConnection(socket)) {
            fresh.write(GOOD + "\n");
            assertEquals(MAPPER.readTree(GOOD_ANSWER), fresh.read());
        }
    }

    @Test
    void shouldAnswerEveryPipelinedRequestInOrderWhenMoreArriveThanItQueues() throws Exception {
        // far more than MAX_QUEUED_REQUESTS in one write: the server stops reading, answers, and reads on
        int n = 200;
        StringBuilder burst = new StringBuilder();
        for (int i = 0; i < n; i++) {
            burst.append(GOOD.replace("\"id\":1", "\"id\":" + i)).append('\n');
        }
        try (RawConnection conn = new RawConnection(socket)) {
            conn.write(burst.toString());
            for (int i = 0; i < n; i++) {
                assertEquals(MAPPER.readTree(GOOD_ANSWER.replace("\"id\":1", "\"id\":" + i)), conn.read());
            }
        }
    }

    @Test
    void shouldAnswerRpcClientWhenCalledThroughTheClient() throws Exception {
        try (RpcClient client = RpcClient.connect(socket)) {
            JsonNode methods = client.call("rpc_get_methods", null);
            List<String> names = new ArrayList<>();
            methods.forEach(m -> names.add(m.asText()));
            assertEquals(new ArrayList<>(RpcSpec.load().methodNames()), names);
            RpcException e = assertThrows(
                    RpcException.class,
                    () -> client.call(
                            "bdev_get_bdevs", MAPPER.createObjectNode().put("name", "disk9")));
            assertEquals("no_such_bdev", e.error().name());
        }
    }

    @Test
    void shouldRunHandlersOnWorkerThreadsWhenServing() throws Exception {
        try (RawConnection conn = new RawConnection(socket)) {
            conn.write(GOOD);
            conn.read();
        }
        assertTrue(handlerThread.get().endsWith(" worker"), handlerThread.get());
        assertFalse(handlerThread.get().contains("event-loop"), handlerThread.get());
    }

    @Test
    void shouldServeOtherConnectionsWhileOneHandlerBlocks() throws Exception {
        try (RawConnection slow = new RawConnection(socket);
                RawConnection fast = new RawConnection(socket)) {
            slow.write(GOOD.replace("\"d\"", "\"block\""));
            assertTrue(blockEntered.await(10, TimeUnit.SECONDS));
            fast.write(GOOD);
            assertEquals(MAPPER.readTree(GOOD_ANSWER), fast.read());
            blockRelease.countDown();
            assertEquals("block", slow.read().path("result").path(0).asText());
        }
    }

    @Test
    void shouldCreateSocket0600InParent0700WhenStarted() throws Exception {
        assertEquals(
                PosixFilePermissions.fromString("rw-------"),
                Files.getPosixFilePermissions(socket, LinkOption.NOFOLLOW_LINKS));
        assertEquals(PosixFilePermissions.fromString("rwx------"), Files.getPosixFilePermissions(socket.getParent()));
    }

    @Test
    void shouldRemoveSocketFileWhenStopped() throws Exception {
        await(server.stop());
        assertFalse(Files.exists(socket, LinkOption.NOFOLLOW_LINKS));
        await(server.stop());
    }

    @Test
    void shouldFailStartNamingMissingAndExtraMethodsWhenRegistrationDiffersFromSpec() {
        RpcServer s = new RpcServer(vertx, dir.resolve("other.sock"), RpcSpec.load());
        s.register("bdev_get_bdevs", params -> null);
        s.register("bdev_frob", params -> null);
        IllegalStateException e =
                assertInstanceOf(IllegalStateException.class, assertThrows(Exception.class, () -> await(s.start())));
        assertTrue(e.getMessage().contains("no handler for ["), e.getMessage());
        assertTrue(e.getMessage().contains("vhost_get_controllers]"), e.getMessage());
        assertTrue(e.getMessage().contains("not described: [bdev_frob]"), e.getMessage());
        assertFalse(Files.exists(dir.resolve("other.sock")));
    }

    @Test
    void shouldRejectDuplicateRegistrationWhenMethodAlreadyRegistered() {
        RpcServer s = new RpcServer(vertx, dir.resolve("other.sock"), RpcSpec.load());
        s.register("bdev_get_bdevs", params -> null);
        assertThrows(IllegalArgumentException.class, () -> s.register("bdev_get_bdevs", params -> null));
        assertThrows(IllegalArgumentException.class, () -> s.register(RpcServer.RPC_GET_METHODS, params -> null));
        assertThrows(IllegalStateException.class, () -> server.register("x_get_y", params -> null));
    }

    @Test
    void shouldRefuseToStartWhenAnotherServerAnswersOnTheSocket() throws Exception {
        RpcServer second = newServer(socket);
        Exception e = assertThrows(Exception.class, () -> await(second.start()));
        assertTrue(e.getMessage().contains("another server"), e.getMessage());
        try (RawConnection conn = new RawConnection(socket)) {
            conn.write(GOOD);
            assertEquals(MAPPER.readTree(GOOD_ANSWER), conn.read());
        }
    }

    @Test
    void shouldReplaceStaleSocketWhenNothingListens() throws Exception {
        Path stale = dir.resolve("stale.sock");
        try (ServerSocketChannel dead = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            dead.bind(UnixDomainSocketAddress.of(stale));
        }
        assertTrue(Files.exists(stale, LinkOption.NOFOLLOW_LINKS));
        RpcServer s = newServer(stale);
        await(s.start());
        try (RawConnection conn = new RawConnection(stale)) {
            conn.write(GOOD);
            assertEquals(MAPPER.readTree(GOOD_ANSWER), conn.read());
        } finally {
            await(s.stop());
        }
    }

    @Test
    void shouldRefuseToReplaceWhenPathIsNotASocket() throws Exception {
        Path file = dir.resolve("file.sock");
        Files.writeString(file, "keep me");
        RpcServer s = newServer(file);
        Exception e = assertThrows(Exception.class, () -> await(s.start()));
        assertTrue(e.getMessage().contains("not a socket"), e.getMessage());
        assertEquals("keep me", Files.readString(file));
    }
}
