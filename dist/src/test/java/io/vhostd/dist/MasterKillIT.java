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
 * Issue #4 master restart: the master dies (SIGKILL) while a QEMU 7.2 guest runs verified I/O; its serving slave keeps
 * the vhost-user connection, the guest memory and the VirtNvme queue pairs, and rejoins the next master, which takes
 * its fds back, re-attaches the device and resumes the queue pairs; the slave resubmits what the dead master had
 * fetched. The guest must see a pause and nothing else: fio {@code verify-randwrite.fio} (4k random writes, iodepth
 * 32, 2 queues, crc32c, read back and verified) ends with rc=0 and {@code err= 0}, no {@code I/O error} in the guest's
 * kernel log, and QEMU prints nothing (a vhost-user disconnect would show there). The slave's pid never changes.
 *
 * <p>{@code VHOSTD_IT_MASTER_KILLS} kills (default 3, issue #4). The first master halts itself through a fault point
 * right after its engine fetched its 20 000th SQE, before submitting it to the device (the commands only a slave's
 * resubmission can save: at least one must be resubmitted); each later one gets SIGKILL 1 - 3 s after it was ready.
 * All must land before fio ends. {@code VHOSTD_IT_VERIFY_SIZE} (default 512M) is fio's size. Logs stay in {@code
 * dist/target/it-logs/MasterKillIT/} (master-N.log; the slave keeps writing to the first master's log). Skipped when
 * qemu-system-x86_64 is not installed.
 */
@Tag("integration")
class MasterKillIT {

    private static final long DISK_BYTES = 1L << 30;
    private static final int NUM_QUEUES = 2;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration BOOT_TIMEOUT = Duration.ofSeconds(300);
    private static final Duration REJOIN_TIMEOUT = Duration.ofSeconds(60);
    private static final String VERIFY_JOB = "verify-randwrite.fio";
    private static final Pattern SERVED_BY = Pattern.compile("controller \\S+ served by slave (\\S+)");
    /** The first master halts after this many SQEs: in fio's write phase (512M of 4k writes: 131072 of them). */
    private static final long HALT_AFTER_FETCHES = 20_000;

    private static final Pattern RESUBMITTED = Pattern.compile("(\\d+) lost command\\(s\\) submitted again");

    @Test
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void shouldKeepGuestIoVerifiedWhenMasterIsKilledRepeatedly() throws Exception {
        assumeTrue(GuestVm.qemuAvailable(), "qemu-system-x86_64 is not installed");
        int kills = Integer.parseInt(System.getenv().getOrDefault("VHOSTD_IT_MASTER_KILLS", "3"));
        String verifySize = System.getenv().getOrDefault("VHOSTD_IT_VERIFY_SIZE", "512M");
        ItEnv env = ItEnv.forTest(getClass());
        GuestVm.buildGuest(env);
        Path socketDir = Files.createTempDirectory("vhostd-it-");
        Path image =
                env.workDir().resolve("MasterKillIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, NUM_QUEUES);
        config.write();
        Random random = new Random();
        List<VhostdMaster> masters = new ArrayList<>();
        try {
            // the first master crashes by itself at the worst moment: right after fetching SQEs, before the device
            VhostdMaster first = VhostdMaster.start(
                    env,
                    config,
                    env.logDir().resolve("master-1.log"),
                    Map.of("VHOSTD_JAVA_OPTS", "-Dvhostd.fault.master.halt-after-fetches=" + HALT_AFTER_FETCHES));
            masters.add(first);
            step("master ready in %d ms", first.awaitReady(READY_TIMEOUT).toMillis());
            long slavePid = servingSlavePid(first);
            CompletableFuture<GuestVm.Result> boot =
                    GuestChecks.startFioVerify(env, config, NUM_QUEUES, verifySize, VERIFY_JOB, BOOT_TIMEOUT, first);
            List<Long> pauseMs = new ArrayList<>();
            int resubmitted = 0;
            for (int k = 1; k <= kills && !boot.isDone(); k++) {
                VhostdMaster dying = masters.getLast();
                long killNs;
                if (k == 1) {
                    dying.awaitExit(BOOT_TIMEOUT);
                    killNs = System.nanoTime();
                    step("kill 1: master pid %d halted itself after %d fetched SQEs", dying.pid(), HALT_AFTER_FETCHES);
                } else {
                    // a random moment 1 - 3 s after the previous master was ready (fio is writing meanwhile)
                    Thread.sleep(1_000 + random.nextInt(2_000));
                    killNs = System.nanoTime();
                    dying.kill(Duration.ofSeconds(30));
                    step("kill %d: SIGKILL master pid %d", k, dying.pid());
                }
                assertTrue(
                        ProcessHandle.of(slavePid).map(ProcessHandle::isAlive).orElse(false),
                        "the slave died with its master\n" + dying.logTail());
                VhostdMaster next = VhostdMaster.start(env, config, env.logDir().resolve("master-" + (k + 1) + ".log"));
                masters.add(next);
                next.awaitRpcReady(READY_TIMEOUT);
                String log = GuestChecks.awaitLog(next, "re-adopted", 1, REJOIN_TIMEOUT, boot);
                pauseMs.add(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - killNs));
                assertFalse(log.contains("not re-adopted"), "the slave was refused\n" + next.logTail());
                assertEquals(slavePid, servingSlavePid(next), "another slave serves\n" + next.logTail());
                step("kill %d: slave pid %d re-adopted %d ms after the kill", k, slavePid, pauseMs.getLast());
            }
            GuestVm.Result result = boot.get(BOOT_TIMEOUT.toSeconds() + 60, TimeUnit.SECONDS);
            String slaveLog = Files.readString(first.log(), StandardCharsets.UTF_8);
            Matcher m = RESUBMITTED.matcher(slaveLog);
            while (m.find()) {
                resubmitted += Integer.parseInt(m.group(1));
            }
            step(
                    "guest rc=%d in %d ms; kill -> re-adopted (ms): %s; %d command(s) resubmitted in all",
                    result.exitCode(), result.wall().toMillis(), pauseMs, resubmitted);
            GuestChecks.assertFioVerified(result, masters.getLast(), VERIFY_JOB, true);
            assertTrue(resubmitted > 0, "the halted master had fetched commands: none was resubmitted\n" + slaveLog);
            assertEquals(kills, pauseMs.size(), "fio ended before the last kill\n" + result.output());
            assertTrue(
                    ProcessHandle.of(slavePid).map(ProcessHandle::isAlive).orElse(false),
                    "the slave is still the one the first master started");
            List<String> survivors = masters.getLast().terminate(Duration.ofSeconds(30));
            assertTrue(survivors.isEmpty(), "processes left after SIGTERM: " + survivors);
        } finally {
            for (VhostdMaster master : masters) {
                master.close();
            }
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
    }

    /**
     * The pid of the slave serving the controller: the slave the master's log says serves it, or (a re-adopting
     * master) the one it re-adopted.
     */
    private static long servingSlavePid(VhostdMaster master) throws IOException {
        String log = Files.readString(master.log(), StandardCharsets.UTF_8);
        Matcher readopted =
                Pattern.compile("slave \\S+ \\(pid (\\d+)\\) re-adopted").matcher(log);
        if (readopted.find()) {
            return Long.parseLong(readopted.group(1));
        }
        Matcher served = SERVED_BY.matcher(log);
        String slaveId = null;
        while (served.find()) {
            slaveId = served.group(1);
        }
        assertTrue(slaveId != null, "no slave serves the controller\n" + master.logTail());
        Matcher attached = Pattern.compile("slave " + Pattern.quote(slaveId) + " \\(pid (\\d+)\\) attached")
                .matcher(log);
        assertTrue(attached.find(), "no pid for " + slaveId + "\n" + master.logTail());
        return Long.parseLong(attached.group(1));
    }

    private static void step(String format, Object... args) {
        System.out.printf("[MasterKillIT] " + format + "%n", args);
    }
}
