package io.vhostd.dist;

import java.io.File;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * One {@code bin/vhostd master --config FILE} process started by a test, and every process it spawned.
 *
 * <p>{@code bin/vhostd} execs java, so the process started here is the master JVM itself. Its slaves are
 * found two ways, because a slave may outlive the master on purpose (DESIGN.md §3) and so must be looked
 * for after the master is gone: as descendants of the master (snapshot taken just before the signal), and
 * as any process whose command line contains this test's unique socket directory.
 */
final class VhostdMaster implements AutoCloseable {

    private static final Duration POLL_INTERVAL = Duration.ofMillis(100);

    private final MasterConfig config;
    private final Process process;
    private final Path log;

    private VhostdMaster(MasterConfig config, Process process, Path log) {
        this.config = config;
        this.process = process;
        this.log = log;
    }

    /** Starts the master on {@code config} (already written); stdout and stderr go to {@code log} (truncated first). */
    static VhostdMaster start(ItEnv env, MasterConfig config, Path log) throws IOException {
        return start(env, config, log, Map.of());
    }

    /** {@link #start(ItEnv, MasterConfig, Path)} with more environment variables (e.g. {@code VHOSTD_JAVA_OPTS}). */
    static VhostdMaster start(ItEnv env, MasterConfig config, Path log, Map<String, String> environment)
            throws IOException {
        ProcessBuilder builder = new ProcessBuilder(
                        env.repoPath("bin/vhostd").toString(),
                        "master",
                        "--config",
                        config.configFile().toString())
                .directory(env.repoRoot().toFile())
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        builder.environment().put("VHOSTD_JAR", env.launchJar().toString());
        builder.environment().putAll(environment);
        Files.writeString(
                log,
                "=== it: bin/vhostd master --config " + config.configFile() + "\n",
                StandardCharsets.UTF_8,
                StandardOpenOption.CREATE,
                StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE);
        return new VhostdMaster(config, builder.start(), log);
    }

    long pid() {
        return process.pid();
    }

    Path log() {
        return log;
    }

    /**
     * Waits until the controller socket exists and accepts a connection (the connection is closed at once,
     * without a vhost-user message: a back-end must go on listening after such a peer).
     *
     * @throws AssertionError if the master exits first or the deadline passes; the message has the log tail
     */
    Duration awaitReady(Duration timeout) throws InterruptedException {
        long startNs = System.nanoTime();
        long deadlineNs = startNs + timeout.toNanos();
        Path socket = config.vhostSocket();
        while (System.nanoTime() < deadlineNs) {
            if (!process.isAlive()) {
                throw new AssertionError(
                        "master exited with " + process.exitValue() + " before " + socket + " was ready\n" + logTail());
            }
            // the master listens on the RPC socket last (after every controller's socket): both must accept
            if (Files.exists(socket) && accepts(socket) && accepts(config.rpcSocket())) {
                return Duration.ofNanos(System.nanoTime() - startNs);
            }
            Thread.sleep(POLL_INTERVAL);
        }
        throw new AssertionError("master not ready after " + timeout + ": " + socket + " or " + config.rpcSocket()
                + " does not accept\n" + logTail());
    }

    /**
     * Waits until the RPC socket accepts a connection (the master listens on it last). For a master that re-adopts
     * a slave whose session runs: the slave does not accept a second connection on the controller's socket while a
     * session runs, so {@link #awaitReady} would fill its listen backlog.
     *
     * @throws AssertionError if the master exits first or the deadline passes; the message has the log tail
     */
    Duration awaitRpcReady(Duration timeout) throws InterruptedException {
        long startNs = System.nanoTime();
        long deadlineNs = startNs + timeout.toNanos();
        while (System.nanoTime() < deadlineNs) {
            if (!process.isAlive()) {
                throw new AssertionError("master exited with " + process.exitValue() + " before " + config.rpcSocket()
                        + " was ready\n" + logTail());
            }
            if (accepts(config.rpcSocket())) {
                return Duration.ofNanos(System.nanoTime() - startNs);
            }
            Thread.sleep(POLL_INTERVAL);
        }
        throw new AssertionError(
                "master not ready after " + timeout + ": " + config.rpcSocket() + " does not accept\n" + logTail());
    }

    private static boolean accepts(Path socket) {
        try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            return channel.connect(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            return false;
        }
    }

    /**
     * Sends SIGTERM to the master and waits until it and every process of ours (see the class comment) has
     * exited. Processes still alive at the deadline are killed (SIGKILL) and reported.
     *
     * @return a description of each process that was still running at the deadline; empty on a clean stop
     */
    List<String> terminate(Duration timeout) throws InterruptedException {
        Map<Long, String> ours = new LinkedHashMap<>();
        ours.put(process.pid(), describe(process.toHandle()));
        process.descendants().forEach(p -> ours.put(p.pid(), describe(p)));
        process.destroy(); // SIGTERM on Linux
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        List<ProcessHandle> alive;
        do {
            processesMentioning(config.socketDir().toString()).forEach(p -> ours.putIfAbsent(p.pid(), describe(p)));
            alive = ours.keySet().stream()
                    .map(ProcessHandle::of)
                    .flatMap(Optional::stream)
                    .filter(ProcessHandle::isAlive)
                    .toList();
            if (alive.isEmpty()) {
                return List.of();
            }
            Thread.sleep(POLL_INTERVAL);
        } while (System.nanoTime() < deadlineNs);
        List<String> survivors = new ArrayList<>();
        for (ProcessHandle p : alive) {
            survivors.add(ours.get(p.pid()));
            p.destroyForcibly();
        }
        return survivors;
    }

    /**
     * SIGKILL to the master alone (not its slaves) and waits until it is gone; a master killed this way leaves its
     * serving slave running for the next master to re-adopt (issue #4).
     *
     * @throws AssertionError if it is still there after {@code timeout}
     */
    void kill(Duration timeout) throws InterruptedException {
        process.destroyForcibly();
        if (!process.waitFor(timeout.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)) {
            throw new AssertionError("master pid " + process.pid() + " still runs " + timeout + " after SIGKILL");
        }
    }

    /**
     * Waits until the master exits by itself (e.g. a fault injection halted it).
     *
     * @throws AssertionError if it still runs after {@code timeout}
     */
    void awaitExit(Duration timeout) throws InterruptedException {
        if (!process.waitFor(timeout.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)) {
            throw new AssertionError("master pid " + process.pid() + " still runs after " + timeout + "\n" + logTail());
        }
    }

    /** Exit status of the master, once it has exited. */
    int exitValue() {
        return process.exitValue();
    }

    /** Kills whatever is left (after a failed test); a clean test has already called {@link #terminate}. */
    @Override
    public void close() {
        if (process.isAlive()) {
            process.descendants().forEach(ProcessHandle::destroyForcibly);
            process.destroyForcibly();
        }
        processesMentioning(config.socketDir().toString()).forEach(ProcessHandle::destroyForcibly);
    }

    String logTail() {
        return tail(log, 40);
    }

    static String tail(Path file, int lines) {
        try {
            List<String> all = Files.readAllLines(file, StandardCharsets.UTF_8);
            return "--- last lines of " + file + ":\n"
                    + String.join("\n", all.subList(Math.max(0, all.size() - lines), all.size()));
        } catch (IOException e) {
            return "--- (cannot read " + file + ": " + e + ")";
        }
    }

    /** Every live process whose {@code /proc/<pid>/cmdline} contains {@code needle}, except this JVM. */
    static List<ProcessHandle> processesMentioning(String needle) {
        long self = ProcessHandle.current().pid();
        try (Stream<Path> procs = Files.list(Path.of("/proc"))) {
            return procs.filter(p -> p.getFileName().toString().chars().allMatch(Character::isDigit))
                    .filter(p -> Long.parseLong(p.getFileName().toString()) != self)
                    .filter(p -> commandLine(p).contains(needle))
                    .map(p -> ProcessHandle.of(Long.parseLong(p.getFileName().toString())))
                    .flatMap(Optional::stream)
                    .filter(ProcessHandle::isAlive)
                    .toList();
        } catch (IOException e) {
            return List.of();
        }
    }

    private static String commandLine(Path procDir) {
        try {
            return new String(Files.readAllBytes(procDir.resolve("cmdline")), StandardCharsets.UTF_8)
                    .replace('\0', ' ');
        } catch (IOException e) {
            return ""; // the process has exited meanwhile
        }
    }

    private static String describe(ProcessHandle p) {
        return "pid " + p.pid() + ": " + commandLine(Path.of("/proc", Long.toString(p.pid())));
    }
}
