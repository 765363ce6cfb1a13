package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #3, client 3: a QEMU 11.1 guest whose emulated NVMe controller is backed by vhostd ({@code -blockdev
 * driver=virtio-blk-vhost-user,path=SOCK -device nvme,drive=...}: QEMU's libblkio driver is the vhost-user
 * front-end) reads what the host wrote and writes what the host reads back.
 *
 * <ol>
 *   <li>The host writes 8 MiB of seeded pseudo-random data at 1 MiB of a 64 MiB image (on disk, under
 *       {@code dist/target/it-work}) and other seeded data at 16 MiB; {@code bin/vhostd master} serves the image as
 *       a file bdev through a vhost-user-blk controller with 1 queue.
 *   <li>{@code tests/chroot/qemu-blkio-nvme.sh --socket ... --guest-script ...} boots QEMU 11.1 from the tool chroot
 *       ({@link ToolChroot}; TCG, Debian's cloud kernel, busybox). In the guest, {@link #guestScript} reads the host
 *       data from {@code /dev/nvme0n1} with O_DIRECT, in 1 MiB and in 4 KiB requests, and compares each read's
 *       SHA-256 with the host's; it then writes 8 MiB of random data at 16 MiB (O_DIRECT, fsync), reads it back,
 *       compares, and prints its SHA-256. The guest powers off; QEMU exits.
 *   <li>SIGTERM: the master and its slave must be gone within the deadline. The host then reads the image file:
 *       the 8 MiB at 16 MiB must have the SHA-256 the guest printed (and no longer the host's filler), the 8 MiB at
 *       1 MiB must be unchanged.
 * </ol>
 *
 * <p>Also checked: the guest sees the namespace with the image's size ({@code sectors=131072 lbs=512}, serial
 * {@code vhostd0}), no {@code I/O error} in the guest kernel log and no message from QEMU on stderr. Logs (master,
 * script output, QEMU command line and stderr, guest serial console, guest script, chroot setup) stay in
 * {@code dist/target/it-logs/Qemu11NvmeIT/}. Skipped only when not root or when the chroot cannot be built because
 * the Debian mirror is unreachable.
 */
@Tag("integration")
class Qemu11NvmeIT {

    private static final int SECTOR_BYTES = 512;
    private static final long DISK_BYTES = 64L << 20;
    private static final int NUM_QUEUES = 1;
    private static final int DATA_BYTES = 8 << 20;
    private static final long HOST_DATA_OFFSET = 1L << 20;
    private static final long GUEST_DATA_OFFSET = 16L << 20;
    private static final long HOST_DATA_SEED = 0x7668_6f73_7464_4831L;
    private static final long FILLER_SEED = 0x7668_6f73_7464_4632L;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(60);
    /** The guest needs about 8 s on an idle machine under TCG; the machines these run on are often shared. */
    private static final Duration GUEST_TIMEOUT = Duration.ofMinutes(10);
    /** On top of the guest: fetching the guest kernel once, building the initramfs, starting QEMU. */
    private static final Duration SCRIPT_EXTRA = Duration.ofMinutes(5);

    private static final Pattern GUEST_DATA = Pattern.compile("@@GUEST-DATA sha256=([0-9a-f]{64})@@");

    @Test
    // the limit includes a first build of the tool chroot (ToolChroot.ensure), should scripts/test.sh not have made it
    @Timeout(value = 45, unit = TimeUnit.MINUTES)
    void shouldReadHostDataAndWriteGuestDataWhenQemu11NvmeIsBackedByVhostd() throws Exception {
        ItEnv env = ItEnv.forTest(getClass());
        ToolChroot.ensure(env);
        Path socketDir = ToolChroot.tmpDir("vhostd-it-"); // under /tmp: QEMU in the chroot must reach the socket
        Path image =
                env.workDir().resolve("Qemu11NvmeIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, NUM_QUEUES);
        Path qemuOut = socketDir.resolve("qemu"); // kept in the log directory
        byte[] hostData = seeded(HOST_DATA_SEED);
        byte[] filler = seeded(FILLER_SEED);
        String hostSha = sha256(hostData);
        String guestSha;
        try {
            config.write();
            Files.writeString(env.logDir().resolve("vhostd.yaml"), config.yaml(), StandardCharsets.UTF_8);
            writeAt(image, HOST_DATA_OFFSET, hostData);
            writeAt(image, GUEST_DATA_OFFSET, filler);
            Files.createDirectories(qemuOut);
            Path guestScript = Files.writeString(qemuOut.resolve("guest-test.sh"), guestScript(hostSha));
            try (VhostdMaster master =
                    VhostdMaster.start(env, config, env.logDir().resolve("master.log"))) {
                step("master ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
                Path log = env.logDir().resolve("qemu-blkio-nvme.log");
                long startNs = System.nanoTime();
                int rc = ToolChroot.run(
                        env,
                        List.of(
                                env.repoPath("tests/chroot/qemu-blkio-nvme.sh").toString(),
                                "--socket",
                                config.vhostSocket().toString(),
                                "--guest-script",
                                guestScript.toString(),
                                "--timeout",
                                Long.toString(GUEST_TIMEOUT.toSeconds()),
                                "--out",
                                qemuOut.toString()),
                        log,
                        GUEST_TIMEOUT.plus(SCRIPT_EXTRA));
                step("qemu-blkio-nvme.sh rc=%d in %d ms", rc, (System.nanoTime() - startNs) / 1_000_000);
                String output = Files.readString(log, StandardCharsets.UTF_8);
                String serial = readIfExists(qemuOut.resolve("serial.log")).replace("\r", "");
                String context = output + "\n" + master.logTail();
                assertEquals(0, rc, "the guest (or QEMU) failed\n" + context);
                assertTrue(
                        Pattern.compile("serial=vhostd0\\s+sectors=" + DISK_BYTES / SECTOR_BYTES + " lbs="
                                        + SECTOR_BYTES)
                                .matcher(serial)
                                .find(),
                        "the guest does not see a " + DISK_BYTES + "-byte NVMe namespace with serial vhostd0\n"
                                + serial);
                for (String bs : List.of("1M", "4096")) {
                    assertTrue(
                            serial.contains("@@HOST-DATA bs=" + bs + " sha256=" + hostSha + " OK@@"),
                            "the guest did not read the host's data in " + bs + " requests\n" + serial);
                }
                Matcher written = GUEST_DATA.matcher(serial);
                assertTrue(written.find(), "the guest did not report the data it wrote\n" + serial);
                guestSha = written.group(1);
                assertTrue(serial.contains("@@GUEST-END rc=0@@"), "the guest script failed\n" + serial);
                assertFalse(serial.contains("I/O error"), "the guest kernel reported I/O errors\n" + serial);
                List<String> qemuMessages = readIfExists(qemuOut.resolve("qemu.log"))
                        .lines()
                        .filter(l -> l.contains("qemu-system"))
                        .toList();
                assertTrue(
                        qemuMessages.isEmpty(),
                        "QEMU reported errors (with a healthy back-end it prints nothing)\n" + context);
                assertTrue(
                        ProcessHandle.of(master.pid())
                                .map(ProcessHandle::isAlive)
                                .orElse(false),
                        "the master exited while the guest ran\n" + master.logTail());
                assertStopsCleanly(master);
            }
            assertEquals(
                    hostSha,
                    sha256(readAt(image, HOST_DATA_OFFSET)),
                    "the guest only read the host's data, yet the image changed there");
            String imageSha = sha256(readAt(image, GUEST_DATA_OFFSET));
            assertNotEquals(sha256(filler), imageSha, "what the guest wrote never reached the image file");
            assertEquals(guestSha, imageSha, "the image file does not hold what the guest wrote");
            step("host read back the guest's data from the image after the master stopped (sha256 %s)", imageSha);
        } finally {
            ToolChroot.keepLogs(qemuOut, env.logDir().resolve("qemu"));
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
    }

    /**
     * The guest's part, run by busybox sh once {@code /dev/nvme0n1} exists: prints {@code @@HOST-DATA bs=B
     * sha256=H OK@@} per request size that read the host's data intact and {@code @@GUEST-DATA sha256=H@@} for the
     * data it wrote and read back; exits 1 at the first failure.
     */
    private static String guestScript(String hostSha) {
        long hostMib = HOST_DATA_OFFSET >> 20;
        long guestMib = GUEST_DATA_OFFSET >> 20;
        int dataMib = DATA_BYTES >> 20;
        return """
                # Qemu11NvmeIT, in the guest: /dev/nvme0n1 is QEMU 11's NVMe namespace, backed by vhostd.
                check_host() { # BS SKIP COUNT: read the host's data with O_DIRECT in BS-byte requests
                    got=$(dd if=/dev/nvme0n1 bs=$1 skip=$2 count=$3 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
                    if [ "$got" = "%1$s" ]; then echo "@@HOST-DATA bs=$1 sha256=$got OK@@"; return 0; fi
                    echo "@@HOST-DATA bs=$1 sha256=$got BAD (wanted %1$s)@@"
                    return 1
                }
                check_host 1M %2$d %4$d || exit 1
                check_host 4096 %5$d %6$d || exit 1
                dd if=/dev/urandom of=/tmp/guest bs=1M count=%4$d 2>/dev/null
                dd if=/tmp/guest of=/dev/nvme0n1 bs=1M seek=%3$d oflag=direct conv=fsync 2>/tmp/dd.err || { cat /tmp/dd.err; exit 1; }
                echo 3 >/proc/sys/vm/drop_caches
                dd if=/dev/nvme0n1 of=/tmp/back bs=1M skip=%3$d count=%4$d iflag=direct 2>/tmp/dd.err || { cat /tmp/dd.err; exit 1; }
                cmp /tmp/guest /tmp/back || exit 1
                echo "@@GUEST-DATA sha256=$(sha256sum </tmp/guest | cut -d' ' -f1)@@"
                """.formatted(hostSha, hostMib, guestMib, dataMib, hostMib * 256, dataMib * 256);
    }

    private static byte[] seeded(long seed) {
        byte[] data = new byte[DATA_BYTES];
        new SplittableRandom(seed).nextBytes(data);
        return data;
    }

    private static void writeAt(Path image, long offsetBytes, byte[] data) throws IOException {
        try (FileChannel channel = FileChannel.open(image, StandardOpenOption.WRITE)) {
            ByteBuffer buffer = ByteBuffer.wrap(data);
            while (buffer.hasRemaining()) {
                channel.write(buffer, offsetBytes + buffer.position());
            }
            channel.force(false);
        }
    }

    private static byte[] readAt(Path image, long offsetBytes) throws IOException {
        try (FileChannel channel = FileChannel.open(image, StandardOpenOption.READ)) {
            ByteBuffer buffer = ByteBuffer.allocate(DATA_BYTES);
            while (buffer.hasRemaining()) {
                if (channel.read(buffer, offsetBytes + buffer.position()) < 0) {
                    throw new IOException(image + " ends before byte " + (offsetBytes + DATA_BYTES));
                }
            }
            return buffer.array();
        }
    }

    private static String sha256(byte[] data) throws NoSuchAlgorithmException {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
    }

    /** Read as ISO-8859-1: a serial console may carry any byte, and every marker is ASCII. */
    private static String readIfExists(Path file) throws IOException {
        return Files.exists(file) ? Files.readString(file, StandardCharsets.ISO_8859_1) : "";
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
        System.out.printf("[Qemu11NvmeIT] " + format + "%n", args);
    }
}
