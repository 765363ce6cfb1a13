package io.vhostd.dist;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Boots of the test guest through {@code tests/vm/run-guest.sh} (QEMU, PVH kernel + busybox/fio initramfs
 * built by {@code tests/vm/build-guest.sh}, KVM when it really works, else TCG).
 */
final class GuestVm {

    /** run-guest.sh exit status when QEMU or the guest timed out. */
    static final int RC_TIMEOUT = 124;

    /** run-guest.sh exit status when QEMU failed (no END marker), e.g. the back-end broke the protocol. */
    static final int RC_HARNESS = 125;

    /**
     * What one boot produced.
     *
     * @param exitCode the guest program's exit status, or {@link #RC_TIMEOUT} / {@link #RC_HARNESS}
     * @param output the guest program's output (between the markers)
     * @param dmesg the guest kernel log, taken after the program ended (empty if the guest did not get there)
     * @param consoleLog the whole console + QEMU stderr (kept)
     * @param wall host wall time of the boot
     */
    record Result(int exitCode, String output, String dmesg, Path consoleLog, Duration wall) {

        /**
         * Failure context: exit status, the log path, QEMU's own messages (a back-end that breaks the
         * vhost-user protocol shows up there) and the last console lines before the guest's kernel log dump.
         */
        String describe() {
            List<String> lines;
            try {
                lines = Files.readAllLines(consoleLog, StandardCharsets.UTF_8);
            } catch (IOException e) {
                lines = List.of("(cannot read " + consoleLog + ": " + e + ")");
            }
            List<String> qemu = lines.stream()
                    .filter(l -> l.startsWith("qemu-system"))
                    .limit(20)
                    .toList();
            List<String> console = new ArrayList<>();
            boolean inDmesg = false;
            for (String line : lines) {
                if (line.contains("===== VHOSTD-VM DMESG BEGIN")) {
                    inDmesg = true;
                } else if (line.contains("===== VHOSTD-VM DMESG END")) {
                    inDmesg = false;
                } else if (!inDmesg) {
                    console.add(line);
                }
            }
            return "guest rc=" + exitCode + " after " + wall.toMillis() + " ms (" + RC_TIMEOUT + " = timeout, "
                    + RC_HARNESS + " = QEMU or harness error); console log " + consoleLog + "\n--- QEMU messages:\n"
                    + String.join("\n", qemu) + "\n--- console (without the kernel log dump), last 40 lines:\n"
                    + String.join("\n", console.subList(Math.max(0, console.size() - 40), console.size()));
        }
    }

    private GuestVm() {}

    /** True if QEMU ({@code $VHOSTD_VM_QEMU} or {@code qemu-system-x86_64}) is on the PATH. */
    static boolean qemuAvailable() {
        String qemu = System.getenv().getOrDefault("VHOSTD_VM_QEMU", "qemu-system-x86_64");
        if (qemu.contains("/")) {
            return Files.isExecutable(Path.of(qemu));
        }
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, qemu))) {
                return true;
            }
        }
        return false;
    }

    /** Runs {@code tests/vm/build-guest.sh} (about 1 s when the cached guest is up to date). */
    static void buildGuest(ItEnv env) throws IOException, InterruptedException {
        Path log = env.logDir().resolve("build-guest.log");
        int rc = run(env, List.of(env.repoPath("tests/vm/build-guest.sh").toString()), log, Duration.ofMinutes(10));
        if (rc != 0) {
            throw new AssertionError("tests/vm/build-guest.sh failed with " + rc + "\n" + VhostdMaster.tail(log, 30));
        }
    }

    /**
     * Boots the guest with one vhost-user-blk disk ({@code /dev/vda}) and runs {@code tests/vm/fio/guest-fio.sh}
     * on the given job files of {@code tests/vm/fio/}.
     *
     * @param name prefix of the log files in {@link ItEnv#logDir()}
     * @param vhostSocket the back-end's unix socket
     * @param numQueues vCPUs of the guest and virtqueues of the disk
     * @param guestEnv environment of the guest program (the job files read it)
     * @param jobFiles job file names in {@code tests/vm/fio/}
     * @param timeout wall-clock limit of the boot (QEMU is killed after it; the guest powers off 15 s earlier)
     */
    static Result runFio(
            ItEnv env,
            String name,
            Path vhostSocket,
            int numQueues,
            Map<String, String> guestEnv,
            List<String> jobFiles,
            Duration timeout)
            throws IOException, InterruptedException {
        Path fioDir = env.repoPath("tests/vm/fio");
        Path console = env.logDir().resolve(name + ".console.log");
        Path out = env.logDir().resolve(name + ".out");
        Path dmesg = env.logDir().resolve(name + ".dmesg");
        for (Path p : List.of(console, out, dmesg)) {
            Files.deleteIfExists(p);
        }
        List<String> command = new ArrayList<>(List.of(
                env.repoPath("tests/vm/run-guest.sh").toString(),
                "--quiet",
                "--smp",
                Integer.toString(numQueues),
                "--num-queues",
                Integer.toString(numQueues),
                "--vhost-user-blk",
                vhostSocket.toString(),
                "--timeout",
                Long.toString(timeout.toSeconds()),
                "--log",
                console.toString(),
                "--out",
                out.toString(),
                "--dmesg",
                dmesg.toString(),
                "--file",
                fioDir.resolve("guest-fio.sh").toString()));
        for (String job : jobFiles) {
            command.addAll(List.of("--file", fioDir.resolve(job).toString()));
        }
        guestEnv.forEach((k, v) -> command.addAll(List.of("--env", k + "=" + v)));
        command.addAll(List.of("--", "sh", "/vm/guest-fio.sh"));
        command.addAll(jobFiles);

        long startNs = System.nanoTime();
        int rc = run(env, command, env.logDir().resolve(name + ".run-guest.log"), timeout.plusSeconds(30));
        Duration wall = Duration.ofNanos(System.nanoTime() - startNs);
        return new Result(rc, readIfExists(out), readIfExists(dmesg), console, wall);
    }

    /**
     * Boots the guest with one vhost-user-blk disk ({@code /dev/vda}) and runs a shell command line in it.
     *
     * @param name prefix of the log files in {@link ItEnv#logDir()}
     * @param vhostSocket the back-end's unix socket
     * @param numQueues vCPUs of the guest and virtqueues of the disk
     * @param options more run-guest.sh options (e.g. {@code --packed})
     * @param files host files copied into the guest as {@code /vm/<file name>}
     * @param guestEnv environment of the guest program
     * @param guestCommand the shell command line (busybox sh, cwd /vm)
     * @param timeout wall-clock limit of the boot (QEMU is killed after it; the guest powers off 15 s earlier)
     */
    static Result runGuest(
            ItEnv env,
            String name,
            Path vhostSocket,
            int numQueues,
            List<String> options,
            List<Path> files,
            Map<String, String> guestEnv,
            String guestCommand,
            Duration timeout)
            throws IOException, InterruptedException {
        Path console = env.logDir().resolve(name + ".console.log");
        Path out = env.logDir().resolve(name + ".out");
        Path dmesg = env.logDir().resolve(name + ".dmesg");
        for (Path p : List.of(console, out, dmesg)) {
            Files.deleteIfExists(p);
        }
        List<String> command = new ArrayList<>(List.of(
                env.repoPath("tests/vm/run-guest.sh").toString(),
                "--quiet",
                "--smp",
                Integer.toString(numQueues),
                "--num-queues",
                Integer.toString(numQueues),
                "--vhost-user-blk",
                vhostSocket.toString(),
                "--timeout",
                Long.toString(timeout.toSeconds()),
                "--log",
                console.toString(),
                "--out",
                out.toString(),
                "--dmesg",
                dmesg.toString()));
        command.addAll(options);
        for (Path file : files) {
            command.addAll(List.of("--file", file + ":" + file.getFileName()));
        }
        guestEnv.forEach((k, v) -> command.addAll(List.of("--env", k + "=" + v)));
        command.addAll(List.of("--", guestCommand));

        long startNs = System.nanoTime();
        int rc = run(env, command, env.logDir().resolve(name + ".run-guest.log"), timeout.plusSeconds(30));
        Duration wall = Duration.ofNanos(System.nanoTime() - startNs);
        return new Result(rc, readIfExists(out), readIfExists(dmesg), console, wall);
    }

    private static int run(ItEnv env, List<String> command, Path log, Duration timeout)
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
                        command.getFirst() + " still running after " + timeout + "\n" + VhostdMaster.tail(log, 30));
            }
            return process.exitValue();
        } finally {
            // run-guest.sh kills its QEMU when it exits; this covers a timeout or an interrupt by @Timeout
            if (process.isAlive()) {
                process.descendants().forEach(ProcessHandle::destroyForcibly);
                process.destroyForcibly();
            }
        }
    }

    private static String readIfExists(Path file) throws IOException {
        return Files.exists(file) ? Files.readString(file, StandardCharsets.UTF_8) : "";
    }
}
