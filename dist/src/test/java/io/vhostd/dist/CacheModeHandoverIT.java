package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.rpc.RpcClient;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #4: the cache mode the guest chose (virtio-blk {@code writeback}, VIRTIO_BLK_F_CONFIG_WCE, written once through
 * {@code VHOST_USER_SET_CONFIG}) survives a slave crash and a rolling upgrade: QEMU does not write it again, so the
 * replacement slave must take it from the session journal.
 *
 * <p>One QEMU 7.2 guest (1 vCPU, 1 queue) runs {@code tests/vm/fio/cache-mode-phases.sh}: five phases, each started by
 * the host (it writes {@code go N} into the disk's last 4 KiB, which the guest polls with O_DIRECT reads), each
 * writing 4 MiB of random data with O_DIRECT at a fresh offset (MiB 16 N), no guest fsync:
 *
 * <ol>
 *   <li>write back (the default): baseline;
 *   <li>the guest switches to write through ({@code cache_type}) and reads it back;
 *   <li>after a SIGKILL of the serving slave (the standby adopts the session: the master's "resumed" line);
 *   <li>after {@code slave_upgrade};
 *   <li>the guest switches back to write back.
 * </ol>
 *
 * <p>What shows the slave's mode: the file bdev is buffered (no {@code direct}), so a write lands in the host's page
 * cache dirty; in write-through the slave follows each write with a VirtNvme FLUSH ({@code fdatasync}) before it
 * completes it, so when the guest's {@code dd} returns none of its pages is dirty or under writeback ({@code
 * cachestat(2)} through {@code tests/vm/cachestat.py}). In write back they stay dirty (the host writes them back after
 * {@code vm.dirty_expire_centisecs}, 30 s by default). Phases 1 and 5 prove the probe tells the modes apart.
 * {@code bdev_get_iostat}'s {@code num_flush_ops} cannot: it counts the guest's FLUSH requests (spec/stats.md §3.2),
 * not the slave's write-through FLUSHes, and a guest in write-through sends none; its deltas are printed with the
 * daemon-side mean write latency, and the test requires writes and no I/O errors.
 *
 * <p>Also: the guest reads "write through" after each handover, no I/O error in the guest's kernel log or console,
 * QEMU prints nothing (a vhost-user disconnect would show). Logs in {@code dist/target/it-logs/CacheModeHandoverIT/}.
 * Skipped when qemu-system-x86_64 or python3 is not installed or the kernel has no cachestat (Linux before 6.5).
 */
@Tag("integration")
class CacheModeHandoverIT {

    private static final long DISK_BYTES = 256L << 20;
    private static final int NUM_QUEUES = 1;
    private static final long WRITE_BYTES = 4L << 20;
    private static final long PHASE_STRIDE_BYTES = 16L << 20;
    private static final int GO_BLOCK_BYTES = 4096;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration BOOT_TIMEOUT = Duration.ofSeconds(240);
    private static final Duration PHASE_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration HANDOVER_TIMEOUT = Duration.ofSeconds(30);
    private static final String WRITE_THROUGH = "write through";
    private static final String WRITE_BACK = "write back";
    private static final List<String> PHASE_MODES = List.of("keep", "wt", "keep", "keep", "wb");
    private static final Pattern CACHESTAT = Pattern.compile("cache=(\\d+) dirty=(\\d+) writeback=(\\d+)");

    @Test
    @Timeout(value = 6, unit = TimeUnit.MINUTES)
    void shouldKeepGuestCacheModeWhenSlaveIsKilledAndUpgraded() throws Exception {
        assumeTrue(GuestVm.qemuAvailable(), "qemu-system-x86_64 is not installed");
        ItEnv env = ItEnv.forTest(getClass());
        GuestVm.buildGuest(env);
        Path socketDir = Files.createTempDirectory("vhostd-it-");
        Path image = env.workDir()
                .resolve("CacheModeHandoverIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, NUM_QUEUES);
        config.write();
        assumeTrue(pageState(env, image, 0, GO_BLOCK_BYTES) != null, "no python3 or no cachestat(2) (Linux < 6.5)");
        Path fio = env.repoPath("tests/vm/fio");
        long startNs = System.nanoTime();
        CompletableFuture<GuestVm.Result> boot = null;
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("master.log"));
                RpcClient rpc = connect(config, master)) {
            Path console = env.logDir().resolve("boot.console.log");
            Files.deleteIfExists(console);
            boot = CompletableFuture.supplyAsync(() -> {
                try {
                    return GuestVm.runGuest(
                            env,
                            "boot",
                            config.vhostSocket(),
                            NUM_QUEUES,
                            List.of(),
                            List.of(fio.resolve("cache-mode-phases.sh")),
                            Map.of("WRITE_MIB", Long.toString(WRITE_BYTES >> 20)),
                            "sh /vm/cache-mode-phases.sh " + String.join(" ", PHASE_MODES),
                            BOOT_TIMEOUT);
                } catch (IOException | InterruptedException e) {
                    throw new IllegalStateException(e);
                }
            });
            GuestChecks.awaitFile(console, "@@READY cache_type=" + WRITE_BACK + "@@", READY_TIMEOUT, boot, master);
            GuestChecks.awaitLog(master, "standby slave", 1, READY_TIMEOUT, boot);

            Phase baseline = phase(1, env, image, console, rpc, boot, master);
            assertEquals(WRITE_BACK, baseline.cacheType(), baseline.toString());
            assertTrue(
                    baseline.dirtyPages() > 0, "writeback writes left no dirty page: the probe is blind\n" + baseline);

            Phase switched = phase(2, env, image, console, rpc, boot, master);
            assertWriteThrough(switched, master);
            GuestChecks.awaitLog(master, "cache mode write-through", 1, HANDOVER_TIMEOUT, boot);

            long killedPid = servingPid(rpc);
            ProcessHandle.of(killedPid)
                    .orElseThrow(() -> new AssertionError("serving slave " + killedPid + " is gone"))
                    .destroyForcibly(); // SIGKILL
            step("SIGKILL slave pid %d", killedPid);
            String log = GuestChecks.awaitLog(master, "resumed 1 session(s)", 1, HANDOVER_TIMEOUT, boot);
            assertFalse(log.contains("session not adopted"), "the standby refused the session\n" + master.logTail());
            long adoptedPid = servingPid(rpc);
            assertNotEquals(killedPid, adoptedPid, "the controller still names the killed slave");
            assertWriteThrough(phase(3, env, image, console, rpc, boot, master), master);

            JsonNode upgrade = rpc.call("slave_upgrade", JsonNodeFactory.instance.objectNode());
            long upgradedPid = upgrade.path("pid").asLong();
            step(
                    "slave_upgrade: %s (pid %d), pause %d us",
                    upgrade.path("slave_id").asText(),
                    upgradedPid,
                    upgrade.path("controllers").path(0).path("pause_us").asLong());
            assertNotEquals(adoptedPid, upgradedPid, "the upgrade did not change the slave: " + upgrade);
            assertEquals(upgradedPid, servingPid(rpc), "vhost_get_controllers names another slave");
            assertWriteThrough(phase(4, env, image, console, rpc, boot, master), master);

            Phase back = phase(5, env, image, console, rpc, boot, master);
            assertEquals(WRITE_BACK, back.cacheType(), back.toString());
            assertTrue(back.dirtyPages() > 0, "writes after 'write back' were flushed: still write-through\n" + back);

            GuestVm.Result result = boot.get(BOOT_TIMEOUT.toSeconds() + 60, TimeUnit.SECONDS);
            step(
                    "guest rc=%d in %d ms, test %d ms",
                    result.exitCode(),
                    result.wall().toMillis(),
                    TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNs));
            String context = result.describe() + "\n" + master.logTail();
            assertEquals(0, result.exitCode(), "guest program failed\n" + result.output() + "\n" + context);
            assertEquals(List.of(), GuestChecks.qemuLines(result), "QEMU reported errors (a disconnect?)\n" + context);
            assertFalse(result.dmesg().isBlank(), "the guest did not print its kernel log\n" + context);
            assertFalse(result.dmesg().contains("I/O error"), "guest kernel log has I/O errors\n" + result.dmesg());
            assertFalse(
                    Files.readString(result.consoleLog(), StandardCharsets.UTF_8)
                            .contains("I/O error"),
                    "guest console has I/O errors\n" + context);
            assertEquals(List.of(), master.terminate(Duration.ofSeconds(30)), "processes left behind");
        } finally {
            awaitGuestGone(boot);
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
    }

    /**
     * What one phase showed.
     *
     * @param n phase number (1..5)
     * @param cacheType what the guest's {@code cache_type} read after its write
     * @param dirtyPages dirty + under-writeback host pages of the phase's 4 MiB right after the guest's write returned
     * @param cachedPages host page cache pages of that range
     * @param writes {@code num_write_ops} delta of the phase
     * @param flushes {@code num_flush_ops} delta (the guest's FLUSH requests)
     * @param meanWriteUs daemon-side mean write latency of the phase (fetch to used publish), µs
     */
    private record Phase(
            int n, String cacheType, long dirtyPages, long cachedPages, long writes, long flushes, long meanWriteUs) {}

    /**
     * Lets the guest run phase {@code n} (writes {@code go n} where it polls), waits for its {@code @@WROTE} line and
     * takes the page cache state of the range it wrote at once, then the iostat deltas. Requires dd rc=0, no I/O error
     * and at least one write.
     */
    private static Phase phase(
            int n,
            ItEnv env,
            Path image,
            Path console,
            RpcClient rpc,
            CompletableFuture<GuestVm.Result> boot,
            VhostdMaster master)
            throws Exception {
        JsonNode before = iostat(rpc);
        writeGo(image, n);
        GuestChecks.awaitFile(console, "@@WROTE n=" + n + " ", PHASE_TIMEOUT, boot, master);
        long[] pages = pageState(env, image, n * PHASE_STRIDE_BYTES, WRITE_BYTES);
        JsonNode after = iostat(rpc);
        Matcher wrote = Pattern.compile("@@WROTE n=" + n + " rc=(\\d+) cache_type=([a-z ]+)@@")
                .matcher(Files.readString(console, StandardCharsets.ISO_8859_1));
        assertTrue(wrote.find(), "garbled @@WROTE line of phase " + n + " in " + console);
        assertEquals("0", wrote.group(1), "the guest's write of phase " + n + " failed\n" + master.logTail());
        assertTrue(pages != null, "cachestat failed");
        long writes = delta(before, after, "num_write_ops");
        long latencyNs = delta(before, after, "write_latency_ticks");
        Phase phase = new Phase(
                n,
                wrote.group(2),
                pages[1] + pages[2],
                pages[0],
                writes,
                delta(before, after, "num_flush_ops"),
                writes == 0 ? 0 : latencyNs / writes / 1_000);
        step("%s", phase);
        assertTrue(phase.writes() > 0, "the daemon counted no write in phase " + n + "\n" + after);
        assertEquals(0, delta(before, after, "io_errors"), "I/O errors in phase " + n + "\n" + after);
        return phase;
    }

    /** The slave served the phase in write-through: the guest reads it, and no written page is left dirty. */
    private static void assertWriteThrough(Phase phase, VhostdMaster master) {
        assertEquals(WRITE_THROUGH, phase.cacheType(), phase.toString());
        assertTrue(phase.cachedPages() > 0, "the phase's writes are not in the host page cache: " + phase);
        assertEquals(
                0,
                phase.dirtyPages(),
                "phase " + phase.n() + ": writes completed without the write-through FLUSH\n" + phase + "\n"
                        + master.logTail());
        assertEquals(0, phase.flushes(), "a write-through guest sent FLUSH requests: " + phase);
    }

    /** Writes {@code go n} into the disk's last 4 KiB, where the guest polls (it reads through the daemon). */
    private static void writeGo(Path image, int n) throws IOException {
        byte[] block = new byte[GO_BLOCK_BYTES];
        byte[] line = ("go " + n + "\n").getBytes(StandardCharsets.US_ASCII);
        System.arraycopy(line, 0, block, 0, line.length);
        try (RandomAccessFile file = new RandomAccessFile(image.toFile(), "rw")) {
            file.seek(DISK_BYTES - GO_BLOCK_BYTES);
            file.write(block);
        }
    }

    /**
     * {@code tests/vm/cachestat.py}: cached, dirty and under-writeback pages of a byte range of {@code file}, or null
     * when it cannot tell (no python3, no cachestat).
     */
    private static long[] pageState(ItEnv env, Path file, long offsetBytes, long lengthBytes)
            throws IOException, InterruptedException {
        Process p;
        try {
            p = new ProcessBuilder(
                            "python3",
                            env.repoPath("tests/vm/cachestat.py").toString(),
                            file.toString(),
                            Long.toString(offsetBytes),
                            Long.toString(lengthBytes))
                    .redirectErrorStream(true)
                    .start();
        } catch (IOException e) {
            return null;
        }
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
            p.destroyForcibly();
            step("cachestat.py: %s", out.strip());
            return null;
        }
        Matcher m = CACHESTAT.matcher(out);
        if (!m.find()) {
            return null;
        }
        return new long[] {Long.parseLong(m.group(1)), Long.parseLong(m.group(2)), Long.parseLong(m.group(3))};
    }

    private static JsonNode iostat(RpcClient rpc) throws Exception {
        ObjectNode params = JsonNodeFactory.instance.objectNode();
        params.put("name", "disk0");
        return rpc.call("bdev_get_iostat", params).path("bdevs").path(0);
    }

    private static long delta(JsonNode before, JsonNode after, String counter) {
        return after.path(counter).asLong() - before.path(counter).asLong();
    }

    /**
     * After a failure: the master's close() killed QEMU (its command line names the socket directory); let
     * run-guest.sh see it and remove its scratch directory before this JVM exits.
     */
    private static void awaitGuestGone(CompletableFuture<GuestVm.Result> boot) {
        if (boot == null || boot.isDone()) {
            return;
        }
        try {
            boot.get(30, TimeUnit.SECONDS);
        } catch (Exception e) {
            step("guest after the failure: %s", e);
        }
    }

    /** The pid of the slave serving vhost.0 ({@code vhost_get_controllers}). */
    private static long servingPid(RpcClient rpc) throws Exception {
        return rpc.call("vhost_get_controllers", JsonNodeFactory.instance.objectNode())
                .path(0)
                .path("slave_pid")
                .asLong();
    }

    /**
     * Connects to the RPC socket once the master says it is ready: a connection made between the socket's bind and the
     * "RPC server listening" line is accepted by the kernel and then dropped by the server (a Vert.x "Failed to
     * register an accepted channel"), a broken pipe at the first call.
     */
    private static RpcClient connect(MasterConfig config, VhostdMaster master) throws Exception {
        step("master ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
        GuestChecks.awaitLog(master, "vhostd master ready", 1, READY_TIMEOUT, null);
        long deadlineNs = System.nanoTime() + READY_TIMEOUT.toNanos();
        while (true) {
            try {
                return RpcClient.connect(config.rpcSocket(), Duration.ofSeconds(60));
            } catch (IOException e) {
                if (System.nanoTime() > deadlineNs) {
                    throw new AssertionError("no RPC socket\n" + master.logTail(), e);
                }
                Thread.sleep(100);
            }
        }
    }

    private static void step(String format, Object... args) {
        System.out.printf("[CacheModeHandoverIT] " + format + "%n", args);
    }
}
