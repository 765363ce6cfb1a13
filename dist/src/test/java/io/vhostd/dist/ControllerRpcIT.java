package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.rpc.RpcClient;
import io.vhostd.rpc.Vhostctl;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #5: a controller created at run time over RPC ({@code vhost_create_blk_controller}) on a running master is
 * served by the slave, survives a master restart (the registry), and {@code vhost_delete_controller} takes it down,
 * for good.
 *
 * <ol>
 *   <li>{@code bin/vhostd master} with the usual configuration ({@code disk0} / {@code vhost.0}); over RPC a file bdev
 *       {@code disk1} and a controller {@code rt0} (2 queues) on it. The call returns once the slave listens on
 *       {@code rt0.sock}; {@code vhostctl slaves} shows the serving slave with {@code rt0}.
 *   <li>fio (libblkio, tool chroot) runs {@code vw4k32} and {@code vw64k} against {@code rt0.sock}.
 *   <li>The master stops (SIGTERM) and starts again on the same configuration: {@code rt0} is back, and a new fio
 *       process verifies what {@code vw64k} wrote before the restart ({@code vo64k}).
 *   <li>A front-end connection is held open on {@code rt0.sock}; {@code vhost_delete_controller rt0} closes it (the
 *       peer reads end of stream), removes the socket file and the controller; a third master does not recreate it.
 * </ol>
 *
 * <p>Logs in {@code dist/target/it-logs/ControllerRpcIT/}. Skipped when not root or when the chroot cannot be built.
 */
@Tag("integration")
class ControllerRpcIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration FIO_TIMEOUT = Duration.ofMinutes(10);
    private static final long RT_DISK_BYTES = 512L << 20;

    @Test
    @Timeout(value = 40, unit = TimeUnit.MINUTES)
    void shouldServeRpcControllerAcrossRestartUntilDeletedWhenCreatedAtRunTime() throws Exception {
        ItEnv env = ItEnv.forTest(getClass());
        ToolChroot.ensure(env);
        Path socketDir = ToolChroot.tmpDir("vhostd-ctl-");
        long pid = ProcessHandle.current().pid();
        Path image0 = env.workDir().resolve("ControllerRpcIT-" + pid + "-0.img");
        Path image1 = env.workDir().resolve("ControllerRpcIT-" + pid + "-1.img");
        Files.deleteIfExists(image1);
        MasterConfig config = new MasterConfig(socketDir, image0, 64L << 20, 1);
        Path rtSocket = socketDir.resolve("rt0.sock");
        Path fioOut = socketDir.resolve("fio");
        try {
            config.write();
            try (VhostdMaster master =
                    VhostdMaster.start(env, config, env.logDir().resolve("master-1.log"))) {
                step("master 1 ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
                // the RPC socket listens after the controllers are served
                awaitAccepts(config.rpcSocket(), READY_TIMEOUT, master);
                try (RpcClient rpc = RpcClient.connect(config.rpcSocket(), Duration.ofSeconds(60))) {
                    rpc.call(
                            "bdev_file_create",
                            JSON.createObjectNode()
                                    .put("name", "disk1")
                                    .put("filename", image1.toString())
                                    .put("size_bytes", RT_DISK_BYTES));
                    long startNs = System.nanoTime();
                    JsonNode created = rpc.call(
                            "vhost_create_blk_controller",
                            JSON.createObjectNode()
                                    .put("ctrlr", "rt0")
                                    .put("dev_name", "disk1")
                                    .put("socket", rtSocket.toString())
                                    .put("num_queues", 2));
                    assertTrue(created.asBoolean());
                    step("rt0 created and listening in %d ms", (System.nanoTime() - startNs) / 1_000_000);
                }
                assertTrue(accepts(rtSocket), "rt0.sock accepts as soon as the create returned");
                String slaves = vhostctl(config, "slaves");
                step("vhostctl slaves:%n%s", slaves);
                assertTrue(
                        slaves.lines().anyMatch(l -> l.contains(" serving ") && l.contains("rt0")),
                        "the serving slave serves rt0\n" + slaves);
                runFio(env, rtSocket, "vw4k32 vw64k", fioOut.resolve("1"), "fio-1.log", master);
                assertStops(master);
            }

            try (VhostdMaster master =
                    VhostdMaster.start(env, config, env.logDir().resolve("master-2.log"))) {
                step("master 2 ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
                // the RPC socket listens after the controllers are served
                awaitAccepts(config.rpcSocket(), READY_TIMEOUT, master);
                awaitAccepts(rtSocket, READY_TIMEOUT, master);
                assertEquals(List.of("vhost.0", "rt0"), controllerNames(config));
                runFio(env, rtSocket, "vo64k", fioOut.resolve("2"), "fio-2.log", master);

                try (SocketChannel frontEnd = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                    frontEnd.connect(UnixDomainSocketAddress.of(rtSocket));
                    awaitConnectedSession(config, "rt0", master);
                    CompletableFuture<Integer> eof = CompletableFuture.supplyAsync(() -> {
                        try {
                            return frontEnd.read(ByteBuffer.allocate(64));
                        } catch (IOException e) {
                            return -2;
                        }
                    });
                    try (RpcClient rpc = RpcClient.connect(config.rpcSocket(), Duration.ofSeconds(60))) {
                        assertTrue(rpc.call(
                                        "vhost_delete_controller",
                                        JSON.createObjectNode().put("ctrlr", "rt0"))
                                .asBoolean());
                    }
                    int read = eof.get(30, TimeUnit.SECONDS);
                    assertTrue(read < 0, "the session's connection was closed (read " + read + ")");
                }
                assertFalse(Files.exists(rtSocket, LinkOption.NOFOLLOW_LINKS), "rt0.sock removed");
                assertEquals(List.of("vhost.0"), controllerNames(config));
                String bdevs = vhostctl(config, "bdevs", "disk1");
                assertTrue(bdevs.lines().anyMatch(l -> l.startsWith("disk1 ")), bdevs);
                assertStops(master);
            }

            try (VhostdMaster master =
                    VhostdMaster.start(env, config, env.logDir().resolve("master-3.log"))) {
                step("master 3 ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
                // the RPC socket listens after the controllers are served
                awaitAccepts(config.rpcSocket(), READY_TIMEOUT, master);
                assertEquals(List.of("vhost.0"), controllerNames(config), "a deleted controller stays deleted");
                assertFalse(Files.exists(rtSocket, LinkOption.NOFOLLOW_LINKS));
                assertStops(master);
            }
        } finally {
            ToolChroot.keepLogs(fioOut, env.logDir().resolve("fio"));
            Files.deleteIfExists(image0);
            Files.deleteIfExists(image1);
            ToolChroot.deleteTree(socketDir);
        }
    }

    private static void runFio(ItEnv env, Path socket, String jobs, Path out, String logName, VhostdMaster master)
            throws Exception {
        Path log = env.logDir().resolve(logName);
        long startNs = System.nanoTime();
        int rc = ToolChroot.run(
                env,
                List.of(
                        env.repoPath("tests/chroot/verify-libblkio.sh").toString(),
                        "--socket",
                        socket.toString(),
                        "--jobs",
                        jobs,
                        "--out",
                        out.toString()),
                log,
                FIO_TIMEOUT);
        step("fio %s: rc=%d in %d ms", jobs, rc, (System.nanoTime() - startNs) / 1_000_000);
        String output = Files.readString(log, StandardCharsets.UTF_8);
        assertEquals(0, rc, "verify-libblkio.sh " + jobs + " failed\n" + output + "\n" + master.logTail());
        for (String job : jobs.split(" ")) {
            assertTrue(
                    output.lines().anyMatch(l -> l.startsWith("PASS " + job + " ")), job + " did not pass\n" + output);
        }
    }

    private static String vhostctl(MasterConfig config, String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        List<String> all =
                new ArrayList<>(List.of("--socket", config.rpcSocket().toString()));
        all.addAll(List.of(args));
        int rc = Vhostctl.run(new PrintWriter(out), new PrintWriter(err), Map.of(), all.toArray(String[]::new));
        assertEquals(0, rc, "vhostctl " + all + ": " + err);
        return out.toString();
    }

    private static List<String> controllerNames(MasterConfig config) throws Exception {
        try (RpcClient rpc = RpcClient.connect(config.rpcSocket(), Duration.ofSeconds(30))) {
            List<String> names = new ArrayList<>();
            rpc.call("vhost_get_controllers", null)
                    .forEach(c -> names.add(c.path("name").asText()));
            return names;
        }
    }

    /** Waits until the slave reported a connected session of {@code controller}. */
    private static void awaitConnectedSession(MasterConfig config, String controller, VhostdMaster master)
            throws Exception {
        long deadlineNs = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        try (RpcClient rpc = RpcClient.connect(config.rpcSocket(), Duration.ofSeconds(30))) {
            while (System.nanoTime() < deadlineNs) {
                JsonNode c = rpc.call(
                                "vhost_get_controllers", JSON.createObjectNode().put("name", controller))
                        .get(0);
                if (c.path("sessions").path(0).path("connected").asBoolean(false)) {
                    return;
                }
                Thread.sleep(100);
            }
        }
        throw new AssertionError("no connected session on " + controller + "\n" + master.logTail());
    }

    private static void awaitAccepts(Path socket, Duration timeout, VhostdMaster master) throws Exception {
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadlineNs) {
            if (Files.exists(socket) && accepts(socket)) {
                return;
            }
            Thread.sleep(100);
        }
        throw new AssertionError(socket + " does not accept\n" + master.logTail());
    }

    private static boolean accepts(Path socket) {
        try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            return channel.connect(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            return false;
        }
    }

    private static void assertStops(VhostdMaster master) throws InterruptedException {
        List<String> survivors = master.terminate(STOP_TIMEOUT);
        assertTrue(survivors.isEmpty(), "still running after SIGTERM: " + survivors + "\n" + master.logTail());
    }

    private static void step(String format, Object... args) {
        System.out.printf("[ControllerRpcIT] " + format + "%n", args);
    }
}
