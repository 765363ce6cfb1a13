package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Waits and verdicts shared by the guest integration tests that disturb the daemon while a guest runs fio (slave
 * kills, rolling upgrades, a whole-daemon restart): wait for a line in a file or in the master log (polling with a
 * deadline, failing early when the guest has ended), and the "guest never saw an error" verdict.
 */
final class GuestChecks {
    private static final Pattern FIO_ERR = Pattern.compile("err=\\s*(\\d+)");
    private static final Duration POLL = Duration.ofMillis(50);

    private GuestChecks() {}

    /**
     * Boots the guest on {@code config}'s controller in the background with fio {@code verifyJob} ({@code VERIFY_SIZE}
     * {@code verifySize}, {@code numQueues} queues) and returns once fio starts (the guest printed its {@code @@GUEST}
     * line): the slave, upgrade and master kill tests act while it runs. Console log: {@code boot.console.log}.
     */
    static CompletableFuture<GuestVm.Result> startFioVerify(
            ItEnv env,
            MasterConfig config,
            int numQueues,
            String verifySize,
            String verifyJob,
            Duration bootTimeout,
            VhostdMaster master)
            throws Exception {
        Path console = env.logDir().resolve("boot.console.log");
        // a console log of an earlier run must not be taken for this guest's
        Files.deleteIfExists(console);
        CompletableFuture<GuestVm.Result> boot = CompletableFuture.supplyAsync(() -> {
            try {
                return GuestVm.runFio(
                        env,
                        "boot",
                        config.vhostSocket(),
                        numQueues,
                        java.util.Map.of("VERIFY_SIZE", verifySize),
                        List.of(verifyJob),
                        bootTimeout);
            } catch (IOException | InterruptedException e) {
                throw new IllegalStateException(e);
            }
        });
        awaitFile(console, "@@GUEST", Duration.ofSeconds(240), boot, master);
        return boot;
    }

    /** Waits until {@code file} contains {@code needle}; fails when the guest ends first or at the deadline. */
    static void awaitFile(
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
            Thread.sleep(POLL);
        }
        throw new AssertionError("no '" + needle + "' in " + file + " within " + timeout + "\n" + master.logTail());
    }

    /**
     * Waits until {@code needle} occurs {@code count} times in the master log; returns the log. Fails when {@code boot}
     * (may be null: no guest) ends first or at the deadline.
     */
    static String awaitLog(
            VhostdMaster master, String needle, int count, Duration timeout, CompletableFuture<GuestVm.Result> boot)
            throws Exception {
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadlineNs) {
            String log = Files.readString(master.log(), StandardCharsets.UTF_8);
            if (log.split(Pattern.quote(needle), -1).length - 1 >= count) {
                return log;
            }
            if (boot != null && boot.isDone()) {
                throw new AssertionError("the guest ended while waiting for '" + needle + "'\n"
                        + boot.get().describe() + "\n" + master.logTail());
            }
            Thread.sleep(POLL);
        }
        throw new AssertionError("no '" + needle + "' #" + count + " within " + timeout + "\n" + master.logTail());
    }

    /**
     * The guest never saw an error: guest-fio.sh exited 0, {@code verifyJob} passed with every {@code err=} 0, and
     * neither the guest kernel log nor its console has an I/O error.
     *
     * @param qemuSilent also require that QEMU printed nothing (a vhost-user disconnect would show there); false where
     *     a reconnect is the point of the test
     */
    static void assertFioVerified(GuestVm.Result boot, VhostdMaster master, String verifyJob, boolean qemuSilent)
            throws IOException {
        String context = boot.describe() + "\n" + master.logTail();
        assertEquals(0, boot.exitCode(), "guest fio failed\n" + boot.output() + "\n" + context);
        if (qemuSilent) {
            List<String> qemu = qemuLines(boot);
            assertTrue(qemu.isEmpty(), "QEMU reported errors (a disconnect?)\n" + qemu + "\n" + context);
        }
        assertTrue(boot.output().contains("@@FIO " + verifyJob + " rc=0@@"), verifyJob + " failed\n" + boot.output());
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

    /** QEMU's own lines on the guest's console log (at most 20). */
    static List<String> qemuLines(GuestVm.Result boot) throws IOException {
        try (Stream<String> lines = Files.lines(boot.consoleLog(), StandardCharsets.UTF_8)) {
            return lines.filter(l -> l.startsWith("qemu-system")).limit(20).toList();
        }
    }
}
