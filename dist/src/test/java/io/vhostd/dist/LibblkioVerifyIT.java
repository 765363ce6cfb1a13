package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #3, client 2: fio with the libblkio engine (no VM) is the vhost-user front-end of vhostd, and every data
 * check passes.
 *
 * <ol>
 *   <li>The host writes the {@code ph64k} pattern region into a 1 GiB image (on disk, under
 *       {@code dist/target/it-work}); {@code bin/vhostd master} serves it as a file bdev through a vhost-user-blk
 *       controller with 2 queues.
 *   <li>{@code tests/chroot/verify-libblkio.sh --socket} runs fio from the tool chroot ({@link ToolChroot}) against
 *       the controller socket, one fio process per job, each a new vhost-user connection: {@code vw4k32},
 *       {@code vwmix}, {@code vwmixv} (write with crc32c headers, read back, verify), {@code vw64k} then
 *       {@code vo64k} (a second process verifies what the first wrote), {@code ph64k} (fio reads and checks what
 *       the host wrote), {@code pf64k} (fio writes a pattern and verifies it).
 *   <li>SIGTERM: the master and its slave must be gone within the deadline. The host then reads the image file:
 *       the {@code pf64k} region must hold what fio wrote, the {@code ph64k} region must be unchanged.
 * </ol>
 *
 * <p>The job definitions and the pattern regions are in {@code tests/chroot/lib.sh}; {@link PatternRegion} mirrors
 * the regions. Logs (master, script output, fio's JSON and output per job, chroot setup) stay in
 * {@code dist/target/it-logs/LibblkioVerifyIT/}. Skipped only when not root or when the chroot cannot be built
 * because the Debian mirror is unreachable.
 */
@Tag("integration")
class LibblkioVerifyIT {

    private static final long DISK_BYTES = 1L << 30;
    private static final int NUM_QUEUES = 2;
    private static final List<String> JOBS = List.of("vw4k32", "vwmix", "vwmixv", "vw64k", "vo64k", "ph64k", "pf64k");
    private static final PatternRegion HOST_WRITES = new PatternRegion("ph64k", 512L << 20, 64L << 20, "vhostd-H");
    private static final PatternRegion FIO_WRITES = new PatternRegion("pf64k", 640L << 20, 64L << 20, "vhostd-F");
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(60);
    /** About 25 s on an idle machine; the machines these run on are often shared. */
    private static final Duration VERIFY_TIMEOUT = Duration.ofMinutes(12);

    /**
     * A pattern region of {@code tests/chroot/lib.sh} ({@code pattern_region}): every 64 KiB block at image byte
     * offset {@code O} holds the 16-byte unit {@code tag} + {@code O} (little-endian u64) 4096 times, which is what
     * fio's {@code verify=pattern} with {@code verify_pattern="TAG"%o} writes and expects.
     *
     * @param job the fio job of lib.sh that uses the region
     * @param offsetBytes image offset of the region (a multiple of {@link #BLOCK_BYTES})
     * @param sizeBytes length of the region (a multiple of {@link #BLOCK_BYTES})
     * @param tag 8 ASCII characters
     */
    record PatternRegion(String job, long offsetBytes, long sizeBytes, String tag) {

        static final int BLOCK_BYTES = 65536;
        private static final int UNIT_BYTES = 16;

        PatternRegion {
            if (tag.length() != UNIT_BYTES / 2 || offsetBytes % BLOCK_BYTES != 0 || sizeBytes % BLOCK_BYTES != 0) {
                throw new IllegalArgumentException("bad pattern region " + job);
            }
        }

        /** Writes the region into {@code image} and forces it to the file. */
        void write(Path image) throws IOException {
            try (FileChannel channel = FileChannel.open(image, StandardOpenOption.WRITE)) {
                ByteBuffer block = ByteBuffer.allocate(BLOCK_BYTES);
                for (long o = offsetBytes; o < offsetBytes + sizeBytes; o += BLOCK_BYTES) {
                    fill(block, o);
                    while (block.hasRemaining()) {
                        channel.write(block, o + block.position());
                    }
                }
                channel.force(false);
            }
        }

        /** The first difference between the region in {@code image} and the pattern, if any. */
        Optional<String> firstMismatch(Path image) throws IOException {
            try (FileChannel channel = FileChannel.open(image, StandardOpenOption.READ)) {
                ByteBuffer want = ByteBuffer.allocate(BLOCK_BYTES);
                ByteBuffer got = ByteBuffer.allocate(BLOCK_BYTES);
                for (long o = offsetBytes; o < offsetBytes + sizeBytes; o += BLOCK_BYTES) {
                    fill(want, o);
                    got.clear();
                    while (got.hasRemaining()) {
                        if (channel.read(got, o + got.position()) < 0) {
                            break; // the file ends inside the region: the mismatch below reports where
                        }
                    }
                    got.flip();
                    int at = want.mismatch(got);
                    if (at >= 0) {
                        return Optional.of(job + " region of " + image + ": byte " + (o + at) + " (block at " + o
                                + ") differs from the pattern '" + tag + "'+offset");
                    }
                }
                return Optional.empty();
            }
        }

        private void fill(ByteBuffer block, long blockOffsetBytes) {
            block.clear().order(ByteOrder.LITTLE_ENDIAN);
            byte[] tagBytes = tag.getBytes(StandardCharsets.US_ASCII);
            while (block.hasRemaining()) {
                block.put(tagBytes).putLong(blockOffsetBytes);
            }
            block.flip();
        }
    }

    @Test
    // the limit includes a first build of the tool chroot (ToolChroot.ensure), should scripts/test.sh not have made it
    @Timeout(value = 40, unit = TimeUnit.MINUTES)
    void shouldPassEveryDataCheckWhenFioDrivesVhostdThroughLibblkio() throws Exception {
        ItEnv env = ItEnv.forTest(getClass());
        ToolChroot.ensure(env);
        Path socketDir = ToolChroot.tmpDir("vhostd-it-"); // under /tmp: fio in the chroot must reach the socket
        Path image = env.workDir()
                .resolve("LibblkioVerifyIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, NUM_QUEUES);
        Path fioOut = socketDir.resolve("fio");
        try {
            config.write();
            Files.writeString(env.logDir().resolve("vhostd.yaml"), config.yaml(), StandardCharsets.UTF_8);
            HOST_WRITES.write(image);
            try (VhostdMaster master =
                    VhostdMaster.start(env, config, env.logDir().resolve("master.log"))) {
                step("master ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
                Path log = env.logDir().resolve("verify-libblkio.log");
                long startNs = System.nanoTime();
                int rc = ToolChroot.run(
                        env,
                        List.of(
                                env.repoPath("tests/chroot/verify-libblkio.sh").toString(),
                                "--socket",
                                config.vhostSocket().toString(),
                                "--jobs",
                                String.join(" ", JOBS),
                                "--out",
                                fioOut.toString()),
                        log,
                        VERIFY_TIMEOUT);
                step("verify-libblkio.sh rc=%d in %d ms", rc, (System.nanoTime() - startNs) / 1_000_000);
                String output = Files.readString(log, StandardCharsets.UTF_8);
                String context = output + "\n" + master.logTail();
                assertEquals(0, rc, "verify-libblkio.sh failed\n" + context);
                for (String job : JOBS) {
                    assertTrue(
                            output.lines().anyMatch(l -> l.startsWith("PASS " + job + " ")),
                            job + " did not pass\n" + context);
                }
                assertTrue(
                        output.contains("verify-libblkio: " + JOBS.size() + " passed, 0 failed"),
                        "no '" + JOBS.size() + " passed, 0 failed' line\n" + context);
                assertTrue(
                        ProcessHandle.of(master.pid())
                                .map(ProcessHandle::isAlive)
                                .orElse(false),
                        "the master exited during the fio runs\n" + master.logTail());
                assertStopsCleanly(master);
            }
            Optional<String> fioData = FIO_WRITES.firstMismatch(image);
            assertTrue(
                    fioData.isEmpty(), "what fio wrote through vhostd is not in the image file: " + fioData.orElse(""));
            Optional<String> hostData = HOST_WRITES.firstMismatch(image);
            assertTrue(hostData.isEmpty(), "fio only read the host's pattern, yet it changed: " + hostData.orElse(""));
            step("host read back the %s region and found the %s region unchanged", FIO_WRITES.job(), HOST_WRITES.job());
        } finally {
            ToolChroot.keepLogs(fioOut, env.logDir().resolve("fio"));
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
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

    private static void step(String format, Object... args) {
        System.out.printf("[LibblkioVerifyIT] " + format + "%n", args);
    }
}
