package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Issue #3: a QEMU 11.1 guest on a vhostd vhost-user-blk controller through QEMU's OWN vhost-user front-end
 * ({@code -chardev socket,path=SOCK -device vhost-user-blk-pci,chardev=...,num-queues=2}, guest RAM in
 * {@code memory-backend-memfd,share=on}), with split and with packed virtqueues. {@link Qemu11NvmeIT} covers
 * QEMU 11.1 only through its libblkio driver; {@link GuestPackedAndDiscardIT} covers QEMU 7.2's front-end.
 *
 * <ol>
 *   <li>{@code bin/vhostd master} serves a 256 MiB file bdev (on disk, under {@code dist/target/it-work}) as a
 *       controller with 2 queues.
 *   <li>For split, then {@code packed=on}: {@code tests/chroot/qemu11-vhost-user-blk.sh} boots the project's
 *       test guest ({@code tests/vm}, 2 vCPUs, TCG) with QEMU 11.1 from the tool chroot ({@link ToolChroot}).
 *       In the guest, fio does random writes of 4k..64k blocks at iodepth 16 (libaio, O_DIRECT), two jobs (one
 *       per vCPU, so both virtqueues carry I/O) of 32 MiB each, 64 MiB in all, with crc32c checksums, every
 *       block read back and verified.
 *   <li>SIGTERM: the master and its slave must be gone within the deadline.
 * </ol>
 *
 * <p>Each boot must end with rc=0, the guest seeing {@code /dev/vda} with 2 queues and the ring type asked for
 * (bit 34, VIRTIO_F_RING_PACKED, of the negotiated features), {@code err= 0} from fio, no {@code I/O error} in the
 * guest kernel log and no message from QEMU on stderr. QEMU runs with {@code -trace 'vhost_user_*'}: the
 * vhost-user requests it sent are printed (and kept in the log directory, {@code <ring>.vhost-user-trace.log}),
 * and the master log must have no {@code WARNING} from the back-end (a request answered with a failure). Logs
 * stay in {@code dist/target/it-logs/Qemu11VhostUserBlkIT/}. Skipped only when not root or when the chroot
 * cannot be built because the Debian mirror is unreachable.
 */
@Tag("integration")
class Qemu11VhostUserBlkIT {

    private static final long DISK_BYTES = 256L << 20;
    private static final int NUM_QUEUES = 2;
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(60);
    /** Under TCG on a shared 2-core machine; the guest itself powers off 15 s before. */
    private static final Duration BOOT_TIMEOUT = Duration.ofMinutes(8);
    /** On top of the boot: linking the kernel, appending the guest program to the initramfs. */
    private static final Duration SCRIPT_EXTRA = Duration.ofMinutes(2);

    /** One fio job per vCPU, each on its own 32 MiB region: 64 MiB of verified random writes in all. */
    private static final String FIO = "fio --eta=never --name=verify-randwrite-4k-64k-qd16 --filename=/dev/vda"
            + " --ioengine=libaio --direct=1 --rw=randwrite --bsrange=4k-64k --iodepth=16 --numjobs=2"
            + " --cpus_allowed=0-1 --cpus_allowed_policy=split --size=32M --offset_increment=32M"
            + " --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 --group_reporting";

    private static final String GUEST_COMMAND = "F=$(cat /sys/block/vda/device/features);"
            + " echo \"@@DISK queues=$(ls /sys/block/vda/mq | wc -l) sectors=$(cat /sys/block/vda/size)@@\";"
            + " echo \"@@VIRTIO features=$F packed=$(echo \"$F\" | cut -c35)@@\"; "
            + FIO
            + "; r=$?; echo \"@@FIO rc=$r@@\"; exit $r";

    private static final Pattern FIO_ERR = Pattern.compile("err=\\s*(\\d+)");
    private static final Pattern PACKED = Pattern.compile("@@VIRTIO features=[01]* packed=([01])@@");
    /** QEMU's trace line of a request it sent: {@code vhost_user_write req:N flags:0xF}. */
    private static final Pattern TRACE_WRITE = Pattern.compile("vhost_user_write req:(\\d+)");

    @Test
    // the limit includes a first build of the tool chroot (ToolChroot.ensure), should scripts/test.sh not have made it
    @Timeout(value = 50, unit = TimeUnit.MINUTES)
    void shouldVerifyRandomWritesWhenQemu11VhostUserBlkPciRingsAreSplitOrPacked() throws Exception {
        ItEnv env = ItEnv.forTest(getClass());
        ToolChroot.ensure(env);
        GuestVm.buildGuest(env);
        Path socketDir = ToolChroot.tmpDir("vhostd-it-"); // under /tmp: QEMU in the chroot must reach the socket
        Path image = env.workDir()
                .resolve("Qemu11VhostUserBlkIT-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, DISK_BYTES, NUM_QUEUES);
        try {
            config.write();
            Files.writeString(env.logDir().resolve("vhostd.yaml"), config.yaml(), StandardCharsets.UTF_8);
            try (VhostdMaster master =
                    VhostdMaster.start(env, config, env.logDir().resolve("master.log"))) {
                step("master ready in %d ms", master.awaitReady(READY_TIMEOUT).toMillis());
                for (boolean packed : new boolean[] {false, true}) {
                    boot(env, config, master, packed, socketDir);
                }
                long startNs = System.nanoTime();
                List<String> survivors = master.terminate(STOP_TIMEOUT);
                assertTrue(
                        survivors.isEmpty(),
                        "still running " + STOP_TIMEOUT + " after SIGTERM to the master (killed now): " + survivors
                                + "\n" + master.logTail());
                step("master and its processes stopped %d ms after SIGTERM", (System.nanoTime() - startNs) / 1_000_000);
                List<String> warnings = Files.readAllLines(master.log(), StandardCharsets.UTF_8).stream()
                        .filter(l -> l.contains("WARNING") && l.contains("io.vhostd.vhost.backend"))
                        .toList();
                warnings.forEach(w -> step("back-end warning: %s", w));
                assertTrue(
                        warnings.isEmpty(),
                        "the back-end answered a QEMU 11.1 vhost-user message with a failure\n"
                                + String.join("\n", warnings));
            }
        } finally {
            Files.deleteIfExists(image);
            ToolChroot.deleteTree(socketDir);
        }
    }

    private static void boot(ItEnv env, MasterConfig config, VhostdMaster master, boolean packed, Path socketDir)
            throws IOException, InterruptedException {
        String name = packed ? "packed" : "split";
        Path qemuOut = Files.createDirectory(socketDir.resolve(name)); // the chroot sees it: under /tmp
        Path console = env.logDir().resolve(name + ".console.log");
        Path out = env.logDir().resolve(name + ".out");
        Path dmesg = env.logDir().resolve(name + ".dmesg");
        for (Path p : List.of(console, out, dmesg)) {
            Files.deleteIfExists(p);
        }
        List<String> command = new ArrayList<>(List.of(
                env.repoPath("tests/chroot/qemu11-vhost-user-blk.sh").toString(),
                "--out",
                qemuOut.toString(),
                "--",
                "--quiet",
                "--smp",
                Integer.toString(NUM_QUEUES),
                "--num-queues",
                Integer.toString(NUM_QUEUES),
                "--vhost-user-blk",
                config.vhostSocket().toString(),
                "--timeout",
                Long.toString(BOOT_TIMEOUT.toSeconds()),
                "--log",
                console.toString(),
                "--out",
                out.toString(),
                "--dmesg",
                dmesg.toString()));
        if (packed) {
            command.add("--packed");
        }
        command.addAll(List.of("--", GUEST_COMMAND));
        Path log = env.logDir().resolve(name + ".qemu11-vhost-user-blk.log");
        long startNs = System.nanoTime();
        int rc = ToolChroot.run(env, command, log, BOOT_TIMEOUT.plus(SCRIPT_EXTRA));
        step("%s boot rc=%d in %d ms", name, rc, (System.nanoTime() - startNs) / 1_000_000);
        Path trace = qemuOut.resolve("vhost-user-trace.log");
        if (Files.exists(trace)) {
            Files.copy(
                    trace,
                    env.logDir().resolve(name + ".vhost-user-trace.log"),
                    java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        }
        String output = readIfExists(out);
        String consoleLog = readIfExists(console);
        String context = "rc=" + rc + " (124 = timeout, 125 = QEMU or harness error)\n--- script:\n"
                + readIfExists(log) + "\n--- console (last 4000 chars):\n"
                + consoleLog.substring(Math.max(0, consoleLog.length() - 4000)) + "\n" + master.logTail();
        assertEquals(0, rc, "the guest program failed\n" + output + "\n" + context);
        List<String> qemuMessages =
                consoleLog.lines().filter(l -> l.startsWith("qemu-system")).toList();
        assertTrue(qemuMessages.isEmpty(), "QEMU reported errors\n" + String.join("\n", qemuMessages) + context);
        assertTrue(
                output.contains("@@DISK queues=" + NUM_QUEUES + " sectors=" + (DISK_BYTES >> 9) + "@@"),
                "the guest does not see /dev/vda with " + NUM_QUEUES + " queues and " + DISK_BYTES + " bytes\n"
                        + output);
        Matcher ring = PACKED.matcher(output);
        assertTrue(ring.find(), "no feature line\n" + output);
        assertEquals(packed ? "1" : "0", ring.group(1), "VIRTIO_F_RING_PACKED negotiated?\n" + output);
        assertTrue(output.contains("@@FIO rc=0@@"), "fio verify failed\n" + output);
        Matcher err = FIO_ERR.matcher(output);
        assertTrue(err.find(), "fio printed no result line\n" + output);
        assertEquals("0", err.group(1), "fio reported an error\n" + output);
        assertFalse(output.lines().anyMatch(l -> l.startsWith("verify:")), "fio found bad data\n" + output);
        String kernelLog = readIfExists(dmesg);
        assertFalse(kernelLog.isBlank(), "the guest did not print its kernel log\n" + context);
        assertFalse(kernelLog.contains("I/O error"), "guest kernel log has I/O errors\n" + kernelLog);
        TreeSet<Integer> requests = new TreeSet<>();
        Matcher sent = TRACE_WRITE.matcher(readIfExists(trace));
        while (sent.find()) {
            requests.add(Integer.parseInt(sent.group(1)));
        }
        step("%s: QEMU 11.1 sent vhost-user requests %s", name, requests);
    }

    /** Read as ISO-8859-1: a serial console may carry any byte, and every marker is ASCII. */
    private static String readIfExists(Path file) throws IOException {
        return Files.exists(file) ? Files.readString(file, StandardCharsets.ISO_8859_1) : "";
    }

    private static void step(String format, Object... args) {
        System.out.printf("[Qemu11VhostUserBlkIT] " + format + "%n", args);
    }
}
