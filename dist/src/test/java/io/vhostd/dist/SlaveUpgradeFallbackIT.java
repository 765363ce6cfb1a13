package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import io.vhostd.rpc.RpcClient;
import io.vhostd.rpc.RpcException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #4 rolling upgrade, the failure path: the new slave refuses the session (fault injection {@code
 * vhostd.fault.adopt.slave}) after the old slave already let go of it. The master must stop both and hand the
 * controller over as after a slave crash (a fresh slave, queue pairs reset, the journal's requests replayed); the RPC
 * answers {@code slave_error}; the front-end, fio with the libblkio engine (tool chroot) writing 4k blocks at QD32
 * with crc32c and reading them back, sees a pause and nothing else: verify passes, no error. Logs in {@code
 * dist/target/it-logs/SlaveUpgradeFallbackIT/}. Skipped when not root or when the chroot cannot be built.
 */
@Tag("integration")
class SlaveUpgradeFallbackIT {

    private static final long DISK_BYTES = 1L << 30;
    private static final int NUM_QUEUES = 2;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration FIO_TIMEOUT = Duration.ofMinutes(8);

    @Test
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void shouldHandOverAsAfterCrashWhenNewSlaveRefusesSession() throws Exception {
        ItEnv env = ItEnv.forTest(getClass());
        ToolChroot.ensure(env);
        Path socketDir = ToolChroot.tmpDir("vhostd-upf-");
        Path image = env.workDir()
                .resolve("SlaveUpgradeFallbackIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, NUM_QUEUES);
        config.write();
        // slave-2 is the standby the upgrade takes
        Files.writeString(
                config.configFile(), config.yaml() + "slave: {java_opts: [\"-Dvhostd.fault.adopt.slave=slave-2\"]}\n");
        Path fioLog = env.logDir().resolve("fio.log");
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("master.log"))) {
            master.awaitReady(READY_TIMEOUT);
            awaitLog(master, "standby slave slave-2", Duration.ofSeconds(120));
            CompletableFuture<Integer> fio = CompletableFuture.supplyAsync(() -> {
                try {
                    return ToolChroot.run(
                            env,
                            List.of(
                                    env.repoPath("tests/chroot/enter.sh").toString(),
                                    "fio",
                                    "--name=upgrade-fallback",
                                    "--ioengine=libblkio",
                                    "--libblkio_driver=virtio-blk-vhost-user",
                                    "--libblkio_path=" + config.vhostSocket(),
                                    "--direct=1",
                                    "--rw=randwrite",
                                    "--bs=4k",
                                    "--iodepth=32",
                                    "--size=512M",
                                    "--verify=crc32c",
                                    "--do_verify=1",
                                    "--verify_fatal=1"),
                            fioLog,
                            FIO_TIMEOUT);
                } catch (IOException | InterruptedException e) {
                    throw new IllegalStateException(e);
                }
            });
            awaitLog(master, "front-end connected", Duration.ofSeconds(60));
            Thread.sleep(500);
            try (RpcClient rpc = RpcClient.connect(config.rpcSocket(), Duration.ofSeconds(180))) {
                RpcException e = assertThrows(
                        RpcException.class, () -> rpc.call("slave_upgrade", JsonNodeFactory.instance.objectNode()));
                System.out.printf(
                        "[SlaveUpgradeFallbackIT] slave_upgrade: %s%n",
                        e.error().message());
                assertEquals("slave_error", e.error().name(), e.error().toString());
                assertTrue(
                        e.error().message().contains("as after a slave crash"),
                        e.error().message());
                JsonNode controllers = rpc.call("vhost_get_controllers", JsonNodeFactory.instance.objectNode());
                long pid = controllers.get(0).path("slave_pid").asLong();
                String log = Files.readString(master.log(), StandardCharsets.UTF_8);
                assertTrue(log.contains("slave slave-3 (pid " + pid + ") resumed 1 session(s)"), master.logTail());
            }
            int rc = fio.get(FIO_TIMEOUT.toSeconds() + 60, TimeUnit.SECONDS);
            String out = Files.readString(fioLog, StandardCharsets.UTF_8);
            assertEquals(0, rc, "fio failed\n" + out + "\n" + master.logTail());
            assertTrue(out.contains("err= 0"), out);
            assertEquals(List.of(), master.terminate(Duration.ofSeconds(30)), "processes left behind");
        } finally {
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
    }

    private static void awaitLog(VhostdMaster master, String needle, Duration timeout) throws Exception {
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadlineNs) {
            if (Files.readString(master.log(), StandardCharsets.UTF_8).contains(needle)) {
                return;
            }
            Thread.sleep(20);
        }
        throw new AssertionError("no '" + needle + "' within " + timeout + "\n" + master.logTail());
    }
}
