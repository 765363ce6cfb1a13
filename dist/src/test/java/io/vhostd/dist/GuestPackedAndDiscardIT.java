package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
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
 * Issue #3: a real QEMU 7.2 guest on a vhostd vhost-user-blk controller with packed and with split virtqueues.
 *
 * <ol>
 *   <li>{@code bin/vhostd master} serves a 1 GiB file bdev as a controller with 2 queues.
 *   <li>Boot 1, {@code vhost-user-blk-pci,num-queues=2,packed=on} (run-guest.sh {@code --packed}): fio {@code
 *       verify-randwrite-bsrange.fio} (random writes of 4k..128k blocks, iodepth 32, one job per vCPU so both
 *       queues carry I/O, crc32c, read back and verified), then {@code discard-check.sh}: DISCARD
 *       ({@code blkdiscard}), WRITE_ZEROES without and with unmap (util-linux {@code fallocate -z} / {@code -p}),
 *       the ranges read back as zeroes and the rest as written, and a write-through round trip (the driver writes
 *       {@code writeback} 0 into the config space: {@code VHOST_USER_SET_CONFIG}).
 *   <li>Boot 2: the same on split rings.
 *   <li>After each boot the image file on the host holds zeroes where the guest discarded or zeroed.
 * </ol>
 *
 * <p>Each boot must end with rc=0, the guest seeing 2 queues and the ring type asked for (bit 34,
 * VIRTIO_F_RING_PACKED, of the negotiated features), {@code err= 0} from fio, no {@code I/O error} in the guest
 * kernel log and no message from QEMU. Logs stay in {@code dist/target/it-logs/GuestPackedAndDiscardIT/}. Skipped
 * only when qemu-system-x86_64 is not installed. About a minute under TCG.
 */
@Tag("integration")
class GuestPackedAndDiscardIT {

    private static final long DISK_BYTES = 1L << 30;
    private static final int NUM_QUEUES = 2;
    private static final int MIB = 1 << 20;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(30);
    private static final Duration BOOT_TIMEOUT = Duration.ofSeconds(150);
    private static final String VERIFY_JOB = "verify-randwrite-bsrange.fio";
    /** Per fio job (two jobs): 128 MiB of random 4k..128k writes each, read back and verified. */
    private static final Map<String, String> GUEST_ENV = Map.of("VERIFY_SIZE", "128M", "DEV", "/dev/vda");

    private static final String GUEST_COMMAND = "sh /vm/guest-fio.sh " + VERIFY_JOB
            + "; f=$?; sh /vm/discard-check.sh; d=$?; echo \"@@RC fio=$f discard=$d@@\"; [ $f = 0 ] && [ $d = 0 ]";
    private static final Pattern FIO_ERR = Pattern.compile("err=\\s*(\\d+)");
    private static final Pattern PACKED = Pattern.compile("@@VIRTIO features=[01]* packed=([01])@@");

    @Test
    @Timeout(value = 6, unit = TimeUnit.MINUTES)
    void shouldVerifyRandomWritesAndZeroDiscardedRangesWhenRingsArePackedOrSplit() throws Exception {
        assumeTrue(GuestVm.qemuAvailable(), "qemu-system-x86_64 is not installed");
        ItEnv env = ItEnv.forTest(getClass());
        GuestVm.buildGuest(env);
        Path socketDir = Files.createTempDirectory("vhostd-it-");
        Path image = env.workDir()
                .resolve("GuestPackedAndDiscardIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, NUM_QUEUES);
        config.write();
        Files.writeString(env.logDir().resolve("vhostd.yaml"), config.yaml(), StandardCharsets.UTF_8);
        Path fio = env.repoPath("tests/vm/fio");
        List<Path> files = List.of(
                fio.resolve("guest-fio.sh"),
                fio.resolve(VERIFY_JOB),
                fio.resolve("discard-check.sh"),
                // util-linux fallocate (libc only): busybox's cannot zero or punch a range of a block device
                Path.of("/usr/bin/fallocate"));
        assumeTrue(Files.isExecutable(files.getLast()), "/usr/bin/fallocate (util-linux) is not installed");
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("master.log"))) {
            step("master ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
            for (boolean packed : new boolean[] {true, false}) {
                String name = packed ? "packed" : "split";
                GuestVm.Result boot = GuestVm.runGuest(
                        env,
                        name,
                        config.vhostSocket(),
                        NUM_QUEUES,
                        packed ? List.of("--packed") : List.of(),
                        files,
                        GUEST_ENV,
                        GUEST_COMMAND,
                        BOOT_TIMEOUT);
                step(
                        "%s boot rc=%d in %d ms",
                        name, boot.exitCode(), boot.wall().toMillis());
                assertBootPassed(boot, packed, master);
                assertZeroedOnHost(image);
            }
            List<String> survivors = master.terminate(STOP_TIMEOUT);
            assertTrue(survivors.isEmpty(), "still running after SIGTERM: " + survivors + "\n" + master.logTail());
            String log = Files.readString(master.log(), StandardCharsets.UTF_8);
            assertTrue(
                    log.contains("cache mode write-through"), "SET_CONFIG writeback 0 not seen\n" + master.logTail());
            assertFalse(
                    log.lines().anyMatch(l -> l.contains("WARNING") && l.contains("VhostUserBackend")),
                    "the back-end answered a vhost-user message with a failure\n" + log);
        } finally {
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
    }

    private static void assertBootPassed(GuestVm.Result boot, boolean packed, VhostdMaster master) throws IOException {
        String output = boot.output();
        String context = boot.describe() + "\n" + master.logTail();
        assertEquals(0, boot.exitCode(), "guest program failed\n" + output + "\n" + context);
        try (Stream<String> lines = Files.lines(boot.consoleLog(), StandardCharsets.UTF_8)) {
            List<String> qemu = lines.filter(l -> l.startsWith("qemu-system")).toList();
            assertTrue(qemu.isEmpty(), "QEMU reported errors\n" + context);
        }
        assertTrue(output.contains("queues=" + NUM_QUEUES + "@@"), "the guest does not see 2 queues\n" + output);
        Matcher ring = PACKED.matcher(output);
        assertTrue(ring.find(), "no feature line\n" + output);
        assertEquals(packed ? "1" : "0", ring.group(1), "VIRTIO_F_RING_PACKED negotiated?\n" + output);
        assertTrue(output.contains("@@FIO " + VERIFY_JOB + " rc=0@@"), "fio verify failed\n" + output);
        Matcher err = FIO_ERR.matcher(output);
        assertTrue(err.find(), "fio printed no result line\n" + output);
        assertEquals("0", err.group(1), "fio reported an error\n" + output);
        assertFalse(output.lines().anyMatch(l -> l.startsWith("verify:")), "fio found bad data\n" + output);
        assertTrue(output.contains("@@DISCARD-CHECK rc=0@@"), "discard / write-zeroes check failed\n" + output);
        assertTrue(output.contains("@@DEVICE cache_type=write through@@"), "no write-through switch\n" + output);
        assertTrue(output.contains("@@QUEUE max_discard_segments=16@@"), "discard limits not taken\n" + output);
        assertFalse(output.contains("@@QUEUE write_zeroes_max_bytes=0@@"), "no WRITE_ZEROES\n" + output);
        assertFalse(boot.dmesg().isBlank(), "the guest did not print its kernel log\n" + context);
        assertFalse(boot.dmesg().contains("I/O error"), "guest kernel log has I/O errors\n" + boot.dmesg());
    }

    /** What discard-check.sh left: MiB 1 discarded, MiB 3 and 5 zeroed, MiB 0 random data. */
    private static void assertZeroedOnHost(Path image) throws IOException {
        byte[] zeroes = new byte[MIB];
        try (RandomAccessFile file = new RandomAccessFile(image.toFile(), "r")) {
            for (int mib : new int[] {1, 3, 5}) {
                byte[] got = new byte[MIB];
                file.seek((long) mib * MIB);
                file.readFully(got);
                assertArrayEquals(zeroes, got, "MiB " + mib + " of the image is not zeroes");
            }
            byte[] first = new byte[MIB];
            file.seek(0);
            file.readFully(first);
            assertFalse(java.util.Arrays.equals(zeroes, first), "MiB 0 should hold the guest's random data");
        }
    }

    private static void step(String format, Object... args) {
        System.out.printf("[GuestPackedAndDiscardIT] " + format + "%n", args);
    }
}
