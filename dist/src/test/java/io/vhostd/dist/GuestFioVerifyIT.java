package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #2: a real QEMU guest does verified I/O on a vhostd vhost-user-blk controller, and the data it wrote
 * survives a guest reboot and a restart of the master.
 *
 * <ol>
 *   <li>{@code bin/vhostd master} serves a 1 GiB file bdev (on disk, under {@code dist/target/it-work}) as a
 *       vhost-user-blk controller with 2 queues.
 *   <li>Boot 1 (2 vCPUs, {@code vhost-user-blk-pci,num-queues=2}): fio {@code verify-randwrite.fio} (4k random
 *       writes, iodepth 32, libaio, O_DIRECT, 256 MiB, crc32c, read back and verified) and {@code persist.fio}
 *       (a 64 MiB region at 512 MiB written with crc32c headers).
 *   <li>SIGTERM: the master and its slave must be gone within the deadline; a new master starts on the same
 *       config and paths.
 *   <li>Boot 2: {@code persist.fio} with {@code verify_only=1}: every block of the region must read back as
 *       written in boot 1.
 *   <li>SIGTERM again: nothing of ours may remain.
 * </ol>
 *
 * <p>Each boot must end with fio rc=0, {@code err= 0} for every job, the guest seeing 2 queues, no
 * {@code I/O error} in the guest kernel log, and no message from QEMU (it prints one when the back-end refuses or
 * drops the connection or breaks the vhost-user protocol, even if it then recovers by reconnecting). Logs (master, QEMU console, guest output, guest dmesg) stay in
 * {@code dist/target/it-logs/GuestFioVerifyIT/}. Skipped only when qemu-system-x86_64 is not installed.
 */
@Tag("integration")
class GuestFioVerifyIT {

    private static final long DISK_BYTES = 1L << 30;
    private static final int NUM_QUEUES = 2;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(30);
    private static final Duration BOOT_TIMEOUT = Duration.ofSeconds(200);
    private static final String VERIFY_JOB = "verify-randwrite.fio";
    private static final String PERSIST_JOB = "persist.fio";
    private static final Map<String, String> GUEST_ENV = Map.of(
            "VERIFY_SIZE", "256M",
            "PERSIST_OFFSET", "512M",
            "PERSIST_SIZE", "64M");
    private static final Pattern FIO_ERR = Pattern.compile("err=\\s*(\\d+)");

    @Test
    @Timeout(value = 12, unit = TimeUnit.MINUTES)
    void shouldReadBackVerifiedDataWhenGuestRebootsAndMasterRestarts() throws Exception {
        assumeTrue(GuestVm.qemuAvailable(), "qemu-system-x86_64 is not installed");
        ItEnv env = ItEnv.forTest(getClass());
        GuestVm.buildGuest(env);
        Path socketDir = Files.createTempDirectory("vhostd-it-");
        Path image = env.workDir()
                .resolve("GuestFioVerifyIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, NUM_QUEUES);
        config.write();
        Files.writeString(env.logDir().resolve("vhostd.yaml"), config.yaml(), StandardCharsets.UTF_8);
        try {
            try (VhostdMaster master =
                    VhostdMaster.start(env, config, env.logDir().resolve("master-1.log"))) {
                step("master 1 ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
                GuestVm.Result boot1 = GuestVm.runFio(
                        env,
                        "boot-1",
                        config.vhostSocket(),
                        NUM_QUEUES,
                        withVerifyOnly(false),
                        List.of(VERIFY_JOB, PERSIST_JOB),
                        BOOT_TIMEOUT);
                step(
                        "boot 1 (write + verify) rc=%d in %d ms",
                        boot1.exitCode(), boot1.wall().toMillis());
                assertFioPassed(boot1, List.of(VERIFY_JOB, PERSIST_JOB), master);
                assertStopsCleanly(master);
            }
            try (VhostdMaster master =
                    VhostdMaster.start(env, config, env.logDir().resolve("master-2.log"))) {
                step("master 2 ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
                GuestVm.Result boot2 = GuestVm.runFio(
                        env,
                        "boot-2",
                        config.vhostSocket(),
                        NUM_QUEUES,
                        withVerifyOnly(true),
                        List.of(PERSIST_JOB),
                        BOOT_TIMEOUT);
                step(
                        "boot 2 (verify_only) rc=%d in %d ms",
                        boot2.exitCode(), boot2.wall().toMillis());
                assertFioPassed(boot2, List.of(PERSIST_JOB), master);
                assertStopsCleanly(master);
            }
        } finally {
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
    }

    private static Map<String, String> withVerifyOnly(boolean verifyOnly) {
        Map<String, String> env = new HashMap<>(GUEST_ENV);
        env.put("VERIFY_ONLY", verifyOnly ? "1" : "0");
        return env;
    }

    private static void assertFioPassed(GuestVm.Result boot, List<String> jobs, VhostdMaster master)
            throws IOException {
        String context = boot.describe() + "\n" + master.logTail();
        assertEquals(0, boot.exitCode(), "guest fio failed\n" + boot.output() + "\n" + context);
        List<String> qemuMessages = qemuMessages(boot);
        assertTrue(
                qemuMessages.isEmpty(), "QEMU reported errors (with a healthy back-end it prints nothing)\n" + context);
        assertTrue(
                boot.output().contains("queues=" + NUM_QUEUES + "@@"),
                "the guest does not see " + NUM_QUEUES + " queues on /dev/vda\n" + boot.output());
        for (String job : jobs) {
            assertTrue(boot.output().contains("@@FIO " + job + " rc=0@@"), job + " did not pass\n" + boot.output());
        }
        Matcher err = FIO_ERR.matcher(boot.output());
        int jobsReported = 0;
        while (err.find()) {
            assertEquals("0", err.group(1), "fio reported an error\n" + boot.output());
            jobsReported++;
        }
        assertTrue(jobsReported >= jobs.size(), "fio printed no 'err= 0' result line per job\n" + boot.output());
        assertFalse(
                boot.output().lines().anyMatch(l -> l.startsWith("verify:")), "fio found bad data\n" + boot.output());
        assertFalse(boot.dmesg().isBlank(), "the guest did not print its kernel log\n" + context);
        assertFalse(boot.dmesg().contains("I/O error"), "guest kernel log has I/O errors\n" + boot.dmesg());
        String console = Files.readString(boot.consoleLog(), StandardCharsets.UTF_8);
        assertFalse(console.contains("I/O error"), "guest console has I/O errors\n" + context);
    }

    private static void assertStopsCleanly(VhostdMaster master) throws InterruptedException {
        long startNs = System.nanoTime();
        List<String> survivors = master.terminate(STOP_TIMEOUT);
        assertTrue(
                survivors.isEmpty(),
                "still running " + STOP_TIMEOUT + " after SIGTERM to the master (killed now): " + survivors + "\n"
                        + master.logTail());
        step(
                "master pid %d and its processes stopped %d ms after SIGTERM (exit status %d)",
                master.pid(), (System.nanoTime() - startNs) / 1_000_000, master.exitValue());
    }

    /**
     * QEMU's own messages ({@code qemu-system-x86_64: ...} on stderr, which run-guest.sh puts in the console log).
     * With this fixed command line and a healthy back-end QEMU prints none; a back-end that drops or refuses
     * the connection or breaks the vhost-user protocol shows up here, even when QEMU recovers by reconnecting.
     */
    private static List<String> qemuMessages(GuestVm.Result boot) throws IOException {
        try (Stream<String> lines = Files.lines(boot.consoleLog(), StandardCharsets.UTF_8)) {
            return lines.filter(l -> l.startsWith("qemu-system")).limit(20).toList();
        }
    }

    private static void step(String format, Object... args) {
        System.out.printf("[GuestFioVerifyIT] " + format + "%n", args);
    }
}
