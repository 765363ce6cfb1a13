package io.vhostd.dist;

import static org.junit.jupiter.api.Assumptions.abort;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * The Debian sid tool chroot of {@code tests/chroot/} (fio with the libblkio engine, QEMU 11.1) for the
 * integration tests that use a client the host (Debian 12) does not have.
 *
 * <p>The chroot sees only the host's {@code /tmp} (and {@code /dev}): sockets, guest scripts and the output of fio
 * and QEMU live in a directory from {@link #tmpDir}; {@link #keepLogs} copies what is worth keeping into the test's
 * log directory afterwards.
 */
final class ToolChroot {

    /** {@code tests/chroot/setup.sh} exit status when the Debian mirror cannot be reached (nothing was built). */
    static final int SETUP_RC_MIRROR_UNREACHABLE = 3;

    /** A first build takes about 4 minutes on an idle 2-vCPU machine; a loaded one may need several times that. */
    private static final Duration SETUP_TIMEOUT = Duration.ofMinutes(25);

    /** Output files larger than this (initramfs, images) are not copied into the log directory. */
    private static final long MAX_KEPT_FILE_BYTES = 1L << 20;

    private ToolChroot() {}

    /**
     * Builds the chroot if needed ({@code tests/chroot/setup.sh}: about 4 minutes once, a no-op when it is
     * complete; {@code scripts/test.sh} has usually built it already). The calling test is aborted (skipped) when
     * this process is not root or when the Debian mirror is unreachable, and fails on every other setup error.
     */
    static void ensure(ItEnv env) throws IOException, InterruptedException {
        long uid = effectiveUid();
        if (uid != 0) {
            skip("tests/chroot needs root (debootstrap, chroot, mount namespaces); this test runs as uid " + uid);
        }
        Path log = env.logDir().resolve("chroot-setup.log");
        long startNs = System.nanoTime();
        int rc = run(env, List.of(env.repoPath("tests/chroot/setup.sh").toString()), log, SETUP_TIMEOUT);
        if (rc == SETUP_RC_MIRROR_UNREACHABLE) {
            skip("the tool chroot cannot be built: the Debian mirror is unreachable\n" + VhostdMaster.tail(log, 10));
        }
        if (rc != 0) {
            throw new AssertionError("tests/chroot/setup.sh failed with " + rc + "\n" + VhostdMaster.tail(log, 40));
        }
        System.out.printf(
                "[ToolChroot] tests/chroot/setup.sh: chroot ready after %d ms%n",
                (System.nanoTime() - startNs) / 1_000_000);
    }

    /**
     * Runs a command (a {@code tests/chroot} script) from the repository root, stdout and stderr to {@code log}.
     * At the deadline the command and everything it started are killed and the test fails.
     *
     * @return the command's exit status
     */
    static int run(ItEnv env, List<String> command, Path log, Duration timeout)
            throws IOException, InterruptedException {
        Process process = new ProcessBuilder(command)
                .directory(env.repoRoot().toFile())
                .redirectErrorStream(true)
                .redirectOutput(log.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                .start();
        try {
            if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                throw new AssertionError(
                        command.getFirst() + " still running after " + timeout + "\n" + VhostdMaster.tail(log, 40));
            }
            return process.exitValue();
        } finally {
            // the scripts stop what they started when they exit; this covers a timeout or an interrupt by @Timeout
            if (process.isAlive()) {
                process.descendants().forEach(ProcessHandle::destroyForcibly);
                process.destroyForcibly();
            }
        }
    }

    /** A new directory under {@code /tmp}, the part of the host's file system that the chroot sees. */
    static Path tmpDir(String prefix) throws IOException {
        return Files.createTempDirectory(Path.of("/tmp"), prefix);
    }

    /** Copies the regular files of {@code from} (not its subdirectories, nothing over 1 MiB) into {@code to}. */
    static void keepLogs(Path from, Path to) throws IOException {
        if (!Files.isDirectory(from)) {
            return;
        }
        Files.createDirectories(to);
        try (Stream<Path> files = Files.list(from)) {
            for (Path file : files.toList()) {
                if (Files.isRegularFile(file) && Files.size(file) <= MAX_KEPT_FILE_BYTES) {
                    Files.copy(file, to.resolve(file.getFileName()), StandardCopyOption.REPLACE_EXISTING);
                }
            }
        }
    }

    /** Deletes {@code dir} and everything below it, if it exists. */
    static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    /** The effective uid, from {@code /proc/self/status} ({@code Uid: real effective saved fs}). */
    private static long effectiveUid() throws IOException {
        try (Stream<String> lines = Files.lines(Path.of("/proc/self/status"), StandardCharsets.UTF_8)) {
            return lines.filter(l -> l.startsWith("Uid:"))
                    .map(l -> Long.parseLong(l.split("\\s+")[2]))
                    .findFirst()
                    .orElseThrow(() -> new IOException("no Uid: line in /proc/self/status"));
        }
    }

    private static void skip(String reason) {
        System.out.println("[ToolChroot] SKIPPED: " + reason);
        abort(reason);
    }
}
