package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.rpc.RpcClient;
import io.vhostd.rpc.RpcException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #4 rolling upgrade: a QEMU 7.2 guest runs verified I/O ({@code verify-randwrite.fio}: 4k random writes,
 * iodepth 32, crc32c, read back and verified; 2 vCPUs, 2 queues) while the test calls {@code slave_upgrade} 20 times
 * in a row; each moves the controller from the serving slave to the warm standby without a disconnect. The guest
 * must see pauses and nothing else: fio rc=0 and {@code err= 0}, no {@code I/O error} in the guest's kernel log,
 * nothing printed by QEMU (a disconnect prints a "vhost-user" line). Before the guest boots, an upgrade to a slave
 * that announces another journal major version (fault injection, {@code vhostd.fault.hello.*}) must be refused with
 * {@code slave_incompatible} while the old slave keeps serving.
 *
 * <p>{@code VHOSTD_IT_UPGRADES} (default 20) upgrades; {@code VHOSTD_IT_VERIFY_SIZE} (default 512M) is fio's size: the
 * upgrades must all start before fio ends. Pauses (the RPC's {@code pause_us}) are printed. Logs stay in {@code
 * dist/target/it-logs/SlaveUpgradeIT/}. Skipped when qemu-system-x86_64 is not installed.
 */
@Tag("integration")
class SlaveUpgradeIT {

    private static final long DISK_BYTES = 1L << 30;
    private static final int NUM_QUEUES = 2;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration BOOT_TIMEOUT = Duration.ofSeconds(300);
    private static final Duration RPC_TIMEOUT = Duration.ofSeconds(120);
    private static final String VERIFY_JOB = "verify-randwrite.fio";
    private static final Pattern FIO_ERR = Pattern.compile("err=\\s*(\\d+)");
    /** The slave the fault injection makes announce journal 2.0.0: the one the first upgrade (with a jar) spawns. */
    private static final String FAULTY_SLAVE = "slave-3";

    @Test
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void shouldKeepGuestIoVerifiedWhenSlaveIsUpgradedRepeatedly() throws Exception {
        assumeTrue(GuestVm.qemuAvailable(), "qemu-system-x86_64 is not installed");
        int upgrades = Integer.parseInt(System.getenv().getOrDefault("VHOSTD_IT_UPGRADES", "20"));
        // 768M: the 20 upgrades, each waiting for a standby that warms up beside a TCG guest, must end before fio does
        String verifySize = System.getenv().getOrDefault("VHOSTD_IT_VERIFY_SIZE", "768M");
        ItEnv env = ItEnv.forTest(getClass());
        GuestVm.buildGuest(env);
        Path socketDir = Files.createTempDirectory("vhostd-it-");
        Path image = env.workDir()
                .resolve("SlaveUpgradeIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, NUM_QUEUES);
        config.write();
        Files.writeString(
                config.configFile(),
                config.yaml()
                        + "slave: {java_opts: [\"-Dvhostd.fault.hello.slave=" + FAULTY_SLAVE
                        + "\", \"-Dvhostd.fault.hello.journal-version=0x20000\"]}\n");
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("master.log"));
                RpcClient rpc = connect(config, master)) {
            step("master ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
            GuestChecks.awaitLog(master, "standby slave slave-2", 1, Duration.ofSeconds(60), null);
            long servingPid = servingPid(rpc);

            // an incompatible slave is refused and the old one keeps serving
            ObjectNode withJar = JsonNodeFactory.instance.objectNode();
            withJar.put("jar", env.launchJar().toString());
            RpcException refused = assertThrows(RpcException.class, () -> rpc.call("slave_upgrade", withJar));
            step("upgrade to %s refused: %s", FAULTY_SLAVE, refused.error().message());
            assertEquals(
                    "slave_incompatible",
                    refused.error().name(),
                    refused.error().toString());
            assertTrue(
                    refused.error().message().contains("journal version 2.0.0"),
                    refused.error().message());
            assertEquals(servingPid, servingPid(rpc), "the old slave must keep serving\n" + master.logTail());

            CompletableFuture<GuestVm.Result> boot =
                    GuestChecks.startFioVerify(env, config, NUM_QUEUES, verifySize, VERIFY_JOB, BOOT_TIMEOUT, master);
            // fio has started: give it a moment to fill its queue
            Thread.sleep(1_000);
            List<Long> pausesUs = new ArrayList<>();
            long previousPid = servingPid;
            for (int k = 1; k <= upgrades; k++) {
                assertFalse(
                        boot.isDone(),
                        "fio ended after " + (k - 1) + " of " + upgrades + " upgrades: raise VHOSTD_IT_VERIFY_SIZE\n"
                                + describe(boot));
                JsonNode result = rpc.call("slave_upgrade", JsonNodeFactory.instance.objectNode());
                long pid = result.path("pid").asLong();
                assertNotEquals(previousPid, pid, "the upgrade did not change the slave: " + result);
                assertEquals(1, result.path("controllers").size(), result.toString());
                long pauseUs =
                        result.path("controllers").get(0).path("pause_us").asLong();
                pausesUs.add(pauseUs);
                step(
                        "upgrade %d: %s (pid %d), pause %d us",
                        k, result.path("slave_id").asText(), pid, pauseUs);
                assertEquals(pid, servingPid(rpc), "vhost_get_controllers names another slave\n" + master.logTail());
                previousPid = pid;
            }
            GuestVm.Result result = boot.get(BOOT_TIMEOUT.toSeconds() + 60, TimeUnit.SECONDS);
            List<Long> sorted = pausesUs.stream().sorted().toList();
            step(
                    "guest rc=%d in %d ms; pauses (us): %s; p50 %d, max %d",
                    result.exitCode(),
                    result.wall().toMillis(),
                    pausesUs,
                    sorted.get(sorted.size() / 2),
                    sorted.getLast());
            GuestChecks.assertFioVerified(result, master, VERIFY_JOB, true);
            String log = Files.readString(master.log(), StandardCharsets.UTF_8);
            assertFalse(log.contains("handing its controllers to the standby"), "a slave crashed\n" + master.logTail());
            assertFalse(log.contains("session not adopted"), "a session was not adopted\n" + master.logTail());
            assertEquals(List.of(), master.terminate(Duration.ofSeconds(30)), "processes left behind");
        } finally {
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
    }

    private static RpcClient connect(MasterConfig config, VhostdMaster master) throws Exception {
        long deadlineNs = System.nanoTime() + READY_TIMEOUT.toNanos();
        while (true) {
            try {
                return RpcClient.connect(config.rpcSocket(), RPC_TIMEOUT);
            } catch (IOException e) {
                if (System.nanoTime() > deadlineNs) {
                    throw new AssertionError("no RPC socket\n" + master.logTail(), e);
                }
                Thread.sleep(100);
            }
        }
    }

    /** The pid of the slave serving vhost.0, from vhost_get_controllers (waits for the RPC socket). */
    private static long servingPid(RpcClient rpc) throws Exception {
        JsonNode controllers = rpc.call("vhost_get_controllers", JsonNodeFactory.instance.objectNode());
        return controllers.get(0).path("slave_pid").asLong();
    }

    private static String describe(CompletableFuture<GuestVm.Result> boot) {
        try {
            return boot.isDone() ? boot.get().describe() : "";
        } catch (Exception e) {
            return e.toString();
        }
    }

    private static void step(String format, Object... args) {
        System.out.printf("[SlaveUpgradeIT] " + format + "%n", args);
    }
}
