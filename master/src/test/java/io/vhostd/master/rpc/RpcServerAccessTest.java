package io.vhostd.master.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vhostd.rpc.RpcSpec;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The RPC socket's mode, group and SO_PEERCRED check, for real: the server runs as root, the clients are {@code
 * /usr/bin/python3} processes started through {@code setpriv} as uid 65534 with chosen groups. Skipped unless run as
 * root with setpriv and python3 present.
 */
@Timeout(60)
class RpcServerAccessTest {
    private static final ObjectMapper MAPPER = new ObjectMapper();
    /** A gid without a name on test machines: the socket's group. */
    private static final int GROUP = 4242;

    private static final String CLIENT = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(sys.argv[1])
            except OSError as e:
                print("connect: " + e.strerror); sys.exit(0)
            s.sendall(b'{"jsonrpc":"2.0","method":"rpc_get_methods","id":1}\\n')
            data = b''
            while not data.endswith(b'\\n'):
                chunk = s.recv(65536)
                if not chunk: break
                data += chunk
            print(data.decode().strip())
            """;

    private Path dir;
    private Vertx vertx;
    private RpcServer server;
    private Path socket;

    @BeforeEach
    void start() throws Exception {
        assumeTrue("root".equals(System.getProperty("user.name")), "needs root (setpriv to another uid)");
        assumeTrue(Files.isExecutable(Path.of("/usr/bin/setpriv")), "needs setpriv");
        assumeTrue(Files.isExecutable(Path.of("/usr/bin/python3")), "needs /usr/bin/python3");
        dir = Files.createTempDirectory(Path.of("/tmp"), "rpc-access-");
        // the clients (uid 65534) must reach the socket: the test directory is traversable
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx--x--x"));
        socket = dir.resolve("run").resolve("rpc.sock");
        vertx = Vertx.vertx();
        server = new RpcServer(
                vertx,
                socket,
                RpcSpec.load(),
                PosixFilePermissions.fromString("rw-rw----"),
                Integer.toString(GROUP),
                RpcPeerPolicy.ETC_GROUP);
        for (String method : RpcSpec.load().methodNames()) {
            if (!method.equals(RpcServer.RPC_GET_METHODS)) {
                server.register(method, params -> null);
            }
        }
        await(server.start());
    }

    @AfterEach
    void stop() throws Exception {
        if (server != null) {
            await(server.stop());
            await(vertx.close());
        }
        if (dir != null) {
            try (var files = Files.walk(dir)) {
                files.sorted(java.util.Comparator.reverseOrder())
                        .forEach(p -> p.toFile().delete());
            }
        }
    }

    private static <T> T await(Future<T> future) throws Exception {
        try {
            return future.toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            throw (Exception) e.getCause();
        }
    }

    /** Runs the python client as uid 65534 with {@code setprivGroups} and returns its one line of output. */
    private String clientAs(String... setprivGroups) throws IOException, InterruptedException {
        List<String> cmd = new java.util.ArrayList<>(List.of("/usr/bin/setpriv", "--reuid=65534"));
        cmd.addAll(List.of(setprivGroups));
        cmd.addAll(List.of("/usr/bin/python3", "-c", CLIENT, socket.toString()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        assertTrue(p.waitFor(30, TimeUnit.SECONDS), "client did not finish");
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
    }

    @Test
    void shouldGiveSocketMode0660AndTheGroupWhenConfigured() throws Exception {
        assertEquals(
                PosixFilePermissions.fromString("rw-rw----"),
                Files.getPosixFilePermissions(socket, LinkOption.NOFOLLOW_LINKS));
        assertEquals(GROUP, Files.getAttribute(socket, "unix:gid", LinkOption.NOFOLLOW_LINKS));
        assertEquals(
                PosixFilePermissions.fromString("rwx--x---"),
                Files.getPosixFilePermissions(socket.getParent()),
                "the parent it created lets the group traverse");
        assertEquals(GROUP, Files.getAttribute(socket.getParent(), "unix:gid"));
    }

    @Test
    void shouldServePeerWhenItsPrimaryGroupIsTheSocketsGroup() throws Exception {
        JsonNode answer = MAPPER.readTree(clientAs("--regid=" + GROUP, "--clear-groups"));

        assertTrue(answer.path("result").isArray(), answer.toString());
    }

    @Test
    void shouldAnswerPermissionDeniedAndCloseWhenPeerIsInTheGroupOnlyBySetgroups() throws Exception {
        // the file mode lets it connect (supplementary group), but SO_PEERCRED shows uid 65534 / gid 65534
        JsonNode answer = MAPPER.readTree(clientAs("--regid=65534", "--groups=" + GROUP));

        assertEquals(
                "permission_denied",
                answer.path("error").path("data").path("name").asText(),
                answer.toString());
        assertTrue(answer.path("id").isNull());
        assertTrue(answer.path("error").path("message").asText().contains("not in group"), answer.toString());
    }

    @Test
    void shouldRefuseConnectWhenPeerIsNotInTheGroupAtAll() throws Exception {
        assertEquals("connect: Permission denied", clientAs("--regid=65534", "--clear-groups"));
    }

    @Test
    void shouldKeepServingAllowedPeersAfterRefusingOne() throws Exception {
        clientAs("--regid=65534", "--groups=" + GROUP);

        try (RawConnection root = new RawConnection(socket)) {
            root.write("{\"jsonrpc\":\"2.0\",\"method\":\"rpc_get_methods\",\"id\":2}\n");
            assertTrue(root.read().path("result").isArray());
        }
    }
}
