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
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #4: the slave dies (SIGKILL) while a QEMU guest runs verified I/O; the master hands the controller to its warm
 * standby, which continues the session from the journal and the fds the master held. The guest must see a pause and
 * nothing else: fio {@code verify-randwrite.fio} (4k random writes, iodepth 32, crc32c, read back and verified) ends
 * with rc=0 and {@code err= 0}, no {@code I/O error} in the guest's kernel log, and QEMU prints nothing (it would
 * print a "vhost-user" / "Unexpected end-of-file" line on a disconnect).
 *
 * <p>{@code VHOSTD_IT_SLAVE_KILLS} kills (default 3) at random moments while fio runs, each after the previous
 * handover completed; {@code VHOSTD_IT_VERIFY_SIZE} (default 192M) is fio's size (more kills need a longer run). The handover times (the master's "resumed ... us after" lines) are printed. Logs stay in
 * {@code dist/target/it-logs/SlaveKillIT/}. Skipped when qemu-system-x86_64 is not installed.
 */
@Tag("integration")
class SlaveKillIT {

    private static final long DISK_BYTES = 1L << 30;
    private static final int NUM_QUEUES = 2;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration BOOT_TIMEOUT = Duration.ofSeconds(300);
    private static final Duration HANDOVER_TIMEOUT = Duration.ofSeconds(30);
    private static final String VERIFY_JOB = "verify-randwrite.fio";
    private static final Pattern FIO_ERR = Pattern.compile("err=\\s*(\\d+)");
    private static final Pattern SERVED_BY = Pattern.compile("controller \\S+ served by slave (\\S+)");
    private static final Pattern RESUMED = Pattern.compile("resumed (\\d+) session\\(s\\) (\\d+) us after");

    @Test
    @Timeout(value = 12, unit = TimeUnit.MINUTES)
    void shouldKeepGuestIoVerifiedWhenSlaveIsKilledRepeatedly() throws Exception {
        assumeTrue(GuestVm.qemuAvailable(), "qemu-system-x86_64 is not installed");
        int kills = Integer.parseInt(System.getenv().getOrDefault("VHOSTD_IT_SLAVE_KILLS", "3"));
        String verifySize = System.getenv().getOrDefault("VHOSTD_IT_VERIFY_SIZE", "192M");
        ItEnv env = ItEnv.forTest(getClass());
        GuestVm.buildGuest(env);
        Path socketDir = Files.createTempDirectory("vhostd-it-");
        Path image =
                env.workDir().resolve("SlaveKillIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, NUM_QUEUES);
        config.write();
        Random random = new Random();
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("master.log"))) {
            step("master ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
            Path console = env.logDir().resolve("boot.console.log");
            // a console log of an earlier run must not be taken for this guest's
            Files.deleteIfExists(console);
            CompletableFuture<GuestVm.Result> boot = CompletableFuture.supplyAsync(() -> {
                try {
                    return GuestVm.runFio(
                            env,
                            "boot",
                            config.vhostSocket(),
                            NUM_QUEUES,
                            Map.of("VERIFY_SIZE", verifySize),
                            List.of(VERIFY_JOB),
                            BOOT_TIMEOUT);
                } catch (IOException | InterruptedException e) {
                    throw new IllegalStateException(e);
                }
            });
            // fio starts right after guest-fio.sh prints its @@GUEST line
            awaitFile(console, "@@GUEST", Duration.ofSeconds(240), boot, master);
            List<Long> handoverUs = new ArrayList<>();
            for (int k = 1; k <= kills && !boot.isDone(); k++) {
                // random moment: the guest boots for a few seconds, then fio runs
                Thread.sleep(1_000 + random.nextInt(4_000));
                ProcessHandle serving = servingSlave(master);
                serving.destroyForcibly(); // SIGKILL
                step("kill %d: SIGKILL slave pid %d", k, serving.pid());
                handoverUs.add(awaitHandover(master, k, boot));
                step("kill %d: handover took %d us", k, handoverUs.getLast());
            }
            GuestVm.Result result = boot.get(BOOT_TIMEOUT.toSeconds() + 60, TimeUnit.SECONDS);
            step(
                    "guest rc=%d in %d ms; handovers (us): %s",
                    result.exitCode(), result.wall().toMillis(), handoverUs);
            assertGuestUnharmed(result, master);
            assertFalse(handoverUs.isEmpty(), "fio ended before the first kill\n" + result.output());
        } finally {
            Files.deleteIfExists(image);
            deleteTree(socketDir);
        }
    }

    /** The slave that serves the controller, by the master log: the last "served by slave" and its pid. */
    private static ProcessHandle servingSlave(VhostdMaster master) throws IOException {
        String log = Files.readString(master.log(), StandardCharsets.UTF_8);
        Matcher served = SERVED_BY.matcher(log);
        String slaveId = null;
        while (served.find()) {
            slaveId = served.group(1);
        }
        assertTrue(slaveId != null, "no slave serves the controller\n" + master.logTail());
        String id = slaveId;
        Matcher attached = Pattern.compile("slave " + Pattern.quote(id) + " \\(pid (\\d+)\\) attached")
                .matcher(log);
        assertTrue(attached.find(), "no pid for " + id + "\n" + master.logTail());
        return ProcessHandle.of(Long.parseLong(attached.group(1)))
                .orElseThrow(() -> new AssertionError(id + " is not running\n" + master.logTail()));
    }

    /** Waits for the master's k-th "resumed" line; returns the handover time it reports. */
    private static long awaitHandover(VhostdMaster master, int k, CompletableFuture<GuestVm.Result> boot)
            throws Exception {
        String log = awaitLog(master, "resumed", k, HANDOVER_TIMEOUT, boot);
        Matcher m = RESUMED.matcher(log);
        long last = -1;
        while (m.find()) {
            assertEquals("1", m.group(1), "the session was not adopted\n" + master.logTail());
            last = Long.parseLong(m.group(2));
        }
        assertFalse(log.contains("session not adopted"), "the standby refused the session\n" + master.logTail());
        return last;
    }

    /** Waits until {@code file} contains {@code needle}. */
    private static void awaitFile(
            Path file, String needle, Duration timeout, CompletableFuture<GuestVm.Result> boot, VhostdMaster master)
            throws Exception {
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadlineNs) {
            if (Files.exists(file)
                    && Files.readString(file, StandardCharsets.ISO_8859_1).contains(needle)) {
                return;
            }
            if (boot.isDone()) {
                throw new AssertionError(
                        "the guest ended before '" + needle + "'\n" + boot.get().describe() + "\n" + master.logTail());
            }
            Thread.sleep(50);
        }
        throw new AssertionError("no '" + needle + "' in " + file + " within " + timeout + "\n" + master.logTail());
    }

    /** Waits until {@code needle} occurs {@code count} times in the master log; returns the log. */
    private static String awaitLog(
            VhostdMaster master, String needle, int count, Duration timeout, CompletableFuture<GuestVm.Result> boot)
            throws Exception {
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadlineNs) {
            String log = Files.readString(master.log(), StandardCharsets.UTF_8);
            if (log.split(Pattern.quote(needle), -1).length - 1 >= count) {
                return log;
            }
            if (boot.isDone()) {
                throw new AssertionError("the guest ended while waiting for '" + needle + "'\n"
                        + boot.get().describe() + "\n" + master.logTail());
            }
            Thread.sleep(50);
        }
        throw new AssertionError("no '" + needle + "' #" + count + " within " + timeout + "\n" + master.logTail());
    }

    private static void assertGuestUnharmed(GuestVm.Result boot, VhostdMaster master) throws IOException {
        String context = boot.describe() + "\n" + master.logTail();
        assertEquals(0, boot.exitCode(), "guest fio failed\n" + boot.output() + "\n" + context);
        try (Stream<String> lines = Files.lines(boot.consoleLog(), StandardCharsets.UTF_8)) {
            List<String> qemu =
                    lines.filter(l -> l.startsWith("qemu-system")).limit(20).toList();
            assertTrue(qemu.isEmpty(), "QEMU reported errors (a disconnect?)\n" + qemu + "\n" + context);
        }
        assertTrue(boot.output().contains("@@FIO " + VERIFY_JOB + " rc=0@@"), VERIFY_JOB + " failed\n" + boot.output());
        Matcher err = FIO_ERR.matcher(boot.output());
        int reported = 0;
        while (err.find()) {
            assertEquals("0", err.group(1), "fio reported an error\n" + boot.output());
            reported++;
        }
        assertTrue(reported >= 1, "fio printed no 'err= 0' line\n" + boot.output());
        assertFalse(boot.dmesg().contains("I/O error"), "guest kernel log has I/O errors\n" + boot.dmesg());
        String console = Files.readString(boot.consoleLog(), StandardCharsets.UTF_8);
        assertFalse(console.contains("I/O error"), "guest console has I/O errors\n" + context);
    }

    private static void step(String format, Object... args) {
        System.out.printf("[SlaveKillIT] " + format + "%n", args);
    }

    private static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}
