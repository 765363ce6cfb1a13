package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.vhost.backend.MalformedMessageReplay;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #3 "Hostile input": the slave keeps serving its other controllers while a hostile front-end attacks one of
 * them, and nothing outside guest memory is read or written.
 *
 * <p>One master, one slave, two controllers on two file bdevs: {@code vhost.0} (B) and {@code vhost.1} (A). While
 * fio (libblkio engine, from the tool chroot) runs a verify job on B ({@code vw4k32}: 4k random writes, iodepth 32,
 * crc32c, read back and verified), attack rounds hit A over its vhost-user socket, one after the other until fio ends:
 *
 * <ol>
 *   <li>the malformed-message table of vhost-nvme's {@code VhostUserBackendMalformedTest} (wrong sizes, missing and
 *       extra fds, messages before SET_OWNER, unknown requests, oversized payloads, bad ring values, ...), each case on
 *       a fresh connection ({@link MalformedMessageReplay}): every answer must be the one the table expects;
 *   <li>a real session whose guest ring is hostile ({@link HostileRingSession}): a descriptor loop, a chain longer than
 *       the queue, buffers outside the memory table, a length overflow, indirect inside indirect, a next index beyond
 *       the table, a device-writable header, a device-readable status byte, a read past the end of the disk, an avail
 *       entry beyond the queue, between
 *       well-formed reads that must return the disk's data; then avail->idx moved far beyond the queue size, which
 *       must stop that queue (logged) while A's other queue still serves. Canary bytes everywhere in guest memory
 *       outside the buffers the chains named must be untouched.
 * </ol>
 *
 * Then: B's fio passed (rc 0, every {@code "error"} 0, verify included), the slave that served both controllers at the
 * start is the same process, alive, at the end (no crash, no handover: the master logs neither an exit nor a second
 * "served by" slave), and A still serves a well-behaved front-end: fio reads and checks the {@code ph64k} pattern
 * region the host wrote into A's image. At least one whole attack round must have run while fio was running.
 *
 * <p>{@code VHOSTD_IT_ISOLATION_FIO_SIZE} (default 768M) is B's fio size: a longer fio, more attack rounds. Logs
 * (master, fio, the attack outcomes) stay in {@code dist/target/it-logs/ControllerIsolationIT/}. Skipped only when not
 * root or when the chroot cannot be built because the Debian mirror is unreachable.
 */
@Tag("integration")
class ControllerIsolationIT {

    private static final long DISK_BYTES = 1L << 30;
    private static final int NUM_QUEUES = 2;
    private static final String B = "vhost.0";
    private static final String A = "vhost.1";
    private static final String B_JOB = "vw4k32";
    /** The region fio reads back from A at the end; mirrors tests/chroot/lib.sh (pattern_region ph64k). */
    private static final LibblkioVerifyIT.PatternRegion A_PATTERN =
            new LibblkioVerifyIT.PatternRegion("ph64k", 512L << 20, 64L << 20, "vhostd-H");
    /** The start of A's image that the hostile session's well-formed reads return. */
    private static final int A_HEAD_BYTES = 1 << 20;

    private static final Duration READY_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration ANSWER_TIMEOUT = Duration.ofSeconds(20);
    private static final Duration FIO_TIMEOUT = Duration.ofMinutes(12);
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(60);
    private static final int MAX_ROUNDS = 40;

    private static final Pattern SERVED_BY = Pattern.compile("controller (\\S+) served by slave (\\S+)");
    private static final Pattern FIO_ERROR = Pattern.compile("\"error\"\\s*:\\s*(\\d+)");
    private static final String QUEUE_STOPPED = "controller " + A + " queue 0: ";
    private static final String QUEUE_STOPPED_TAIL = "queue stopped until the front-end resets it";

    @Test
    // the limit includes a first build of the tool chroot (ToolChroot.ensure), should scripts/test.sh not have made it
    @Timeout(value = 40, unit = TimeUnit.MINUTES, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
    void shouldKeepServingOtherControllersWhenOneIsAttacked() throws Exception {
        ItEnv env = ItEnv.forTest(getClass());
        ToolChroot.ensure(env);
        String fioSize = System.getenv().getOrDefault("VHOSTD_IT_ISOLATION_FIO_SIZE", "768M");
        Path socketDir = ToolChroot.tmpDir("vhostd-it-"); // under /tmp: fio in the chroot must reach the sockets
        long pid = ProcessHandle.current().pid();
        Path imageB = env.workDir().resolve("ControllerIsolationIT-B-" + pid + ".img");
        Path imageA = env.workDir().resolve("ControllerIsolationIT-A-" + pid + ".img");
        Path socketA = socketDir.resolve(A + ".sock");
        Path fioOut = socketDir.resolve("fio");
        Path attackLog = env.logDir().resolve("attacks.log");
        Files.deleteIfExists(imageB);
        Files.deleteIfExists(imageA);
        MasterConfig config = new MasterConfig(socketDir, imageB, DISK_BYTES, NUM_QUEUES);
        try {
            config.write();
            byte[] headA = writeImageA(imageA);
            Files.writeString(config.configFile(), yaml(config, imageA, socketA), StandardCharsets.UTF_8);
            Files.copy(config.configFile(), env.logDir().resolve("vhostd.yaml"), StandardCopyOption.REPLACE_EXISTING);
            Files.writeString(attackLog, "", StandardCharsets.UTF_8);
            try (VhostdMaster master =
                    VhostdMaster.start(env, config, env.logDir().resolve("master.log"))) {
                step("master ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
                awaitAccepts(socketA, READY_TIMEOUT, master);
                // awaitReady's probe connection to B has come and gone: fio's is the next "connected" of B
                awaitLogCount(master, B + ": front-end disconnected", 1, READY_TIMEOUT, null);
                long slavePid = servingSlave(master, READY_TIMEOUT);
                step("slave pid %d serves %s and %s", slavePid, A, B);

                int connectedBefore = count(master, B + ": front-end connected");
                long fioStartNs = System.nanoTime();
                CompletableFuture<Integer> fio = CompletableFuture.supplyAsync(() -> {
                    try {
                        return ToolChroot.run(
                                env,
                                List.of(
                                        "env",
                                        "FIO_VERIFY_SIZE=" + fioSize,
                                        env.repoPath("tests/chroot/verify-libblkio.sh")
                                                .toString(),
                                        "--socket",
                                        config.vhostSocket().toString(),
                                        "--jobs",
                                        B_JOB,
                                        "--out",
                                        fioOut.toString()),
                                env.logDir().resolve("verify-libblkio-B.log"),
                                FIO_TIMEOUT);
                    } catch (IOException | InterruptedException e) {
                        throw new IllegalStateException(e);
                    }
                });
                // fio's connection reached the slave: its I/O starts now
                awaitLogCount(master, B + ": front-end connected", connectedBefore + 1, FIO_TIMEOUT, fio);
                step("fio connected to %s after %d ms", B, (System.nanoTime() - fioStartNs) / 1_000_000);

                List<String> problems = new ArrayList<>();
                int rounds = 0;
                boolean overlapped = false;
                do {
                    rounds++;
                    long roundStartNs = System.nanoTime();
                    List<String> found = attackRound(master, socketA, headA, rounds, attackLog);
                    boolean fioRunning = !fio.isDone();
                    if (rounds == 1) {
                        overlapped = fioRunning;
                    }
                    step(
                            "attack round %d: %d ms, %d problem(s), fio %s",
                            rounds,
                            (System.nanoTime() - roundStartNs) / 1_000_000,
                            found.size(),
                            fioRunning ? "still running" : "done");
                    for (String p : found) {
                        if (problems.size() < 200) {
                            problems.add("round " + rounds + ": " + p);
                        }
                    }
                } while (!fio.isDone() && rounds < MAX_ROUNDS);

                int rc = fio.get(FIO_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
                step("fio on %s: rc=%d after %d ms", B, rc, (System.nanoTime() - fioStartNs) / 1_000_000);
                String fioLog = Files.readString(env.logDir().resolve("verify-libblkio-B.log"), StandardCharsets.UTF_8);
                ToolChroot.keepLogs(fioOut, env.logDir().resolve("fio"));
                String context = "\n" + fioLog + "\n" + master.logTail();

                assertEquals(0, rc, "fio on " + B + " (the controller nobody attacked) failed" + context);
                assertTrue(fioLog.contains("PASS " + B_JOB + " "), B_JOB + " did not pass on " + B + context);
                assertFioErrorsZero(fioOut.resolve(B_JOB + ".json"), context);
                assertTrue(
                        overlapped,
                        "fio on " + B + " ended before the first attack round did: raise VHOSTD_IT_ISOLATION_FIO_SIZE"
                                + " (now " + fioSize + ")" + context);

                assertSameSlave(master, slavePid);
                assertTrue(
                        problems.isEmpty(),
                        "controller " + A + " mishandled hostile input (" + problems.size() + " problem(s), see "
                                + attackLog + "):\n" + String.join("\n", problems));

                // A still serves a well-behaved front-end
                Path aLog = env.logDir().resolve("verify-libblkio-A.log");
                int aRc = ToolChroot.run(
                        env,
                        List.of(
                                env.repoPath("tests/chroot/verify-libblkio.sh").toString(),
                                "--socket",
                                socketA.toString(),
                                "--jobs",
                                A_PATTERN.job(),
                                "--out",
                                fioOut.resolve("A").toString()),
                        aLog,
                        FIO_TIMEOUT);
                String aOutput = Files.readString(aLog, StandardCharsets.UTF_8);
                ToolChroot.keepLogs(fioOut.resolve("A"), env.logDir().resolve("fio-A"));
                assertEquals(
                        0,
                        aRc,
                        "a well-behaved fio on " + A + " after the attacks failed\n" + aOutput + "\n"
                                + master.logTail());
                step("fio %s on %s after %d attack round(s): passed", A_PATTERN.job(), A, rounds);
                assertSameSlave(master, slavePid);

                List<String> survivors = master.terminate(STOP_TIMEOUT);
                assertTrue(survivors.isEmpty(), "still running after SIGTERM: " + survivors + "\n" + master.logTail());
            }
        } finally {
            ToolChroot.keepLogs(fioOut, env.logDir().resolve("fio"));
            Files.deleteIfExists(imageA);
            Files.deleteIfExists(imageB);
            ToolChroot.deleteTree(socketDir);
        }
    }

    /** One round: the malformed-message table, then the hostile ring session. Returns the problems found. */
    private static List<String> attackRound(VhostdMaster master, Path socketA, byte[] headA, int round, Path attackLog)
            throws IOException, InterruptedException {
        List<String> problems = new ArrayList<>();
        StringBuilder log = new StringBuilder("=== round " + round + "\n");

        MalformedMessageReplay replay =
                MalformedMessageReplay.connect(socketA.toString(), (int) ANSWER_TIMEOUT.toMillis());
        for (MalformedMessageReplay.Outcome o : replay.runAll()) {
            log.append(o).append('\n');
            if (!o.passed()) {
                problems.add("message '" + o.name() + "': " + o.problems());
            }
        }

        int stoppedBefore = countStopped(master);
        try (HostileRingSession session =
                new HostileRingSession(socketA.toString(), headA, DISK_BYTES, ANSWER_TIMEOUT)) {
            List<String> ring = new ArrayList<>(session.runHostileChains());
            int usedAtBreak = session.usedIdx(0);
            session.breakAvailIdx();
            if (!awaitStopped(master, stoppedBefore + 1, ANSWER_TIMEOUT)) {
                ring.add("avail->idx beyond the queue size: no 'queue stopped' line for " + A + " queue 0 within "
                        + ANSWER_TIMEOUT);
            }
            ring.addAll(session.readAndCheck(1, "well-formed read on queue 1 while queue 0 is stopped", 24));
            long base = session.vringBase(0, ring);
            if (session.usedIdx(0) != usedAtBreak) {
                ring.add("queue 0 used->idx moved from " + usedAtBreak + " to " + session.usedIdx(0)
                        + " after the ring broke");
            }
            ring.addAll(session.checkCanaries());
            for (String line : session.describeAnswers()) {
                log.append("  ").append(line).append('\n');
            }
            log.append("hostile ring session: GET_VRING_BASE 0 = ")
                    .append(base)
                    .append(", ")
                    .append(ring.isEmpty() ? "PASS" : "FAIL " + ring)
                    .append('\n');
            for (String p : ring) {
                problems.add("ring: " + p);
            }
        } catch (RuntimeException e) {
            problems.add("ring session failed: " + e);
            log.append("hostile ring session failed: ").append(e).append('\n');
        }
        Files.writeString(attackLog, log, StandardCharsets.UTF_8, StandardOpenOption.APPEND);
        return problems;
    }

    private static String yaml(MasterConfig config, Path imageA, Path socketA) {
        return """
                run_dir: %s
                rpc_socket: %s
                bdevs:
                  - {name: disk0, type: file, path: %s, size_bytes: %d}
                  - {name: diskA, type: file, path: %s, size_bytes: %d}
                controllers:
                  - {name: %s, type: vhost-user-blk, bdev: disk0, socket: %s, num_queues: %d}
                  - {name: %s, type: vhost-user-blk, bdev: diskA, socket: %s, num_queues: %d}
                """.formatted(
                        config.runDir(),
                        config.rpcSocket(),
                        config.imageFile(),
                        DISK_BYTES,
                        imageA,
                        DISK_BYTES,
                        B,
                        config.vhostSocket(),
                        NUM_QUEUES,
                        A,
                        socketA,
                        NUM_QUEUES);
    }

    /**
     * Creates A's image (sparse), its first {@link #A_HEAD_BYTES} a byte pattern (what well-formed reads return) and
     * the {@link #A_PATTERN} region; returns the head.
     */
    private static byte[] writeImageA(Path image) throws IOException {
        try (RandomAccessFile file = new RandomAccessFile(image.toFile(), "rw")) {
            file.setLength(DISK_BYTES);
        }
        byte[] head = new byte[A_HEAD_BYTES];
        for (int i = 0; i < head.length; i++) {
            // never the canary everywhere: a read that moved no data is told apart from one that did
            head[i] = (byte) (i * 31 + (i >>> 9) + 7);
        }
        try (FileChannel channel = FileChannel.open(image, StandardOpenOption.WRITE)) {
            ByteBuffer buf = ByteBuffer.wrap(head);
            while (buf.hasRemaining()) {
                channel.write(buf, buf.position());
            }
            channel.force(false);
        }
        A_PATTERN.write(image);
        return head;
    }

    /** The pid of the slave that serves both controllers, from the master log ("served by", "attached"). */
    private static long servingSlave(VhostdMaster master, Duration timeout) throws Exception {
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        while (true) {
            String log = Files.readString(master.log(), StandardCharsets.UTF_8);
            Matcher served = SERVED_BY.matcher(log);
            String slaveA = null;
            String slaveB = null;
            while (served.find()) {
                if (served.group(1).equals(A)) {
                    slaveA = served.group(2);
                } else if (served.group(1).equals(B)) {
                    slaveB = served.group(2);
                }
            }
            if (slaveA != null && slaveB != null) {
                assertEquals(slaveB, slaveA, "the two controllers are served by different slaves\n" + master.logTail());
                Matcher attached = Pattern.compile("slave " + Pattern.quote(slaveA) + " \\(pid (\\d+)\\) attached")
                        .matcher(log);
                if (attached.find()) {
                    return Long.parseLong(attached.group(1));
                }
            }
            if (System.nanoTime() > deadlineNs) {
                throw new AssertionError(
                        "no slave serves " + A + " and " + B + " after " + timeout + "\n" + master.logTail());
            }
            Thread.sleep(50); // polling the log for a line: a readiness wait
        }
    }

    /**
     * The slave of the start still serves both controllers and is alive: the master logged no slave exit and no other
     * "served by" slave (a crash would have been hidden by the warm standby's handover).
     */
    private static void assertSameSlave(VhostdMaster master, long slavePid) throws IOException {
        String log = Files.readString(master.log(), StandardCharsets.UTF_8);
        assertFalse(log.contains(") exited with status"), "a slave exited (crash + handover)\n" + master.logTail());
        assertFalse(
                log.contains("handing its controllers to the standby"), "a slave died (handover)\n" + master.logTail());
        assertFalse(log.contains("data path died"), "a controller's data path died\n" + master.logTail());
        Matcher served = SERVED_BY.matcher(log);
        Set<String> slaves = new TreeSet<>();
        while (served.find()) {
            slaves.add(served.group(2));
        }
        assertEquals(1, slaves.size(), "controllers moved between slaves: " + slaves + "\n" + master.logTail());
        assertTrue(
                ProcessHandle.of(slavePid).map(ProcessHandle::isAlive).orElse(false),
                "slave pid " + slavePid + " is gone\n" + master.logTail());
    }

    private static void assertFioErrorsZero(Path json, String context) throws IOException {
        assertTrue(Files.exists(json), "no fio JSON " + json + context);
        Matcher m = FIO_ERROR.matcher(Files.readString(json, StandardCharsets.UTF_8));
        int seen = 0;
        while (m.find()) {
            assertEquals("0", m.group(1), "fio on " + B + " reported an error in " + json + context);
            seen++;
        }
        assertTrue(seen > 0, "no \"error\" field in " + json + context);
    }

    /** Waits until {@code socket} accepts a connection (closed at once, without a message). */
    private static void awaitAccepts(Path socket, Duration timeout, VhostdMaster master) throws InterruptedException {
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadlineNs) {
            try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                if (channel.connect(UnixDomainSocketAddress.of(socket))) {
                    return;
                }
            } catch (IOException e) {
                // not listening yet
            }
            Thread.sleep(100); // polling for the socket: a readiness wait
        }
        throw new AssertionError(socket + " does not accept after " + timeout + "\n" + master.logTail());
    }

    private static int countStopped(VhostdMaster master) throws IOException {
        int n = 0;
        for (String line : Files.readAllLines(master.log(), StandardCharsets.UTF_8)) {
            if (line.contains(QUEUE_STOPPED) && line.contains(QUEUE_STOPPED_TAIL)) {
                n++;
            }
        }
        return n;
    }

    private static boolean awaitStopped(VhostdMaster master, int count, Duration timeout)
            throws IOException, InterruptedException {
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        while (countStopped(master) < count) {
            if (System.nanoTime() > deadlineNs) {
                return false;
            }
            Thread.sleep(20); // polling the log for a line: a readiness wait
        }
        return true;
    }

    private static int count(VhostdMaster master, String needle) throws IOException {
        String log = Files.readString(master.log(), StandardCharsets.UTF_8);
        return log.split(Pattern.quote(needle), -1).length - 1;
    }

    private static void awaitLogCount(
            VhostdMaster master, String needle, int count, Duration timeout, CompletableFuture<Integer> fio)
            throws Exception {
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        while (count(master, needle) < count) {
            if (fio != null && fio.isDone()) {
                throw new AssertionError(
                        "fio ended (rc " + fio.get() + ") before '" + needle + "'\n" + master.logTail());
            }
            if (System.nanoTime() > deadlineNs) {
                throw new AssertionError(
                        "no '" + needle + "' #" + count + " within " + timeout + "\n" + master.logTail());
            }
            Thread.sleep(50); // polling the log for a line: a readiness wait
        }
    }

    private static void step(String format, Object... args) {
        System.out.printf("[ControllerIsolationIT] " + format + "%n", args);
    }
}
