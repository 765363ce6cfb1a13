package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import io.vhostd.rpc.RpcClient;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #4 with packed virtqueues (journal.md §6.5): a QEMU 7.2 guest on {@code vhost-user-blk-pci,num-queues=2,
 * packed=on} runs verified I/O ({@code verify-randwrite.fio}: 4k random writes, iodepth 32, crc32c, read back and
 * verified; 2 vCPUs, 2 queues, 256 MiB) while the test alternates a SIGKILL of the serving slave (the warm standby
 * adopts the session from the journal's descriptor copies) and a {@code slave_upgrade} (the next slave takes the
 * commands in flight over), 5 of each. The guest must see pauses and nothing else: fio rc=0 and {@code err= 0}, no
 * {@code I/O error} in the guest, QEMU prints nothing (a vhost-user disconnect would), no session refused.
 *
 * <p>{@code VHOSTD_IT_PACKED_HANDOVERS} (default 10) handovers, odd ones kills; {@code VHOSTD_IT_VERIFY_SIZE} (default
 * 256M) is fio's size: the handovers must all happen before fio ends. Logs stay in {@code
 * dist/target/it-logs/PackedHandoverIT/}. Skipped when qemu-system-x86_64 is not installed.
 */
@Tag("integration")
class PackedHandoverIT {

    private static final long DISK_BYTES = 1L << 30;
    private static final int NUM_QUEUES = 2;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration BOOT_TIMEOUT = Duration.ofSeconds(240);
    private static final Duration HANDOVER_TIMEOUT = Duration.ofSeconds(30);
    private static final Duration RPC_TIMEOUT = Duration.ofSeconds(60);
    private static final String VERIFY_JOB = "verify-randwrite.fio";
    /** virtio feature bit 34, VIRTIO_F_RING_PACKED, as the guest's sysfs feature string shows it (character 35). */
    private static final String GUEST_COMMAND =
            "echo \"@@PACKED $(cut -c35 /sys/block/vda/device/features)@@\"; sh /vm/guest-fio.sh " + VERIFY_JOB;

    private static final Pattern RESUMED = Pattern.compile("resumed (\\d+) session\\(s\\) (\\d+) us after");

    @Test
    @Timeout(value = 6, unit = TimeUnit.MINUTES)
    void shouldKeepPackedGuestIoVerifiedWhenSlaveIsKilledAndUpgradedAlternately() throws Exception {
        assumeTrue(GuestVm.qemuAvailable(), "qemu-system-x86_64 is not installed");
        int handovers = Integer.parseInt(System.getenv().getOrDefault("VHOSTD_IT_PACKED_HANDOVERS", "10"));
        String verifySize = System.getenv().getOrDefault("VHOSTD_IT_VERIFY_SIZE", "256M");
        long startNs = System.nanoTime();
        ItEnv env = ItEnv.forTest(getClass());
        GuestVm.buildGuest(env);
        Path socketDir = Files.createTempDirectory("vhostd-it-");
        Path image = env.workDir()
                .resolve("PackedHandoverIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, NUM_QUEUES);
        config.write();
        Path fio = env.repoPath("tests/vm/fio");
        List<Path> files = List.of(fio.resolve("guest-fio.sh"), fio.resolve(VERIFY_JOB));
        Random random = new Random();
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("master.log"));
                RpcClient rpc = connect(config, master)) {
            step("master ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
            GuestChecks.awaitLog(master, "standby slave", 1, Duration.ofSeconds(60), null);
            Path console = env.logDir().resolve("boot.console.log");
            Files.deleteIfExists(console);
            CompletableFuture<GuestVm.Result> boot = CompletableFuture.supplyAsync(() -> {
                try {
                    return GuestVm.runGuest(
                            env,
                            "boot",
                            config.vhostSocket(),
                            NUM_QUEUES,
                            List.of("--packed"),
                            files,
                            Map.of("VERIFY_SIZE", verifySize),
                            GUEST_COMMAND,
                            BOOT_TIMEOUT);
                } catch (IOException | InterruptedException e) {
                    throw new IllegalStateException(e);
                }
            });
            // fio starts right after guest-fio.sh prints its @@GUEST line
            GuestChecks.awaitFile(console, "@@GUEST", Duration.ofSeconds(180), boot, master);
            List<String> done = new ArrayList<>();
            for (int k = 1; k <= handovers; k++) {
                assertFalse(
                        boot.isDone(),
                        "fio ended after " + (k - 1) + " of " + handovers + " handovers: raise VHOSTD_IT_VERIFY_SIZE");
                // a random moment, so that requests are in flight at different points of the data path
                Thread.sleep(300 + random.nextInt(700));
                if (k % 2 == 1) {
                    int resumedBefore = count(master, "session(s) ");
                    int standbysBefore = count(master, "standby slave");
                    long pid = servingPid(rpc);
                    ProcessHandle.of(pid).orElseThrow().destroyForcibly(); // SIGKILL
                    String log = GuestChecks.awaitLog(master, "session(s) ", resumedBefore + 1, HANDOVER_TIMEOUT, boot);
                    long us = lastResumedUs(log, master);
                    done.add("kill " + us + " us");
                    step("handover %d: SIGKILL slave pid %d, adopted after %d us", k, pid, us);
                    // the next upgrade needs the replacement's own standby
                    GuestChecks.awaitLog(master, "standby slave", standbysBefore + 1, HANDOVER_TIMEOUT, boot);
                } else {
                    long before = servingPid(rpc);
                    JsonNode result = rpc.call("slave_upgrade", JsonNodeFactory.instance.objectNode());
                    long pid = result.path("pid").asLong();
                    assertNotEquals(before, pid, "the upgrade did not change the slave: " + result);
                    long pauseUs =
                            result.path("controllers").get(0).path("pause_us").asLong();
                    done.add("upgrade " + pauseUs + " us");
                    step("handover %d: slave_upgrade to pid %d, pause %d us", k, pid, pauseUs);
                }
            }
            GuestVm.Result result = boot.get(BOOT_TIMEOUT.toSeconds() + 60, TimeUnit.SECONDS);
            step(
                    "guest rc=%d in %d ms; handovers: %s; test %d s",
                    result.exitCode(),
                    result.wall().toMillis(),
                    done,
                    Duration.ofNanos(System.nanoTime() - startNs).toSeconds());
            assertTrue(
                    result.output().contains("@@PACKED 1@@"),
                    "VIRTIO_F_RING_PACKED not negotiated\n" + result.output());
            GuestChecks.assertFioVerified(result, master, VERIFY_JOB, true);
            assertEquals(handovers, done.size());
            String log = Files.readString(master.log(), StandardCharsets.UTF_8);
            assertFalse(log.contains("session not adopted"), "a session was not adopted\n" + master.logTail());
            assertFalse(log.contains("cannot be handed over"), "a handover was refused\n" + master.logTail());
            assertEquals(List.of(), master.terminate(Duration.ofSeconds(30)), "processes left behind");
        } finally {
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
    }

    private static int count(VhostdMaster master, String needle) throws IOException {
        String log = Files.readString(master.log(), StandardCharsets.UTF_8);
        return log.split(Pattern.quote(needle), -1).length - 1;
    }

    private static long lastResumedUs(String log, VhostdMaster master) {
        Matcher m = RESUMED.matcher(log);
        long last = -1;
        while (m.find()) {
            assertEquals("1", m.group(1), "the session was not adopted\n" + master.logTail());
            last = Long.parseLong(m.group(2));
        }
        return last;
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

    /** The pid of the slave serving vhost.0, from vhost_get_controllers. */
    private static long servingPid(RpcClient rpc) throws Exception {
        JsonNode controllers = rpc.call("vhost_get_controllers", JsonNodeFactory.instance.objectNode());
        return controllers.get(0).path("slave_pid").asLong();
    }

    private static void step(String format, Object... args) {
        System.out.printf("[PackedHandoverIT] " + format + "%n", args);
    }
}
